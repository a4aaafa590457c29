//! Who is looking at an assessment right now, at which question, and whether they are typing.
//! Ephemeral and per server: held in memory, one entry per presence subscription, never written
//! to the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures_util::Stream;
use tokio::sync::watch;

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

#[derive(Default)]
pub(crate) struct Registry {
    rooms: Mutex<HashMap<AssessmentId, Room>>,
    next_key: AtomicU64,
}

struct Room {
    /// Entries by subscription, in the order people arrived.
    entries: Vec<(u64, Entry)>,
    tx: watch::Sender<Snapshot>,
}

impl Room {
    fn publish(&self) {
        self.tx.send_replace(Arc::new(self.entries.iter().map(|(_, e)| e.clone()).collect()));
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
        let mut rooms = lock(&self.hub.inner.presence.rooms);
        if let Some(room) = rooms.get_mut(&self.assessment) {
            room.entries.retain(|(k, _)| *k != self.key);
            room.publish();
            if room.entries.is_empty() {
                rooms.remove(&self.assessment);
            }
        }
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
        let room =
            rooms.entry(id).or_insert_with(|| Room { entries: Vec::new(), tx: watch::channel(Arc::default()).0 });
        room.entries.push((key, entry));
        room.publish();
        room.tx.subscribe()
    };
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
/// are typing. Returns whether the actor was present there (subscribed to presence).
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
    let now = state.clock.now();
    let mut rooms = lock(&state.live.inner.presence.rooms);
    let Some(room) = rooms.get_mut(&id) else {
        return Ok(false);
    };
    let mut found = false;
    for (_, e) in room.entries.iter_mut().filter(|(_, e)| e.user_id == actor.user_id) {
        found = true;
        if e.question_id != question_id || e.typing != typing {
            e.question_id = question_id.clone();
            e.typing = typing;
            e.since = now;
        }
    }
    if found {
        room.publish();
    }
    Ok(found)
}
