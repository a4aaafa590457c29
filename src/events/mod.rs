//! The append-only, hash-chained event log: every state change appends an event here, in the same
//! transaction as the change. The exact hashing rules are written down in `docs/event-log.md`.

use chrono::SecondsFormat;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::{Clock, Micros};
use crate::db;
use crate::error::AppError;
use crate::ids::{AgencyId, AssessmentId, UserId};

/// The `prev_hash` of a stream's first event: 32 zero bytes, hex-encoded.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The stream an event belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Everything about one agency: its users, units, roles and sign-in events.
    Agency(AgencyId),
    /// Everything about one assessment: answers, comments, people, workflow.
    Assessment(AssessmentId),
    /// Deployment-wide events that belong to no agency, such as a failed login for an email
    /// that matches no account.
    System,
}

impl Stream {
    pub fn key(&self) -> String {
        match self {
            Stream::Agency(id) => format!("agency:{id}"),
            Stream::Assessment(id) => format!("assessment:{id}"),
            Stream::System => "system".to_owned(),
        }
    }

    /// Whether a stream key names an agency's stream, where every change to its users, units,
    /// roles and sessions is recorded.
    pub fn is_agency_key(key: &str) -> bool {
        key.starts_with("agency:")
    }

    pub fn parse(s: &str) -> Result<Stream, AppError> {
        match s.split_once(':') {
            Some(("agency", id)) => Ok(Stream::Agency(AgencyId::parse(id)?)),
            Some(("assessment", id)) => Ok(Stream::Assessment(AssessmentId::parse(id)?)),
            None if s == "system" => Ok(Stream::System),
            _ => Err(AppError::invalid("stream", "expected agency:<id>, assessment:<id> or system")),
        }
    }
}

/// Who caused an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventActor {
    User(UserId),
    System,
}

impl EventActor {
    pub fn key(&self) -> String {
        match self {
            EventActor::User(id) => id.to_string(),
            EventActor::System => "system".to_owned(),
        }
    }
}

/// A stored event, as read back from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub position: i64,
    pub stream: String,
    pub seq: i64,
    pub kind: String,
    pub actor: String,
    pub at: String,
    pub payload: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields covered by an event's hash, in the shape that is canonicalized.
#[derive(Serialize)]
struct Hashed<'a> {
    actor: &'a str,
    at: &'a str,
    payload: &'a Value,
    prev_hash: &'a str,
    seq: i64,
    stream: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// SHA-256 over the RFC 8785 canonical JSON of the hashed fields, as lowercase hex.
pub fn compute_hash(
    stream: &str,
    seq: i64,
    kind: &str,
    actor: &str,
    at: &str,
    payload: &Value,
    prev_hash: &str,
) -> String {
    let canonical = serde_jcs::to_vec(&Hashed { actor, at, payload, prev_hash, seq, stream, kind })
        .expect("serializing JSON values and strings cannot fail");
    hex::encode(Sha256::digest(&canonical))
}

impl Event {
    /// Recomputes this event's hash from its fields.
    pub fn recompute_hash(&self) -> String {
        compute_hash(&self.stream, self.seq, &self.kind, &self.actor, &self.at, &self.payload, &self.prev_hash)
    }
}

/// Begins a write transaction that holds `stream`'s head locked: reads made in it see the
/// latest committed state, and no other writer to the stream can change that state before it
/// commits.
pub async fn begin(db: &db::Db, stream: &Stream) -> Result<db::WriteTx, AppError> {
    let tx = db.begin_write().await?;
    let key = stream.key();
    let (seq, hash) = db::events::lock_head(&*tx, &key).await?;
    tx.set_head(&key, seq, &hash);
    Ok(tx)
}

/// Appends one event to `stream` inside the caller's transaction. The stream head is locked
/// until that transaction ends, so two writers can never take the same sequence number.
pub async fn append(
    tx: &db::WriteTx,
    clock: &Clock,
    stream: &Stream,
    kind: &str,
    actor: EventActor,
    payload: Value,
) -> Result<Event, AppError> {
    append_with(tx, clock, stream, kind, actor, payload, Vec::new()).await
}

