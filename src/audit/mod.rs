//! Auditing the event log: signed checkpoints taken, stored and logged (on demand and
//! periodically), what each caller may see of them, whole-log verification against the chain,
//! every stored checkpoint and a kept one, and bundles of one assessment's stream for offline verification.
//! The formats themselves are in `checkpoints`; this module wires them to the database.

mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::SecondsFormat;
use sea_orm::TransactionTrait;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::Actor;
use crate::checkpoints::{
    Checkpoint, InclusionProof, SignedCheckpoint, StreamHead, StreamProblem, TrustedKeys, compare_verified_stream,
    inclusion_proofs, write_bundle,
};
use crate::db::{self, Db, WriteTx};
use crate::error::{AppError, LogDisplay};
use crate::events::{self, Event, EventActor, Stream};
use crate::ids::AssessmentId;
use crate::policy::{self, Action, Resource};
use crate::state::AppState;

pub use store::StoredCheckpoint;

/// The signature algorithm of the server key, as shown to clients.
pub const KEY_ALGORITHM: &str = "Ed25519";

/// Events read per query when a stream is loaded.
const PAGE: u64 = 1000;

/// A checkpoint as one caller may see it: the checkpoint itself, which names no stream, and only
/// the heads of streams the caller may know of, each with its inclusion proof.
#[derive(Clone, Debug)]
pub struct CheckpointView {
    pub id: i64,
    pub checkpoint: Checkpoint,
    pub heads: Vec<ProvenHead>,
}

/// A stream's head in a checkpoint with the proof that it is a leaf under the checkpoint's root.
#[derive(Clone, Debug)]
pub struct ProvenHead {
    pub head: StreamHead,
    pub proof: InclusionProof,
}

impl CheckpointView {
    fn of(stored: &StoredCheckpoint, visible: impl Fn(&str) -> bool) -> CheckpointView {
        let heads = inclusion_proofs(&stored.signed.heads, visible)
            .into_iter()
            .map(|(head, proof)| ProvenHead { head, proof })
            .collect();
        CheckpointView { id: stored.id, checkpoint: stored.signed.checkpoint.clone(), heads }
    }
}

/// The server's public key, as 64 lowercase hex digits; any signed-in user may see it.
pub fn server_key(state: &AppState, actor: &Actor) -> Result<String, AppError> {
    policy::authorize(actor, Action::ViewAgency, Resource::agency(actor.agency_id))?;
    Ok(state.key.public_key_hex())
}

/// Takes a checkpoint of the whole log now, stores it and records `checkpoint.created` in the
/// `system` stream, all in one transaction. No policy: for the operator's command line and the
/// periodic task; the API goes through `create_checkpoint_as`.
pub async fn create_checkpoint(state: &AppState, actor: EventActor) -> Result<StoredCheckpoint, AppError> {
    let tx = events::begin(&state.db, &Stream::System).await?;
    let (heads, position) = store::heads_and_position(&*tx).await?;
    let stored = sign_and_store(&tx, state, actor, heads, position).await?;
    tx.commit().await?;
    Ok(stored)
}

/// As `create_checkpoint`, unless the log is as the last checkpoint saw it.
pub async fn create_checkpoint_if_changed(state: &AppState) -> Result<Option<StoredCheckpoint>, AppError> {
    let tx = events::begin(&state.db, &Stream::System).await?;
    let (heads, position) = store::heads_and_position(&*tx).await?;
    let last = store::latest(&*tx, 1).await?;
    if last.first().is_some_and(|last| !changed_since(&last.signed, heads.clone())) {
        return Ok(None);
    }
    let stored = sign_and_store(&tx, state, EventActor::System, heads, position).await?;
    tx.commit().await?;
    Ok(Some(stored))
}

