//! PostgreSQL: every server sharing the database learns of every commit through `NOTIFY
//! attest_events '<stream>:<seq>'`, and of the other servers' presence through `NOTIFY
//! attest_presence '<json>'`, both sent here.
//!
//! A server's commits are announced after they commit, in batches (`Commits`, `announce`), not
//! inside the writing transactions: PostgreSQL holds one lock for the whole database from a
//! notifying transaction's commit until it ends, flush to disk included, so writers that notify
//! commit one at a time, where others share flushes (it halved pgbench's rate at 16 clients
//! here). Processes without a live hub (the command line) notify inside the transaction
//! (`db::events::insert`). A commit announced late or not at all (the process died in between)
//! only waits for the others' safety poll.
//!
//! Presence messages are JSON objects with short keys, kind `k`:
//! - `room`: a server's whole local list for an assessment (`s` server, `a` assessment, `e`
//!   entries of `u` user, `d` display name, `q` question, `t` typing, `at` milliseconds since
//!   1970). A NOTIFY payload must stay under 8000 bytes, so a long list is split into parts `i` of
//!   `n`, all of one generation `g`; the receiver takes the list when its last part arrives.
//! - `move`: a `setPresence` that reached this server for a user with entries elsewhere.
//! - `hello`: a server (re)connected and asks the others to publish their rooms now.
//!
//! Nothing secret travels here: ids, display names and question ids, which everyone who may see
//! the assessment sees anyway.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::DateTime;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Hub;
use super::presence::{Entry, Move, ServerId};
use crate::ids::{AssessmentId, UserId};

const EVENTS: &str = "attest_events";
const PRESENCE: &str = "attest_presence";

/// The largest payload sent: PostgreSQL refuses 8000 bytes and more.
const MAX_PAYLOAD: usize = 7900;

/// The least time between two publications of a room by this server: a burst of changes (typing
/// toggles) is sent as its latest state, at most this often.
const COALESCE: Duration = Duration::from_millis(250);

/// Listens until aborted, reconnecting after a failure. After every reconnection all tailers
/// read again, since notifications sent while disconnected are lost, and every server publishes
/// its presence rooms again.
pub(super) async fn listen(hub: Hub) {
    let mut backoff = Duration::from_millis(200);
    let mut connected_before = false;
    let mut parts = Parts::default();
    loop {
        match connect(&hub).await {
            Ok(mut listener) => {
                if connected_before {
                    tracing::info!("live: listening for notifications again");
                    // Another server's change to an agency may have gone unheard: `wake_all`
                    // ends session reuse and has every connection check its rights again.
                    hub.wake_all();
                }
                connected_before = true;
                backoff = Duration::from_millis(200);
                parts.clear();
                hello(&hub).await;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) if n.channel() == PRESENCE => received(&hub, &mut parts, n.payload()),
                        Ok(Some(n)) => match parse(n.payload()) {
                            // For another server's change to an agency, `wake` also ends
                            // session reuse and has that agency's connections check again.
                            Some((stream, seq)) => hub.wake(stream, seq),
                            None => tracing::warn!(payload = n.payload(), "live: unexpected notification"),
                        },
                        // The connection was lost: connect again and wake everything.
                        Ok(None) => break,
                        Err(err) => {
                            tracing::warn!(error = %err, "live: notification listener failed");
                            break;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "live: cannot listen for notifications"),
        }
        // Meanwhile the tailers' safety poll still delivers, only later.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// This process's commits not yet announced, as the last sequence per stream.
#[derive(Default)]
pub(super) struct Commits {
    pending: std::sync::Mutex<HashMap<String, i64>>,
    added: tokio::sync::Notify,
}

impl Commits {
    pub(super) fn add(&self, stream: &str, seq: i64) {
        let mut pending = super::lock(&self.pending);
        let last = pending.entry(stream.to_owned()).or_insert(seq);
        *last = (*last).max(seq);
        drop(pending);
        self.added.notify_one();
    }
}

/// Announces this process's commits to every server listening, as they come: all that arrived
/// while the last batch was being sent go out together, one notification per stream, in one
/// transaction that does not wait for the disk (it writes nothing that needs to last).
pub(super) async fn announce(hub: Hub) {
    let Some(commits) = &hub.inner.commits else { return };
    loop {
        commits.added.notified().await;
        let batch = std::mem::take(&mut *super::lock(&commits.pending));
        if batch.is_empty() {
            continue;
        }
        let mut sql = String::from("SET LOCAL synchronous_commit = off; SELECT ");
        for (i, (stream, seq)) in batch.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            // Stream keys are ASCII names and UUIDs; quotes are doubled all the same.
            sql.push_str(&format!("pg_notify('{EVENTS}', '{}:{seq}')", stream.replace('\'', "''")));
        }
        if let Err(err) = send(&hub.inner.db, &sql).await {
            tracing::warn!(error = %err, streams = batch.len(), "live: cannot announce commits");
        }
    }
}

/// Runs `sql` in a transaction of its own: notifications go out when it commits.
async fn send(db: &crate::db::Db, sql: &str) -> Result<(), sea_orm::DbErr> {
    let tx = db.conn.begin().await?;
    tx.execute_unprepared(sql).await?;
    tx.commit().await
}

async fn connect(hub: &Hub) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(hub.inner.url.expose()).await?;
    listener.listen_all([EVENTS, PRESENCE]).await?;
    Ok(listener)
}

