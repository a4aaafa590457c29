//! Event streams to subscribers. One tailer per stream with subscribers reads what is new from
//! the log once per wake-up and hands the same `Arc<Event>` to every subscriber, through a
//! bounded buffer each. A subscriber first reads what it missed from the log itself, then takes
//! the tailer's items, dropping what it already delivered and reading again from the log when it
//! sees a gap: every event exactly once, in order, without a gap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use tokio::sync::{Notify, mpsc};

use super::{Hub, lock};
use crate::auth::Actor;
use crate::error::{AppError, LogDisplay};
use crate::events::{self, Event};
use crate::ids::AssessmentId;
use crate::state::AppState;

/// Why a live event stream ended. Either way the subscriber resumes by subscribing again with
/// `after_seq`, and misses nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The subscriber fell too far behind: its buffer was full, and the server does not let one
    /// slow reader hold memory or hold up the others.
    TooSlow { after_seq: i64 },
    /// The server is shutting down or could not read the log.
    Interrupted { after_seq: i64 },
}

/// The shared reader of one stream.
pub(crate) struct Tailer {
    key: String,
    stream: events::Stream,
    notify: Notify,
    subscribers: Mutex<Vec<Subscriber>>,
}

struct Subscriber {
    tx: mpsc::Sender<Arc<Event>>,
    /// Set when the tailer dropped this subscriber because its buffer was full.
    cut: Arc<AtomicBool>,
}

impl Tailer {
    pub(crate) fn wake(&self) {
        // A permit is stored when the tailer is busy reading, so a wake-up is never lost.
        self.notify.notify_one();
    }
}

/// Adds a subscriber to the stream's tailer, starting the tailer if there is none. A new tailer
/// reads from `from`, the position the first subscriber has already delivered.
fn register(hub: &Hub, stream: &events::Stream, from: i64) -> (mpsc::Receiver<Arc<Event>>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel(hub.settings().buffer);
    let cut = Arc::new(AtomicBool::new(false));
    let key = stream.key();
    let mut tailers = lock(&hub.inner.tailers);
    let tailer = tailers.entry(key.clone()).or_insert_with(|| {
        let t = Arc::new(Tailer {
            key,
            stream: stream.clone(),
            notify: Notify::new(),
            subscribers: Mutex::new(Vec::new()),
        });
        tokio::spawn(run(hub.clone(), t.clone(), from));
        t
    });
    lock(&tailer.subscribers).push(Subscriber { tx, cut: cut.clone() });
    (rx, cut)
}

/// A tailer's life: read what is new on every wake-up or poll, until nobody listens.
async fn run(hub: Hub, t: Arc<Tailer>, mut last: i64) {
    let settings = hub.settings().clone();
    let mut shutdown = hub.shutting_down();
    loop {
        {
            // Registration holds the same lock, so no subscriber can join a tailer that is
            // leaving: it starts a new one instead.
            let mut tailers = lock(&hub.inner.tailers);
            if lock(&t.subscribers).is_empty() || *shutdown.borrow() {
                if tailers.get(&t.key).is_some_and(|x| Arc::ptr_eq(x, &t)) {
                    tailers.remove(&t.key);
                }
                return;
            }
        }
        last = read_new(&hub, &t, last).await;
        tokio::select! {
            _ = t.notify.notified() => {}
            _ = tokio::time::sleep(settings.poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Reads every event after `last` and hands each to the subscribers; returns the new position.
async fn read_new(hub: &Hub, t: &Tailer, mut last: i64) -> i64 {
    let page = hub.settings().page;
    loop {
        let batch = match events::page(&hub.inner.db.conn, &t.stream, last, page).await {
            Ok(batch) => batch,
            Err(err) => {
                // The next wake-up or poll tries again from the same position.
                tracing::warn!(stream = %t.key, error = %LogDisplay(&err), "live: reading the log failed");
                return last;
            }
        };
        let n = batch.len();
        for event in batch {
            last = event.seq;
            fan_out(hub, t, Arc::new(event));
        }
        if (n as u64) < page {
            return last;
        }
    }
}

/// Offers one event to every subscriber without waiting: a full buffer cuts that subscriber off.
fn fan_out(hub: &Hub, t: &Tailer, item: Arc<Event>) {
    lock(&t.subscribers).retain(|s| match s.tx.try_send(item.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            s.cut.store(true, Ordering::Release);
            hub.inner.cut_off.fetch_add(1, Ordering::Relaxed);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
}

/// The events of an assessment after `after_seq`, then each new one as it is committed. Allowed
/// to everyone who may see the assessment, as its history is (`assessmentHistory`): the people
/// co-editing it must see each other's changes. Another agency's assessment is not found.
pub async fn assessment_events(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    after_seq: i64,
) -> Result<impl Stream<Item = Result<Arc<Event>, Ended>> + Send + use<>, AppError> {
    if after_seq < 0 {
        return Err(AppError::invalid("afterSeq", "must be 0 or more"));
    }
    let hub = state.live.clone();
    let page = hub.settings().page;
    let turn = state.live.setting_up().await;
    crate::assessments::assessment(state, actor, id).await?;
    let db = state.db.clone();
    let stream = events::Stream::Assessment(id);
    let first = events::page(&db.conn, &stream, after_seq, page).await?;
    drop(turn);
    Ok(async_stream::stream! {
        let mut last = after_seq;
        let mut batch = first;
        let mut registered = None;
        // Catch up from the log; register with the tailer; catch up once more, for what was
        // committed in between; then take the tailer's items.
        loop {
            let full = batch.len() as u64 >= page;
            for event in batch.drain(..) {
                if event.seq == last + 1 {
                    last = event.seq;
                    yield Ok(Arc::new(event));
                }
            }
            if !full {
                if registered.is_some() {
                    break;
                }
                registered = Some(register(&hub, &stream, last));
            }
            // Database reads are boxed inside the stream: its state is kept, between events, for
            // as long as the subscription lives, and should not reserve room for a query.
            batch = match Box::pin(events::page(&db.conn, &stream, last, page)).await {
                Ok(b) => b,
                Err(err) => {
                    tracing::warn!(error = %LogDisplay(&err), "live: catching up failed");
                    yield Err(Ended::Interrupted { after_seq: last });
                    return;
                }
            };
        }
        // The catch-up pages are done: give their buffer back before waiting, perhaps for hours.
        drop(batch);
        let (mut rx, cut) = registered.expect("the loop above only ends once registered");
        while let Some(event) = rx.recv().await {
            if event.seq <= last {
                continue;
            }
            // A gap: events the tailer read before this subscriber joined. The log has them.
            while event.seq > last + 1 {
                match Box::pin(events::page(&db.conn, &stream, last, page.min((event.seq - 1 - last) as u64))).await {
                    Ok(missing) if !missing.is_empty() => {
                        for e in missing {
                            if e.seq == last + 1 {
                                last = e.seq;
                                yield Ok(Arc::new(e));
                            }
                        }
                    }
                    Ok(_) => {
                        yield Err(Ended::Interrupted { after_seq: last });
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(error = %LogDisplay(&err), "live: filling a gap failed");
                        yield Err(Ended::Interrupted { after_seq: last });
                        return;
                    }
                }
            }
            if event.seq == last + 1 {
                last = event.seq;
                yield Ok(event);
            }
        }
        // The tailer let go of this subscriber: it was too slow, or the server is stopping.
        if cut.load(Ordering::Acquire) {
            yield Err(Ended::TooSlow { after_seq: last });
        } else {
            yield Err(Ended::Interrupted { after_seq: last });
        }
    })
}