/// Whether `heads`, read now under the `system` head's lock, differ from what `last` committed
/// to, apart from `last`'s own `checkpoint.created` event: the one event appended to `system`
/// right after the head the checkpoint holds. Heads are compared, not positions, because on
/// PostgreSQL an event with a lower position may commit after a later one.
fn changed_since(last: &SignedCheckpoint, mut heads: Vec<StreamHead>) -> bool {
    heads.sort_by(|a, b| a.stream.as_bytes().cmp(b.stream.as_bytes()));
    let system = Stream::System.key();
    heads.len() != last.heads.len()
        || heads.iter().zip(&last.heads).any(|(now, then)| {
            if now.stream != then.stream {
                return true;
            }
            if now.stream == system { now.seq != then.seq + 1 } else { now.seq != then.seq || now.hash != then.hash }
        })
}

/// Takes a checkpoint for an administrator, who is shown the heads of the agency's streams.
pub async fn create_checkpoint_as(state: &AppState, actor: &Actor) -> Result<CheckpointView, AppError> {
    policy::authorize(actor, Action::CreateCheckpoint, Resource::agency(actor.agency_id))?;
    let stored = create_checkpoint(state, EventActor::User(actor.user_id)).await?;
    let streams = agency_streams(state, actor).await?;
    Ok(CheckpointView::of(&stored, |s| streams.contains(s)))
}

/// The newest checkpoints, for an administrator: each with the heads of the agency's streams.
pub async fn checkpoints(state: &AppState, actor: &Actor, limit: u64) -> Result<Vec<CheckpointView>, AppError> {
    policy::authorize(actor, Action::ReadCheckpoints, Resource::agency(actor.agency_id))?;
    let streams = agency_streams(state, actor).await?;
    let stored = store::latest(&state.db.conn, limit).await?;
    Ok(stored.iter().map(|c| CheckpointView::of(c, |s| streams.contains(s))).collect())
}

/// The latest checkpoint covering an assessment's stream, showing that stream's head only, for
/// those who may read the assessment's log. `None` before any checkpoint covers it.
pub async fn assessment_checkpoint(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
) -> Result<Option<CheckpointView>, AppError> {
    let access = crate::assessments::assessment(state, actor, id).await?;
    let resource = Resource::in_unit(access.assessment.agency_id, &access.ancestry, access.role);
    policy::authorize(actor, Action::ReadAssessmentLog, resource)?;
    let stream = Stream::Assessment(id).key();
    // A stream once covered is covered by every later checkpoint, since heads are never removed:
    // the newest checkpoint covers it, or none does.
    let latest = store::latest(&state.db.conn, 1).await?;
    Ok(latest.first().filter(|c| c.signed.head(&stream).is_some()).map(|c| CheckpointView::of(c, |s| s == stream)))
}

/// The streams of the actor's agency: its own and those of its assessments.
async fn agency_streams(state: &AppState, actor: &Actor) -> Result<HashSet<String>, AppError> {
    let conn = &state.db.conn;
    let units: Vec<_> = db::org::list_units(conn, actor.agency_id).await?.into_iter().map(|u| u.id).collect();
    let assessments = db::assessments::assessments_in_units(conn, &units).await?;
    let mut streams: HashSet<String> = assessments.into_iter().map(|a| Stream::Assessment(a.id).key()).collect();
    streams.insert(Stream::Agency(actor.agency_id).key());
    Ok(streams)
}

/// Signs the heads and position read in `tx` (which holds the `system` stream's head), stores
/// the checkpoint and logs it. The `system` head in the checkpoint is therefore the one before its
/// own `checkpoint.created` event.
async fn sign_and_store(
    tx: &WriteTx,
    state: &AppState,
    actor: EventActor,
    heads: Vec<StreamHead>,
    position: i64,
) -> Result<StoredCheckpoint, AppError> {
    let at = crate::clock::from_micros(tx.now(&state.clock)).to_rfc3339_opts(SecondsFormat::Micros, true);
    let signed = Checkpoint::create(&state.key, heads, position, at);
    let id = store::insert(&**tx, &signed).await?;
    let c = &signed.checkpoint;
    let payload = json!({
        "position": c.position,
        "at": c.at,
        "merkle_root": c.merkle_root,
        "stream_count": c.stream_count,
        "public_key": c.public_key,
        "signature": c.signature,
    });
    events::append(tx, &state.clock, &Stream::System, "checkpoint.created", actor, payload).await?;
    Ok(StoredCheckpoint { id, signed })
}

