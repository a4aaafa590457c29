//! The queries behind checkpoints and whole-log verification: the `checkpoints` table, every
//! stream head at one instant, and the list of streams. They take a connection or transaction
//! and return plain types, like the query modules under `db/`.

use sea_orm::ConnectionTrait;

use crate::checkpoints::{SignedCheckpoint, StreamHead};
use crate::db::{exec, stmt};
use crate::error::AppError;

/// A checkpoint as stored: its row id and the signed document with every head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub id: i64,
    pub signed: SignedCheckpoint,
}

/// Every stream head and the highest event position, read in one statement so that on
/// PostgreSQL both come from the same snapshot: a writer committing meanwhile is either wholly
/// in the result or not at all.
pub async fn heads_and_position(conn: &impl ConnectionTrait) -> Result<(Vec<StreamHead>, i64), AppError> {
    const SQL: &str = "SELECT p.max_position, h.stream, h.seq, h.hash \
         FROM (SELECT COALESCE(MAX(position), 0) AS max_position FROM events) p \
         LEFT JOIN stream_heads h ON 1 = 1";
    let rows = conn.query_all_raw(stmt(conn.get_database_backend(), SQL, [])).await?;
    let mut position = 0;
    let mut heads = Vec::with_capacity(rows.len());
    for row in rows {
        position = row.try_get("", "max_position")?;
        let stream: Option<String> = row.try_get("", "stream")?;
        if let Some(stream) = stream {
            heads.push(StreamHead { stream, seq: row.try_get("", "seq")?, hash: row.try_get("", "hash")? });
        }
    }
    Ok((heads, position))
}

/// Stores a checkpoint with all its heads; returns its id.
pub async fn insert(conn: &impl ConnectionTrait, signed: &SignedCheckpoint) -> Result<i64, AppError> {
    let document = serde_json::to_string(signed).map_err(AppError::internal)?;
    let c = &signed.checkpoint;
    let row = conn
        .query_one_raw(stmt(
            conn.get_database_backend(),
            "INSERT INTO checkpoints (position, at, merkle_root, document) VALUES ($1, $2, $3, $4) RETURNING id",
            [c.position.into(), c.at.clone().into(), c.merkle_root.clone().into(), document.into()],
        ))
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("INSERT … RETURNING returned no row")))?;
    Ok(row.try_get("", "id")?)
}

/// The newest checkpoints first, at most `limit`.
pub async fn latest(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<StoredCheckpoint>, AppError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn
        .query_all_raw(stmt(
            conn.get_database_backend(),
            "SELECT id, document FROM checkpoints ORDER BY id DESC LIMIT $1",
            [limit.into()],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            let id: i64 = row.try_get("", "id")?;
            let document: String = row.try_get("", "document")?;
            let signed = serde_json::from_str(&document).map_err(|e| {
                AppError::internal(anyhow::Error::new(e).context(format!("stored checkpoint {id} is not a checkpoint")))
            })?;
            Ok(StoredCheckpoint { id, signed })
        })
        .collect()
}

/// A row of `checkpoints` as read for verification: its plain columns, and its document if that
/// parses as a checkpoint (else why not). Nothing in it is trusted before its signature is checked.
#[derive(Clone, Debug)]
pub struct CheckpointRow {
    pub id: i64,
    pub position: i64,
    pub at: String,
    pub merkle_root: String,
    pub document: Result<SignedCheckpoint, String>,
}

/// The stored checkpoints with an id above `after_id`, oldest first, at most `limit`: a page of
/// the whole table, which may hold thousands of checkpoints with every stream's head each.
pub async fn page(conn: &impl ConnectionTrait, after_id: i64, limit: u64) -> Result<Vec<CheckpointRow>, AppError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn
        .query_all_raw(stmt(
            conn.get_database_backend(),
            "SELECT id, position, at, merkle_root, document FROM checkpoints WHERE id > $1 ORDER BY id LIMIT $2",
            [after_id.into(), limit.into()],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            let document: String = row.try_get("", "document")?;
            Ok(CheckpointRow {
                id: row.try_get("", "id")?,
                position: row.try_get("", "position")?,
                at: row.try_get("", "at")?,
                merkle_root: row.try_get("", "merkle_root")?,
                document: serde_json::from_str(&document).map_err(|e| e.to_string()),
            })
        })
        .collect()
}

/// Every stream the log knows of: those with a head and those with events, sorted.
pub async fn streams(conn: &impl ConnectionTrait) -> Result<Vec<String>, AppError> {
    let rows = conn
        .query_all_raw(stmt(
            conn.get_database_backend(),
            "SELECT stream FROM stream_heads UNION SELECT DISTINCT stream FROM events ORDER BY stream",
            [],
        ))
        .await?;
    rows.into_iter().map(|row| Ok(row.try_get("", "stream")?)).collect()
}

/// Makes the transaction's later reads one consistent snapshot on PostgreSQL. SQLite's read
/// transactions are snapshots already.
pub async fn read_snapshot(conn: &impl ConnectionTrait) -> Result<(), AppError> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        exec(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", []).await?;
    }
    Ok(())
}