/// Appends one event, as `append`, together with `writes`: the changes it records, which are
/// sent with the event's own statement (see `db::events::insert`).
pub async fn append_with(
    tx: &db::WriteTx,
    clock: &Clock,
    stream: &Stream,
    kind: &str,
    actor: EventActor,
    payload: Value,
    writes: Vec<db::Write>,
) -> Result<Event, AppError> {
    let stream = stream.key();
    let (last, prev_hash) = match tx.head(&stream) {
        Some(head) => head,
        None => db::events::lock_head(&**tx, &stream).await?,
    };
    let event = next_event(stream, (last, prev_hash), kind, actor, tx.now(clock), payload);
    let position = db::events::insert(tx, &event, writes).await?;
    tx.set_head(&event.stream, event.seq, &event.hash);
    let event = Event { position, ..event };
    tx.advanced(std::sync::Arc::new(event.clone()));
    Ok(event)
}

/// Appends one event with `writes`, committed when this returns, without holding the stream's
/// head locked: `head` is the head as the caller read it, and the append takes place only if no
/// other writer moved it since (see `db::events::insert_alone`). `None` when one did: what the
/// caller read may be out of date, and nothing was written.
#[allow(clippy::too_many_arguments)]
pub async fn append_alone(
    db: &db::Db,
    at: Micros,
    stream: &Stream,
    head: (i64, String),
    kind: &str,
    actor: EventActor,
    payload: Value,
    writes: Vec<db::Write>,
) -> Result<Option<std::sync::Arc<Event>>, AppError> {
    db::events::insert_alone(db, next_event(stream.key(), head, kind, actor, at, payload), writes).await
}

/// The event after `head` (sequence, hash) in `stream`, hashed; its position is set on insert.
fn next_event(stream: String, head: (i64, String), kind: &str, actor: EventActor, at: Micros, payload: Value) -> Event {
    let (last, prev_hash) = head;
    let seq = last + 1;
    let at = crate::clock::from_micros(at).to_rfc3339_opts(SecondsFormat::Micros, true);
    let actor = actor.key();
    let hash = compute_hash(&stream, seq, kind, &actor, &at, &payload, &prev_hash);
    Event { position: 0, stream, seq, kind: kind.to_owned(), actor, at, payload, prev_hash, hash }
}

/// One page of a stream's events with a sequence above `after`, in order.
pub async fn page(
    conn: &impl sea_orm::ConnectionTrait,
    stream: &Stream,
    after: i64,
    limit: u64,
) -> Result<Vec<Event>, AppError> {
    db::events::page(conn, &stream.key(), after, limit).await
}

/// The outcome of checking one stream's chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    pub events_checked: u64,
    pub head_hash: String,
    /// The first inconsistency found, if any: sequence and what is wrong.
    pub problem: Option<(i64, String)>,
}

/// Checks every event of a stream: its hash, its link to the predecessor, and gap-free sequence.
pub async fn verify_stream(conn: &impl sea_orm::ConnectionTrait, stream: &str) -> Result<Verification, AppError> {
    let mut expected_seq = 1;
    let mut prev = GENESIS_HASH.to_owned();
    let mut checked = 0;
    loop {
        let batch = db::events::page(conn, stream, expected_seq - 1, 1000).await?;
        if batch.is_empty() {
            break;
        }
        for event in batch {
            let problem = if event.seq != expected_seq {
                Some(format!("expected sequence {expected_seq}, found {}", event.seq))
            } else if event.prev_hash != prev {
                Some("prev_hash does not match the previous event's hash".to_owned())
            } else if event.recompute_hash() != event.hash {
                Some("hash does not match the event's contents".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                return Ok(Verification {
                    events_checked: checked,
                    head_hash: prev,
                    problem: Some((expected_seq, problem)),
                });
            }
            checked += 1;
            expected_seq += 1;
            prev = event.hash;
        }
    }
    let head = db::events::head(conn, stream).await?;
    let head_matches = match &head {
        Some((seq, hash)) => *seq == expected_seq - 1 && *hash == prev,
        None => checked == 0,
    };
    if !head_matches {
        let seq = head.map_or(expected_seq - 1, |(seq, _)| seq);
        return Ok(Verification {
            events_checked: checked,
            head_hash: prev,
            problem: Some((seq, "stream head does not match the last event".into())),
        });
    }
    Ok(Verification { events_checked: checked, head_hash: prev, problem: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of docs/event-log.md, whose hash was computed by another implementation.
    #[test]
    fn the_documented_example_hashes_as_documented() {
        let agency = "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed";
        let payload = serde_json::json!({ "name": "My agency", "agency_id": agency });
        let hash = compute_hash(
            &format!("agency:{agency}"),
            1,
            "agency.created",
            "system",
            "2026-11-27T18:33:31.499452Z",
            &payload,
            GENESIS_HASH,
        );
        assert_eq!(hash, "2b8de8794a86336be118b69f51d24e4d6e6939c35969baf6673c0f5dd8d3a755");
    }
}
