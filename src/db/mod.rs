//! The database: connecting to SQLite or PostgreSQL, running migrations, the write transaction,
//! and every query. Only this module (and the migrations crate) knows sea-orm entities.

pub mod accounts;
pub mod assessments;
pub mod entities;
pub mod events;
mod group;
pub mod org;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use migration::MigratorTrait;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait,
};

use crate::clock::{Clock, Micros};
use crate::config::DatabaseUrl;
use crate::error::AppError;

pub use sea_orm::DatabaseTransaction as Tx;

/// The connection pool, plus what it takes to write safely on each backend.
#[derive(Clone)]
pub struct Db {
    pub conn: DatabaseConnection,
    /// SQLite allows one writer at a time, and a deferred transaction that read first fails with
    /// `SQLITE_BUSY` when it upgrades to write after another writer committed. Writers in the
    /// process therefore take turns, and those that arrive while another works share its commit
    /// (`group`). PostgreSQL needs neither: stream heads are row-locked, and the server already
    /// flushes concurrent commits together.
    group: Option<Arc<group::Group>>,
    /// On SQLite, runs the appends that read before their turn (see `group::Appends`).
    appends: Option<group::Appends>,
    /// Told after each commit which streams it advanced. Live subscribers in this process take
    /// the events from it; other processes learn of commits through PostgreSQL's NOTIFY (see
    /// `events`).
    appended: Announcer,
    /// Parsed templates, which never change once stored.
    pub templates: assessments::TemplateCache,
    /// What recent answer writes left, for the next write of the same user to the same assessment.
    pub answer_states: Arc<assessments::AnswerStates>,
    /// Counts the changes to agencies' streams (users, roles, sessions, units) heard of: moved
    /// after every such commit in this process, and by the live hub when another process
    /// announces one. What was read about a session before it moved may be out of date.
    org_changes: Arc<AtomicU64>,
    /// Answer writes in progress in this process, per stream (see `Db::writing`).
    writing: Arc<std::sync::Mutex<HashMap<String, usize>>>,
}

/// An answer write in progress on a stream, counted until dropped (see `Db::writing`).
pub struct Writing {
    streams: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    stream: String,
    alone: bool,
}

impl Writing {
    /// Whether no other answer write to the stream was in progress in this process when this
    /// one began.
    pub fn alone(&self) -> bool {
        self.alone
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(n) = streams.get_mut(&self.stream) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.stream);
            }
        }
    }
}

/// A stream that a committed transaction advanced, and the events the transaction appended to
/// it, in order: live subscribers in this process take them from here rather than read them back
/// from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Appended {
    pub stream: String,
    pub events: Vec<Arc<crate::events::Event>>,
}

/// Where commits announce what they appended: the listener `Db::on_commit` set, if any.
#[derive(Clone, Default)]
pub(crate) struct Announcer(Arc<std::sync::RwLock<Option<Listener>>>);

type Listener = Arc<dyn Fn(Appended) + Send + Sync>;

impl Announcer {
    /// Whether a listener takes the announcements.
    pub(crate) fn is_set(&self) -> bool {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some()
    }

    pub(crate) fn send(&self, appended: Appended) {
        let listener = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if let Some(listener) = listener {
            listener(appended);
        }
    }
}

/// A write transaction. Dropping it without `commit` rolls back its changes. On SQLite it is a
/// savepoint inside a transaction shared with the writers around it (see `group`).
pub struct WriteTx {
    /// Present until commit or drop.
    tx: Option<DatabaseTransaction>,
    turn: Option<group::Turn>,
    /// The transaction's one reading of the clock: every time it writes (rows and events) is
    /// the same, so that state rebuilt from the log equals the live state exactly.
    now: std::sync::OnceLock<Micros>,
    /// Streams advanced in this transaction, announced after commit.
    advanced: std::sync::Mutex<Vec<Appended>>,
    /// The heads (sequence, hash) of the streams this transaction has locked, as they stand in it.
    heads: std::sync::Mutex<Vec<(String, i64, String)>>,
    appended: Announcer,
    org_changes: Arc<AtomicU64>,
}

