//! The Merkle tree over stream heads that a checkpoint signs, and inclusion proofs of one head.
//! Leaves and inner nodes are hashed with distinct prefixes (0x00, 0x01), so a leaf can never be
//! passed off as an inner node or the other way round.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{StreamHead, decode_hex};

type Hash = [u8; 32];

/// Which side of the path a sibling hash is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
}

/// One step from a leaf towards the root: the sibling's hash and its side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofStep {
    pub side: Side,
    pub hash: String,
}

/// Proves that one head is a leaf of the tree: `index` is the head's position among the heads
/// sorted by stream, `siblings` go from the leaf's level up to the root's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub index: u64,
    pub siblings: Vec<ProofStep>,
}

/// The Merkle root over `heads`, as lowercase hex. The heads are taken in order of their
/// `stream`'s bytes, whatever order they are given in.
pub fn merkle_root(heads: &[StreamHead]) -> String {
    let levels = levels(&sorted_leaves(heads));
    match levels.last().and_then(|top| top.first()) {
        Some(root) => hex::encode(root),
        None => hex::encode(Sha256::digest(b"")),
    }
}

/// The proof that `stream`'s head is one of `heads`, or `None` if no head names `stream`.
pub fn inclusion_proof(heads: &[StreamHead], stream: &str) -> Option<InclusionProof> {
    inclusion_proofs(heads, |s| s == stream).into_iter().next().map(|(_, proof)| proof)
}

/// The heads whose stream `wanted` accepts, in stream order, each with its inclusion proof. The
/// tree is built once, so proving many heads of one checkpoint costs little more than one.
pub fn inclusion_proofs(heads: &[StreamHead], wanted: impl Fn(&str) -> bool) -> Vec<(StreamHead, InclusionProof)> {
    let mut sorted: Vec<&StreamHead> = heads.iter().collect();
    sorted.sort_by(|a, b| a.stream.as_bytes().cmp(b.stream.as_bytes()));
    let chosen: Vec<usize> = (0..sorted.len()).filter(|&i| wanted(&sorted[i].stream)).collect();
    if chosen.is_empty() {
        return Vec::new();
    }
    let leaves: Vec<Hash> = sorted.iter().map(|head| leaf_hash(head)).collect();
    let levels = levels(&leaves);
    chosen
        .into_iter()
        .map(|index| {
            let siblings = path(index, leaves.len())
                .into_iter()
                .map(|(level, side, sibling)| ProofStep { side, hash: hex::encode(levels[level][sibling]) })
                .collect();
            (sorted[index].clone(), InclusionProof { index: index as u64, siblings })
        })
        .collect()
}

/// Whether `proof` leads from `head` to `root`: starting from the head's leaf hash, each step
/// hashes the current node with the sibling on its side. The proof's `index` is not needed for
/// that; [`proof_fits`] checks it against the number of leaves.
pub fn verify_inclusion(head: &StreamHead, proof: &InclusionProof, root: &str) -> bool {
    let mut node = leaf_hash(head);
    for step in &proof.siblings {
        let Ok(sibling) = decode_hex::<32>(&step.hash) else { return false };
        node = match step.side {
            Side::Left => inner_hash(&sibling, &node),
            Side::Right => inner_hash(&node, &sibling),
        };
    }
    hex::encode(node) == root
}

/// Whether `proof`'s index lies in a tree of `leaf_count` leaves and its steps have exactly the
/// sides that index's path has. Not needed for soundness (the prefixes already make a proof
/// reach the root only from a real leaf), but a proof that fails it was not made by this code.
pub fn proof_fits(proof: &InclusionProof, leaf_count: u64) -> bool {
    let (Ok(index), Ok(count)) = (usize::try_from(proof.index), usize::try_from(leaf_count)) else { return false };
    if index >= count {
        return false;
    }
    let expected = path(index, count).into_iter().map(|(_, side, _)| side);
    expected.eq(proof.siblings.iter().map(|step| step.side))
}

