//! Live collaboration: streams of committed events to subscribers, who is looking at which
//! question (presence), and unit progress as it changes. Nothing here writes to the log.
//!
//! Architecture invariant: the log is the source; notifications only wake. A wake-up (this
//! process's `Db::appended`, PostgreSQL's `NOTIFY`, or the periodic safety poll) makes a stream's
//! tailer read what is new from the database after the last sequence it saw. A lost or doubled
//! notification therefore only delays or repeats a read, and never loses or invents an event.

mod pg;
pub mod presence;
pub mod progress;
pub mod tail;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit, broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::{DatabaseUrl, ServeConfig};
use crate::db::Db;
use crate::ids::UserId;

/// The limits and intervals of live delivery, taken from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Events buffered per subscriber before it is cut off as too slow.
    pub buffer: usize,
    /// Events read from the database per query.
    pub page: u64,
    /// How often a tailer reads the database even without a wake-up.
    pub poll: Duration,
    /// The least time between two unit progress updates of one subscription.
    pub progress_interval: Duration,
    /// How often each server publishes its presence rooms again (PostgreSQL), so that the others
    /// keep them.
    pub presence_heartbeat: Duration,
    /// Another server's presence entries not published again for this long are dropped.
    pub presence_timeout: Duration,
}

impl Settings {
    pub fn from_config(config: &ServeConfig) -> Settings {
        let presence_timeout = Duration::from_millis(
            config.presence_timeout_ms.unwrap_or(config.ws_idle_timeout_secs.saturating_mul(1000)).max(100),
        );
        // Three heartbeats fit in the timeout, so a lost notification or two drop nobody.
        let presence_heartbeat = Duration::from_millis(config.presence_heartbeat_ms.max(10)).min(presence_timeout / 3);
        Settings {
            buffer: config.live_buffer.max(1),
            page: 500,
            poll: Duration::from_millis(config.live_poll_ms.max(10)),
            progress_interval: Duration::from_millis(config.live_progress_interval_ms),
            presence_heartbeat,
            presence_timeout,
        }
    }
}

/// The per-server hub of live delivery, held in `AppState`. Cloning it is cheap.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    url: DatabaseUrl,
    settings: Settings,
    /// One tailer per stream that has subscribers, by stream key.
    tailers: Mutex<HashMap<String, Arc<tail::Tailer>>>,
    /// The key of every stream that advanced, for unit progress subscriptions.
    advanced: broadcast::Sender<Arc<str>>,
    /// The key of every agency stream that advanced (users, roles, sessions, units), or `*` when
    /// any may have: open connections of that agency check their session and rights again.
    org: broadcast::Sender<Arc<str>>,
    presence: presence::Registry,
    /// Open websocket connections per user.
    connections: Mutex<HashMap<UserId, usize>>,
    /// Becomes `true` when the server shuts down: long-lived connections end.
    shutdown: watch::Sender<bool>,
    /// Subscribers cut off for falling behind, since the server started.
    cut_off: AtomicU64,
    /// Turns to set up a connection or subscription (see `Hub::setting_up`).
    setup: Semaphore,
    /// On PostgreSQL, this process's commits not yet announced to the other servers.
    commits: Option<pg::Commits>,
}

/// Connections and subscriptions set up at once. Enough to keep the database pool busy.
const SETUP_AT_ONCE: usize = 16;