impl std::ops::Deref for WriteTx {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        self.tx.as_ref().expect("a WriteTx holds its transaction until it is committed or dropped")
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // Roll back this writer's changes first (dropping a transaction queues its rollback on
        // the connection), then hand the turn on.
        drop(self.tx.take());
        drop(self.turn.take());
    }
}

impl WriteTx {
    /// Commits, then announces the streams it advanced. Nobody learns of an event before it is
    /// durable.
    pub async fn commit(mut self) -> Result<(), AppError> {
        let tx = self.tx.take().expect("a WriteTx is committed once");
        let advanced = std::mem::take(&mut *self.advanced.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let org_changed = advanced.iter().any(|a| crate::events::Stream::is_agency_key(&a.stream));
        match self.turn.take() {
            Some(turn) => turn.commit(tx, advanced).await?,
            None => {
                tx.commit().await?;
                for a in advanced {
                    self.appended.send(a);
                }
            }
        }
        // Before the writer answers anyone: a session read before this commit is not reused after.
        if org_changed {
            self.org_changes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Whether what this transaction appends is announced after commit (`Db::on_commit`).
    pub(crate) fn announced(&self) -> bool {
        self.appended.is_set()
    }

    /// The transaction's time: the clock is read once, on first use.
    pub fn now(&self, clock: &Clock) -> Micros {
        *self.now.get_or_init(|| clock.now_micros())
    }

    /// The head of a stream this transaction has locked: its last sequence and hash.
    pub(crate) fn head(&self, stream: &str) -> Option<(i64, String)> {
        let heads = self.heads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        heads.iter().find(|h| h.0 == stream).map(|h| (h.1, h.2.clone()))
    }

    /// Remembers the head of a stream this transaction holds locked.
    pub(crate) fn set_head(&self, stream: &str, seq: i64, hash: &str) {
        let mut heads = self.heads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match heads.iter_mut().find(|h| h.0 == stream) {
            Some(h) => (h.1, h.2) = (seq, hash.to_owned()),
            None => heads.push((stream.to_owned(), seq, hash.to_owned())),
        }
    }

    /// Records that `event` was appended to its stream, to be announced after commit.
    pub(crate) fn advanced(&self, event: Arc<crate::events::Event>) {
        let mut list = self.advanced.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match list.iter_mut().find(|a| a.stream == event.stream) {
            Some(a) => a.events.push(event),
            None => list.push(Appended { stream: event.stream.clone(), events: vec![event] }),
        }
    }
}

/// Creates the SQLite file if it is missing and puts it in WAL mode, with one connection. The
/// pool opens its first connections concurrently, and each of them sets WAL mode: on a new file,
/// two such changes at once make one of them fail at once with "database is locked" (the change
/// needs a lock that SQLite does not wait for), and the server with it. On a file already in WAL
/// mode, setting it again takes no lock.
async fn prepare_sqlite(url: &DatabaseUrl) -> Result<(), sea_orm::sqlx::Error> {
    use std::str::FromStr;

    use sea_orm::sqlx::sqlite::SqliteConnectOptions;
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
    let options = SqliteConnectOptions::from_str(url.expose())?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    options.connect().await?.close().await
}

impl Db {
    pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Db> {
        let mut opts = ConnectOptions::new(url.expose().to_owned());
        opts.sqlx_logging(false).connect_timeout(Duration::from_secs(10)).acquire_timeout(Duration::from_secs(30));
        if url.is_postgres() {
            // Every statement is prepared once per connection, with parameters for every value.
            // PostgreSQL would still plan many of them afresh on each execution (a "custom" plan,
            // kept when the generic plan's estimate looks no better): planning was a large share
            // of a write's database time, and the generic plans are the same index lookups. With
            // generic plans, 16 clients wrote 3,083 answers/s where they wrote 2,093.
            opts.max_connections(20)
                .min_connections(1)
                .map_sqlx_postgres_opts(|o| o.options([("plan_cache_mode", "force_generic_plan")]));
        } else {
            // Connections to a SQLite file must not be dropped while idle: keep them for good.
            opts.max_connections(8).min_connections(1).idle_timeout(None).max_lifetime(None).map_sqlx_sqlite_opts(
                |o| {
                    o.create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Full)
                        .foreign_keys(true)
                        .busy_timeout(Duration::from_secs(10))
                },
            );
        }
        if !url.is_postgres() {
            prepare_sqlite(url).await.with_context(|| format!("cannot open the database at {url}"))?;
        }
        let conn = Database::connect(opts).await.with_context(|| format!("cannot connect to the database at {url}"))?;
        let appended = Announcer::default();
        let group = (!url.is_postgres()).then(|| group::Group::new(appended.clone()));
        let appends = group.clone().map(|g| group::Appends::start(g, conn.clone()));
        Ok(Db {
            conn,
            group,
            appends,
            appended,
            templates: assessments::TemplateCache::default(),
            answer_states: Arc::default(),
            org_changes: Arc::new(AtomicU64::new(0)),
            writing: Arc::default(),
        })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        migration::Migrator::up(&self.conn, None).await.context("running migrations")?;
        Ok(())
    }

    pub fn is_postgres(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    pub async fn begin_write(&self) -> Result<WriteTx, AppError> {
        let (turn, tx) = match &self.group {
            Some(group) => {
                let (turn, tx) = group.begin(&self.conn).await?;
                (Some(turn), tx)
            }
            None => (None, self.conn.begin().await?),
        };
        Ok(WriteTx {
            tx: Some(tx),
            turn,
            now: std::sync::OnceLock::new(),
            advanced: std::sync::Mutex::new(Vec::new()),
            heads: std::sync::Mutex::new(Vec::new()),
            appended: self.appended.clone(),
            org_changes: self.org_changes.clone(),
        })
    }

    /// Announces what a commit made outside any `WriteTx` appended (`events::insert_alone`), as
    /// `WriteTx::commit` does.
    pub(crate) fn committed(&self, advanced: Vec<Appended>) {
        let org_changed = advanced.iter().any(|a| crate::events::Stream::is_agency_key(&a.stream));
        for a in advanced {
            self.appended.send(a);
        }
        if org_changed {
            self.org_changed();
        }
    }

    /// Counts an answer write to `stream` as in progress until the returned guard is dropped.
    /// A write that reads before it takes its place in the stream (`events::append_alone`) is
    /// refused, and done again, whenever another write to the stream commits in between: when
    /// this process is already writing to the stream, that is likely, and the caller had better
    /// take the stream's lock at once.
    pub fn writing(&self, stream: &str) -> Writing {
        let mut streams = self.writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let n = streams.entry(stream.to_owned()).or_insert(0);
        *n += 1;
        let alone = *n == 1;
        Writing { streams: self.writing.clone(), stream: stream.to_owned(), alone }
    }

    /// How many changes to agencies' streams this process has heard of (see `org_changes`).
    pub fn org_generation(&self) -> u64 {
        self.org_changes.load(Ordering::SeqCst)
    }

    /// Records that an agency's stream changed, or may have changed unheard (another process's
    /// commit, a lost notification).
    pub fn org_changed(&self) {
        self.org_changes.fetch_add(1, Ordering::SeqCst);
    }

    /// Has `listener` called with every committed append made through this `Db`, by the
    /// committing task, once the commit is durable and before the writer answers; it replaces
    /// any listener set before. It must not block: it runs on every writer's path. On
    /// PostgreSQL the listener also takes over telling the other processes (`NOTIFY`), which
    /// transactions do themselves while none is set.
    pub fn on_commit(&self, listener: impl Fn(Appended) + Send + Sync + 'static) {
        *self.appended.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(listener));
    }

    /// Whether the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> bool {
        self.conn.ping().await.is_ok()
    }
}

/// Builds a raw statement written with PostgreSQL's `$1` placeholders for either backend. The
/// placeholders must appear in order, once each.
pub(crate) fn stmt(backend: DbBackend, sql: &str, values: impl IntoIterator<Item = sea_orm::Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => sql.to_owned(),
        _ => {
            let mut out = String::with_capacity(sql.len());
            let mut chars = sql.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                    while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                        chars.next();
                    }
                    out.push('?');
                } else {
                    out.push(c);
                }
            }
            out
        }
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A statement whose result nobody reads, written with PostgreSQL's `$1` placeholders (in order,
/// once each). Run on its own (`run`), or sent with an event in that event's statement
/// (`events::insert`), which on PostgreSQL saves a round trip per write.
pub struct Write {
    pub(crate) sql: &'static str,
    pub(crate) values: Vec<sea_orm::Value>,
}

