//! Queries of the event log and its stream heads.

use std::sync::Arc;

use sea_orm::ColumnTrait;
use sea_orm::{ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::event;
use super::{Appended, Db, Write, WriteTx, exec, shift_placeholders, stmt};
use crate::error::AppError;
use crate::events::{Event, GENESIS_HASH};

/// Locks the stream's head until the transaction ends, creating it if needed, and returns its
/// sequence and hash. Every write that reads state before changing it takes this lock first, so
/// that what it read cannot change under it: writes to one stream are serialized, writes to
/// different streams are not.
pub async fn lock_head(tx: &impl ConnectionTrait, stream: &str) -> Result<(i64, String), AppError> {
    const LOCK: &str = "UPDATE stream_heads SET seq = seq WHERE stream = $1 RETURNING seq, hash";
    let backend = tx.get_database_backend();
    for _ in 0..2 {
        if let Some(row) = tx.query_one_raw(stmt(backend, LOCK, [stream.into()])).await? {
            let seq: i64 = row.try_get("", "seq")?;
            let hash: String = row.try_get("", "hash")?;
            return Ok((seq, hash));
        }
        // A new stream: create its head, unless a concurrent writer just did.
        exec(
            tx,
            "INSERT INTO stream_heads (stream, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (stream) DO NOTHING",
            [stream.into(), GENESIS_HASH.into()],
        )
        .await?;
    }
    Err(AppError::internal(anyhow::anyhow!("stream head for {stream} could not be created")))
}

/// Inserts the event, runs `writes` (the changes the event records), and moves the stream's head
/// to the event; returns the event's global position. The caller holds the head's lock
/// (`lock_head`). On PostgreSQL all of it is one statement, so one round trip.
pub async fn insert(tx: &WriteTx, e: &Event, writes: Vec<Write>) -> Result<i64, AppError> {
    let payload = serde_jcs::to_string(&e.payload).map_err(AppError::internal)?;
    let notify = !tx.announced();
    let tx = &**tx;
    if tx.get_database_backend() == sea_orm::DbBackend::Postgres {
        let row =
            tx.query_one_raw(postgres_insert(e, payload, writes, notify)).await?.ok_or_else(|| head_missing(e))?;
        return Ok(row.try_get("", "position")?);
    }
    let rows = tx.query_all_raw(sqlite_insert(e, payload, writes)).await?;
    sqlite_position(e, &rows)
}

/// `insert` on SQLite. SQLite takes several statements in one request, each with its own
/// parameters in turn: one trip to the connection's worker thread instead of one per statement.
fn sqlite_insert(e: &Event, payload: String, writes: Vec<Write>) -> sea_orm::Statement {
    let mut sql = String::new();
    let mut values: Vec<sea_orm::Value> = Vec::new();
    for w in writes {
        sql.push_str(w.sql);
        sql.push_str("; ");
        values.extend(w.values);
    }
    sql.push_str(
        "INSERT INTO events (stream, seq, type, actor, at, payload, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING position; \
         UPDATE stream_heads SET seq = $9, hash = $10 WHERE stream = $11",
    );
    values.extend(event_values(e, payload));
    values.extend([e.seq.into(), e.hash.clone().into(), e.stream.clone().into()]);
    stmt(sea_orm::DbBackend::Sqlite, &sql, values)
}

/// The event's position, from the rows of `sqlite_insert`. Every statement runs only when all
/// rows are read: a request that stops at its first row would leave the head where it was.
fn sqlite_position(e: &Event, rows: &[sea_orm::QueryResult]) -> Result<i64, AppError> {
    match rows {
        [row] => Ok(row.try_get("", "position")?),
        _ => Err(AppError::internal(anyhow::anyhow!("inserting an event into {} returned no position", e.stream))),
    }
}

/// As `insert`, without the head's lock: the event takes its place only if its sequence number
/// is still free in its stream, that is if no other writer moved the head since the caller read
/// it. The log's unique (stream, seq) decides, and the writes roll back with the event when the
/// place is taken. Once committed, the event is announced as `WriteTx::commit` announces. `None`
/// when the place was taken.
///
/// On PostgreSQL it is one statement, a transaction of its own. On SQLite the group's appender
/// runs it in the writers' shared transaction, most often in one request with the other appends
/// waiting (see `group::Appends`).
pub async fn insert_alone(db: &Db, e: Event, writes: Vec<Write>) -> Result<Option<Arc<Event>>, AppError> {
    let payload = serde_jcs::to_string(&e.payload).map_err(AppError::internal)?;
    let Some(appends) = &db.appends else {
        let row = match db.conn.query_one_raw(postgres_insert(&e, payload, writes, !db.appended.is_set())).await {
            Ok(row) => row.ok_or_else(|| head_missing(&e))?,
            Err(err) if taken(&err) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let event = Arc::new(Event { position: row.try_get("", "position")?, ..e });
        db.committed(vec![Appended { stream: event.stream.clone(), events: vec![event.clone()] }]);
        return Ok(Some(event));
    };
    let org_changed = crate::events::Stream::is_agency_key(&e.stream);
    let request = sqlite_insert(&e, payload, writes);
    let values = request.values.map(|v| v.0).unwrap_or_default();
    let event = appends.append(request.sql, values, e).await?;
    if org_changed && event.is_some() {
        db.org_changed();
    }
    Ok(event)
}

/// Whether the error is the log's refusal of a second event at the same place in a stream.
pub(super) fn taken(err: &sea_orm::DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(m))
        if m.contains("events_stream_seq_key") || m.contains("events.stream, events.seq"))
}