/// The background task that takes a checkpoint every interval when the log changed.
pub struct PeriodicCheckpoints {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl PeriodicCheckpoints {
    /// Starts the task, unless `config.checkpoint_interval_secs` is 0. The first checkpoint is
    /// taken one interval after start.
    pub fn start(state: AppState) -> Option<PeriodicCheckpoints> {
        let secs = state.config.checkpoint_interval_secs;
        if secs == 0 {
            return None;
        }
        let period = Duration::from_secs(secs);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => match create_checkpoint_if_changed(&state).await {
                        Ok(Some(c)) => tracing::info!(
                            id = c.id,
                            position = c.signed.checkpoint.position,
                            streams = c.signed.checkpoint.stream_count,
                            "checkpoint taken"
                        ),
                        Ok(None) => tracing::debug!("no checkpoint: nothing appended since the last one"),
                        Err(err) => tracing::error!(error = %LogDisplay(&err), "periodic checkpoint failed"),
                    },
                }
            }
        });
        Some(PeriodicCheckpoints { stop, task })
    }

    /// Stops the task, letting a checkpoint in progress finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Stored checkpoints read per query when the log is verified.
const CHECKPOINT_PAGE: u64 = 50;

/// What verifying the whole log found.
#[derive(Clone, Debug, Default)]
pub struct LogReport {
    pub streams: u64,
    pub events_checked: u64,
    /// Streams the kept checkpoint covered, when one was given.
    pub checkpoint_streams: u64,
    /// At most one problem per stream, the first found, sorted by stream: a broken chain, or a
    /// stream that no longer matches the kept checkpoint.
    pub problems: Vec<StreamProblem>,
    /// How many checkpoints the `checkpoints` table holds, all of them checked.
    pub stored_checkpoints: u64,
    /// The keys the stored checkpoints had to be signed by: the trusted keys if any were given,
    /// else the kept checkpoint's, else that of the oldest stored checkpoint whose signature holds.
    pub stored_keys: TrustedKeys,
    /// Distinct heads (stream, sequence and hash) named by the stored checkpoints that were
    /// compared with the log.
    pub stored_heads_compared: u64,
    /// Stored checkpoints that cannot be trusted, in id order: their heads were not used.
    pub bad_checkpoints: Vec<BadCheckpoint>,
    /// Heads of stored checkpoints that the log no longer matches, sorted by stream and sequence.
    pub mismatches: Vec<CheckpointMismatch>,
}

impl LogReport {
    /// Whether nothing at all was found wrong.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty() && self.bad_checkpoints.is_empty() && self.mismatches.is_empty()
    }
}

/// A stored checkpoint as a report names it: its row id and, from its document, where and when it
/// was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointLabel {
    pub id: i64,
    pub position: i64,
    pub at: String,
}

impl std::fmt::Display for CheckpointLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored checkpoint {} (position {}, taken at {})", self.id, self.position, self.at)
    }
}

/// A stored checkpoint whose row is not what the server signed: unreadable, its signature or its
/// heads do not verify, signed by another key, or its columns differ from its document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCheckpoint {
    pub checkpoint: CheckpointLabel,
    pub problem: String,
}

impl std::fmt::Display for BadCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.checkpoint, self.problem)
    }
}

/// A head of one or more stored checkpoints that its stream no longer matches. `first` is the
/// oldest checkpoint naming that head; `later` more name the same, the last being `last_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointMismatch {
    pub first: CheckpointLabel,
    pub later: u64,
    pub last_id: i64,
    pub problem: StreamProblem,
}

