//! The bundle: one stream's events with a signed checkpoint and the inclusion proof of the
//! stream's head, in one JSON Lines file that can be verified offline, without the database.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Checkpoint, InclusionProof, SignedCheckpoint, StreamHead, TrustedKeys, compare_with_log, inclusion_proof};
use super::{proof_fits, verify_inclusion};
use crate::events::{Event, GENESIS_HASH, compute_hash};

/// The `format` member of a bundle's header line.
pub const BUNDLE_FORMAT: &str = "attest-bundle/1";

/// What a verified bundle shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    pub stream: String,
    /// How many events the bundle holds: its head's sequence number.
    pub events: u64,
    pub head_seq: i64,
    pub head_hash: String,
    /// When the checkpoint that vouches for the head was taken.
    pub checkpoint_at: String,
    /// The key that signed the checkpoint. Unless it was checked against a trusted key, compare
    /// it with the server's published key: anyone can make a key and sign a bundle with it.
    pub public_key: String,
}

/// Line 1 of a bundle.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    stream: String,
    public_key: String,
    checkpoint: Checkpoint,
    head: StreamHead,
    proof: InclusionProof,
}

/// Every further line of a bundle: one event, with the field names of `docs/event-log.md`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    position: i64,
    stream: String,
    seq: i64,
    #[serde(rename = "type")]
    kind: String,
    actor: String,
    at: String,
    payload: Value,
    prev_hash: String,
    hash: String,
}

/// Writes the bundle of `stream`: the checkpoint, the stream's head in it with its inclusion
/// proof, and `events`, which must be the stream's events from sequence 1 up to exactly that
/// head. Refuses to write a bundle that would not verify.
pub fn write_bundle(events: &[Event], signed: &SignedCheckpoint, stream: &str) -> Result<String, String> {
    signed.verify()?;
    let head = signed.head(stream).ok_or_else(|| format!("the checkpoint has no head for stream {stream}"))?;
    compare_with_log(head, events).map_err(|problem| problem.to_string())?;
    if i64::try_from(events.len()) != Ok(head.seq) {
        return Err(format!(
            "{} events were given, but the checkpoint's head of stream {stream} is at sequence {}",
            events.len(),
            head.seq
        ));
    }
    let proof = inclusion_proof(&signed.heads, stream).expect("the checkpoint has a head for the stream");
    let header = Header {
        format: BUNDLE_FORMAT.to_owned(),
        stream: stream.to_owned(),
        public_key: signed.checkpoint.public_key.clone(),
        checkpoint: signed.checkpoint.clone(),
        head: head.clone(),
        proof,
    };
    let mut text = to_line(&header);
    for event in events {
        text.push_str(&to_line(&EventLine {
            position: event.position,
            stream: event.stream.clone(),
            seq: event.seq,
            kind: event.kind.clone(),
            actor: event.actor.clone(),
            at: event.at.clone(),
            payload: event.payload.clone(),
            prev_hash: event.prev_hash.clone(),
            hash: event.hash.clone(),
        }));
    }
    Ok(text)
}

/// Verifies a bundle with nothing but its text: the checkpoint's signature (by
/// `trusted_public_key`, if given), the inclusion proof of the stream's head under the
/// checkpoint's Merkle root, and every event's hash, link and sequence up to that head. Errors
/// name the line (from 1) and what is wrong with it.
pub fn verify_bundle(text: &str, trusted: &TrustedKeys) -> Result<BundleReport, String> {
    let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line));
    let Some((_, first)) = lines.next() else { return Err("line 1: the bundle is empty".to_owned()) };
    let header: Header = serde_json::from_str(first).map_err(|e| format!("line 1: not a bundle header: {e}"))?;
    verify_header(&header, trusted).map_err(|e| format!("line 1: {e}"))?;

    let mut prev = GENESIS_HASH.to_owned();
    let mut expected_seq = 1;
    let mut last_position = None;
    let mut last_line = 1;
    for (n, line) in lines {
        let event: EventLine = serde_json::from_str(line).map_err(|e| format!("line {n}: not an event: {e}"))?;
        verify_event(&event, &header.stream, expected_seq, &prev, last_position)
            .map_err(|e| format!("line {n}: {e}"))?;
        prev = event.hash;
        last_position = Some(event.position);
        expected_seq += 1;
        last_line = n;
    }
    let count = expected_seq - 1;
    if count != header.head.seq || prev != header.head.hash {
        let last = if count == 0 {
            "the bundle has no event".to_owned()
        } else {
            format!("its last event has sequence {count}")
        };
        return Err(format!(
            "line {last_line}: the checkpoint covers the stream up to sequence {} with hash {}, but {last}{}",
            header.head.seq,
            header.head.hash,
            if count == header.head.seq { " with another hash" } else { "" },
        ));
    }
    Ok(BundleReport {
        stream: header.stream,
        events: count as u64,
        head_seq: header.head.seq,
        head_hash: header.head.hash,
        checkpoint_at: header.checkpoint.at,
        public_key: header.checkpoint.public_key,
    })
}