fn head_missing(e: &Event) -> AppError {
    AppError::internal(anyhow::anyhow!("the head of stream {} is missing", e.stream))
}

/// `insert` on PostgreSQL: one statement, so one round trip. With `notify`, its `pg_notify` tells
/// every server listening on the database of the event at commit; a process whose commits are
/// announced (`Db::on_commit`) leaves that to its live hub instead (see `live::pg`).
fn postgres_insert(e: &Event, payload: String, writes: Vec<Write>, notify: bool) -> sea_orm::Statement {
    // Data-modifying WITH clauses always run to completion, read or not; none of them touches a
    // row another one does.
    let mut sql = String::from("WITH ");
    let mut values: Vec<sea_orm::Value> = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        sql.push_str(&format!("w{i} AS ({}), ", shift_placeholders(w.sql, values.len())));
        values.extend(w.values);
    }
    sql.push_str(&shift_placeholders(
        "ev AS (INSERT INTO events (stream, seq, type, actor, at, payload, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING position) \
         UPDATE stream_heads SET seq = $2, hash = $8 WHERE stream = $1 \
         RETURNING (SELECT position FROM ev) AS position",
        values.len(),
    ));
    if notify {
        sql.push_str(&format!(", pg_notify('attest_events', ${})", values.len() + 9));
    }
    values.extend(event_values(e, payload));
    if notify {
        values.push(format!("{}:{}", e.stream, e.seq).into());
    }
    sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
}

/// The values of an event's row, in the order of its insert's columns: stream, seq, type, actor,
/// at, payload, prev_hash, hash.
fn event_values(e: &Event, payload: String) -> [sea_orm::Value; 8] {
    [
        e.stream.clone().into(),
        e.seq.into(),
        e.kind.clone().into(),
        e.actor.clone().into(),
        e.at.clone().into(),
        payload.into(),
        e.prev_hash.clone().into(),
        e.hash.clone().into(),
    ]
}

