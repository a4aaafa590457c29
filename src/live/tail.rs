//! Event streams to subscribers. One tailer per stream with subscribers reads what is new from
//! the log once per wake-up and hands the same `Arc<Event>` to every subscriber, through a
//! bounded buffer each. A subscriber first reads what it missed from the log itself, then takes
//! the tailer's items, dropping what it already delivered and reading again from the log when it
//! sees a gap: every event exactly once, in order, without a gap.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use tokio::sync::Notify;

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
    /// The last sequence handed to the subscribers. Held while handing events over, so that
    /// the tailer's reads and this process's commits hand each event over once, in order.
    last: Mutex<i64>,
}

/// The tailer's side of a subscriber's buffer. Dropping it (the subscriber was cut off, or the
/// tailer stopped) closes the buffer: the subscriber takes what is left, then learns why.
struct Subscriber(Arc<Inbox>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        let waker = {
            let mut inbox = lock(&self.0.state);
            inbox.closed = true;
            inbox.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// One subscriber's bounded buffer of events. A subscriber holds one for as long as it lives, so
/// it is kept small: a queue that only takes room while events wait in it, rather than a
/// channel, whose blocks and cache-padded fields take about a kibibyte even when empty.
struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    items: VecDeque<Arc<Event>>,
    waker: Option<Waker>,
    /// The tailer let go of this subscriber.
    closed: bool,
    /// Because its buffer was full.
    cut: bool,
}

enum Offer {
    Taken,
    Full,
    /// The subscriber is gone.
    Gone,
}

impl Subscriber {
    /// Hands `item` over unless the buffer holds `limit` events already.
    fn offer(&self, item: &Arc<Event>, limit: usize) -> Offer {
        // The subscriber's stream holds the other reference while it lives.
        if Arc::strong_count(&self.0) < 2 {
            return Offer::Gone;
        }
        let waker = {
            let mut inbox = lock(&self.0.state);
            if inbox.items.len() >= limit {
                inbox.cut = true;
                return Offer::Full;
            }
            inbox.items.push_back(item.clone());
            inbox.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Offer::Taken
    }
}

impl Inbox {
    /// The next event, or `None` once the tailer let go and the buffer is empty.
    async fn recv(&self) -> Option<Arc<Event>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Arc<Event>>> {
        let mut inbox = lock(&self.state);
        if let Some(event) = inbox.items.pop_front() {
            // A burst may have grown the buffer: give the room back once it is drained.
            if inbox.items.is_empty() && inbox.items.capacity() > 8 {
                inbox.items = VecDeque::new();
            }
            return Poll::Ready(Some(event));
        }
        if inbox.closed {
            return Poll::Ready(None);
        }
        if !inbox.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            inbox.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    fn was_cut(&self) -> bool {
        lock(&self.state).cut
    }
}

impl Tailer {
    pub(crate) fn wake(&self) {
        // A permit is stored when the tailer is busy reading, so a wake-up is never lost.
        self.notify.notify_one();
    }

    /// Wakes the tailer for a commit that moved its stream to `seq`, unless that event was
    /// handed over already (this server's own commits come back as notifications too).
    pub(crate) fn wake_for(&self, seq: i64) {
        if *lock(&self.last) < seq {
            self.wake();
        }
    }

    /// Hands over `events`, committed by this process, in order, skipping those handed over
    /// already. At a gap (a commit not heard of yet, from another process or announced later),
    /// the tailer reads the log instead.
    pub(crate) fn deliver(&self, hub: &Hub, events: &[Arc<Event>]) {
        let mut last = lock(&self.last);
        for event in events {
            if event.seq <= *last {
                continue;
            }
            if event.seq > *last + 1 {
                drop(last);
                self.wake();
                return;
            }
            fan_out(hub, self, event.clone());
            *last = event.seq;
        }
    }
}

/// Adds a subscriber to the stream's tailer, starting the tailer if there is none. A new tailer
/// reads from `from`, the position the first subscriber has already delivered.
fn register(hub: &Hub, stream: &events::Stream, from: i64) -> Arc<Inbox> {
    let inbox = Arc::new(Inbox { state: Mutex::new(InboxState::default()) });
    let key = stream.key();
    let mut tailers = lock(&hub.inner.tailers);
    let tailer = tailers.entry(key.clone()).or_insert_with(|| {
        let t = Arc::new(Tailer {
            key,
            stream: stream.clone(),
            notify: Notify::new(),
            subscribers: Mutex::new(Vec::new()),
            last: Mutex::new(from),
        });
        tokio::spawn(run(hub.clone(), t.clone()));
        t
    });
    lock(&tailer.subscribers).push(Subscriber(inbox.clone()));
    inbox
}

/// A tailer's life: read what is new on every wake-up or poll, until nobody listens.
async fn run(hub: Hub, t: Arc<Tailer>) {
    let settings = hub.settings().clone();
    let mut shutdown = hub.shutting_down();
    loop {
        {
            // Registration holds the same lock, so no subscriber can join a tailer that is
            // leaving: it starts a new one instead.
            let mut tailers = lock(&hub.inner.tailers);
            let mut subscribers = lock(&t.subscribers);
            subscribers.retain(|s| Arc::strong_count(&s.0) > 1);
            if subscribers.is_empty() || *shutdown.borrow() {
                if tailers.get(&t.key).is_some_and(|x| Arc::ptr_eq(x, &t)) {
                    tailers.remove(&t.key);
                }
                return;
            }
        }
        read_new(&hub, &t).await;
        tokio::select! {
            _ = t.notify.notified() => {}
            _ = tokio::time::sleep(settings.poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Reads every event after the last one handed over, and hands each to the subscribers.
async fn read_new(hub: &Hub, t: &Tailer) {
    let page = hub.settings().page;
    loop {
        let after = *lock(&t.last);
        let batch = match events::page(&hub.inner.db.conn, &t.stream, after, page).await {
            Ok(batch) => batch,
            Err(err) => {
                // The next wake-up or poll tries again from the same position.
                tracing::warn!(stream = %t.key, error = %LogDisplay(&err), "live: reading the log failed");
                return;
            }
        };
        let n = batch.len();
        {
            // A commit of this process may have handed some of these over meanwhile.
            let mut last = lock(&t.last);
            for event in batch {
                if event.seq == *last + 1 {
                    *last = event.seq;
                    fan_out(hub, t, Arc::new(event));
                }
            }
        }
        if (n as u64) < page {
            return;
        }
    }
}

/// Offers one event to every subscriber without waiting: a full buffer cuts that subscriber off.
fn fan_out(hub: &Hub, t: &Tailer, item: Arc<Event>) {
    let limit = hub.settings().buffer;
    lock(&t.subscribers).retain(|s| match s.offer(&item, limit) {
        Offer::Taken => true,
        Offer::Full => {
            hub.inner.cut_off.fetch_add(1, Ordering::Relaxed);
            false
        }
        Offer::Gone => false,
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
    let db = state.db.clone();
    let stream = events::Stream::Assessment(id);
    // The turn comes first and the reads are boxed: the thousands of subscriptions that may wait
    // for their turn at once each hold their place in line, not room for the reads.
    let first = {
        let _turn = state.live.setting_up().await;
        Box::pin(async {
            crate::assessments::assessment(state, actor, id).await?;
            events::page(&db.conn, &stream, after_seq, page).await
        })
        .await?
    };
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
        let inbox = registered.expect("the loop above only ends once registered");
        while let Some(event) = inbox.recv().await {
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
        if inbox.was_cut() {
            yield Err(Ended::TooSlow { after_seq: last });
        } else {
            yield Err(Ended::Interrupted { after_seq: last });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64) -> Arc<Event> {
        Arc::new(Event {
            position: seq,
            stream: "assessment:test".into(),
            seq,
            kind: "answer.set".into(),
            actor: "system".into(),
            at: String::new(),
            payload: serde_json::Value::Null,
            prev_hash: String::new(),
            hash: String::new(),
        })
    }

    fn inbox() -> (Subscriber, Arc<Inbox>) {
        let inbox = Arc::new(Inbox { state: Mutex::new(InboxState::default()) });
        (Subscriber(inbox.clone()), inbox)
    }

    #[tokio::test]
    async fn a_subscriber_takes_what_was_offered_then_learns_it_was_cut_off_when_its_buffer_was_full() {
        let (tailer_side, inbox) = inbox();
        assert!(matches!(tailer_side.offer(&event(1), 2), Offer::Taken));
        assert!(matches!(tailer_side.offer(&event(2), 2), Offer::Taken));
        assert!(matches!(tailer_side.offer(&event(3), 2), Offer::Full));
        drop(tailer_side);
        assert_eq!(inbox.recv().await.map(|e| e.seq), Some(1));
        assert_eq!(inbox.recv().await.map(|e| e.seq), Some(2));
        assert!(inbox.recv().await.is_none());
        assert!(inbox.was_cut());
    }

    #[tokio::test]
    async fn a_waiting_subscriber_wakes_on_an_offer_and_on_the_tailer_letting_go() {
        let (tailer_side, inbox) = inbox();
        let waiting = tokio::spawn({
            let inbox = inbox.clone();
            async move { (inbox.recv().await.map(|e| e.seq), inbox.recv().await.map(|e| e.seq)) }
        });
        tokio::task::yield_now().await;
        assert!(matches!(tailer_side.offer(&event(7), 8), Offer::Taken));
        drop(tailer_side);
        assert_eq!(waiting.await.unwrap(), (Some(7), None));
        assert!(!inbox.was_cut());
    }

    #[test]
    fn a_subscriber_that_went_away_is_not_offered_anything() {
        let (tailer_side, inbox) = inbox();
        drop(inbox);
        assert!(matches!(tailer_side.offer(&event(1), 8), Offer::Gone));
    }
}
