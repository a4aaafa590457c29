//! Group commit for SQLite. Every write transaction on SQLite pays one sync of the disk at commit,
//! and writers queue behind each other anyway (one writer at a time). So writers that arrive
//! while another is working join one shared database transaction: each runs inside its own
//! savepoint, so that its failure rolls back its own changes only, and the last writer of the
//! group commits for all, with one sync. Nobody is told of success before that shared commit:
//! a writer whose savepoint was released waits for it, and fails if it fails. A writer's turn is
//! either a `WriteTx` (savepoint begun, statements, released) or, for a write that read before its
//! turn, one request that opens and releases its savepoint itself (`events::insert_alone`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use super::{Announcer, Appended};
use crate::error::AppError;

/// The most writers one shared commit acknowledges: a bound on how long the first of them waits.
const MAX_GROUP: usize = 512;

/// The writers of one process to one SQLite database.
pub(super) struct Group {
    slot: Arc<Mutex<Option<Batch>>>,
    /// Writers waiting for their turn. A writer that finishes while others wait leaves the commit
    /// to them.
    queued: AtomicUsize,
}

/// The shared transaction, open while a group forms.
pub(super) struct Batch {
    tx: DatabaseTransaction,
    /// Writers that finished and wait for the shared commit: told `true` once it is durable.
    waiters: Vec<oneshot::Sender<bool>>,
    /// What to announce once it is.
    announcements: Vec<Appended>,
}

/// A writer's turn: the group's slot, held from `begin` to commit or drop.
pub(super) struct Turn {
    group: Arc<Group>,
    slot: OwnedMutexGuard<Option<Batch>>,
}

/// Counts a writer as queued while it waits, even if its future is dropped while waiting.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Queued(n)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Group {
    pub(super) fn new() -> Arc<Group> {
        Arc::new(Group { slot: Arc::new(Mutex::new(None)), queued: AtomicUsize::new(0) })
    }

    /// Writers waiting for their turn.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Waits for this writer's turn and joins the open shared transaction, or opens one.
    pub(super) async fn turn(self: &Arc<Self>, conn: &DatabaseConnection) -> Result<Turn, AppError> {
        let mut slot = {
            let _queued = Queued::new(&self.queued);
            self.slot.clone().lock_owned().await
        };
        if slot.is_none() {
            *slot = Some(Batch { tx: conn.begin().await?, waiters: Vec::new(), announcements: Vec::new() });
        }
        Ok(Turn { group: self.clone(), slot })
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
    /// The shared transaction.
    pub(super) fn tx(&self) -> &DatabaseTransaction {
        &self.slot.as_ref().expect("a turn holds an open batch").tx
    }

    /// Releases the writer's savepoint and returns once the shared commit that includes it is
    /// durable (see `done`).
    pub(super) async fn commit(
        self,
        savepoint: DatabaseTransaction,
        advanced: Vec<Appended>,
        announce: &Announcer,
    ) -> Result<(), AppError> {
        if let Err(e) = savepoint.commit().await {
            self.abandon(announce);
            return Err(e.into());
        }
        self.done(advanced, announce).await
    }

    /// Ends the turn of a writer whose changes stand in the shared transaction, and returns once
    /// the shared commit that includes them is durable: made by this writer if nobody else is
    /// waiting, or by a later one.
    pub(super) async fn done(mut self, advanced: Vec<Appended>, announce: &Announcer) -> Result<(), AppError> {
        let batch = self.slot.as_mut().expect("a turn holds an open batch");
        batch.announcements.extend(advanced);
        if self.group.queued.load(Ordering::SeqCst) > 0 && batch.waiters.len() < MAX_GROUP {
            let (told, wait) = oneshot::channel();
            batch.waiters.push(told);
            drop(self);
            return match wait.await {
                Ok(true) => Ok(()),
                _ => Err(AppError::internal(anyhow::anyhow!("the shared commit of a write group failed"))),
            };
        }
        flush(self.slot, announce).await
    }

    /// Ends the turn of a writer that could not undo its own changes: the whole shared
    /// transaction rolls back, and the writers waiting for it are told that it failed.
    pub(super) fn fail(mut self) {
        if let Some(batch) = self.slot.take() {
            for waiter in batch.waiters {
                let _ = waiter.send(false);
            }
        }
    }

    /// Gives up the turn of a writer that did not commit (its savepoint is rolled back by
    /// dropping it). Someone must still commit for writers already waiting: the next writer in
    /// line if there is one, otherwise a task started here.
    pub(super) fn abandon(self, announce: &Announcer) {
        if self.group.queued.load(Ordering::SeqCst) == 0 && self.slot.is_some() {
            let announce = announce.clone();
            let slot = self.slot;
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
