//! Group commit for SQLite. Every write transaction on SQLite pays one sync of the disk at commit,
//! and writers queue behind each other anyway (one writer at a time). So writers that arrive
//! while another is working join one shared database transaction: each runs inside its own
//! savepoint, so that its failure rolls back its own changes only, and the last writer of the
//! group commits for all, with one sync. Nobody is told of success before that shared commit:
//! a writer whose savepoint was released waits for it, and fails if it fails.
//!
//! A `WriteTx` takes a turn of its own (savepoint begun, statements, released). Appends that read
//! before their turn (`events::insert_alone`) have nothing left to decide in it, so they do not
//! take turns one by one: one task (`Appends`) runs all those waiting in one request to the
//! connection's worker thread, and commits them together. Each trip to that thread costs two
//! thread switches, which on SQLite bound the rate of writes more than the sync does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot};

use super::{Announcer, Appended};
use crate::error::AppError;
use crate::events::Event;

/// The most writers one shared commit acknowledges: a bound on how long the first of them waits.
const MAX_GROUP: usize = 512;

/// The most appends sent in one request: each binds a few dozen values, SQLite allows 32,766.
const MAX_BATCH: usize = 64;

/// The writers of one process to one SQLite database.
pub(super) struct Group {
    slot: Arc<Mutex<Option<Batch>>>,
    /// Writers waiting for their turn. A writer that finishes while others wait leaves the commit
    /// to them.
    queued: AtomicUsize,
    /// Where commits announce what they appended.
    announce: Announcer,
}

/// The shared transaction, open while a group forms.
pub(super) struct Batch {
    tx: DatabaseTransaction,
    /// Writers that finished and wait for the shared commit: told `true` once it is durable.
    waiters: Vec<oneshot::Sender<bool>>,
    /// What to announce once it is.
    announcements: Vec<Appended>,
}

impl Batch {
    async fn begin(conn: &DatabaseConnection) -> Result<Batch, AppError> {
        Ok(Batch { tx: conn.begin().await?, waiters: Vec::new(), announcements: Vec::new() })
    }
}

/// A writer's turn: the group's slot, held from `begin` to commit or drop. A turn dropped before
/// it ends (its writer gave up, or its request was cancelled) commits for the writers already
/// waiting if nobody else is in line to.
pub(super) struct Turn {
    group: Arc<Group>,
    /// Present until the turn ends.
    slot: Option<OwnedMutexGuard<Option<Batch>>>,
}

/// Counts a writer as queued while it waits. A writer whose future is dropped while it waits
/// (its request was cancelled) may have been left the commit of writers already done: a task
/// then takes the turn in its place and commits for them (`Group::commit_left`).
struct Queued<'a> {
    group: &'a Arc<Group>,
    served: bool,
}

impl<'a> Queued<'a> {
    fn new(group: &'a Arc<Group>) -> Self {
        group.queued.fetch_add(1, Ordering::SeqCst);
        Queued { group, served: false }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.group.queued.fetch_sub(1, Ordering::SeqCst);
        if !self.served && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(self.group.clone().commit_left());
        }
    }
}

impl Group {
    pub(super) fn new(announce: Announcer) -> Arc<Group> {
        Arc::new(Group { slot: Arc::new(Mutex::new(None)), queued: AtomicUsize::new(0), announce })
    }

    /// Commits the open transaction for the writers waiting for it, unless a writer in line will.
    async fn commit_left(self: Arc<Self>) {
        let slot = self.slot.clone().lock_owned().await;
        if self.queued.load(Ordering::SeqCst) > 0 {
            return;
        }
        let left = slot.as_ref().is_some_and(|b| !b.waiters.is_empty() || !b.announcements.is_empty());
        if left && let Err(e) = flush(slot, &self.announce).await {
            tracing::error!(error = %crate::error::LogDisplay(&e), "commit of a write group failed");
        }
    }

    /// Writers waiting for their turn.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Waits for this writer's turn and joins the open shared transaction, or opens one.
    pub(super) async fn turn(self: &Arc<Self>, conn: &DatabaseConnection) -> Result<Turn, AppError> {
        let mut slot = {
            let mut queued = Queued::new(self);
            let slot = self.slot.clone().lock_owned().await;
            queued.served = true;
            slot
        };
        if slot.is_none() {
            *slot = Some(Batch::begin(conn).await?);
        }
        Ok(Turn { group: self.clone(), slot: Some(slot) })
    }

