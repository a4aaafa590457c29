//! Who is looking at an assessment right now, at which question, and whether they are typing.
//! Ephemeral: held in memory, one entry per presence subscription, never written to the log.
//! Each server keeps its own entries; on PostgreSQL it also keeps, per room, the latest entry
//! list every other server published (see `pg.rs`), and a room's list is both together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::Stream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use uuid::Uuid;

use super::{Hub, lock};
use crate::auth::Actor;
use crate::error::AppError;
use crate::ids::{AssessmentId, UserId};
use crate::state::AppState;

/// One person present on an assessment.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub user_id: UserId,
    pub display_name: String,
    pub question_id: Option<String>,
    pub typing: bool,
    /// When this entry last changed.
    pub since: DateTime<Utc>,
}

/// Everyone present on one assessment.
pub type Snapshot = Arc<Vec<Entry>>;

/// A server's random identity among the servers sharing a database, chosen at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub Uuid);

/// A `setPresence`: moves a user's entries on an assessment. It is forwarded to the other servers
/// when the user has entries there, since the mutation arrives by HTTP, possibly at another
/// server than the user's presence subscriptions.
#[derive(Clone, Debug, PartialEq)]
pub struct Move {
    pub assessment: AssessmentId,
    pub user_id: UserId,
    pub question_id: Option<String>,
    pub typing: bool,
    pub at: DateTime<Utc>,
}

/// The presence rooms of one server.
pub struct Registry {
    server: ServerId,
    /// Whether other servers share the database: only then are local changes queued for
    /// publication. On SQLite nothing is queued and no remote entry ever arrives.
    shared: bool,
    /// Remote entries not refreshed for this long are dropped: their server is gone.
    timeout: Duration,
    rooms: Mutex<HashMap<AssessmentId, Room>>,
    next_key: AtomicU64,
    outbox: Mutex<Outbox>,
    /// Signalled when something was put in the outbox.
    queued: Notify,
}

/// What waits to be published to the other servers. Both are keyed so that a burst of changes
/// collapses into its latest state.
#[derive(Default)]
struct Outbox {
    rooms: HashSet<AssessmentId>,
    moves: HashMap<(AssessmentId, UserId), Move>,
}

struct Room {
    /// This server's entries by subscription, in the order people arrived.
    local: Vec<(u64, Entry)>,
    /// The latest list of each other server, and when it was last refreshed.
    remote: BTreeMap<ServerId, (Vec<Entry>, Instant)>,
    tx: watch::Sender<Snapshot>,
}

impl Room {
    fn new() -> Room {
        Room { local: Vec::new(), remote: BTreeMap::new(), tx: watch::channel(Arc::default()).0 }
    }

    fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }

    /// Tells subscribers the room's list if it changed. Entries are grouped by server in the
    /// order of server ids, so that every server shows the same order; within a server, in the
    /// order people arrived.
    fn publish(&self, me: ServerId) {
        let mut list = Vec::with_capacity(self.local.len());
        let mut mine_done = false;
        for (server, (entries, _)) in &self.remote {
            if !mine_done && me < *server {
                list.extend(self.local.iter().map(|(_, e)| e.clone()));
                mine_done = true;
            }
            list.extend(entries.iter().cloned());
        }
        if !mine_done {
            list.extend(self.local.iter().map(|(_, e)| e.clone()));
        }
        self.tx.send_if_modified(|current| {
            if **current == list {
                return false;
            }
            *current = Arc::new(list);
            true
        });
    }
}

impl Registry {
    pub(super) fn new(shared: bool, timeout: Duration) -> Registry {
        Registry {
            server: ServerId(Uuid::new_v4()),
            shared,
            timeout,
            rooms: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            outbox: Mutex::new(Outbox::default()),
            queued: Notify::new(),
        }
    }

    /// This server's id.
    pub fn server(&self) -> ServerId {
        self.server
    }

    /// Queues a room whose local entries changed for publication to the other servers.
    fn changed(&self, id: AssessmentId) {
        if self.shared {
            lock(&self.outbox).rooms.insert(id);
            self.queued.notify_one();
        }
    }

    /// Queues every room with local entries for publication: the heartbeat, and the answer to
    /// another server that (re)connected.
    pub(super) fn republish(&self) {
        if !self.shared {
            return;
        }
        let ids: Vec<AssessmentId> =
            lock(&self.rooms).iter().filter(|(_, r)| !r.local.is_empty()).map(|(id, _)| *id).collect();
        if !ids.is_empty() {
            lock(&self.outbox).rooms.extend(ids);
            self.queued.notify_one();
        }
    }

    /// Waits until something was queued for publication.
    pub(super) async fn queued(&self) {
        self.queued.notified().await
    }

    /// Takes what is queued: rooms to publish and moves to forward.
    pub(super) fn take_queued(&self) -> (Vec<AssessmentId>, Vec<Move>) {
        let mut outbox = lock(&self.outbox);
        let rooms = outbox.rooms.drain().collect();
        let moves = outbox.moves.drain().map(|(_, m)| m).collect();
        (rooms, moves)
    }

    /// This server's entries on an assessment, in the order people arrived.
    pub(super) fn local(&self, id: AssessmentId) -> Vec<Entry> {
        lock(&self.rooms).get(&id).map(|r| r.local.iter().map(|(_, e)| e.clone()).collect()).unwrap_or_default()
    }