/// SHA-256(0x00 || JCS of the head), the head being `{"hash":…,"seq":…,"stream":…}`.
fn leaf_hash(head: &StreamHead) -> Hash {
    let canonical = serde_jcs::to_vec(head).expect("serializing integers and strings cannot fail");
    Sha256::new().chain_update([0x00]).chain_update(canonical).finalize().into()
}

/// SHA-256(0x01 || left || right), over the raw 32-byte digests.
fn inner_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new().chain_update([0x01]).chain_update(left).chain_update(right).finalize().into()
}

fn sorted_leaves(heads: &[StreamHead]) -> Vec<Hash> {
    let mut sorted: Vec<&StreamHead> = heads.iter().collect();
    sorted.sort_by(|a, b| a.stream.as_bytes().cmp(b.stream.as_bytes()));
    sorted.into_iter().map(leaf_hash).collect()
}

/// Every level of the tree, leaves first and the root's level (one node) last; no level for no
/// leaves. Nodes are paired left to right; an odd last node moves up unchanged.
fn levels(leaves: &[Hash]) -> Vec<Vec<Hash>> {
    let mut levels = Vec::new();
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        let next = level.chunks(2).map(|pair| if let [l, r] = pair { inner_hash(l, r) } else { pair[0] }).collect();
        levels.push(level);
        level = next;
    }
    if !level.is_empty() {
        levels.push(level);
    }
    levels
}