    /// Opens the next shared transaction ahead of its first writer, unless one is open or a
    /// writer holds the turn. SQLite's deferred `BEGIN` takes no lock and reads nothing: the
    /// transaction starts to write, and takes the database's write lock, at its first statement.
    async fn open(&self, conn: &DatabaseConnection) -> Result<(), AppError> {
        let Ok(mut slot) = self.slot.try_lock() else { return Ok(()) };
        if slot.is_none() {
            *slot = Some(Batch::begin(conn).await?);
        }
        Ok(())
    }

    /// As `turn`, and starts the writer's savepoint in the shared transaction.
    pub(super) async fn begin(
        self: &Arc<Self>,
        conn: &DatabaseConnection,
    ) -> Result<(Turn, DatabaseTransaction), AppError> {
        let turn = self.turn(conn).await?;
        let savepoint = turn.tx().begin().await?;
        Ok((turn, savepoint))
    }
}

impl Turn {
    fn batch(&mut self) -> &mut Batch {
        self.slot.as_mut().and_then(|slot| slot.as_mut()).expect("a turn holds an open batch")
    }

    /// The shared transaction.
    pub(super) fn tx(&self) -> &DatabaseTransaction {
        &self.slot.as_ref().and_then(|slot| slot.as_ref()).expect("a turn holds an open batch").tx
    }

    /// Releases the writer's savepoint and returns once the shared commit that includes it is
    /// durable (see `done`).
    pub(super) async fn commit(self, savepoint: DatabaseTransaction, advanced: Vec<Appended>) -> Result<(), AppError> {
        savepoint.commit().await?;
        self.done(advanced).await
    }

    /// Ends the turn of a writer whose changes stand in the shared transaction, and returns once
    /// the shared commit that includes them is durable: made by this writer if nobody else is
    /// waiting, or by a later one.
    pub(super) async fn done(mut self, advanced: Vec<Appended>) -> Result<(), AppError> {
        let queued = self.group.queued.load(Ordering::SeqCst) > 0;
        let batch = self.batch();
        batch.announcements.extend(advanced);
        if queued && batch.waiters.len() < MAX_GROUP {
            let (told, wait) = oneshot::channel();
            batch.waiters.push(told);
            drop(self);
            return match wait.await {
                Ok(true) => Ok(()),
                _ => Err(AppError::internal(anyhow::anyhow!("the shared commit of a write group failed"))),
            };
        }
        // In a task of its own, so that the commit completes for the writers waiting for it even
        // if this writer's request is cancelled meanwhile.
        let slot = self.slot.take().expect("a turn holds the slot until it ends");
        let announce = self.group.announce.clone();
        tokio::spawn(async move { flush(slot, &announce).await })
            .await
            .map_err(|e| AppError::internal(anyhow::Error::new(e)))?
    }

    /// Commits the shared transaction now, with `advanced` to announce once it is durable.
    async fn commit_all(mut self, advanced: Vec<Appended>) -> Result<(), AppError> {
        self.batch().announcements.extend(advanced);
        let slot = self.slot.take().expect("a turn holds the slot until it ends");
        flush(slot, &self.group.announce).await
    }

    /// Ends the turn of a writer that could not undo its own changes: the whole shared
    /// transaction rolls back, and the writers waiting for it are told that it failed.
    pub(super) fn fail(mut self) {
        if let Some(batch) = self.slot.as_mut().and_then(|slot| slot.take()) {
            for waiter in batch.waiters {
                let _ = waiter.send(false);
            }
        }
    }
}

impl Drop for Turn {
    /// Gives up a turn that did not end (the writer's own savepoint is rolled back by dropping
    /// it). Someone must still commit for writers already waiting: the next writer in line if
    /// there is one, otherwise a task started here.
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        if slot.is_some() && self.group.queued.load(Ordering::SeqCst) == 0 {
            let announce = self.group.announce.clone();
            tokio::spawn(async move {
                if let Err(e) = flush(slot, &announce).await {
                    tracing::error!(error = %crate::error::LogDisplay(&e), "commit of a write group failed");
                }
            });
        }
    }
}

/// Commits the open batch, tells its waiters, and announces what it advanced.
async fn flush(mut slot: OwnedMutexGuard<Option<Batch>>, announce: &Announcer) -> Result<(), AppError> {
    let Some(batch) = slot.take() else { return Ok(()) };
    let result = batch.tx.commit().await;
    // The next group may start as soon as this one is durable.
    drop(slot);
    let ok = result.is_ok();
    for waiter in batch.waiters {
        let _ = waiter.send(ok);
    }
    if ok {
        for a in batch.announcements {
            announce.send(a);
        }
    }
    result.map_err(Into::into)
}

