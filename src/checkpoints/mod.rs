//! Signed checkpoints of the event log: a server key signs the Merkle root over every stream's
//! head, so that a copy of a checkpoint kept elsewhere exposes a stream that was later rewritten
//! and re-hashed, which the hash chain alone cannot. Also the offline-verifiable bundle of one
//! stream. No database here: callers read the heads and events and pass them in. The exact format
//! is in `docs/event-log.md`, "Checkpoints and bundles".

mod bundle;
mod key;
mod merkle;
#[cfg(test)]
mod testing;

use serde::{Deserialize, Serialize};

use crate::events::{Event, GENESIS_HASH};

pub use bundle::{BUNDLE_FORMAT, BundleReport, verify_bundle, write_bundle};
pub use key::{ServerKey, TrustedKeys, verify_signature};
pub use merkle::{
    InclusionProof, ProofStep, Side, inclusion_proof, inclusion_proofs, merkle_root, proof_fits, verify_inclusion,
};

/// The only checkpoint format version there is.
pub const CHECKPOINT_VERSION: u32 = 1;

/// A stream's last sequence number and hash at the moment a checkpoint was taken. A stream whose
/// head exists but holds no event yet has `seq` 0 and the genesis hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamHead {
    pub stream: String,
    pub seq: i64,
    pub hash: String,
}

/// A signed statement of the whole log's state: the Merkle root over every stream head. It names
/// no stream, so it can be shown to every agency; the heads are kept beside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// The highest global event position covered.
    pub position: i64,
    /// When the checkpoint was taken: RFC 3339 in UTC with six fractional digits and a `Z`.
    pub at: String,
    /// How many stream heads the Merkle tree has as leaves.
    pub stream_count: u64,
    /// Lowercase hex of the Merkle root over the heads.
    pub merkle_root: String,
    /// Lowercase hex of the 32-byte Ed25519 public key that signed.
    pub public_key: String,
    /// Lowercase hex of the 64-byte Ed25519 signature over [`Checkpoint::signing_bytes`].
    pub signature: String,
}

/// A checkpoint with the heads it commits to, sorted by stream. Only the server keeps all heads;
/// an agency is shown its own stream's head and an inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub heads: Vec<StreamHead>,
}

/// Where a stream stopped matching a checkpoint: its first bad sequence number and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamProblem {
    pub stream: String,
    pub seq: i64,
    pub problem: String,
}

impl std::fmt::Display for StreamProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream {} at sequence {}: {}", self.stream, self.seq, self.problem)
    }
}

/// The signed members of a checkpoint: all but `signature`. Member order does not matter, JCS
/// sorts them.
#[derive(Serialize)]
struct Unsigned<'a> {
    version: u32,
    position: i64,
    at: &'a str,
    stream_count: u64,
    merkle_root: &'a str,
    public_key: &'a str,
}

impl Checkpoint {
    /// Signs the given heads: sorts them by stream, computes their Merkle root and signs the
    /// checkpoint with `key`. `at` is the time of the checkpoint, formatted like an event's `at`.
    ///
    /// # Panics
    ///
    /// If two heads name the same stream; the caller reads them from `stream_heads`, whose key is
    /// the stream, so that would be a programming error.
    pub fn create(key: &ServerKey, mut heads: Vec<StreamHead>, position: i64, at: String) -> SignedCheckpoint {
        heads.sort_by(|a, b| a.stream.as_bytes().cmp(b.stream.as_bytes()));
        assert!(
            heads.windows(2).all(|pair| pair[0].stream != pair[1].stream),
            "a checkpoint takes one head per stream"
        );
        let mut checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
            position,
            at,
            stream_count: heads.len() as u64,
            merkle_root: merkle_root(&heads),
            public_key: key.public_key_hex(),
            signature: String::new(),
        };
        checkpoint.signature = key.sign(&checkpoint.signing_bytes());
        SignedCheckpoint { checkpoint, heads }
    }

    /// The bytes the signature covers: the RFC 8785 (JCS) canonical JSON of the checkpoint
    /// without its `signature` member.
    pub fn signing_bytes(&self) -> Vec<u8> {
        serde_jcs::to_vec(&Unsigned {
            version: self.version,
            position: self.position,
            at: &self.at,
            stream_count: self.stream_count,
            merkle_root: &self.merkle_root,
            public_key: &self.public_key,
        })
        .expect("serializing integers and strings cannot fail")
    }

    /// Checks the version and that `signature` is valid for the embedded public key, and, if
    /// `expected_public_key` is given, that the embedded key is that one. Without an expected key
    /// this only shows that whoever holds the embedded key signed: anyone can make a key.
    pub fn verify_signature(&self, trusted: &TrustedKeys) -> Result<(), String> {
        if self.version != CHECKPOINT_VERSION {
            return Err(format!("unsupported checkpoint version {}", self.version));
        }
        trusted.check(&self.public_key).map_err(|e| format!("the checkpoint is {e}"))?;
        verify_signature(&self.public_key, &self.signing_bytes(), &self.signature)
            .map_err(|e| format!("checkpoint signature: {e}"))
    }
}