    /// Everyone present on an assessment, as its subscribers see it.
    pub fn snapshot(&self, id: AssessmentId) -> Snapshot {
        lock(&self.rooms).get(&id).map(|r| r.tx.borrow().clone()).unwrap_or_default()
    }

    /// Takes another server's whole list for a room, received at `now`. An empty list means that
    /// everyone there left. This server's own publications are ignored.
    pub fn receive(&self, server: ServerId, id: AssessmentId, entries: Vec<Entry>, now: Instant) {
        if server == self.server {
            return;
        }
        let mut rooms = lock(&self.rooms);
        if entries.is_empty() {
            let Some(room) = rooms.get_mut(&id) else { return };
            if room.remote.remove(&server).is_some() {
                room.publish(self.server);
            }
            if room.is_empty() {
                rooms.remove(&id);
            }
        } else {
            let room = rooms.entry(id).or_insert_with(Room::new);
            room.remote.insert(server, (entries, now));
            room.publish(self.server);
        }
    }

    /// Drops the lists of servers that published nothing for a room within the timeout before
    /// `now`: a server that stopped without saying so takes its people with it.
    pub fn expire(&self, now: Instant) {
        let mut rooms = lock(&self.rooms);
        rooms.retain(|_, room| {
            let before = room.remote.len();
            room.remote.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < self.timeout);
            if room.remote.len() != before {
                room.publish(self.server);
            }
            !room.is_empty()
        });
    }

    /// Applies a move to this server's entries of the user. Returns whether there were any.
    pub(super) fn apply(&self, m: &Move) -> bool {
        let mut rooms = lock(&self.rooms);
        let Some(room) = rooms.get_mut(&m.assessment) else {
            return false;
        };
        let mut found = false;
        for (_, e) in room.local.iter_mut().filter(|(_, e)| e.user_id == m.user_id) {
            found = true;
            if e.question_id != m.question_id || e.typing != m.typing {
                e.question_id = m.question_id.clone();
                e.typing = m.typing;
                e.since = m.at;
            }
        }
        if found {
            room.publish(self.server);
            drop(rooms);
            self.changed(m.assessment);
        }
        found
    }

    /// Whether another server has published entries of the user on the assessment.
    fn present_elsewhere(&self, id: AssessmentId, user: UserId) -> bool {
        lock(&self.rooms)
            .get(&id)
            .is_some_and(|r| r.remote.values().any(|(entries, _)| entries.iter().any(|e| e.user_id == user)))
    }
}

/// A presence subscription's entry: dropping it (the subscription or its connection ended)
/// removes the entry.
pub struct Here {
    hub: Hub,
    assessment: AssessmentId,
    key: u64,
}

impl Drop for Here {
    fn drop(&mut self) {
        let registry = &self.hub.inner.presence;
        let mut rooms = lock(&registry.rooms);
        if let Some(room) = rooms.get_mut(&self.assessment) {
            room.local.retain(|(k, _)| *k != self.key);
            room.publish(registry.server);
            if room.is_empty() {
                rooms.remove(&self.assessment);
            }
        }
        drop(rooms);
        registry.changed(self.assessment);
    }
}

/// Registers the actor as present on an assessment they may see, and returns the list of
/// everyone present: now, and again after every change, until the stream is dropped.
pub async fn join(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
) -> Result<impl Stream<Item = Snapshot> + Send + use<>, AppError> {
    let turn = state.live.setting_up().await;
    crate::assessments::assessment(state, actor, id).await?;
    let user = crate::db::org::get_user(&state.db.conn, actor.user_id).await?.ok_or(AppError::NotFound("user"))?;
    drop(turn);
    let hub = state.live.clone();
    let registry = &hub.inner.presence;
    let key = registry.next_key.fetch_add(1, Ordering::Relaxed);
    let entry = Entry {
        user_id: actor.user_id,
        display_name: user.display_name,
        question_id: None,
        typing: false,
        since: state.clock.now(),
    };
    let mut rx = {
        let mut rooms = lock(&registry.rooms);
        let room = rooms.entry(id).or_insert_with(Room::new);
        room.local.push((key, entry));
        room.publish(registry.server);
        room.tx.subscribe()
    };
    registry.changed(id);
    let here = Here { hub: hub.clone(), assessment: id, key };
    Ok(async_stream::stream! {
        let _here = here;
        loop {
            let snapshot = rx.borrow_and_update().clone();
            yield snapshot;
            // Several changes in between are seen as one: only the latest list matters.
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Moves the actor's presence on an assessment to a question (or none) and sets whether they
/// are typing, on every presence subscription they hold there: on this server at once, and on
/// other servers through a forwarded move. Returns whether the actor was present there.
pub async fn set(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    question_id: Option<String>,
    typing: bool,
) -> Result<bool, AppError> {
    crate::assessments::assessment(state, actor, id).await?;
    if let Some(q) = &question_id
        && (q.is_empty() || q.len() > 200)
    {
        return Err(AppError::invalid("questionId", "must be 1 to 200 characters"));
    }
    let registry = &state.live.inner.presence;
    let m = Move { assessment: id, user_id: actor.user_id, question_id, typing, at: state.clock.now() };
    let here = registry.apply(&m);
    // The request may have reached another server than the caller's subscriptions.
    let elsewhere = registry.shared && registry.present_elsewhere(id, actor.user_id);
    if elsewhere {
        lock(&registry.outbox).moves.insert((id, actor.user_id), m);
        registry.queued.notify_one();
    }
    Ok(here || elsewhere)
}