/// `<stream>:<seq>`; the stream key itself contains a colon.
fn parse(payload: &str) -> Option<(&str, i64)> {
    let (stream, seq) = payload.rsplit_once(':')?;
    Some((stream, seq.parse().ok()?))
}

/// A presence notification.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "k", rename_all = "lowercase")]
enum Message {
    Room { s: Uuid, a: Uuid, g: u64, i: u32, n: u32, e: Vec<WireEntry> },
    Move { s: Uuid, a: Uuid, u: Uuid, q: Option<String>, t: bool, at: i64 },
    Hello { s: Uuid },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct WireEntry {
    u: Uuid,
    d: String,
    q: Option<String>,
    t: bool,
    at: i64,
}

impl From<&Entry> for WireEntry {
    fn from(e: &Entry) -> Self {
        WireEntry {
            u: e.user_id.0,
            d: e.display_name.clone(),
            q: e.question_id.clone(),
            t: e.typing,
            at: e.since.timestamp_millis(),
        }
    }
}

impl From<WireEntry> for Entry {
    fn from(w: WireEntry) -> Self {
        Entry {
            user_id: UserId(w.u),
            display_name: w.d,
            question_id: w.q,
            typing: w.t,
            since: DateTime::from_timestamp_millis(w.at).unwrap_or_default(),
        }
    }
}

fn to_json(m: &Message) -> String {
    serde_json::to_string(m).expect("presence messages hold only strings, numbers and booleans")
}

/// A room's list as payloads of at most `MAX_PAYLOAD` bytes each, in order; an empty list is one
/// payload. An entry is at most about 1.5 KB (a display name and a question id of at most 200
/// characters each), so every part holds at least one.
fn encode_room(server: ServerId, id: AssessmentId, generation: u64, entries: &[Entry]) -> Vec<String> {
    let header = |i, n, e| Message::Room { s: server.0, a: id.0, g: generation, i, n, e };
    // The size of a part without entries, with room for the largest part numbers.
    let base = to_json(&header(u32::MAX, u32::MAX, Vec::new())).len();
    let mut groups: Vec<Vec<WireEntry>> = vec![Vec::new()];
    let mut size = base;
    for e in entries {
        let wire = WireEntry::from(e);
        // One comma between entries.
        let len = to_json_entry(&wire).len() + 1;
        let current = groups.last_mut().expect("there is always a current group");
        if size + len > MAX_PAYLOAD && !current.is_empty() {
            groups.push(Vec::new());
            size = base;
        }
        size += len;
        groups.last_mut().expect("there is always a current group").push(wire);
    }
    let n = groups.len() as u32;
    groups.into_iter().enumerate().map(|(i, e)| to_json(&header(i as u32, n, e))).collect()
}

fn to_json_entry(e: &WireEntry) -> String {
    serde_json::to_string(e).expect("presence entries hold only strings, numbers and booleans")
}

/// Parts of split room lists received so far, by server and room.
#[derive(Default)]
struct Parts {
    pending: HashMap<(Uuid, Uuid), (u64, u32, Vec<Entry>)>,
}

impl Parts {
    fn clear(&mut self) {
        self.pending.clear();
    }