/// Runs the appends of writers that read before their turn (`events::insert_alone`) for them:
/// one task takes what waits, runs it in as few requests as it can inside the group's shared
/// transaction, and commits. A writer is told of its append only once that commit is durable.
#[derive(Clone)]
pub(super) struct Appends(mpsc::UnboundedSender<Append>);

/// One append: its statements in SQLite's form (the writes it records, the event's insert
/// returning its position, the head's move), their values, and the event.
struct Append {
    sql: String,
    values: Vec<sea_orm::Value>,
    event: Event,
    reply: oneshot::Sender<Result<Option<Arc<Event>>, AppError>>,
}

/// An append whose statements ran in the open shared transaction, waiting for its commit.
struct Standing {
    event: Arc<Event>,
    reply: oneshot::Sender<Result<Option<Arc<Event>>, AppError>>,
}

/// How a request of appends ended.
enum Ran {
    /// Every append either stands in the transaction or was told why not.
    Done,
    /// A failure could not be undone: the shared transaction must roll back.
    Broken(AppError),
}

impl Appends {
    /// Starts the task that runs the appends; it ends when the last `Appends` is dropped.
    pub(super) fn start(group: Arc<Group>, conn: DatabaseConnection) -> Appends {
        let (send, inbox) = mpsc::unbounded_channel();
        tokio::spawn(run_appends(group, conn, inbox));
        Appends(send)
    }

    /// Appends `event` with the statements of `sql` (`?` placeholders, `values` in order), which
    /// end with the event's insert returning its position and the head's move. Returns once the
    /// append is durable; `None` when the log refused the event's place (another writer moved
    /// the head), in which case nothing was written.
    pub(super) async fn append(
        &self,
        sql: String,
        values: Vec<sea_orm::Value>,
        event: Event,
    ) -> Result<Option<Arc<Event>>, AppError> {
        let (reply, told) = oneshot::channel();
        self.0
            .send(Append { sql, values, event, reply })
            .map_err(|_| AppError::internal(anyhow::anyhow!("the database's writer has stopped")))?;
        told.await.map_err(|_| AppError::internal(anyhow::anyhow!("an append was dropped before its commit")))?
    }
}

async fn run_appends(group: Arc<Group>, conn: DatabaseConnection, mut inbox: mpsc::UnboundedReceiver<Append>) {
    while let Some(first) = inbox.recv().await {
        let mut next = vec![first];
        let turn = match group.turn(&conn).await {
            Ok(turn) => turn,
            Err(e) => {
                tell_failed(next, &e);
                continue;
            }
        };
        // What arrives while a request runs goes into the same transaction, up to a bound on how
        // long the first writer waits for the commit.
        let mut standing: Vec<Standing> = Vec::new();
        let mut broken = None;
        loop {
            while next.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(a) => next.push(a),
                    Err(_) => break,
                }
            }
            if next.is_empty() {
                break;
            }
            if let Ran::Broken(e) = run_batch(turn.tx(), std::mem::take(&mut next), &mut standing).await {
                broken = Some(e);
                break;
            }
            if standing.len() >= MAX_GROUP {
                break;
            }
        }
        let result = match broken {
            Some(e) => {
                turn.fail();
                Err(e)
            }
            None => {
                let advanced = standing
                    .iter()
                    .map(|s| Appended { stream: s.event.stream.clone(), events: vec![s.event.clone()] })
                    .collect();
                turn.commit_all(advanced).await
            }
        };
        let message = result.as_ref().err().map(|e| crate::error::LogDisplay(e).to_string());
        for s in standing {
            let told = match &message {
                None => Ok(Some(s.event)),
                Some(m) => Err(AppError::internal(anyhow::anyhow!("the shared commit of a write group failed: {m}"))),
            };
            let _ = s.reply.send(told);
        }
        // The writers just told come back soon: their transaction's `BEGIN` need not wait for
        // them.
        if message.is_none()
            && let Err(e) = group.open(&conn).await
        {
            tracing::warn!(error = %crate::error::LogDisplay(&e), "could not open the next write transaction ahead");
        }
    }
}

