//! Valid and forged event chains for the checkpoint tests, built with the log's own hash.

use serde_json::{Value, json};

use super::StreamHead;
use crate::events::{Event, GENESIS_HASH, compute_hash};

/// A valid chain of `n` events of `stream`, each with a distinct payload.
pub fn chain(stream: &str, n: i64) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    for seq in 1..=n {
        let prev_hash = events.last().map_or(GENESIS_HASH.to_owned(), |e| e.hash.clone());
        let payload = json!({ "name": format!("unit {seq}"), "unit_id": format!("u{seq}") });
        events.push(event(stream, seq, 100 + seq, payload, prev_hash));
    }
    events
}

/// A copy of `events` whose event at `index` has its payload changed by `rewrite`, with that
/// event's hash and every later `prev_hash` and `hash` recomputed: what someone with write
/// access to the database could produce.
pub fn forge_from(events: &[Event], index: usize, rewrite: impl FnOnce(&mut Value)) -> Vec<Event> {
    let mut forged = events.to_vec();
    rewrite(&mut forged[index].payload);
    for i in index..forged.len() {
        if i > 0 {
            forged[i].prev_hash = forged[i - 1].hash.clone();
        }
        forged[i].hash = forged[i].recompute_hash();
    }
    forged
}

/// The head of a stream whose last event is the last of `events`.
pub fn head_of(events: &[Event]) -> StreamHead {
    let last = events.last().expect("a head is taken of at least one event");
    StreamHead { stream: last.stream.clone(), seq: last.seq, hash: last.hash.clone() }
}

/// `n` heads of distinct streams, with distinct sequences and hashes.
pub fn heads(n: usize) -> Vec<StreamHead> {
    (0..n)
        .map(|i| {
            let stream = format!("agency:{i:08}");
            let seq = i as i64 + 1;
            head_of(&chain(&stream, seq))
        })
        .collect()
}

fn event(stream: &str, seq: i64, position: i64, payload: Value, prev_hash: String) -> Event {
    let (kind, actor, at) = ("unit.created", "system", format!("2026-11-27T18:33:{:02}.000000Z", seq % 60));
    let hash = compute_hash(stream, seq, kind, actor, &at, &payload, &prev_hash);
    Event {
        position,
        stream: stream.to_owned(),
        seq,
        kind: kind.to_owned(),
        actor: actor.to_owned(),
        at,
        payload,
        prev_hash,
        hash,
    }
}