fn verify_header(header: &Header, trusted: &TrustedKeys) -> Result<(), String> {
    if header.format != BUNDLE_FORMAT {
        return Err(format!("unsupported format {:?}, expected {BUNDLE_FORMAT:?}", header.format));
    }
    if header.public_key != header.checkpoint.public_key {
        return Err("public_key differs from the checkpoint's public_key".to_owned());
    }
    header.checkpoint.verify_signature(trusted)?;
    if header.head.stream != header.stream {
        return Err(format!(
            "the head is of stream {}, but the bundle is of stream {}",
            header.head.stream, header.stream
        ));
    }
    if !proof_fits(&header.proof, header.checkpoint.stream_count) {
        return Err(format!("the inclusion proof does not fit a tree of {} streams", header.checkpoint.stream_count));
    }
    if !verify_inclusion(&header.head, &header.proof, &header.checkpoint.merkle_root) {
        return Err("the inclusion proof does not lead from the head to the checkpoint's Merkle root".to_owned());
    }
    Ok(())
}

fn verify_event(
    event: &EventLine,
    stream: &str,
    expected_seq: i64,
    prev: &str,
    last_position: Option<i64>,
) -> Result<(), String> {
    if event.stream != stream {
        return Err(format!("an event of stream {} in the bundle of stream {stream}", event.stream));
    }
    if event.seq != expected_seq {
        return Err(format!("expected sequence {expected_seq}, found {}", event.seq));
    }
    if event.prev_hash != prev {
        return Err(format!("sequence {expected_seq}: prev_hash is not the previous event's hash {prev}"));
    }
    let hash =
        compute_hash(&event.stream, event.seq, &event.kind, &event.actor, &event.at, &event.payload, &event.prev_hash);
    if hash != event.hash {
        return Err(format!("sequence {expected_seq}: hash does not match the event's contents"));
    }
    // Positions are not hashed, so this only catches a bundle put together wrongly.
    if last_position.is_some_and(|last| event.position <= last) {
        return Err(format!("sequence {expected_seq}: position {} does not increase", event.position));
    }
    Ok(())
}

