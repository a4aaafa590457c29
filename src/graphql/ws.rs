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
use std::task::{Context, Poll};

use async_graphql::Data;
use async_graphql::futures_util::stream::BoxStream;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message};
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
            match this.inbound.poll_next_unpin(cx) {
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
