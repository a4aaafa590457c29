//! Queries.

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, Object};

use super::types::{EventPage, GqlAgency, GqlEvent, GqlUnit, GqlUser, StreamVerification, paginate};
use super::{actor, state};
use crate::agencies;
use crate::error::AppError;
use crate::events::{self, Stream};
use crate::ids::{UnitId, UserId};
use crate::policy::{self, Action, Resource};

#[derive(Default)]
pub struct CoreQuery;

#[Object]
impl CoreQuery {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<GqlUser> {
        let actor = actor(ctx)?;
        Ok(GqlUser(agencies::user(state(ctx), actor, actor.user_id).await?))
    }

    /// The signed-in user's agency.
    async fn agency(&self, ctx: &Context<'_>) -> async_graphql::Result<GqlAgency> {
        Ok(GqlAgency(agencies::agency(state(ctx), actor(ctx)?).await?))
    }

    /// The agency's units, parents before children.
    async fn units(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
    ) -> async_graphql::Result<Connection<String, GqlUnit>> {
        let units = agencies::units(state(ctx), actor(ctx)?).await?;
        let ordered = parents_first(units);
        Ok(paginate(ordered.into_iter().map(GqlUnit).collect(), after, first, |u| u.0.id.to_string())?)
    }

    async fn unit(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<GqlUnit> {
        let id = UnitId::parse(&id)?;
        Ok(GqlUnit(agencies::unit(state(ctx), actor(ctx)?, id).await?))
    }

    /// Users the caller may see: all of the agency for administrators, those of their subtrees
    /// for managers.
    async fn users(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
    ) -> async_graphql::Result<Connection<String, GqlUser>> {
        let users = agencies::users(state(ctx), actor(ctx)?).await?;
        Ok(paginate(users.into_iter().map(GqlUser).collect(), after, first, |u| u.0.id.to_string())?)
    }

    async fn user(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<GqlUser> {
        let id = UserId::parse(&id)?;
        Ok(GqlUser(agencies::user(state(ctx), actor(ctx)?, id).await?))
    }

    /// Events of a stream (`agency:<id>`), in order, after the given sequence number.
    async fn events(
        &self,
        ctx: &Context<'_>,
        stream: String,
        after: Option<String>,
        first: Option<i32>,
    ) -> async_graphql::Result<Connection<String, GqlEvent>> {
        let stream = Stream::parse(&stream)?;
        let page = EventPage::parse(after, first)?;
        let events = agencies::agency_events(state(ctx), actor(ctx)?, &stream, page.after_seq, page.limit()).await?;
        Ok(page.connection(events))
    }

    /// Checks a stream's whole chain: every hash, every link, no gap.
    async fn verify_stream(&self, ctx: &Context<'_>, stream: String) -> async_graphql::Result<StreamVerification> {
        let actor = actor(ctx)?;
        let parsed = Stream::parse(&stream)?;
        let v = match parsed {
            Stream::Agency(agency) => {
                policy::authorize(actor, Action::ReadAgencyLog, Resource::agency(agency))?;
                events::verify_stream(&state(ctx).db.conn, &parsed.key()).await?
            }
            Stream::Assessment(id) => crate::assessments::verify_log(state(ctx), actor, id).await?,
            Stream::System => return Err(AppError::NotFound("stream").into()),
        };
        Ok(StreamVerification {
            ok: v.problem.is_none(),
            events_checked: v.events_checked,
            head_hash: v.head_hash,
            problem_seq: v.problem.as_ref().map(|p| p.0),
            problem: v.problem.map(|p| p.1),
        })
    }
}

/// Orders units so that each comes after its parent, siblings in creation order.
fn parents_first(units: Vec<agencies::Unit>) -> Vec<agencies::Unit> {
    let mut out: Vec<agencies::Unit> = Vec::with_capacity(units.len());
    let mut stack: Vec<&agencies::Unit> = units.iter().filter(|u| u.parent_id.is_none()).rev().collect();
    while let Some(u) = stack.pop() {
        out.push(u.clone());
        stack.extend(units.iter().filter(|c| c.parent_id == Some(u.id)).rev());
    }
    out
}