impl SignedCheckpoint {
    /// Checks the signature against the embedded key, and that the heads are what the
    /// checkpoint commits to: one per stream, sorted, as many as `stream_count`, with
    /// `merkle_root` as their root.
    pub fn verify(&self) -> Result<(), String> {
        self.checkpoint.verify_signature(&TrustedKeys::default())?;
        if self.heads.len() as u64 != self.checkpoint.stream_count {
            return Err(format!(
                "the checkpoint counts {} streams, but {} heads are kept with it",
                self.checkpoint.stream_count,
                self.heads.len()
            ));
        }
        if let Some(pair) = self.heads.windows(2).find(|pair| pair[0].stream.as_bytes() >= pair[1].stream.as_bytes()) {
            return Err(format!("heads are not sorted by distinct stream: {} then {}", pair[0].stream, pair[1].stream));
        }
        if let Some(head) = self.heads.iter().find(|head| head.seq < 0 || decode_hex::<32>(&head.hash).is_err()) {
            return Err(format!("the head of stream {} is malformed", head.stream));
        }
        let root = merkle_root(&self.heads);
        if root != self.checkpoint.merkle_root {
            return Err(format!(
                "the heads' Merkle root is {root}, but the checkpoint commits to {}",
                self.checkpoint.merkle_root
            ));
        }
        Ok(())
    }

    /// The head kept for `stream`, if the checkpoint covers it.
    pub fn head(&self, stream: &str) -> Option<&StreamHead> {
        self.heads.iter().find(|head| head.stream == stream)
    }
}

/// Checks that a stream still holds exactly the events a checkpoint committed to. `events` are
/// the stream's events in sequence order, from sequence 1; those after the checkpoint's head are
/// ignored. The chain up to the head must be intact (gap-free sequence from 1, each `prev_hash`
/// the previous `hash`, each `hash` recomputed from the event), and the event at the head's
/// sequence must have the head's hash. The last rule is what exposes an event rewritten with
/// every later hash recomputed: such a chain is intact, but ends in a different hash.
pub fn compare_with_log(head: &StreamHead, events: &[Event]) -> Result<(), StreamProblem> {
    let problem = |seq: i64, problem: String| StreamProblem { stream: head.stream.clone(), seq, problem };
    if head.seq < 0 {
        return Err(problem(head.seq, "the checkpoint's head has a negative sequence".to_owned()));
    }
    // A sequence beyond usize cannot be reached; the loop then runs out of events and says so.
    let covered = usize::try_from(head.seq).unwrap_or(usize::MAX);
    let mut prev = GENESIS_HASH;
    let mut expected_seq = 1;
    for event in events.iter().take(covered) {
        if event.stream != head.stream {
            return Err(problem(expected_seq, format!("found an event of stream {}", event.stream)));
        }
        if event.seq != expected_seq {
            return Err(problem(expected_seq, format!("expected sequence {expected_seq}, found {}", event.seq)));
        }
        if event.prev_hash != prev {
            return Err(problem(expected_seq, "prev_hash does not match the previous event's hash".to_owned()));
        }
        if event.recompute_hash() != event.hash {
            return Err(problem(expected_seq, "hash does not match the event's contents".to_owned()));
        }
        prev = &event.hash;
        expected_seq += 1;
    }
    check_head(head, expected_seq - 1, prev)
}