impl std::fmt::Display for CheckpointMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.first, self.problem)?;
        if self.later > 0 {
            write!(f, " (the same head is in {} later stored checkpoint(s), up to {})", self.later, self.last_id)?;
        }
        Ok(())
    }
}

/// One head that stored checkpoints commit to for a stream at some sequence number, with the
/// checkpoints naming it. Checkpoints taken while a stream did not change all name the same
/// head, so the heads are kept once each, and memory grows with the log, not with checkpoints
/// times streams.
#[derive(Debug)]
struct Claim {
    hash: String,
    first: CheckpointLabel,
    later: u64,
    last_id: i64,
}

/// For each stream, the heads the trusted stored checkpoints name, by sequence number.
type Claims = HashMap<String, BTreeMap<i64, Vec<Claim>>>;

/// Checks every stream of the log, in one read snapshot: hashes, links, gap-free sequence and
/// its head, reading each stream once, in pages. Also checks every stored checkpoint: that its
/// document is signed by one of the `trusted` keys (or, without any, by the same key as the others) with
/// heads matching its Merkle root, and that every stream it covers still holds exactly the events
/// it committed to. With a kept checkpoint (whose signature and heads the caller has verified),
/// checks that too. A stream a checkpoint covers that is gone or shorter is a problem.
pub async fn verify_log(
    db: &Db,
    kept: Option<&SignedCheckpoint>,
    trusted: &TrustedKeys,
) -> Result<LogReport, AppError> {
    let tx = db.conn.begin().await?;
    store::read_snapshot(&tx).await?;
    let mut report = LogReport::default();
    let reference = match kept {
        _ if !trusted.is_empty() => Some(trusted.clone()),
        Some(signed) => Some(TrustedKeys::new([signed.checkpoint.public_key.clone()])),
        None => None,
    };
    // Read in the same snapshot as the events, so that a checkpoint taken meanwhile, naming heads
    // this snapshot does not hold, is not read.
    let mut claims = stored_claims(&tx, reference, &mut report).await?;

    let mut streams = store::streams(&tx).await?;
    if let Some(signed) = kept {
        streams.extend(signed.heads.iter().map(|h| h.stream.clone()));
    }
    streams.extend(claims.keys().cloned());
    streams.sort();
    streams.dedup();
    report.streams = streams.len() as u64;
    for stream in &streams {
        let verification = events::verify_stream(&tx, stream).await?;
        report.events_checked += verification.events_checked;
        let stream_claims = claims.remove(stream).unwrap_or_default();
        if let Some((seq, problem)) = verification.problem {
            report.problems.push(StreamProblem { stream: stream.clone(), seq, problem });
            continue;
        }
        // Heads are sorted by stream bytes, as `SignedCheckpoint::verify` checked.
        let kept_head = kept.and_then(|signed| {
            let at = signed.heads.binary_search_by(|h| h.stream.as_bytes().cmp(stream.as_bytes())).ok()?;
            signed.heads.get(at)
        });
        if kept_head.is_some() {
            report.checkpoint_streams += 1;
        }
        // The chain was just verified in this snapshot, gap-free from sequence 1: what is left of
        // `compare_with_log` is the event at each head's sequence, so only those are read, in
        // one query for every checkpoint, not the stream again.
        let last_seq = i64::try_from(verification.events_checked).unwrap_or(i64::MAX);
        let mut seqs: Vec<i64> = stream_claims.keys().copied().chain(kept_head.map(|h| h.seq)).collect();
        seqs.retain(|seq| (1..=last_seq).contains(seq));
        seqs.sort_unstable();
        seqs.dedup();
        let at_seqs = db::events::at_seqs(&tx, stream, &seqs).await?;
        let event_at = |seq: i64| at_seqs.binary_search_by_key(&seq, |e| e.seq).ok().map(|i| &at_seqs[i]);
        if let Some(head) = kept_head
            && let Err(problem) = compare_verified_stream(head, last_seq, event_at(head.seq))
        {
            report.problems.push(problem);
        }
        for (seq, named) in stream_claims {
            for claim in named {
                report.stored_heads_compared += 1;
                let head = StreamHead { stream: stream.clone(), seq, hash: claim.hash };
                if let Err(problem) = compare_verified_stream(&head, last_seq, event_at(seq)) {
                    report.mismatches.push(CheckpointMismatch {
                        first: claim.first,
                        later: claim.later,
                        last_id: claim.last_id,
                        problem,
                    });
                }
            }
        }
    }
    tx.rollback().await?;
    Ok(report)
}

