//! Subscriptions (served over `/graphql/ws`) and the presence mutation. Each subscription asks
//! the same policy as its matching query before its stream starts; the streams come from `live`.

use async_graphql::{Context, ErrorExtensions, ID, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};

use super::assessment_types::UnitSummary;
use super::live::{LiveEvent, Relayed};
use super::{actor, state};
use crate::ids::{AssessmentId, UnitId};
use crate::live::{self, tail::Ended};

#[derive(Default)]
pub struct Subscription;

/// Someone present on an assessment.
#[derive(SimpleObject)]
pub struct PresenceEntry {
    pub user_id: ID,
    pub display_name: String,
    /// The question they are on, if any.
    pub question_id: Option<String>,
    pub typing: bool,
    /// When this entry last changed.
    pub since: DateTime<Utc>,
}

impl From<&live::presence::Entry> for PresenceEntry {
    fn from(e: &live::presence::Entry) -> Self {
        PresenceEntry {
            user_id: ID(e.user_id.to_string()),
            display_name: e.display_name.clone(),
            question_id: e.question_id.clone(),
            typing: e.typing,
            since: e.since,
        }
    }
}

/// The last item of a live event stream that ended early: the client resumes with `afterSeq`.
fn ended(reason: Ended) -> async_graphql::Error {
    let (code, after_seq, message) = match reason {
        Ended::TooSlow { after_seq } => (
            "TOO_SLOW",
            after_seq,
            format!("this subscription fell too far behind and was ended; subscribe again with afterSeq: {after_seq}"),
        ),
        Ended::Interrupted { after_seq } => (
            "INTERRUPTED",
            after_seq,
            format!("this subscription was interrupted; subscribe again with afterSeq: {after_seq}"),
        ),
    };
    async_graphql::Error::new(message).extend_with(|_, ext| {
        ext.set("code", code);
        ext.set("resumeAfterSeq", after_seq);
    })
}

#[Subscription]
impl Subscription {
    /// The events of an assessment's stream after `afterSeq` (0 or left out: from the start), then
    /// every new one as it is committed: each exactly once, in order, without a gap. For those
    /// who may read the assessment's history. A subscription that falls too far behind ends with
    /// an error whose `extensions.resumeAfterSeq` says where to resume.
    async fn assessment_events(
        &self,
        ctx: &Context<'_>,
        assessment_id: ID,
        after_seq: Option<i64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LiveEvent>> + use<>> {
        let id = AssessmentId::parse(&assessment_id)?;
        // Boxed, here and below: the authorization's database reads would otherwise stay part of
        // the subscription's state, allocated for as long as it lives, though done at its start.
        let events =
            Box::pin(live::tail::assessment_events(state(ctx), actor(ctx)?, id, after_seq.unwrap_or(0))).await?;
        // Subscribers that sent the same request share one rendering of each event.
        Ok(Relayed::new(ctx, id, events.map(|item| item.map_err(ended))))
    }

    /// Everyone present on an assessment: the whole list at once, then again after every change.
    /// Subscribing makes the caller present, until the subscription or its connection ends.
    async fn presence(
        &self,
        ctx: &Context<'_>,
        assessment_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = Vec<PresenceEntry>> + use<>> {
        let id = AssessmentId::parse(&assessment_id)?;
        let stream = Box::pin(live::presence::join(state(ctx), actor(ctx)?, id)).await?;
        Ok(stream.map(|list| list.iter().map(PresenceEntry::from).collect()))
    }

    /// The unit dashboard, now and after every change to it (at most one update per
    /// `ATTEST_LIVE_PROGRESS_INTERVAL_MS`). For those who may see the dashboard.
    async fn unit_progress(
        &self,
        ctx: &Context<'_>,
        unit_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Vec<UnitSummary>>> + use<>> {
        let unit = UnitId::parse(&unit_id)?;
        let stream = Box::pin(live::progress::unit_progress(state(ctx), actor(ctx)?, unit)).await?;
        Ok(stream.map(|item| match item {
            Ok(rows) => Ok(rows.into_iter().map(UnitSummary::from).collect()),
            Err(err) => Err(err.into()),
        }))
    }
}

#[derive(Default)]
pub struct LiveMutation;

#[Object]
impl LiveMutation {
    /// Sets which question the caller is on (none when left out) and whether they are typing, on
    /// every presence subscription the caller holds on the assessment. Returns false when the
    /// caller holds none.
    async fn set_presence(
        &self,
        ctx: &Context<'_>,
        assessment_id: ID,
        question_id: Option<String>,
        typing: Option<bool>,
    ) -> async_graphql::Result<bool> {
        let id = AssessmentId::parse(&assessment_id)?;
        Ok(live::presence::set(state(ctx), actor(ctx)?, id, question_id, typing.unwrap_or(false)).await?)
    }
}