/// Locks a std mutex. The data behind these mutexes stays consistent even if a holder panicked
/// (every critical section is a single map or list operation), so a poisoned lock is used as is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    pub fn new(db: Db, url: DatabaseUrl, settings: Settings) -> Hub {
        let (advanced, _) = broadcast::channel(1024);
        let (org, _) = broadcast::channel(16);
        let (shutdown, _) = watch::channel(false);
        let presence = presence::Registry::new(url.is_postgres(), settings.presence_timeout);
        let commits = url.is_postgres().then(pg::Commits::default);
        Hub {
            inner: Arc::new(Inner {
                db,
                url,
                settings,
                tailers: Mutex::new(HashMap::new()),
                advanced,
                org,
                presence,
                connections: Mutex::new(HashMap::new()),
                shutdown,
                cut_off: AtomicU64::new(0),
                setup: Semaphore::new(SETUP_AT_ONCE),
                commits,
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The presence rooms of this server.
    pub fn presence(&self) -> &presence::Registry {
        &self.inner.presence
    }

    /// Starts the tasks that turn commits into wake-ups: this process's announcements and, on
    /// PostgreSQL, a listener for other servers' commits and presence, and the publisher of this
    /// server's presence. They stop when `Running` is dropped or stopped.
    pub fn start(&self) -> Running {
        // This process's commits hand their events over from the committing task itself: no
        // task in between. Weak, since the database outlives no hub but must not keep one alive.
        let hub = Arc::downgrade(&self.inner);
        self.inner.db.on_commit(move |appended| {
            if let Some(inner) = hub.upgrade() {
                Hub { inner }.deliver(&appended);
            }
        });
        let mut tasks = Vec::new();
        let mut publisher = None;
        if self.inner.url.is_postgres() {
            tasks.push(tokio::spawn(pg::announce(self.clone())));
            tasks.push(tokio::spawn(pg::listen(self.clone())));
            publisher = Some(tokio::spawn(pg::publish(self.clone())));
        }
        Running { hub: self.clone(), tasks, publisher }
    }

    /// Tells the tailer of `stream`, if any, that it advanced to `seq`, and unit progress
    /// subscriptions that something changed.
    pub fn wake(&self, stream: &str, seq: i64) {
        if let Some(t) = lock(&self.inner.tailers).get(stream) {
            t.wake_for(seq);
        }
        self.tell_progress(stream);
    }

    /// Hands the events a commit of this process appended to the tailer of their stream, if any,
    /// which passes them on without reading them back from the log (or reads, if it sees a gap).
    fn deliver(&self, appended: &crate::db::Appended) {
        if let (Some(first), Some(last)) = (appended.events.first(), appended.events.last()) {
            // When each event was committed, for `attest-load`'s latency from commit to client
            // (the log line's own timestamp).
            tracing::debug!(target: "attest::commits", stream = %appended.stream, first_seq = first.seq, last_seq = last.seq);
            if let Some(commits) = &self.inner.commits {
                commits.add(&appended.stream, last.seq);
            }
        }
        let tailer = lock(&self.inner.tailers).get(&appended.stream).cloned();
        if let Some(t) = tailer {
            t.deliver(self, &appended.events);
        }
        self.tell_progress(&appended.stream);
    }

    fn tell_progress(&self, stream: &str) {
        if crate::events::Stream::is_agency_key(stream) {
            self.org_changed(stream);
        }
        if self.inner.advanced.receiver_count() > 0 {
            let _ = self.inner.advanced.send(Arc::from(stream));
        }
    }

    /// Wakes every tailer and progress subscription, after notifications may have been lost.
    pub fn wake_all(&self) {
        for t in lock(&self.inner.tailers).values() {
            t.wake();
        }
        self.org_changed("*");
        if self.inner.advanced.receiver_count() > 0 {
            let _ = self.inner.advanced.send(Arc::from("*"));
        }
    }

    /// Tells the open connections of the agency whose stream is `key` (`*`: of every agency) to
    /// check their session and rights again. Sessions read before are not reused after it.
    fn org_changed(&self, key: &str) {
        self.inner.db.org_changed();
        if self.inner.org.receiver_count() > 0 {
            let _ = self.inner.org.send(Arc::from(key));
        }
    }

    /// Hears of every change to an agency's stream (see `org_changed`).
    pub fn org_changes(&self) -> broadcast::Receiver<Arc<str>> {
        self.inner.org.subscribe()
    }

    /// Tells long-lived connections and tailers that the server is shutting down.
    pub fn stop(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// A receiver that turns `true` when the server shuts down.
    pub fn shutting_down(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Counts a websocket connection of `user`, refusing it beyond `max` at once. The returned
    /// guard gives the slot back when dropped.
    pub fn connect(&self, user: UserId, max: usize) -> Option<ConnectionSlot> {
        let mut map = lock(&self.inner.connections);
        let n = map.entry(user).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot { hub: self.clone(), user })
    }

    /// A turn to set up a websocket connection or a subscription: the database reads that
    /// authenticate, authorize and catch up. Few run at once, so that thousands of clients
    /// (re)connecting together wait in line with a few bytes each, instead of all holding their
    /// reads' state at the same moment, which would stay with the process as its memory peak.
    pub async fn setting_up(&self) -> SemaphorePermit<'_> {
        self.inner.setup.acquire().await.expect("the setup semaphore is never closed")
    }

    /// How many tailers are running: one per stream with subscribers.
    pub fn tailer_count(&self) -> usize {
        lock(&self.inner.tailers).len()
    }

    /// How many subscribers were cut off for falling behind, since the server started.
    pub fn cut_off_count(&self) -> u64 {
        self.inner.cut_off.load(Ordering::Relaxed)
    }
}

/// A websocket connection's place in the per-user limit.
pub struct ConnectionSlot {
    hub: Hub,
    user: UserId,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.hub.inner.connections);
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

/// The running wake-up tasks. Dropping it stops them and tells connections to close.
pub struct Running {
    hub: Hub,
    tasks: Vec<JoinHandle<()>>,
    /// This server's presence publisher, on PostgreSQL: it ends by itself once told to stop.
    publisher: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops the tasks and, on PostgreSQL, lets the presence publisher tell the other servers
    /// that everyone present here left, so that they need not wait for the presence timeout.
    pub async fn stop(mut self) {
        self.hub.stop();
        for t in &self.tasks {
            t.abort();
        }
        if let Some(mut publisher) = self.publisher.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut publisher).await.is_err()
        {
            publisher.abort();
            tracing::warn!("live: could not tell other servers that this one stopped");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.hub.stop();
        for t in self.tasks.iter().chain(&self.publisher) {
            t.abort();
        }
    }
}