/// The last rule of [`compare_with_log`] on its own, for a stream whose whole chain from sequence
/// 1 was just verified (gap-free, linked, every hash recomputed) in the same consistent read, so
/// that reading and hashing it a second time would add nothing. `last_seq` is the stream's last
/// sequence number, and `at_head` the stream's event at the head's sequence, if it has one.
pub fn compare_verified_stream(head: &StreamHead, last_seq: i64, at_head: Option<&Event>) -> Result<(), StreamProblem> {
    let problem = |seq: i64, problem: String| StreamProblem { stream: head.stream.clone(), seq, problem };
    if head.seq < 0 {
        return Err(problem(head.seq, "the checkpoint's head has a negative sequence".to_owned()));
    }
    if head.seq == 0 {
        return check_head(head, 0, GENESIS_HASH);
    }
    if last_seq < head.seq {
        return check_head(head, last_seq, "");
    }
    match at_head {
        Some(event) if event.seq == head.seq && event.stream == head.stream => check_head(head, head.seq, &event.hash),
        _ => Err(problem(head.seq, format!("no event of the stream at sequence {} was given", head.seq))),
    }
}

/// Compares a stream that reaches (intact) up to sequence `reached`, where it has the hash
/// `hash_at_reached`, with the checkpoint's head.
fn check_head(head: &StreamHead, reached: i64, hash_at_reached: &str) -> Result<(), StreamProblem> {
    let problem = |seq: i64, problem: String| StreamProblem { stream: head.stream.clone(), seq, problem };
    if reached < head.seq {
        return Err(problem(
            reached + 1,
            format!("the checkpoint covers sequence {}, but the stream ends before it", head.seq),
        ));
    }
    if hash_at_reached != head.hash {
        return Err(problem(
            head.seq,
            "the hash differs from the checkpoint's: the stream was rewritten since the checkpoint".to_owned(),
        ));
    }
    Ok(())
}