/// The steps from leaf `index` of `count` leaves up to the root: for each level that has a
/// sibling for the current node, the level, the sibling's side and the sibling's index in it.
fn path(mut index: usize, mut count: usize) -> Vec<(usize, Side, usize)> {
    let mut steps = Vec::new();
    let mut level = 0;
    while count > 1 {
        if index % 2 == 1 {
            steps.push((level, Side::Left, index - 1));
        } else if index + 1 < count {
            steps.push((level, Side::Right, index + 1));
        }
        index /= 2;
        count = count.div_ceil(2);
        level += 1;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::super::testing::heads;
    use super::*;

    fn sha256(parts: &[&[u8]]) -> Hash {
        parts.iter().fold(Sha256::new(), |h, part| h.chain_update(part)).finalize().into()
    }

    fn leaf(head: &StreamHead) -> Hash {
        let text = format!(r#"{{"hash":"{}","seq":{},"stream":"{}"}}"#, head.hash, head.seq, head.stream);
        sha256(&[&[0x00], text.as_bytes()])
    }

    fn node(l: Hash, r: Hash) -> Hash {
        sha256(&[&[0x01], &l, &r])
    }

    #[test]
    fn the_root_of_no_heads_is_the_hash_of_nothing() {
        assert_eq!(merkle_root(&[]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn the_root_of_one_head_is_its_leaf_hash() {
        let h = heads(1);
        assert_eq!(merkle_root(&h), hex::encode(leaf(&h[0])));
    }

    #[test]
    fn roots_of_two_three_and_five_heads_follow_the_documented_rules() {
        let h = heads(5);
        let l: Vec<Hash> = h.iter().map(leaf).collect();
        assert_eq!(merkle_root(&h[..2]), hex::encode(node(l[0], l[1])));
        // Three: the third leaf moves up unchanged and pairs with the first pair's node.
        assert_eq!(merkle_root(&h[..3]), hex::encode(node(node(l[0], l[1]), l[2])));
        // Five: the fifth leaf moves up twice before it is paired.
        let four = node(node(l[0], l[1]), node(l[2], l[3]));
        assert_eq!(merkle_root(&h), hex::encode(node(four, l[4])));
    }

    #[test]
    fn the_root_does_not_depend_on_the_order_heads_are_given_in() {
        let h = heads(5);
        let mut shuffled = h.clone();
        shuffled.swap(0, 3);
        shuffled.swap(1, 4);
        assert_eq!(merkle_root(&shuffled), merkle_root(&h));
        assert_eq!(inclusion_proof(&shuffled, &h[2].stream), inclusion_proof(&h, &h[2].stream));
    }

    #[test]
    fn every_head_has_a_proof_that_verifies_for_sizes_up_to_nine() {
        for n in 1..=9 {
            let h = heads(n);
            let root = merkle_root(&h);
            for (i, head) in h.iter().enumerate() {
                let proof = inclusion_proof(&h, &head.stream).unwrap();
                assert_eq!(proof.index, i as u64);
                assert!(verify_inclusion(head, &proof, &root), "{n} heads, index {i}");
                assert!(proof_fits(&proof, n as u64), "{n} heads, index {i}");
            }
        }
    }

    #[test]
    fn proofs_of_many_heads_equal_the_proofs_of_each() {
        let h = heads(7);
        let wanted = [&h[0].stream, &h[3].stream, &h[6].stream];
        let proofs = inclusion_proofs(&h, |s| wanted.iter().any(|w| *w == s));
        assert_eq!(proofs.len(), 3);
        for (head, proof) in proofs {
            assert_eq!(Some(proof), inclusion_proof(&h, &head.stream));
        }
        assert!(inclusion_proofs(&h, |_| false).is_empty());
    }

    #[test]
    fn a_stream_without_a_head_has_no_proof() {
        assert_eq!(inclusion_proof(&heads(3), "agency:missing"), None);
        assert_eq!(inclusion_proof(&[], "agency:missing"), None);
    }

    #[test]
    fn a_proof_fails_for_a_tampered_head() {
        let h = heads(5);
        let root = merkle_root(&h);
        for head in &h {
            let proof = inclusion_proof(&h, &head.stream).unwrap();
            let mut seq = head.clone();
            seq.seq += 1;
            let mut hash = head.clone();
            hash.hash = h[0].hash.clone();
            let mut stream = head.clone();
            stream.stream.push('x');
            for tampered in [seq, hash, stream] {
                if tampered != *head {
                    assert!(!verify_inclusion(&tampered, &proof, &root), "{tampered:?}");
                }
            }
        }
    }

    #[test]
    fn a_proof_fails_for_a_tampered_sibling_side_or_root() {
        let h = heads(5);
        let root = merkle_root(&h);
        for head in &h {
            let proof = inclusion_proof(&h, &head.stream).unwrap();
            for i in 0..proof.siblings.len() {
                let mut hash = proof.clone();
                hash.siblings[i].hash = hex::encode(leaf(head));
                assert!(!verify_inclusion(head, &hash, &root));

                let mut side = proof.clone();
                side.siblings[i].side = match side.siblings[i].side {
                    Side::Left => Side::Right,
                    Side::Right => Side::Left,
                };
                assert!(!verify_inclusion(head, &side, &root));
                assert!(!proof_fits(&side, 5));

                let mut dropped = proof.clone();
                dropped.siblings.remove(i);
                assert!(!verify_inclusion(head, &dropped, &root));
            }
            assert!(!verify_inclusion(head, &proof, &merkle_root(&h[1..])));
        }
    }

    #[test]
    fn a_proof_with_an_index_outside_the_tree_does_not_fit() {
        let h = heads(5);
        let mut proof = inclusion_proof(&h, &h[4].stream).unwrap();
        assert!(proof_fits(&proof, 5));
        assert!(!proof_fits(&proof, 4));
        proof.index = 2;
        assert!(!proof_fits(&proof, 5));
    }

    #[test]
    fn proof_steps_serialize_with_lowercase_sides() {
        let step = ProofStep { side: Side::Left, hash: "ab".to_owned() };
        assert_eq!(serde_json::to_string(&step).unwrap(), r#"{"side":"left","hash":"ab"}"#);
    }

    /// The worked example of docs/event-log.md, whose root was computed with Python's hashlib.
    #[test]
    fn the_documented_merkle_example_hashes_as_documented() {
        let heads = [
            StreamHead { stream: "system".to_owned(), seq: 3, hash: "bb".repeat(32) },
            StreamHead {
                stream: "agency:1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed".to_owned(),
                seq: 1,
                hash: "2b8de8794a86336be118b69f51d24e4d6e6939c35969baf6673c0f5dd8d3a755".to_owned(),
            },
        ];
        assert_eq!(merkle_root(&heads), "7100673a03cc38d2cf8cfa6c28523fbeaed26ba185cfc3b7f1d22935cb1e6a70");
    }
}