/// Reads every stored checkpoint, in pages, checks that its row is what one of the `reference`
/// keys signed (or, without a reference, the key of the oldest one that verifies) and collects the
/// heads of those that are. Counts and untrusted rows go into `report`.
async fn stored_claims(
    conn: &impl sea_orm::ConnectionTrait,
    mut reference: Option<TrustedKeys>,
    report: &mut LogReport,
) -> Result<Claims, AppError> {
    let mut claims = Claims::new();
    let mut after = 0;
    loop {
        let page = store::page(conn, after, CHECKPOINT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for row in page {
            report.stored_checkpoints += 1;
            let signed = match &row.document {
                Ok(signed) => signed,
                Err(e) => {
                    let checkpoint = CheckpointLabel { id: row.id, position: row.position, at: row.at.clone() };
                    let problem = format!("the stored document is not a checkpoint: {e}");
                    report.bad_checkpoints.push(BadCheckpoint { checkpoint, problem });
                    continue;
                }
            };
            let c = &signed.checkpoint;
            let label = CheckpointLabel { id: row.id, position: c.position, at: c.at.clone() };
            let checked = signed.verify().and_then(|()| match &reference {
                Some(keys) => keys.check(&c.public_key),
                None => Ok(()),
            });
            if let Err(e) = checked {
                let problem = format!("signature check failed: {e}");
                report.bad_checkpoints.push(BadCheckpoint { checkpoint: label, problem });
                continue;
            }
            if reference.is_none() {
                reference = Some(TrustedKeys::new([c.public_key.clone()]));
            }
            // The columns beside the document are not signed; they must still say the same, or
            // someone changed the row.
            if row.position != c.position || row.at != c.at || row.merkle_root != c.merkle_root {
                let problem = "its position, at or merkle_root column differs from its signed document".to_owned();
                report.bad_checkpoints.push(BadCheckpoint { checkpoint: label.clone(), problem });
            }
            add_claims(&mut claims, &label, signed.heads.iter());
        }
    }
    report.stored_keys = reference.unwrap_or_default();
    Ok(claims)
}

/// Adds the heads of one trusted checkpoint to `claims`.
fn add_claims<'a>(claims: &mut Claims, label: &CheckpointLabel, heads: impl Iterator<Item = &'a StreamHead>) {
    for head in heads {
        if !claims.contains_key(&head.stream) {
            claims.insert(head.stream.clone(), BTreeMap::new());
        }
        let by_seq = claims.get_mut(&head.stream).expect("inserted just above");
        let named = by_seq.entry(head.seq).or_default();
        match named.iter_mut().find(|claim| claim.hash == head.hash) {
            Some(claim) => {
                claim.later += 1;
                claim.last_id = label.id;
            }
            None => named.push(Claim { hash: head.hash.clone(), first: label.clone(), later: 0, last_id: label.id }),
        }
    }
}

/// A stream's events from sequence 1 up to `up_to`, in pages.
async fn read_stream(conn: &impl sea_orm::ConnectionTrait, stream: &str, up_to: i64) -> Result<Vec<Event>, AppError> {
    let mut out = Vec::new();
    let mut after = 0;
    while after < up_to {
        let limit = PAGE.min(u64::try_from(up_to - after).unwrap_or(PAGE));
        let page = db::events::page(conn, stream, after, limit).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        out.extend(page);
    }
    Ok(out)
}