impl Write {
    /// A statement written with PostgreSQL's `$1` placeholders, in order, once each.
    pub fn new(sql: &'static str, values: Vec<sea_orm::Value>) -> Write {
        Write { sql, values }
    }

    pub(crate) async fn run(self, conn: &impl ConnectionTrait) -> Result<u64, AppError> {
        exec(conn, self.sql, self.values).await
    }
}

/// `sql` with each placeholder `$n` renumbered `$(n + by)`, to combine statements into one.
pub(crate) fn shift_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Runs a raw statement on a connection or transaction.
pub(crate) async fn exec(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Result<u64, AppError> {
    let res = conn.execute_raw(stmt(conn.get_database_backend(), sql, values)).await?;
    Ok(res.rows_affected())
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    use super::{Db, exec, shift_placeholders};
    use crate::config::DatabaseUrl;

    /// A new SQLite file is opened by a pool whose first connections each set WAL mode; two at
    /// once can fail with "database is locked", and the server's first start with it (seen
    /// twice in some forty starts of a loaded machine). A race: each try may pass by luck, so
    /// the test makes many.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_sqlite_database_opens_in_wal_mode_every_time() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..100 {
            let url = DatabaseUrl::new(format!("sqlite://{}?mode=rwc", dir.path().join(format!("{i}.db")).display()));
            let db = Db::connect(&url).await.unwrap_or_else(|e| panic!("try {i}: {e:#}"));
            let row =
                db.conn.query_one_raw(super::stmt(db.backend(), "PRAGMA journal_mode", [])).await.unwrap().unwrap();
            assert_eq!(row.try_get::<String>("", "journal_mode").unwrap(), "wal");
        }
    }

    async fn heads(db: &Db) -> Vec<String> {
        let rows = db
            .conn
            .query_all_raw(super::stmt(db.backend(), "SELECT stream FROM stream_heads ORDER BY stream", []))
            .await
            .unwrap();
        rows.iter().map(|r| r.try_get::<String>("", "stream").unwrap()).filter(|s| s.starts_with("t-")).collect()
    }

    async fn insert_head(tx: &super::WriteTx, stream: &str) {
        exec(&**tx, "INSERT INTO stream_heads (stream, seq, hash) VALUES ($1, 0, 'h')", [stream.into()]).await.unwrap();
    }

    /// A migrated SQLite database in a directory of its own, removed when the directory is dropped.
    pub(super) async fn sqlite_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::new(format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()));
        let db = Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn a_writer_that_gives_up_in_a_group_leaves_nothing_and_the_others_commit_together() {
        let (_dir, db) = sqlite_db().await;
        let group = db.group.clone().expect("SQLite writers form groups");

        let first = db.begin_write().await.unwrap();
        insert_head(&first, "t-first").await;
        // Two more writers queue behind the first: one writes and gives up, one writes and commits.
        let gives_up = tokio::spawn({
            let db = db.clone();
            async move {
                let tx = db.begin_write().await.unwrap();
                insert_head(&tx, "t-given-up").await;
            }
        });
        while group.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let last = tokio::spawn({
            let db = db.clone();
            async move {
                let tx = db.begin_write().await.unwrap();
                insert_head(&tx, "t-last").await;
                tx.commit().await
            }
        });
        while group.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        // Others wait, so the first leaves the commit to them and waits for it.
        first.commit().await.unwrap();
        gives_up.await.unwrap();
        last.await.unwrap().unwrap();
        assert_eq!(heads(&db).await, ["t-first", "t-last"]);
    }

    #[test]
    fn placeholders_are_renumbered_and_nothing_else_changes() {
        assert_eq!(
            shift_placeholders("UPDATE t SET a = $1, b = $2 WHERE id = $10", 3),
            "UPDATE t SET a = $4, b = $5 WHERE id = $13"
        );
        assert_eq!(shift_placeholders("SELECT 1", 5), "SELECT 1");
        assert_eq!(shift_placeholders("SELECT '$' || $1", 1), "SELECT '$' || $2");
    }
}
