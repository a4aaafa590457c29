//! GraphQL object types. They wrap the domain's plain records; no database entity appears here.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, Json, Object, OutputType, SimpleObject};
use chrono::{DateTime, Utc};

use super::{actor, state};
use crate::agencies::{self, Agency, RoleGrant, Unit, UnitRole, User};
use crate::clock::from_micros;
use crate::error::AppError;
use crate::events;

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

/// Resolves the page size a client asked for.
pub fn page_size(first: Option<i32>) -> Result<usize, AppError> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n < 0 => Err(AppError::invalid("first", "must not be negative")),
        Some(n) => {
            let n = usize::try_from(n).unwrap_or(MAX_PAGE);
            if n > MAX_PAGE { Err(AppError::invalid("first", format!("must be at most {MAX_PAGE}"))) } else { Ok(n) }
        }
    }
}

/// A page of a stream's events, asked for with `after` (a sequence number) and `first`.
pub struct EventPage {
    pub after_seq: i64,
    first: usize,
}

impl EventPage {
    pub fn parse(after: Option<String>, first: Option<i32>) -> Result<EventPage, AppError> {
        let after_seq = match after {
            None => 0,
            Some(c) => c
                .parse::<i64>()
                .ok()
                .filter(|s| *s >= 0)
                .ok_or_else(|| AppError::invalid("after", "not a cursor of this stream"))?,
        };
        Ok(EventPage { after_seq, first: page_size(first)? })
    }

    /// How many events to read: one more than the page, to learn whether another follows.
    pub fn limit(&self) -> u64 {
        u64::try_from(self.first + 1).unwrap_or(u64::MAX)
    }

    /// The page, from at most `limit()` events read after `after_seq`.
    pub fn connection(&self, mut events: Vec<events::Event>) -> Connection<String, GqlEvent> {
        let has_next = events.len() > self.first;
        events.truncate(self.first);
        let mut conn = Connection::new(self.after_seq > 0, has_next);
        conn.edges.extend(events.into_iter().map(|e| Edge::new(e.seq.to_string(), GqlEvent(e))));
        conn
    }
}

/// A page of an in-memory list ordered by a unique key; the cursor is that key.
pub fn paginate<T: OutputType>(
    items: Vec<T>,
    after: Option<String>,
    first: Option<i32>,
    key: impl Fn(&T) -> String,
) -> Result<Connection<String, T>, AppError> {
    let first = page_size(first)?;
    let start = match after {
        None => 0,
        Some(cursor) => items
            .iter()
            .position(|i| key(i) == cursor)
            .map(|p| p + 1)
            .ok_or_else(|| AppError::invalid("after", "unknown cursor"))?,
    };
    let has_next = items.len() > start + first;
    let mut conn = Connection::new(start > 0, has_next);
    conn.edges.extend(items.into_iter().skip(start).take(first).map(|i| Edge::new(key(&i), i)));
    Ok(conn)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(name = "UnitRole")]
pub enum GqlUnitRole {
    /// Oversees the unit's whole subtree and sees its people.
    Manager,
    /// Takes part in the unit's work.
    Member,
}

impl From<UnitRole> for GqlUnitRole {
    fn from(r: UnitRole) -> Self {
        match r {
            UnitRole::Manager => GqlUnitRole::Manager,
            UnitRole::Member => GqlUnitRole::Member,
        }
    }
}

impl From<GqlUnitRole> for UnitRole {
    fn from(r: GqlUnitRole) -> Self {
        match r {
            GqlUnitRole::Manager => UnitRole::Manager,
            GqlUnitRole::Member => UnitRole::Member,
        }
    }
}

pub struct GqlAgency(pub Agency);

#[Object(name = "Agency")]
impl GqlAgency {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.created_at)
    }
    /// The stream key of the agency's event log, for `events(stream:)`.
    async fn stream(&self) -> String {
        events::Stream::Agency(self.0.id).key()
    }
}

#[derive(Clone)]
pub struct GqlUnit(pub Unit);

#[Object(name = "Unit")]
impl GqlUnit {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn parent_id(&self) -> Option<ID> {
        self.0.parent_id.map(|p| ID(p.to_string()))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.created_at)
    }
    /// Who holds a role on this unit: administrators and the managers of the unit see this.
    async fn roles(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<GqlRoleGrant>> {
        let grants = agencies::roles_on_unit(state(ctx), actor(ctx)?, self.0.id).await?;
        Ok(grants.into_iter().map(GqlRoleGrant).collect())
    }
}

#[derive(Clone)]
pub struct GqlUser(pub User);

#[Object(name = "User")]
impl GqlUser {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    /// Agency administrator: manages users, units and roles.
    async fn is_admin(&self) -> bool {
        self.0.is_admin
    }
    /// The account must set a new password before doing anything else.
    async fn must_change_password(&self) -> bool {
        self.0.must_change_password
    }
    async fn disabled(&self) -> bool {
        self.0.disabled
    }
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.created_at)
    }
    async fn roles(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<GqlRoleGrant>> {
        let grants = agencies::roles_of(state(ctx), actor(ctx)?, self.0.id).await?;
        Ok(grants.into_iter().map(GqlRoleGrant).collect())
    }
}

pub struct GqlRoleGrant(pub RoleGrant);

#[Object(name = "RoleGrant")]
impl GqlRoleGrant {
    async fn user_id(&self) -> ID {
        ID(self.0.user_id.to_string())
    }
    async fn unit_id(&self) -> ID {
        ID(self.0.unit_id.to_string())
    }
    async fn role(&self) -> GqlUnitRole {
        self.0.role.into()
    }
    async fn granted_at(&self) -> DateTime<Utc> {
        from_micros(self.0.granted_at)
    }
}

/// An event of the log. Its fields read the event and nothing else, never the caller: live
/// subscribers share one rendering of each event (`graphql::live`).
#[derive(Clone)]
pub struct GqlEvent(pub events::Event);

#[Object(name = "Event")]
impl GqlEvent {
    /// Position in the deployment's whole log.
    async fn position(&self) -> i64 {
        self.0.position
    }
    async fn stream(&self) -> &str {
        &self.0.stream
    }
    /// Sequence number within the stream, gap-free from 1.
    async fn seq(&self) -> i64 {
        self.0.seq
    }
    #[graphql(name = "type")]
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    /// A user id, or `system`.
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    /// The server's time, exactly as hashed (RFC 3339, microseconds, UTC).
    async fn at(&self) -> &str {
        &self.0.at
    }
    async fn payload(&self) -> Json<serde_json::Value> {
        Json(self.0.payload.clone())
    }
    async fn prev_hash(&self) -> &str {
        &self.0.prev_hash
    }
    async fn hash(&self) -> &str {
        &self.0.hash
    }
}

#[derive(SimpleObject)]
pub struct LoginPayload {
    /// The session token: send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub user: GqlUser,
    pub expires_at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct StreamVerification {
    pub ok: bool,
    pub events_checked: u64,
    pub head_hash: String,
    /// The first problem found: the sequence number and what is wrong.
    pub problem_seq: Option<i64>,
    pub problem: Option<String>,
}
