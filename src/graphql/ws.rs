//! The GraphQL protocol over an open websocket: graphql-transport-ws, and the older graphql-ws
//! (subscriptions-transport-ws), which differs only in some message names. `transport` reads
//! `connection_init` and authenticates; `Protocol` takes over after that, as a stream of the
//! messages to send, polled by the connection only when the socket can take one.
//!
//! Operations run through the schema as usual (parsing, validation, limits, authorization in
//! each resolver). What this module adds is the sending of events that were already rendered: an
//! `assessmentEvents` subscription hands the events whose payload another subscriber's identical
//! request already rendered to its `Relay`, and they go out as that shared text, without passing
//! through the executor or the serializer again (see `live`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_graphql::Data;
use async_graphql::futures_util::stream::BoxStream;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message};
use futures_util::task::{ArcWake, AtomicWaker};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use super::AttestSchema;
use super::live::{self, Relay};

/// Which of the two websocket protocols the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `graphql-transport-ws`.
    TransportWs,
    /// `graphql-ws`, the protocol of subscriptions-transport-ws.
    Legacy,
}

impl Dialect {
    /// The dialect of a `Sec-WebSocket-Protocol` value.
    pub fn parse(name: &str) -> Option<Dialect> {
        if name.eq_ignore_ascii_case("graphql-transport-ws") {
            Some(Dialect::TransportWs)
        } else if name.eq_ignore_ascii_case("graphql-ws") {
            Some(Dialect::Legacy)
        } else {
            None
        }
    }

    /// The subprotocols this server speaks, in order of preference.
    pub const OFFERED: [&'static str; 2] = ["graphql-transport-ws", "graphql-ws"];

    fn next_type(self) -> &'static str {
        match self {
            Dialect::TransportWs => "next",
            Dialect::Legacy => "data",
        }
    }
}

/// Close codes of graphql-transport-ws used here.
mod close {
    pub const INVALID_MESSAGE: u16 = 4400;
    pub const DUPLICATE_ID: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
}

/// A message from the client, after `connection_init`. Short-lived, so its size does not matter.
#[derive(Deserialize)]
#[allow(clippy::large_enum_variant)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {},
    #[serde(alias = "start")]
    Subscribe {
        id: String,
        payload: async_graphql::Request,
    },
    #[serde(alias = "stop")]
    Complete {
        id: String,
    },
    ConnectionTerminate,
    Ping {},
    Pong {},
}

/// One running operation.
struct Operation {
    id: Box<str>,
    /// The text of its `next` messages up to the payload: `{"type":"next","id":"…","payload":`.
    prefix: Box<str>,
    relay: Arc<Relay>,
    responses: BoxStream<'static, async_graphql::Response>,
}

impl Operation {
    fn frame(&self, payload: &str) -> Message {
        Message::Text(live::framed(&self.prefix, payload).into())
    }
}

/// The protocol of one connection whose `connection_init` was accepted: a stream of the messages
/// to send, ending after a close frame or when the client's messages end.
pub struct Protocol<I> {
    schema: AttestSchema,
    dialect: Dialect,
    inbound: I,
    /// The client's messages are polled only when they woke the connection.
    inbound_gate: Gate,
    /// The connection's data (the caller), shared by its operations.
    data: Arc<Data>,
    operations: Vec<Operation>,
    /// Messages ready to go, in order. Holds at most what one poll of each operation produced.
    queue: VecDeque<Message>,
    closed: bool,
}