/// A bundle of one assessment's stream, with the checkpoint taken for it.
pub struct Export {
    pub stream: String,
    pub bundle: String,
    pub checkpoint: StoredCheckpoint,
    pub events: u64,
}

/// Takes a fresh checkpoint (stored and logged) and writes the bundle of the assessment's stream
/// up to its head in that checkpoint. No policy: for the operator's command line.
pub async fn export_assessment(state: &AppState, id: AssessmentId) -> Result<Export, AppError> {
    if db::assessments::get_assessment(&state.db.conn, id).await?.is_none() {
        return Err(AppError::NotFound("assessment"));
    }
    let stream = Stream::Assessment(id).key();
    let checkpoint = create_checkpoint(state, EventActor::System).await?;
    let head = checkpoint.signed.head(&stream).ok_or(AppError::NotFound("assessment stream"))?;
    let events = read_stream(&state.db.conn, &stream, head.seq).await?;
    let bundle = write_bundle(&events, &checkpoint.signed, &stream)
        .map_err(|e| AppError::internal(anyhow::anyhow!("cannot write the bundle of {stream}: {e}")))?;
    Ok(Export { stream, bundle, checkpoint, events: events.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoints::ServerKey;
    use crate::events::GENESIS_HASH;

    const AT: &str = "2026-11-27T18:40:00.000000Z";

    fn head(stream: &str, seq: i64, hash: &str) -> StreamHead {
        StreamHead { stream: stream.to_owned(), seq, hash: hash.repeat(32) }
    }

    fn last() -> SignedCheckpoint {
        let heads = vec![head("agency:a", 3, "aa"), head("system", 2, "bb")];
        Checkpoint::create(&ServerKey::generate(), heads, 9, AT.to_owned())
    }

    #[test]
    fn only_the_checkpoints_own_event_is_no_change() {
        let now = vec![head("system", 3, "cc"), head("agency:a", 3, "aa")];
        assert!(!changed_since(&last(), now));
    }

    #[test]
    fn any_other_append_or_new_stream_is_a_change() {
        assert!(changed_since(&last(), vec![head("agency:a", 4, "dd"), head("system", 3, "cc")]));
        assert!(changed_since(&last(), vec![head("agency:a", 3, "aa"), head("system", 4, "cc")]));
        let new_stream = StreamHead { stream: "agency:b".to_owned(), seq: 0, hash: GENESIS_HASH.to_owned() };
        assert!(changed_since(&last(), vec![head("agency:a", 3, "aa"), new_stream, head("system", 3, "cc")]));
    }

    #[test]
    fn checkpoints_naming_the_same_head_are_one_claim() {
        let label = |id| CheckpointLabel { id, position: id, at: AT.to_owned() };
        let mut claims = Claims::new();
        add_claims(&mut claims, &label(1), [head("agency:a", 3, "aa"), head("system", 1, "bb")].iter());
        add_claims(&mut claims, &label(2), [head("agency:a", 3, "aa"), head("system", 2, "cc")].iter());
        add_claims(&mut claims, &label(3), [head("agency:a", 3, "dd"), head("system", 3, "ee")].iter());
        let named = &claims["agency:a"][&3];
        assert_eq!(named.len(), 2, "two hashes at one sequence: {named:?}");
        assert_eq!((named[0].first.id, named[0].later, named[0].last_id), (1, 1, 2));
        assert_eq!((named[1].first.id, named[1].later, named[1].last_id), (3, 0, 3));
        assert_eq!(claims["system"].len(), 3);
    }

    #[test]
    fn a_rewritten_head_is_a_change() {
        assert!(changed_since(&last(), vec![head("agency:a", 3, "ee"), head("system", 3, "cc")]));
    }
}