pub async fn page(
    conn: &impl ConnectionTrait,
    stream: &str,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<Event>, AppError> {
    let rows = event::Entity::find()
        .filter(event::Column::Stream.eq(stream))
        .filter(event::Column::Seq.gt(after_seq))
        .order_by_asc(event::Column::Seq)
        .limit(limit)
        .all(conn)
        .await?;
    rows.into_iter().map(to_event).collect()
}

/// A stream's events at the given sequence numbers, which must be in ascending order; a number
/// the stream does not have is left out. One query per `SEQS_PER_QUERY` numbers, so that
/// whole-log verification reads the events that checkpoints name without a query per event.
pub async fn at_seqs(conn: &impl ConnectionTrait, stream: &str, seqs: &[i64]) -> Result<Vec<Event>, AppError> {
    // Well below SQLite's and PostgreSQL's limits on bound parameters.
    const SEQS_PER_QUERY: usize = 500;
    let mut events = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(SEQS_PER_QUERY) {
        let rows = event::Entity::find()
            .filter(event::Column::Stream.eq(stream))
            .filter(event::Column::Seq.is_in(chunk.iter().copied()))
            .order_by_asc(event::Column::Seq)
            .all(conn)
            .await?;
        for row in rows {
            events.push(to_event(row)?);
        }
    }
    Ok(events)
}

/// A page of a stream's events after `after_seq` that match `filter`, in sequence order.
pub async fn filtered_page(
    conn: &impl ConnectionTrait,
    stream: &str,
    after_seq: i64,
    limit: u64,
    filter: &crate::replay::LogFilter,
) -> Result<Vec<Event>, AppError> {
    let mut q = event::Entity::find().filter(event::Column::Stream.eq(stream)).filter(event::Column::Seq.gt(after_seq));
    if let Some(actor) = &filter.actor {
        q = q.filter(event::Column::Actor.eq(actor.as_str()));
    }
    if !filter.types.is_empty() {
        q = q.filter(event::Column::Kind.is_in(filter.types.iter().map(String::as_str)));
    }
    if let Some(from) = &filter.from {
        q = q.filter(event::Column::At.gte(from.as_str()));
    }
    if let Some(to) = &filter.to {
        q = q.filter(event::Column::At.lte(to.as_str()));
    }
    let rows = q.order_by_asc(event::Column::Seq).limit(limit).all(conn).await?;
    rows.into_iter().map(to_event).collect()
}

/// Every stream key starting with `prefix`, from the heads and from the events themselves (a
/// stream whose head was removed still shows).
pub async fn stream_keys(conn: &impl ConnectionTrait, prefix: &str) -> Result<Vec<String>, AppError> {
    let rows = conn
        .query_all_raw(stmt(
            conn.get_database_backend(),
            "SELECT stream FROM stream_heads WHERE stream LIKE $1 UNION SELECT DISTINCT stream FROM events WHERE stream LIKE $2 ORDER BY stream",
            [format!("{prefix}%").into(), format!("{prefix}%").into()],
        ))
        .await?;
    rows.iter().map(|r| Ok(r.try_get::<String>("", "stream")?)).collect()
}

pub async fn head(conn: &impl ConnectionTrait, stream: &str) -> Result<Option<(i64, String)>, AppError> {
    let row = conn
        .query_one_raw(stmt(
            conn.get_database_backend(),
            "SELECT seq, hash FROM stream_heads WHERE stream = $1",
            [stream.into()],
        ))
        .await?;
    match row {
        Some(row) => Ok(Some((row.try_get("", "seq")?, row.try_get("", "hash")?))),
        None => Ok(None),
    }
}

fn to_event(m: event::Model) -> Result<Event, AppError> {
    let payload = serde_json::from_str(&m.payload)
        .map_err(|e| AppError::internal(anyhow::Error::new(e).context("stored event payload is not JSON")))?;
    Ok(Event {
        position: m.position,
        stream: m.stream,
        seq: m.seq,
        kind: m.kind,
        actor: m.actor,
        at: m.at,
        payload,
        prev_hash: m.prev_hash,
        hash: m.hash,
    })
}