impl<I: Stream<Item = Bytes> + Unpin> Protocol<I> {
    /// The protocol after an accepted `connection_init`: its first message is the acknowledgement.
    pub fn new(schema: AttestSchema, dialect: Dialect, inbound: I, data: Data) -> Protocol<I> {
        let ack = Message::Text(r#"{"type":"connection_ack"}"#.into());
        Protocol {
            schema,
            dialect,
            inbound,
            inbound_gate: Gate::new(),
            data: Arc::new(data),
            operations: Vec::new(),
            queue: VecDeque::from([ack]),
            closed: false,
        }
    }

    fn close(&mut self, code: u16, reason: String) -> Message {
        self.closed = true;
        self.operations.clear();
        self.queue.clear();
        Message::Close(Some(CloseFrame { code, reason: reason.into() }))
    }

    /// Handles one client message; a message that ends the connection is returned.
    fn receive(&mut self, bytes: &[u8]) -> Option<Message> {
        let message = match serde_json::from_slice::<ClientMessage>(bytes) {
            Ok(message) => message,
            Err(err) => return Some(self.close(close::INVALID_MESSAGE, format!("invalid message: {err}"))),
        };
        match message {
            ClientMessage::ConnectionInit {} => {
                return Some(self.close(close::TOO_MANY_INITS, "too many initialisation requests".to_owned()));
            }
            ClientMessage::Subscribe { id, payload } => {
                if self.operations.iter().any(|op| *op.id == *id) {
                    return Some(self.close(close::DUPLICATE_ID, format!("subscriber for {id} already exists")));
                }
                let (relay, responses) = live::execute_stream(&self.schema, payload, self.data.clone());
                let id_json = serde_json::to_string(&id).unwrap_or_else(|_| "\"\"".to_owned());
                let prefix = format!(r#"{{"type":"{}","id":{id_json},"payload":"#, self.dialect.next_type());
                self.operations.push(Operation { id: id.into(), prefix: prefix.into(), relay, responses });
            }
            ClientMessage::Complete { id } => {
                // The client stopped listening: nothing more goes out for this operation.
                if let Some(i) = self.operations.iter().position(|op| *op.id == *id) {
                    self.operations.swap_remove(i);
                    if self.dialect == Dialect::Legacy {
                        self.queue.push_back(complete(&id));
                    }
                }
            }
            ClientMessage::ConnectionTerminate => {
                self.closed = true;
                self.operations.clear();
            }
            ClientMessage::Ping {} => self.queue.push_back(Message::Text(r#"{"type":"pong"}"#.into())),
            ClientMessage::Pong {} => {}
        }
        None
    }

    /// Polls every operation once, queueing what each has to send: each gets its turn, so that
    /// one with a long backlog does not hold up the others.
    fn poll_operations(&mut self, cx: &mut Context<'_>) {
        let mut i = 0;
        while i < self.operations.len() {
            let op = &mut self.operations[i];
            let polled = op.responses.poll_next_unpin(cx);
            // Events sent as shared text come first: they were taken before anything the
            // executor returned in this poll.
            let queue = &mut self.queue;
            op.relay.drain_ready(|rendered| queue.push_back(Message::Text(rendered.message(&op.prefix))));
            match polled {
                Poll::Ready(Some(response)) => {
                    let payload = serde_json::to_string(&response).unwrap_or_else(|err| {
                        tracing::error!(error = %err, "websocket: a response could not be serialized");
                        r#"{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}"#.to_owned()
                    });
                    let frame = op.frame(&payload);
                    op.relay.rendered(&response, payload);
                    self.queue.push_back(frame);
                    i += 1;
                }
                Poll::Ready(None) => {
                    let op = self.operations.swap_remove(i);
                    self.queue.push_back(complete(&op.id));
                }
                Poll::Pending => i += 1,
            }
        }
    }
}

fn complete(id: &str) -> Message {
    let id_json = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
    Message::Text(format!(r#"{{"type":"complete","id":{id_json}}}"#).into())
}

/// Polls something only when its own waker fired since it was last pending: the rest of the time
/// the owner is woken for something else, and polling it would only find it still pending. Most
/// of a subscribed connection's wake-ups are for an event to send, and polling the socket for a
/// message then (its lock, the websocket's reader, the socket's readiness) cost as much as the
/// rest of the protocol's work per event; so did polling the connection's timers and channels.
pub(super) struct Gate(Arc<Woken>);

/// The gate's waker: it notes the wake-up, then passes it on to the owner's task.
struct Woken {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for Woken {
    fn wake_by_ref(this: &Arc<Self>) {
        // The waker is taken before the flag is set: a poll that finds the flag unset knows that
        // the waker it registered is still there, or about to be woken.
        let task = this.task.take();
        this.woken.store(true, Ordering::Release);
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Gate {
    /// A gate whose first poll goes through.
    pub(super) fn new() -> Gate {
        Gate(Arc::new(Woken { woken: AtomicBool::new(true), task: AtomicWaker::new() }))
    }

    /// `poll` with the gate's waker if that woke since `poll` was last pending, else pending.
    /// After a result, the next call polls again: what gave one promises no wake-up for the next.
    /// A gate belongs to one task: the task's waker is registered when the gate goes through,
    /// and stays registered until a wake-up takes it, which also opens the gate.
    pub(super) fn poll<T>(&self, cx: &mut Context<'_>, poll: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        if !self.0.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        self.0.task.register(cx.waker());
        let waker = futures_util::task::waker_ref(&self.0);
        let polled = poll(&mut Context::from_waker(&waker));
        if polled.is_ready() {
            self.0.woken.store(true, Ordering::Release);
        }
        polled
    }
}

impl<I: Stream<Item = Bytes> + Unpin> Stream for Protocol<I> {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = self.get_mut();
        loop {
            if let Some(message) = this.queue.pop_front() {
                return Poll::Ready(Some(message));
            }
            if this.closed {
                return Poll::Ready(None);
            }
            let inbound = &mut this.inbound;
            match this.inbound_gate.poll(cx, |cx| inbound.poll_next_unpin(cx)) {
                Poll::Ready(Some(bytes)) => {
                    if let Some(ending) = this.receive(&bytes) {
                        return Poll::Ready(Some(ending));
                    }
                    continue;
                }
                Poll::Ready(None) => {
                    this.closed = true;
                    continue;
                }
                Poll::Pending => {}
            }
            this.poll_operations(cx);
            if this.queue.is_empty() {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::clock::Clock;
    use crate::config::ServeConfig;

    /// A waker that counts its wake-ups.
    struct Counted(AtomicUsize);

    impl ArcWake for Counted {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn text(message: Option<Message>) -> String {
        match message {
            Some(Message::Text(text)) => text.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    #[test]
    fn a_gate_polls_only_after_a_wake_up_and_its_task_hears_every_wake_up() {
        let gate = Gate::new();
        let counted = Arc::new(Counted(AtomicUsize::new(0)));
        let task = futures_util::task::waker(counted.clone());
        let mut cx = Context::from_waker(&task);
        let polls = std::cell::Cell::new(0);
        let inner = std::cell::RefCell::new(None);
        let poll = |gate: &Gate, cx: &mut Context<'_>| {
            gate.poll(cx, |c| {
                polls.set(polls.get() + 1);
                *inner.borrow_mut() = Some(c.waker().clone());
                Poll::<()>::Pending
            })
        };
        assert!(poll(&gate, &mut cx).is_pending());
        assert!(poll(&gate, &mut cx).is_pending());
        assert!(poll(&gate, &mut cx).is_pending());
        let inner_waker = inner.borrow().clone().expect("the first poll goes through");
        assert_eq!(polls.get(), 1, "without a wake-up, what is behind the gate is not polled");
        inner_waker.wake_by_ref();
        assert_eq!(counted.0.load(Ordering::SeqCst), 1);
        assert!(poll(&gate, &mut cx).is_pending());
        assert!(poll(&gate, &mut cx).is_pending());
        assert_eq!(polls.get(), 2);
        // The wake-up took the task's waker; the poll that went through registered it again,
        // and the poll after it, which did not go through, left it there.
        inner_waker.wake_by_ref();
        assert_eq!(counted.0.load(Ordering::SeqCst), 2);
        assert!(poll(&gate, &mut cx).is_pending());
        assert_eq!(polls.get(), 3);
    }

    #[tokio::test]
    async fn client_messages_are_read_when_they_arrive_and_all_of_a_burst_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::config::DatabaseUrl::new(format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()));
        let state = crate::bootstrap::start_with_key(
            &url,
            ServeConfig::defaults(),
            Clock::System,
            crate::checkpoints::ServerKey::generate(),
        )
        .await
        .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let inbound = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut protocol =
            Protocol::new(super::super::build_schema(state), Dialect::TransportWs, Box::pin(inbound), Data::default());
        let counted = Arc::new(Counted(AtomicUsize::new(0)));
        let waker = futures_util::task::waker(counted.clone());
        let mut cx = Context::from_waker(&waker);
        let mut poll = |cx: &mut Context<'_>| match protocol.poll_next_unpin(cx) {
            Poll::Ready(message) => Some(message),
            Poll::Pending => None,
        };

        assert_eq!(text(poll(&mut cx).expect("the acknowledgement is ready")), r#"{"type":"connection_ack"}"#);
        assert!(poll(&mut cx).is_none(), "nothing to send before the client says something");

        // Two messages arrive together while the connection waits: it is woken, and both are read
        // although the second wakes nobody.
        tx.send(Bytes::from_static(br#"{"type":"ping"}"#)).unwrap();
        tx.send(Bytes::from_static(br#"{"type":"ping","payload":{}}"#)).unwrap();
        assert_eq!(counted.0.load(Ordering::SeqCst), 1, "the first message wakes the connection");
        assert_eq!(text(poll(&mut cx).expect("a pong")), r#"{"type":"pong"}"#);
        assert_eq!(text(poll(&mut cx).expect("a second pong")), r#"{"type":"pong"}"#);
        assert!(poll(&mut cx).is_none());

        // A message after a quiet spell is read too, and a broken one closes with 4400.
        tx.send(Bytes::from_static(b"not json")).unwrap();
        assert_eq!(counted.0.load(Ordering::SeqCst), 2);
        match poll(&mut cx) {
            Some(Some(Message::Close(Some(frame)))) => assert_eq!(frame.code, close::INVALID_MESSAGE),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