/// Decodes exactly `N` bytes of lowercase hex, the only spelling this module writes.
fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("expected {} lowercase hex digits", 2 * N));
    }
    let mut bytes = [0; N];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::testing::{chain, forge_from, head_of, heads};
    use super::*;

    const AT: &str = "2026-11-27T18:33:31.499452Z";

    /// A change to a checkpoint, given another key to sign with.
    type Tamper = fn(&mut Checkpoint, &ServerKey);

    #[test]
    fn a_checkpoint_verifies_with_its_heads() {
        let key = ServerKey::generate();
        let signed = Checkpoint::create(&key, heads(5), 42, AT.to_owned());
        assert_eq!(signed.checkpoint.stream_count, 5);
        assert_eq!(signed.checkpoint.public_key, key.public_key_hex());
        signed.verify().unwrap();
        signed.checkpoint.verify_signature(&TrustedKeys::new([key.public_key_hex()])).unwrap();
    }

    #[test]
    fn create_sorts_heads_by_stream() {
        let mut unsorted = heads(3);
        unsorted.reverse();
        let signed = Checkpoint::create(&ServerKey::generate(), unsorted, 1, AT.to_owned());
        let streams: Vec<&str> = signed.heads.iter().map(|h| h.stream.as_str()).collect();
        let mut sorted = streams.clone();
        sorted.sort();
        assert_eq!(streams, sorted);
        signed.verify().unwrap();
    }

    #[test]
    fn changing_any_checkpoint_field_breaks_the_signature() {
        let key = ServerKey::generate();
        let signed = Checkpoint::create(&key, heads(3), 42, AT.to_owned());
        let other = ServerKey::generate();
        let tampers: Vec<(&str, Tamper)> = vec![
            ("position", |c, _| c.position += 1),
            ("at", |c, _| c.at = "2026-11-27T18:33:31.499453Z".to_owned()),
            ("stream_count", |c, _| c.stream_count -= 1),
            ("merkle_root", |c, _| c.merkle_root = merkle_root(&[])),
            ("public_key", |c, other| c.public_key = other.public_key_hex()),
            ("signature", |c, other| c.signature = other.sign(&c.signing_bytes())),
        ];
        for (field, tamper) in tampers {
            let mut checkpoint = signed.checkpoint.clone();
            tamper(&mut checkpoint, &other);
            assert!(checkpoint.verify_signature(&TrustedKeys::default()).is_err(), "changing {field} went unnoticed");
        }
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_is_not_trusted() {
        let trusted = ServerKey::generate();
        let forger = ServerKey::generate();
        let forged = Checkpoint::create(&forger, heads(2), 7, AT.to_owned());
        // Internally consistent, so only the trusted key tells it apart.
        forged.verify().unwrap();
        let err = forged.checkpoint.verify_signature(&TrustedKeys::new([trusted.public_key_hex()])).unwrap_err();
        assert!(err.contains("not by the trusted key"), "{err}");
    }

    #[test]
    fn a_checkpoint_signed_by_a_former_key_is_trusted_only_with_that_key_among_the_trusted() {
        let (former, current) = (ServerKey::generate(), ServerKey::generate());
        let signed = Checkpoint::create(&former, heads(2), 7, AT.to_owned());
        let both = TrustedKeys::new([current.public_key_hex(), former.public_key_hex().to_uppercase()]);
        signed.checkpoint.verify_signature(&both).unwrap();
        let only_current = TrustedKeys::new([current.public_key_hex(), ServerKey::generate().public_key_hex()]);
        let err = signed.checkpoint.verify_signature(&only_current).unwrap_err();
        assert!(err.contains(&format!("signed by key {}", former.public_key_hex())), "{err}");
        assert!(err.contains(&format!("any of the trusted keys {}", only_current.keys().join(", "))), "{err}");
    }

    #[test]
    fn an_unknown_checkpoint_version_is_rejected() {
        let mut checkpoint = Checkpoint::create(&ServerKey::generate(), heads(1), 1, AT.to_owned()).checkpoint;
        checkpoint.version = 2;
        assert!(checkpoint.verify_signature(&TrustedKeys::default()).unwrap_err().contains("version"));
    }

    #[test]
    fn heads_that_differ_from_the_checkpoint_are_rejected() {
        let signed = Checkpoint::create(&ServerKey::generate(), heads(3), 1, AT.to_owned());

        let mut changed = signed.clone();
        changed.heads[1].seq += 1;
        assert!(changed.verify().unwrap_err().contains("Merkle root"));

        let mut dropped = signed.clone();
        dropped.heads.pop();
        assert!(dropped.verify().unwrap_err().contains("counts 3 streams"));

        let mut reordered = signed;
        reordered.heads.swap(0, 1);
        assert!(reordered.verify().unwrap_err().contains("not sorted"));
    }

    #[test]
    fn the_checkpoint_json_round_trips() {
        let signed = Checkpoint::create(&ServerKey::generate(), heads(2), 9, AT.to_owned());
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedCheckpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, signed);
        back.verify().unwrap();
    }

    /// The worked example of docs/event-log.md, signed there with Python's `cryptography`
    /// package under the RFC 8032 test secret; Ed25519 signatures are deterministic.
    #[test]
    fn the_documented_checkpoint_example_signs_as_documented() {
        let key = ServerKey::rfc_8032_test_key();
        let heads = vec![
            StreamHead { stream: "system".to_owned(), seq: 3, hash: "bb".repeat(32) },
            StreamHead {
                stream: "agency:1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed".to_owned(),
                seq: 1,
                hash: "2b8de8794a86336be118b69f51d24e4d6e6939c35969baf6673c0f5dd8d3a755".to_owned(),
            },
        ];
        let signed = Checkpoint::create(&key, heads, 42, "2026-11-27T18:40:00.000000Z".to_owned());
        assert_eq!(
            String::from_utf8(signed.checkpoint.signing_bytes()).unwrap(),
            concat!(
                r#"{"at":"2026-11-27T18:40:00.000000Z","#,
                r#""merkle_root":"7100673a03cc38d2cf8cfa6c28523fbeaed26ba185cfc3b7f1d22935cb1e6a70","#,
                r#""position":42,"public_key":"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a","#,
                r#""stream_count":2,"version":1}"#
            )
        );
        assert_eq!(
            signed.checkpoint.signature,
            concat!(
                "fd1436715c58da2a234298cebd78f61f4ed9d973d9957d40063f489f14f511fc",
                "cfac6f7c7b0c6ecb4679b5bbb25d117fc253e80d87c73686fc62512dd4452b05"
            )
        );
        signed.verify().unwrap();
    }

    #[test]
    fn an_unchanged_stream_matches_its_checkpoint_head() {
        let events = chain("agency:a", 4);
        compare_with_log(&head_of(&events), &events).unwrap();
    }

    #[test]
    fn events_appended_after_the_checkpoint_do_not_matter() {
        let events = chain("agency:a", 6);
        compare_with_log(&head_of(&events[..4]), &events).unwrap();
    }

    #[test]
    fn a_head_without_events_matches_an_empty_stream() {
        let head = StreamHead { stream: "agency:a".to_owned(), seq: 0, hash: GENESIS_HASH.to_owned() };
        compare_with_log(&head, &[]).unwrap();
        compare_with_log(&head, &chain("agency:a", 2)).unwrap();
    }

    #[test]
    fn a_changed_payload_is_found_at_its_sequence() {
        let mut events = chain("agency:a", 4);
        let head = head_of(&events);
        events[1].payload["name"] = "changed".into();
        let problem = compare_with_log(&head, &events).unwrap_err();
        assert_eq!((problem.stream.as_str(), problem.seq), ("agency:a", 2));
        assert!(problem.problem.contains("contents"), "{problem}");
    }

    #[test]
    fn a_deleted_event_is_found() {
        let mut events = chain("agency:a", 4);
        let head = head_of(&events);
        events.remove(2);
        let problem = compare_with_log(&head, &events).unwrap_err();
        assert_eq!(problem.seq, 3);
        assert!(problem.problem.contains("expected sequence 3, found 4"), "{problem}");
    }

    #[test]
    fn a_deleted_tail_is_found() {
        let mut events = chain("agency:a", 4);
        let head = head_of(&events);
        events.truncate(3);
        let problem = compare_with_log(&head, &events).unwrap_err();
        assert_eq!(problem.seq, 4);
        assert!(problem.problem.contains("ends before it"), "{problem}");
    }

    #[test]
    fn two_swapped_events_are_found() {
        let mut events = chain("agency:a", 4);
        let head = head_of(&events);
        events.swap(1, 2);
        let problem = compare_with_log(&head, &events).unwrap_err();
        assert_eq!(problem.seq, 2);
    }

    #[test]
    fn a_rewritten_and_rehashed_stream_passes_its_chain_but_not_the_checkpoint() {
        let events = chain("agency:a", 5);
        let head = head_of(&events);
        let forged = forge_from(&events, 1, |payload| payload["name"] = "rewritten".into());

        // The forged chain is intact on its own: a fresh head taken from it matches.
        compare_with_log(&head_of(&forged), &forged).unwrap();
        assert_ne!(forged[1].payload, events[1].payload);

        let problem = compare_with_log(&head, &forged).unwrap_err();
        assert_eq!(problem.seq, 5);
        assert!(problem.problem.contains("rewritten"), "{problem}");
    }

    #[test]
    fn a_verified_stream_is_compared_by_its_event_at_the_head() {
        let events = chain("agency:a", 5);
        let head = head_of(&events[..3]);
        compare_verified_stream(&head, 5, Some(&events[2])).unwrap();

        let forged = forge_from(&events, 1, |payload| payload["name"] = "rewritten".into());
        let problem = compare_verified_stream(&head, 5, Some(&forged[2])).unwrap_err();
        assert_eq!(problem.seq, 3);
        assert!(problem.problem.contains("rewritten"), "{problem}");

        let problem = compare_verified_stream(&head, 2, None).unwrap_err();
        assert_eq!(problem.seq, 3);
        assert!(problem.problem.contains("ends before it"), "{problem}");

        let empty = StreamHead { stream: "agency:a".to_owned(), seq: 0, hash: GENESIS_HASH.to_owned() };
        compare_verified_stream(&empty, 0, None).unwrap();
        assert!(compare_verified_stream(&head, 5, Some(&events[3])).is_err(), "the wrong event");
    }

    #[test]
    fn an_event_of_another_stream_is_found() {
        let mut events = chain("agency:a", 3);
        let head = head_of(&events);
        events[2] = chain("agency:b", 3).remove(2);
        let problem = compare_with_log(&head, &events).unwrap_err();
        assert_eq!(problem.seq, 3);
        assert!(problem.problem.contains("agency:b"), "{problem}");
    }
}