    /// Adds part `i` of `n` of a list; returns the whole list once its last part arrived. One
    /// server sends the parts of a list one after the other, so they arrive in order; a part out
    /// of place (after a lost notification) discards the list, and the next heartbeat repairs it.
    fn add(&mut self, s: Uuid, a: Uuid, g: u64, i: u32, n: u32, e: Vec<WireEntry>) -> Option<Vec<Entry>> {
        let entries = e.into_iter().map(Entry::from);
        if i == 0 && n == 1 {
            self.pending.remove(&(s, a));
            return Some(entries.collect());
        }
        if i == 0 {
            self.pending.insert((s, a), (g, 1, entries.collect()));
            return None;
        }
        let (generation, next, list) = self.pending.get_mut(&(s, a))?;
        if *generation != g || *next != i {
            self.pending.remove(&(s, a));
            return None;
        }
        list.extend(entries);
        *next += 1;
        if *next < n {
            return None;
        }
        self.pending.remove(&(s, a)).map(|(_, _, list)| list)
    }
}

/// Takes another server's presence notification.
fn received(hub: &Hub, parts: &mut Parts, payload: &str) {
    let registry = &hub.inner.presence;
    let message = match serde_json::from_str::<Message>(payload) {
        Ok(m) => m,
        Err(err) => {
            tracing::warn!(error = %err, "live: unexpected presence notification");
            return;
        }
    };
    match message {
        Message::Room { s, .. } | Message::Move { s, .. } | Message::Hello { s } if s == registry.server().0 => {}
        Message::Room { s, a, g, i, n, e } => {
            if let Some(list) = parts.add(s, a, g, i, n, e) {
                registry.receive(ServerId(s), AssessmentId(a), list, tokio::time::Instant::now());
            }
        }
        Message::Move { a, u, q, t, at, .. } => {
            let at = DateTime::from_timestamp_millis(at).unwrap_or_default();
            registry.apply(&Move { assessment: AssessmentId(a), user_id: UserId(u), question_id: q, typing: t, at });
        }
        Message::Hello { .. } => registry.republish(),
    }
}

/// Announces this server (again) and queues its own rooms, since others may have dropped them
/// while it could not hear or be heard.
async fn hello(hub: &Hub) {
    let registry = &hub.inner.presence;
    registry.republish();
    if let Err(err) = notify(hub, &to_json(&Message::Hello { s: registry.server().0 })).await {
        tracing::warn!(error = %err, "live: cannot announce presence");
    }
}

async fn notify(hub: &Hub, payload: &str) -> Result<(), sea_orm::DbErr> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [PRESENCE.into(), payload.into()],
    );
    hub.inner.db.conn.execute_raw(statement).await.map(|_| ())
}

/// What this server last told the others about its rooms.
struct Publisher {
    hub: Hub,
    generation: u64,
    /// Rooms whose last list sent, or being sent, was not empty: the farewell empties them.
    announced: HashSet<AssessmentId>,
}

impl Publisher {
    async fn room(&mut self, id: AssessmentId, entries: &[Entry]) {
        self.generation += 1;
        // Counted before sending: a list that went out only in part still needs a farewell.
        if !entries.is_empty() {
            self.announced.insert(id);
        }
        let server = self.hub.inner.presence.server();
        for payload in encode_room(server, id, self.generation, entries) {
            if let Err(err) = notify(&self.hub, &payload).await {
                // The heartbeat publishes the room again.
                tracing::warn!(error = %err, "live: cannot publish presence");
                return;
            }
        }
        if entries.is_empty() {
            self.announced.remove(&id);
        }
    }

    /// Publishes what was queued: the latest list of each changed room, and forwarded moves.
    async fn flush(&mut self) {
        let hub = self.hub.clone();
        let registry = &hub.inner.presence;
        let (rooms, moves) = registry.take_queued();
        for m in moves {
            let message = Message::Move {
                s: registry.server().0,
                a: m.assessment.0,
                u: m.user_id.0,
                q: m.question_id,
                t: m.typing,
                at: m.at.timestamp_millis(),
            };
            if let Err(err) = notify(&self.hub, &to_json(&message)).await {
                tracing::warn!(error = %err, "live: cannot forward a presence move");
            }
        }
        for id in rooms {
            let entries = registry.local(id);
            // A room never announced and still empty needs no word.
            if entries.is_empty() && !self.announced.contains(&id) {
                continue;
            }
            self.room(id, &entries).await;
        }
    }