fn to_line(value: &impl Serialize) -> String {
    let mut line = serde_json::to_string(value).expect("serializing JSON values and strings cannot fail");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::super::testing::{chain, forge_from, head_of, heads};
    use super::super::{Checkpoint, ServerKey};
    use super::*;

    const STREAM: &str = "agency:a";

    /// A change to one line's JSON object.
    type Tamper = fn(&mut Value);
    type BoxedTamper<'a> = Box<dyn Fn(&mut Value) + 'a>;

    struct Fixture {
        key: ServerKey,
        events: Vec<Event>,
        signed: SignedCheckpoint,
        text: String,
    }

    fn fixture() -> Fixture {
        let key = ServerKey::generate();
        let events = chain(STREAM, 4);
        let mut all = heads(4);
        all.push(head_of(&events));
        let signed = Checkpoint::create(&key, all, 200, "2026-11-27T18:40:00.000000Z".to_owned());
        let text = write_bundle(&events, &signed, STREAM).unwrap();
        Fixture { key, events, signed, text }
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    fn join(lines: &[String]) -> String {
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    /// Changes one member of one line's JSON object.
    fn edit(text: &str, line: usize, change: impl FnOnce(&mut Value)) -> String {
        let mut all = lines(text);
        let mut value: Value = serde_json::from_str(&all[line - 1]).unwrap();
        change(&mut value);
        all[line - 1] = value.to_string();
        join(&all)
    }

    fn rejected(text: &str, trusted: Option<&str>) -> String {
        verify_bundle(text, &keys(trusted)).expect_err("the bundle should not verify")
    }

    fn keys(trusted: Option<&str>) -> TrustedKeys {
        TrustedKeys::new(trusted.map(str::to_owned))
    }

    #[test]
    fn a_written_bundle_verifies_with_the_trusted_key() {
        let f = fixture();
        let report = verify_bundle(&f.text, &keys(Some(&f.key.public_key_hex()))).unwrap();
        assert_eq!(
            report,
            BundleReport {
                stream: STREAM.to_owned(),
                events: 4,
                head_seq: 4,
                head_hash: f.events[3].hash.clone(),
                checkpoint_at: "2026-11-27T18:40:00.000000Z".to_owned(),
                public_key: f.key.public_key_hex(),
            }
        );
        assert_eq!(verify_bundle(&f.text, &TrustedKeys::default()).unwrap(), report);
    }

    #[test]
    fn a_bundle_has_a_header_line_and_one_line_per_event_with_the_documented_fields() {
        let f = fixture();
        let all = lines(&f.text);
        assert_eq!(all.len(), 5);
        let header: Value = serde_json::from_str(&all[0]).unwrap();
        let keys: Vec<&str> = header.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(sorted(keys), ["checkpoint", "format", "head", "proof", "public_key", "stream"]);
        assert_eq!(header["format"], "attest-bundle/1");
        // The checkpoint names no stream: the other heads stay private.
        assert!(!header["checkpoint"].to_string().contains("agency:"));
        let event: Value = serde_json::from_str(&all[1]).unwrap();
        let keys: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(sorted(keys), ["actor", "at", "hash", "payload", "position", "prev_hash", "seq", "stream", "type"]);
        assert_eq!(event["type"], "unit.created");
    }

    fn sorted(mut keys: Vec<&str>) -> Vec<&str> {
        keys.sort();
        keys
    }

    #[test]
    fn a_bundle_of_a_stream_without_events_verifies() {
        let key = ServerKey::generate();
        let empty = StreamHead { stream: STREAM.to_owned(), seq: 0, hash: GENESIS_HASH.to_owned() };
        let signed = Checkpoint::create(&key, vec![empty], 1, "2026-11-27T18:40:00.000000Z".to_owned());
        let text = write_bundle(&[], &signed, STREAM).unwrap();
        assert_eq!(verify_bundle(&text, &TrustedKeys::default()).unwrap().events, 0);
    }

    #[test]
    fn a_bundle_is_not_written_for_events_that_differ_from_the_checkpoint() {
        let f = fixture();
        let err = write_bundle(&f.events[..3], &f.signed, STREAM).unwrap_err();
        assert!(err.contains("ends before it"), "{err}");
        let mut longer = f.events.clone();
        longer.extend(chain(STREAM, 5).pop());
        let err = write_bundle(&longer, &f.signed, STREAM).unwrap_err();
        assert!(err.contains("5 events were given"), "{err}");
        let forged = forge_from(&f.events, 0, |payload| payload["name"] = "forged".into());
        assert!(write_bundle(&forged, &f.signed, STREAM).unwrap_err().contains("rewritten"));
        assert!(write_bundle(&f.events, &f.signed, "agency:other").unwrap_err().contains("no head"));
    }

    #[test]
    fn a_tampered_event_line_is_detected_at_its_line() {
        let f = fixture();
        let tampers: Vec<(&str, Tamper)> = vec![
            ("payload", |e| e["payload"]["name"] = "changed".into()),
            ("type", |e| e["type"] = "unit.renamed".into()),
            ("actor", |e| e["actor"] = "someone".into()),
            ("at", |e| e["at"] = "2026-11-27T18:33:02.000001Z".into()),
            ("hash", |e| e["hash"] = "00".repeat(32).into()),
            ("prev_hash", |e| e["prev_hash"] = "11".repeat(32).into()),
            ("seq", |e| e["seq"] = 7.into()),
            ("stream", |e| e["stream"] = "agency:b".into()),
            ("extra member", |e| e["note"] = "hi".into()),
            ("missing member", |e| drop(e.as_object_mut().unwrap().remove("actor"))),
        ];
        for line in 2..=5 {
            for (what, tamper) in &tampers {
                let err = rejected(&edit(&f.text, line, tamper), None);
                assert!(err.starts_with(&format!("line {line}: ")), "{what} on line {line}: {err}");
            }
        }
    }

    #[test]
    fn a_rewritten_and_rehashed_event_line_is_detected() {
        let f = fixture();
        let forged = forge_from(&f.events, 1, |payload| payload["name"] = "rewritten".into());
        let mut all = lines(&f.text);
        for (line, event) in all[1..].iter_mut().zip(&forged) {
            let mut value: Value = serde_json::from_str(line).unwrap();
            value["payload"] = event.payload.clone();
            value["prev_hash"] = event.prev_hash.clone().into();
            value["hash"] = event.hash.clone().into();
            *line = value.to_string();
        }
        let err = rejected(&join(&all), None);
        assert!(err.starts_with("line 5: the checkpoint covers the stream up to sequence 4"), "{err}");
    }

    #[test]
    fn a_dropped_line_is_detected() {
        let f = fixture();
        for line in 2..=5 {
            let mut all = lines(&f.text);
            all.remove(line - 1);
            let err = rejected(&join(&all), None);
            assert!(err.starts_with("line "), "{err}");
        }
        // Dropping the last line leaves a valid chain that stops short of the head.
        let mut all = lines(&f.text);
        all.pop();
        assert!(rejected(&join(&all), None).contains("its last event has sequence 3"));
    }

    #[test]
    fn reordered_lines_are_detected() {
        let f = fixture();
        let mut all = lines(&f.text);
        all.swap(2, 3);
        assert!(rejected(&join(&all), None).starts_with("line 3: expected sequence 2, found 3"));
        let mut all = lines(&f.text);
        all.swap(0, 1);
        assert!(rejected(&join(&all), None).starts_with("line 1: not a bundle header"));
    }

    #[test]
    fn an_empty_line_or_empty_bundle_is_rejected() {
        let f = fixture();
        let mut all = lines(&f.text);
        all.insert(2, String::new());
        assert!(rejected(&join(&all), None).starts_with("line 3: not an event"));
        assert_eq!(rejected("", None), "line 1: the bundle is empty");
    }

    #[test]
    fn an_altered_header_is_detected() {
        let f = fixture();
        let other = ServerKey::generate();
        let tampers: Vec<(&str, BoxedTamper<'_>)> = vec![
            ("format", Box::new(|h| h["format"] = "attest-bundle/2".into())),
            ("stream", Box::new(|h| h["stream"] = "agency:b".into())),
            ("public_key", Box::new(|h| h["public_key"] = other.public_key_hex().into())),
            ("checkpoint position", Box::new(|h| h["checkpoint"]["position"] = 201.into())),
            ("checkpoint at", Box::new(|h| h["checkpoint"]["at"] = "2026-11-27T18:40:00.000001Z".into())),
            ("checkpoint stream_count", Box::new(|h| h["checkpoint"]["stream_count"] = 6.into())),
            ("checkpoint merkle_root", Box::new(|h| h["checkpoint"]["merkle_root"] = "00".repeat(32).into())),
            ("checkpoint signature", Box::new(|h| h["checkpoint"]["signature"] = other.sign(b"x").into())),
            ("head seq", Box::new(|h| h["head"]["seq"] = 3.into())),
            ("head hash", Box::new(|h| h["head"]["hash"] = "00".repeat(32).into())),
            ("head stream", Box::new(|h| h["head"]["stream"] = "agency:b".into())),
            ("proof index", Box::new(|h| h["proof"]["index"] = 0.into())),
            ("proof sibling", Box::new(|h| h["proof"]["siblings"][0]["hash"] = "00".repeat(32).into())),
            ("proof side", Box::new(|h| h["proof"]["siblings"][0]["side"] = "right".into())),
            ("proof step dropped", Box::new(|h| drop(h["proof"]["siblings"].as_array_mut().unwrap().remove(0)))),
        ];
        for (what, tamper) in tampers {
            let err = rejected(&edit(&f.text, 1, tamper), None);
            assert!(err.starts_with("line 1: "), "{what}: {err}");
        }
    }

    #[test]
    fn a_bundle_resigned_with_another_key_fails_only_against_the_trusted_key() {
        let f = fixture();
        let forger = ServerKey::generate();
        let forged = Checkpoint::create(&forger, f.signed.heads.clone(), 200, f.signed.checkpoint.at.clone());
        let text = write_bundle(&f.events, &forged, STREAM).unwrap();
        assert_eq!(verify_bundle(&text, &TrustedKeys::default()).unwrap().public_key, forger.public_key_hex());
        let err = rejected(&text, Some(&f.key.public_key_hex()));
        assert!(err.starts_with("line 1: the checkpoint is signed by key"), "{err}");
    }
}
