//! Queries and mutations of the log's audit: the server's public key, signed checkpoints with the
//! heads a caller may see and their inclusion proofs, and the verification of an assessment's log.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};

use super::types::StreamVerification;
use super::{actor, state};
use crate::audit::{self, CheckpointView, ProvenHead};
use crate::checkpoints::Side;
use crate::error::AppError;
use crate::ids::AssessmentId;

/// The most checkpoints one `checkpoints` query returns.
const MAX_CHECKPOINTS: i32 = 200;

#[derive(Default)]
pub struct AuditQuery;

#[derive(Default)]
pub struct AuditMutation;

/// The key that signs checkpoints. Keep a copy obtained out of band to check checkpoints against.
#[derive(SimpleObject)]
#[graphql(name = "ServerKey")]
pub struct GqlServerKey {
    /// Always `Ed25519`.
    pub algorithm: String,
    /// The public key, 64 lowercase hex digits.
    pub public_key: String,
}

/// A signed checkpoint of the whole log, with the heads of the streams the caller may know of.
pub struct GqlCheckpoint(CheckpointView);

#[Object(name = "Checkpoint")]
impl GqlCheckpoint {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The checkpoint format's version: 1.
    async fn version(&self) -> u32 {
        self.0.checkpoint.version
    }
    /// The highest global event position covered.
    async fn position(&self) -> i64 {
        self.0.checkpoint.position
    }
    /// When it was taken, as an event's `at`.
    async fn at(&self) -> &str {
        &self.0.checkpoint.at
    }
    /// How many stream heads (of all agencies) are leaves of the Merkle tree.
    async fn stream_count(&self) -> u64 {
        self.0.checkpoint.stream_count
    }
    async fn merkle_root(&self) -> &str {
        &self.0.checkpoint.merkle_root
    }
    async fn public_key(&self) -> &str {
        &self.0.checkpoint.public_key
    }
    /// Ed25519 signature over the checkpoint's signing bytes (docs/event-log.md).
    async fn signature(&self) -> &str {
        &self.0.checkpoint.signature
    }
    /// The checkpoint as its signed JSON object, the seven members of docs/event-log.md.
    async fn document(&self) -> async_graphql::Json<serde_json::Value> {
        async_graphql::Json(
            serde_json::to_value(&self.0.checkpoint).expect("a checkpoint is integers and strings, always valid JSON"),
        )
    }
    /// Heads of the caller's streams in this checkpoint, each with its inclusion proof.
    async fn heads(&self) -> Vec<GqlStreamHead> {
        self.0.heads.iter().cloned().map(GqlStreamHead).collect()
    }
}

/// A stream's last sequence number and hash in a checkpoint, with the proof that it is a leaf
/// under the checkpoint's Merkle root.
pub struct GqlStreamHead(ProvenHead);

#[Object(name = "CheckpointHead")]
impl GqlStreamHead {
    async fn stream(&self) -> &str {
        &self.0.head.stream
    }
    async fn seq(&self) -> i64 {
        self.0.head.seq
    }
    async fn hash(&self) -> &str {
        &self.0.head.hash
    }
    async fn proof(&self) -> GqlInclusionProof<'_> {
        GqlInclusionProof(&self.0)
    }
}

/// An inclusion proof (docs/event-log.md, "Inclusion proofs").
pub struct GqlInclusionProof<'a>(&'a ProvenHead);

#[Object(name = "InclusionProof")]
impl GqlInclusionProof<'_> {
    /// The head's position among the sorted heads, from 0.
    async fn index(&self) -> u64 {
        self.0.proof.index
    }
    /// From the leaf's level up to the root's.
    async fn siblings(&self) -> Vec<GqlProofStep> {
        self.0
            .proof
            .siblings
            .iter()
            .map(|s| GqlProofStep {
                side: match s.side {
                    Side::Left => GqlSide::Left,
                    Side::Right => GqlSide::Right,
                },
                hash: s.hash.clone(),
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "ProofSide")]
pub enum GqlSide {
    Left,
    Right,
}

#[derive(SimpleObject)]
#[graphql(name = "ProofStep")]
pub struct GqlProofStep {
    /// The side the sibling is on.
    pub side: GqlSide,
    pub hash: String,
}

/// An assessment's stream head in the latest checkpoint, and that checkpoint.
#[derive(SimpleObject)]
pub struct AssessmentCheckpoint {
    pub checkpoint: GqlCheckpoint,
    pub head: GqlStreamHead,
}

#[Object]
impl AuditQuery {
    /// The key that signs the server's checkpoints.
    async fn server_key(&self, ctx: &Context<'_>) -> async_graphql::Result<GqlServerKey> {
        let public_key = audit::server_key(state(ctx), actor(ctx)?)?;
        Ok(GqlServerKey { algorithm: audit::KEY_ALGORITHM.to_owned(), public_key })
    }

    /// The newest checkpoints, newest first (administrators), each with the heads of the
    /// agency's streams.
    async fn checkpoints(&self, ctx: &Context<'_>, first: Option<i32>) -> async_graphql::Result<Vec<GqlCheckpoint>> {
        let first = match first {
            None => 20,
            Some(n) if (0..=MAX_CHECKPOINTS).contains(&n) => n,
            Some(_) => {
                return Err(AppError::invalid("first", format!("must be between 0 and {MAX_CHECKPOINTS}")).into());
            }
        };
        let limit = u64::try_from(first).unwrap_or(0);
        let list = audit::checkpoints(state(ctx), actor(ctx)?, limit).await?;
        Ok(list.into_iter().map(GqlCheckpoint).collect())
    }

    /// The latest checkpoint covering an assessment's stream, with the stream's head in it and
    /// its inclusion proof; null before the first checkpoint after the assessment was created.
    async fn assessment_checkpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<AssessmentCheckpoint>> {
        let id = AssessmentId::parse(&id)?;
        let Some(view) = audit::assessment_checkpoint(state(ctx), actor(ctx)?, id).await? else {
            return Ok(None);
        };
        let head = view.heads.first().cloned().ok_or_else(|| {
            AppError::internal(anyhow::anyhow!("a checkpoint view of an assessment without its head"))
        })?;
        Ok(Some(AssessmentCheckpoint { checkpoint: GqlCheckpoint(view), head: GqlStreamHead(head) }))
    }

    /// Checks an assessment's whole chain: every hash, every link, no gap, and its head.
    async fn verify_assessment_log(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<StreamVerification> {
        let id = AssessmentId::parse(&id)?;
        let v = crate::assessments::verify_log(state(ctx), actor(ctx)?, id).await?;
        Ok(StreamVerification {
            ok: v.problem.is_none(),
            events_checked: v.events_checked,
            head_hash: v.head_hash,
            problem_seq: v.problem.as_ref().map(|p| p.0),
            problem: v.problem.map(|p| p.1),
        })
    }
}

#[Object]
impl AuditMutation {
    /// Takes a signed checkpoint of the whole log now (administrators). It is stored and logged as
    /// `checkpoint.created` in the `system` stream.
    async fn create_checkpoint(&self, ctx: &Context<'_>) -> async_graphql::Result<GqlCheckpoint> {
        Ok(GqlCheckpoint(audit::create_checkpoint_as(state(ctx), actor(ctx)?).await?))
    }
}