/// Runs `appends` in one request inside a savepoint; if any of them fails, undoes the request
/// and runs each on its own, so that one append's refusal or error is its alone.
async fn run_batch(tx: &DatabaseTransaction, appends: Vec<Append>, standing: &mut Vec<Standing>) -> Ran {
    if appends.len() > 1 {
        const SAVEPOINT: &str = "attest_batch";
        let mut sql = format!("SAVEPOINT {SAVEPOINT}");
        let mut values = Vec::new();
        for a in &appends {
            sql.push_str("; ");
            sql.push_str(&a.sql);
            values.extend(a.values.iter().cloned());
        }
        sql.push_str(&format!("; RELEASE {SAVEPOINT}"));
        let request = sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::Sqlite, sql, values);
        match tx.query_all_raw(request).await {
            Ok(rows) => return stand(appends, &rows, standing),
            Err(_) => {
                if let Err(e) = tx.execute_unprepared(&format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}")).await {
                    return broken(appends, e.into());
                }
            }
        }
    }
    for a in appends {
        if let Ran::Broken(e) = run_one(tx, a, standing).await {
            return Ran::Broken(e);
        }
    }
    Ran::Done
}

/// Runs one append inside a savepoint of its own.
async fn run_one(tx: &DatabaseTransaction, mut a: Append, standing: &mut Vec<Standing>) -> Ran {
    const SAVEPOINT: &str = "attest_alone";
    let sql = format!("SAVEPOINT {SAVEPOINT}; {}; RELEASE {SAVEPOINT}", a.sql);
    let values = std::mem::take(&mut a.values);
    let request = sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::Sqlite, sql, values);
    match tx.query_all_raw(request).await {
        Ok(rows) => stand(vec![a], &rows, standing),
        Err(err) => {
            // The request stopped at the failing statement: undo what ran before it.
            if let Err(e) = tx.execute_unprepared(&format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}")).await {
                return broken(vec![a], e.into());
            }
            let told = if super::events::taken(&err) { Ok(None) } else { Err(err.into()) };
            let _ = a.reply.send(told);
            Ran::Done
        }
    }
}

/// Records the appends whose request ran, from its rows: one per append, with its position, in
/// order. Every statement runs only when all rows are read: a request that stopped at its first
/// row would leave the head where it was.
fn stand(appends: Vec<Append>, rows: &[sea_orm::QueryResult], standing: &mut Vec<Standing>) -> Ran {
    let positions: Result<Vec<i64>, _> = rows.iter().map(|r| r.try_get::<i64>("", "position")).collect();
    match positions {
        Ok(positions) if positions.len() == appends.len() => {
            for (a, position) in appends.into_iter().zip(positions) {
                standing.push(Standing { event: Arc::new(Event { position, ..a.event }), reply: a.reply });
            }
            Ran::Done
        }
        // The savepoint was released: only the whole group can undo these appends.
        _ => broken(appends, AppError::internal(anyhow::anyhow!("appending events returned no position"))),
    }
}

/// Tells `appends` that the shared transaction fails with `e`.
fn broken(appends: Vec<Append>, e: AppError) -> Ran {
    tracing::error!(error = %crate::error::LogDisplay(&e), "a failed write could not be undone: its group rolls back");
    tell_failed(appends, &e);
    Ran::Broken(e)
}

/// Tells each of `appends` that it failed with `e`.
fn tell_failed(appends: Vec<Append>, e: &AppError) {
    let message = crate::error::LogDisplay(e).to_string();
    for a in appends {
        let _ = a.reply.send(Err(AppError::internal(anyhow::anyhow!("{message}"))));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Queued;
    use crate::db::exec;
    use crate::db::tests::sqlite_db;

    #[tokio::test]
    async fn writers_left_a_commit_by_one_in_line_that_is_cancelled_still_get_it() {
        let (_dir, db) = sqlite_db().await;
        let group = db.group.clone().expect("SQLite writers form groups");

        let turn = group.turn(&db.conn).await.unwrap();
        exec(turn.tx(), "INSERT INTO stream_heads (stream, seq, hash) VALUES ($1, 0, 'h')", ["t-left".into()])
            .await
            .unwrap();
        // Another writer is in line, so this one leaves the commit to it and waits.
        let in_line = Queued::new(&group);
        let done = tokio::spawn(turn.done(Vec::new()));
        loop {
            let waiting = group.slot.try_lock().is_ok_and(|slot| slot.as_ref().is_some_and(|b| b.waiters.len() == 1));
            if waiting {
                break;
            }
            tokio::task::yield_now().await;
        }
        // The writer in line goes away before its turn, as a cancelled request does.
        drop(in_line);
        let told = tokio::time::timeout(Duration::from_secs(10), done).await;
        told.expect("the commit is made without the writer that went away").unwrap().unwrap();
        let head = crate::db::events::head(&db.conn, "t-left").await.unwrap();
        assert_eq!(head, Some((0, "h".to_owned())));
    }
}