    /// Tells the others that everyone here left: the server stops.
    async fn farewell(&mut self) {
        let ids: Vec<AssessmentId> = self.announced.iter().copied().collect();
        for id in ids {
            self.room(id, &[]).await;
        }
    }
}

/// Publishes this server's presence until the server stops: changed rooms as they change
/// (coalesced), every room with entries at each heartbeat, and drops other servers' lists that
/// went stale. When the server stops, it finishes what it was sending and then tells the others
/// that everyone here left. The farewell comes from this task, after everything it sent before,
/// so that no earlier list can reach the others after it and bring back people who left.
pub(super) async fn publish(hub: Hub) {
    let settings = hub.settings().clone();
    let registry = &hub.inner.presence;
    let mut publisher = Publisher { hub: hub.clone(), generation: 0, announced: HashSet::new() };
    let mut stopping = hub.shutting_down();
    let mut heartbeat = tokio::time::interval(settings.presence_heartbeat);
    let mut sweep = tokio::time::interval((settings.presence_timeout / 4).max(Duration::from_millis(50)));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => break,
            _ = registry.queued() => {}
            _ = heartbeat.tick() => registry.republish(),
            _ = sweep.tick() => {
                registry.expire(tokio::time::Instant::now());
                continue;
            }
        }
        publisher.flush().await;
        tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => break,
            _ = tokio::time::sleep(COALESCE) => {}
        }
    }
    publisher.farewell().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_names_the_stream_and_its_new_head() {
        assert_eq!(
            parse("assessment:1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed:42"),
            Some(("assessment:1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed", 42))
        );
        assert_eq!(parse("system:7"), Some(("system", 7)));
        assert_eq!(parse("garbage"), None);
    }

    fn entry(i: usize) -> Entry {
        Entry {
            user_id: UserId::new(),
            // The longest names and question ids accepted, with characters of several bytes.
            display_name: format!("{i:03}{}", "é".repeat(197)),
            question_id: Some(format!("{i:03}{}", "q\"".repeat(98))),
            typing: i.is_multiple_of(2),
            since: DateTime::from_timestamp_millis(1_800_000_000_000 + i as i64).unwrap(),
        }
    }

    #[test]
    fn a_long_room_list_is_split_under_the_notify_limit_and_put_back_together_in_order() {
        let server = ServerId(Uuid::new_v4());
        let id = AssessmentId::new();
        let entries: Vec<Entry> = (0..60).map(entry).collect();
        let payloads = encode_room(server, id, 7, &entries);
        assert!(payloads.len() > 1, "60 long entries do not fit one notification");
        let mut parts = Parts::default();
        let mut whole = None;
        for (k, p) in payloads.iter().enumerate() {
            assert!(p.len() < 8000, "part {k} has {} bytes", p.len());
            let Ok(Message::Room { s, a, g, i, n, e }) = serde_json::from_str(p) else { panic!("a room part: {p}") };
            assert!(whole.is_none(), "the list is complete only with its last part");
            whole = parts.add(s, a, g, i, n, e);
        }
        assert_eq!(whole, Some(entries));
    }

    #[test]
    fn a_part_out_of_place_discards_the_list_and_an_empty_list_is_one_part() {
        let server = ServerId(Uuid::new_v4());
        let id = AssessmentId::new();
        let entries: Vec<Entry> = (0..60).map(entry).collect();
        let first = encode_room(server, id, 1, &entries);
        let second = encode_room(server, id, 2, &entries);
        let mut parts = Parts::default();
        let mut add = |p: &String| {
            let Ok(Message::Room { s, a, g, i, n, e }) = serde_json::from_str(p) else { panic!("a room part: {p}") };
            parts.add(s, a, g, i, n, e)
        };
        assert_eq!(add(&first[0]), None);
        // The rest of the first list was lost; the second one's middle arrives.
        assert_eq!(add(&second[1]), None);
        assert_eq!(add(&first[1]), None, "the first list was discarded");
        let empty = encode_room(server, id, 3, &[]);
        assert_eq!(empty.len(), 1);
        assert_eq!(add(&empty[0]), Some(Vec::new()));
    }
}
