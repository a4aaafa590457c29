//! GraphQL over HTTP (`POST /graphql`, GraphiQL on `GET /graphql`) and over websockets
//! (`/graphql/ws`, graphql-transport-ws).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_graphql::http::GraphiQLSource;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};

use super::live::Documents;
use super::ws::{Dialect, Gate, Protocol};
use super::{AttestSchema, Caller, build_schema};
use crate::auth::{self, ClientAddress};
use crate::error::{AppError, LogDisplay};
use crate::http::{client_address, same_origin, session_cookie, session_token};
use crate::live::ConnectionSlot;
use crate::state::AppState;

#[derive(Clone)]
struct Endpoint {
    state: AppState,
    schema: AttestSchema,
}

pub fn routes(state: AppState) -> Router {
    let schema = build_schema(state.clone());
    Router::new()
        .route("/graphql", get(graphiql).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        .with_state(Endpoint { state, schema })
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Attest GraphiQL")
            .finish(),
    )
}

async fn identify(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller, AppError> {
    let address = client_address(&state.config, headers, peer);
    let Some(token) = session_token(headers) else {
        return Ok(Caller { actor: None, refused: None, address });
    };
    match auth::authenticate(state, &token).await {
        Ok(actor) => Ok(Caller { actor: Some(actor), refused: None, address }),
        Err(AppError::Unauthenticated(reason)) => Ok(Caller { actor: None, refused: Some(reason), address }),
        Err(other) => Err(other),
    }
}

/// A GraphQL-shaped error response for a request that never reached the executor.
fn request_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

async fn graphql_post(
    State(ep): State<Endpoint>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let limit = ep.state.config.max_request_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return request_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "INVALID_INPUT",
            format!("request body is larger than {limit} bytes"),
        );
    };
    // One operation per request: batches would multiply the complexity limit.
    let mut request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                format!("request body is not a GraphQL request: {e}"),
            );
        }
    };
    let caller = match identify(&ep.state, &parts.headers, peer).await {
        Ok(caller) => caller,
        Err(err) => {
            tracing::error!(error = %LogDisplay(&err), "authentication failed");
            return request_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error".into());
        }
    };
    // Clients send the same few queries over and over: each is parsed once per server.
    if let Some(document) = ep.schema.data::<Documents>().and_then(|d| d.parsed(&request.query)) {
        request.set_parsed_query(document);
    }
    let response = super::with_codes(ep.schema.execute(request.data(caller)).await);
    let mut out = Json(&response).into_response();
    for (name, value) in response.http_headers.iter() {
        out.headers_mut().append(name, value.clone());
    }
    out.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
}

/// The websocket read buffer: what one read from the socket may take, and what every connection
/// holds while it waits. Client messages are small (`subscribe` is a few hundred bytes), and a
/// larger frame makes the buffer grow to that frame's length (up to `ws_max_message_bytes`) when
/// its header arrives, so a small buffer limits nothing but the bytes taken per read.
pub const WS_READ_BUFFER: usize = 1024;

/// The most bytes of frames gathered before a write to the socket. Messages that are ready
/// together (events committed together, or caught up) go out in one write of up to this much,
/// where a write each would cost a system call each; a message that comes alone is written at
/// once. The buffer keeps its room between writes, so it is kept small.
pub const WS_WRITE_BUFFER: usize = 1024;

/// The subprotocol the client asked for (`graphql-transport-ws` or the older `graphql-ws`), the
/// first one known in `Sec-WebSocket-Protocol`.
fn ws_protocol(headers: &HeaderMap) -> Option<Dialect> {
    let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    offered.split(',').find_map(|p| Dialect::parse(p.trim()))
}

/// graphql-transport-ws. The session token comes in `connection_init`'s payload
/// (`{"token": "…"}`) or, when the page is the server's own, as the session cookie.
async fn graphql_ws(
    State(ep): State<Endpoint>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = ws_protocol(&headers) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let address = client_address(&ep.state.config, &headers, peer);
    let cookie_token = if same_origin(&headers) { session_cookie(&headers) } else { None };
    let max = ep.state.config.ws_max_message_bytes;
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .protocols(Dialect::OFFERED)
        .on_upgrade(move |socket| connection(ep, socket, protocol, address, cookie_token))
}

/// Close codes of graphql-transport-ws, and the ones this server adds.
mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const INTERNAL: u16 = 1011;
    pub const IDLE: u16 = 3008;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const TOO_MANY: u16 = 4429;
}

/// One websocket connection: `connection_init` and authentication first (refusals close with
/// 4401, 4403 or 4429), then the GraphQL protocol, with pings to the client and an idle timeout
/// so that a vanished client is noticed.
///
/// A future keeps room for its arguments, and for its largest state, for as long as it lives, and
/// a connection may live for hours: so the setup (its reads, timers and messages) is a boxed
/// future of its own, and the connection's life is `Connection::run`, whose only argument is
/// what the connection keeps. This is no `async fn`, so that the socket it splits is not kept too.
fn connection(
    ep: Endpoint,
    socket: WebSocket,
    protocol: Dialect,
    address: ClientAddress,
    cookie_token: Option<String>,
) -> impl Future<Output = ()> + Send {
    let (tx, rx) = socket.split();
    Box::pin(open(ep, tx, rx, protocol, address, cookie_token))
        .then(|opened| futures_util::future::OptionFuture::from(opened.map(Connection::run)))
        .map(drop)
}

/// What a connection keeps for as long as it is open.
struct Connection<P> {
    state: AppState,
    tx: SplitSink<WebSocket, Message>,
    /// The GraphQL protocol: a stream of the messages to send.
    outgoing: P,
    /// When the client last sent anything, in milliseconds after `started`.
    seen: Arc<AtomicU64>,
    started: Instant,
    /// The digest of the connection's session, for the rights recheck.
    session: Box<str>,
    /// The fingerprint of the user's rights when the connection was authorized.
    rights: u64,
    /// Changes to agencies' streams, and the key of this user's agency's stream among them.
    org: tokio::sync::broadcast::Receiver<Arc<str>>,
    agency: Box<str>,
    _slot: ConnectionSlot,
}

/// Reads `connection_init` and authenticates the connection; on refusal closes it and returns
/// `None`.
async fn open(
    ep: Endpoint,
    mut tx: SplitSink<WebSocket, Message>,
    mut rx: SplitStream<WebSocket>,
    protocol: Dialect,
    address: ClientAddress,
    cookie_token: Option<String>,
) -> Option<Connection<impl Stream<Item = Message> + Send + Unpin>> {
    let config = &ep.state.config;
    let idle = Duration::from_secs(config.ws_idle_timeout_secs.max(1));
    let init = match tokio::time::timeout(idle, first_text(&mut rx)).await {
        Ok(Some(text)) => text,
        Ok(None) => return None,
        Err(_) => return close(&mut tx, close::INIT_TIMEOUT, "connection initialisation timeout").await,
    };
    let token = match serde_json::from_str::<serde_json::Value>(&init) {
        Ok(v) if v["type"] == "connection_init" => v["payload"]["token"].as_str().map(str::to_owned),
        _ => return close(&mut tx, close::UNAUTHORIZED, "unauthorized: send connection_init first").await,
    };
    let Some(token) = token.or(cookie_token) else {
        return close(&mut tx, close::UNAUTHORIZED, "authentication required").await;
    };
    let authenticated = {
        let _turn = ep.state.live.setting_up().await;
        Box::pin(auth::authenticate(&ep.state, &token)).await
    };
    let actor = match authenticated {
        Ok(actor) => actor,
        Err(err) => {
            let code = match &err {
                AppError::Unauthenticated(_) => close::UNAUTHORIZED,
                AppError::Forbidden(_) | AppError::NotFound(_) => close::FORBIDDEN,
                AppError::Internal(_) => {
                    tracing::error!(error = %LogDisplay(&err), "websocket authentication failed");
                    close::INTERNAL
                }
                _ => close::FORBIDDEN,
            };
            return close(&mut tx, code, &err.client_message()).await;
        }
    };
    let rights = match Box::pin(auth::rights(&ep.state, &actor)).await {
        Ok(rights) => rights,
        Err(err) => {
            tracing::error!(error = %LogDisplay(&err), "websocket authorization failed");
            return close(&mut tx, close::INTERNAL, "internal error").await;
        }
    };
    let limit = config.ws_max_connections_per_user;
    let Some(slot) = ep.state.live.connect(actor.user_id, limit) else {
        let reason = format!("too many connections for this user (at most {limit}); close another first");
        return close(&mut tx, close::TOO_MANY, &reason).await;
    };

    // Everything the client sends, pongs included, counts as a sign of life. The protocol reads
    // text and binary messages and stops at the first error (a frame over the size limit, say).
    let started = Instant::now();
    let seen = Arc::new(AtomicU64::new(0));
    let seen_in = seen.clone();
    let inbound = rx
        .inspect(move |_| {
            seen_in.store(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        })
        .take_while(|msg| std::future::ready(msg.is_ok()))
        .filter_map(|msg| {
            std::future::ready(match msg {
                Ok(msg @ (Message::Text(_) | Message::Binary(_))) => Some(msg.into_data()),
                _ => None,
            })
        });
    // The protocol is a stream of outgoing messages, polled by the connection only when the socket
    // can take one: no queue between the two, and the connection alone writes to the socket, so
    // that it can also ping and time out while the protocol waits.
    let session = actor.session.clone().into_boxed_str();
    let agency = crate::events::Stream::Agency(actor.agency_id).key().into_boxed_str();
    let org = ep.state.live.org_changes();
    let caller = Caller { actor: Some(actor), refused: None, address };
    let mut data = async_graphql::Data::default();
    data.insert(caller);
    let outgoing = Protocol::new(ep.schema, protocol, Box::pin(inbound), data);
    Some(Connection {
        state: ep.state,
        tx,
        outgoing: Box::pin(outgoing),
        seen,
        started,
        session,
        rights,
        org,
        agency,
        _slot: slot,
    })
}

impl<P: Stream<Item = Message> + Unpin> Connection<P> {
    /// The open connection: the protocol's messages, pings, the idle timeout, the rights recheck
    /// and shutdown, until one of them ends it.
    async fn run(mut self) {
        let config = &self.state.config;
        let idle = Duration::from_secs(config.ws_idle_timeout_secs.max(1));
        let ping_every = Duration::from_secs(config.ws_ping_secs.max(1));
        let recheck_every = Duration::from_secs(config.ws_recheck_secs.max(1));
        // The rights are checked again on the pings' timer, so a connection needs no timer of its own.
        let mut checked = Instant::now();
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let idle_check = tokio::time::sleep(idle);
        tokio::pin!(idle_check);
        // A change to the user's agency (a role, a membership, the session) is checked soon
        // after it is heard of, on the idle timer, so that a burst of changes costs one check.
        let mut recheck_due = false;
        // Both outlive the loop's turns: re-created each turn, they would register with, and
        // leave, the channels every connection shares, twice for every frame sent.
        let mut shutdown = self.state.live.shutting_down();
        let shutting_down = async move { shutdown.changed().await };
        tokio::pin!(shutting_down);
        let org_change = next_change(self.org);
        tokio::pin!(org_change);
        // The timers and channels above are polled only when one of them woke the connection,
        // and the protocol only when it did (`send_ready` leaves it pending after each write).
        let chores = Gate::new();
        let protocol = Gate::new();
        let ending = loop {
            let chore = std::future::poll_fn(|cx| {
                chores.poll(cx, |cx| {
                    if shutting_down.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Chore::Shutdown);
                    }
                    if let Poll::Ready(heard) = org_change.as_mut().poll(cx) {
                        return Poll::Ready(Chore::OrgChange(heard));
                    }
                    if ping.poll_tick(cx).is_ready() {
                        return Poll::Ready(Chore::Ping);
                    }
                    idle_check.as_mut().poll(cx).map(|()| Chore::IdleCheck)
                })
            });
            // Biased, the protocol first: most turns are for a message to send, and the chores
            // wait until the protocol has nothing ready, which its bounded queues make soon.
            let chore = tokio::select! {
                biased;
                msg = std::future::poll_fn(|cx| protocol.poll(cx, |cx| self.outgoing.poll_next_unpin(cx))) => {
                    let Some(msg) = msg else { break None };
                    if !send_ready(&mut self.tx, &mut self.outgoing, &protocol, msg, idle).await {
                        break None;
                    }
                    continue;
                }
                chore = chore => chore,
            };
            match chore {
                Chore::Ping => {
                    if !send_within(&mut self.tx, Message::Ping(Default::default()), idle).await {
                        break None;
                    }
                    if checked.elapsed() >= recheck_every {
                        checked = Instant::now();
                        if let Err(refusal) = Box::pin(recheck(&self.state, &self.session, self.rights)).await {
                            break Some(refusal);
                        }
                    }
                }
                Chore::OrgChange((change, org)) => {
                    let ours = match &change {
                        Ok(key) => **key == *self.agency || &**key == "*",
                        // Changes were missed, or the hub is gone: check anyway.
                        Err(_) => true,
                    };
                    if ours && !recheck_due {
                        recheck_due = true;
                        idle_check.as_mut().reset(tokio::time::Instant::now() + RECHECK_DELAY);
                    }
                    let org = match change {
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => self.state.live.org_changes(),
                        _ => org,
                    };
                    org_change.set(next_change(org));
                }
                Chore::IdleCheck => {
                    if recheck_due {
                        recheck_due = false;
                        checked = Instant::now();
                        if let Err(refusal) = Box::pin(recheck(&self.state, &self.session, self.rights)).await {
                            break Some(refusal);
                        }
                    }
                    let last = Duration::from_millis(self.seen.load(Ordering::Relaxed));
                    let quiet = self.started.elapsed().saturating_sub(last);
                    if quiet >= idle {
                        break Some((close::IDLE, format!("nothing received for {} s", idle.as_secs())));
                    }
                    idle_check.as_mut().reset(tokio::time::Instant::from_std(self.started + last + idle));
                }
                Chore::Shutdown => break Some((close::GOING_AWAY, "server shutting down".to_owned())),
            }
        };
        // Boxed too: closing happens once, and its timer and frame need no room before then.
        if let Some((code, reason)) = ending {
            Box::pin(close::<()>(&mut self.tx, code, &reason)).await;
        }
    }
}

/// What woke a connection other than a message to send.
enum Chore {
    Ping,
    OrgChange(OrgChange),
    IdleCheck,
    Shutdown,
}

/// A change to some agency heard of, with the receiver to hear the next one.
type OrgChange =
    (Result<Arc<str>, tokio::sync::broadcast::error::RecvError>, tokio::sync::broadcast::Receiver<Arc<str>>);

/// Sends `msg`, within `idle`: a client that takes no data for this long is as good as gone. The
/// timer is set only when the socket cannot take the message at once, as it nearly always can.
async fn send_within(tx: &mut SplitSink<WebSocket, Message>, msg: Message, idle: Duration) -> bool {
    within(idle, tx.send(msg)).await.is_some_and(|sent| sent.is_ok())
}

/// Sends `first` and every message the protocol has ready after it, written together (up to
/// `WS_WRITE_BUFFER` bytes a write) and flushed once, within `idle`. The protocol is polled
/// through its `gate`, so that once it is found pending here the connection's loop does not poll
/// it again before it wakes. Whether the connection goes on: not after a failed write, a close
/// frame, or the protocol's end.
async fn send_ready<S: Sink<Message> + Unpin, P: Stream<Item = Message> + Unpin>(
    tx: &mut S,
    outgoing: &mut P,
    gate: &Gate,
    first: Message,
    idle: Duration,
) -> bool {
    let write = async move {
        let mut msg = first;
        let open = loop {
            let closing = matches!(msg, Message::Close(_));
            if tx.feed(msg).await.is_err() {
                return false;
            }
            if closing {
                break false;
            }
            // Only what is ready now: the protocol is polled again, and waited for, by the loop.
            match std::future::poll_fn(|cx| Poll::Ready(gate.poll(cx, |cx| outgoing.poll_next_unpin(cx)))).await {
                Poll::Ready(Some(next)) => msg = next,
                Poll::Ready(None) => break false,
                Poll::Pending => break true,
            }
        };
        tx.flush().await.is_ok() && open
    };
    within(idle, write).await.unwrap_or(false)
}

/// `fut`'s output, or `None` when it takes longer than `limit`. The timer is set only when `fut`
/// is not done at its first poll: tokio's timer takes the time driver's lock when dropped, and a
/// socket nearly always takes a frame at once.
async fn within<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(out) = futures_util::poll!(fut.as_mut()) {
        return Some(out);
    }
    tokio::time::timeout(limit, fut).await.ok()
}

/// The next change `org` hears of, with `org` to hear the one after.
async fn next_change(mut org: tokio::sync::broadcast::Receiver<Arc<str>>) -> OrgChange {
    (org.recv().await, org)
}

/// How long after hearing of a change to its agency a connection checks its rights again: changes
/// that come together are checked once.
const RECHECK_DELAY: Duration = Duration::from_millis(200);

/// Whether a connection may go on: its session still holds, and the user's rights are those it
/// was authorized with. Otherwise the close code and reason; the client connects again, and each
/// of its subscriptions is then authorized anew.
async fn recheck(state: &AppState, session: &str, rights: u64) -> Result<(), (u16, String)> {
    let outcome = match auth::authenticate_session(state, session.to_owned()).await {
        Ok(actor) => auth::rights(state, &actor).await.map(|now| now == rights),
        Err(err) => Err(err),
    };
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => Err((close::FORBIDDEN, "your access changed; connect again".to_owned())),
        Err(AppError::Unauthenticated(reason)) => Err((close::UNAUTHORIZED, format!("unauthorized: {reason}"))),
        Err(err) => {
            // A passing database failure must not end every connection: try again next time.
            tracing::warn!(error = %LogDisplay(&err), "websocket: checking a session's rights failed");
            Ok(())
        }
    }
}

/// The first text message, skipping pings; `None` if the connection closes first.
async fn first_text(rx: &mut SplitStream<WebSocket>) -> Option<String> {
    while let Some(Ok(msg)) = rx.next().await {
        match msg {
            Message::Text(text) => return Some(text.as_str().to_owned()),
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) | Message::Close(_) => return None,
        }
    }
    None
}

/// Closes the connection with `code` and `reason`; `None`, for the setup's early returns.
async fn close<T>(tx: &mut SplitSink<WebSocket, Message>, code: u16, reason: &str) -> Option<T> {
    // A close reason is limited to 123 bytes by the protocol.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame { code, reason: reason[..end].to_owned().into() };
    let _ = tokio::time::timeout(Duration::from_secs(5), tx.send(Message::Close(Some(frame)))).await;
    None
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::Context;

    use super::*;

    /// A socket that records what it was given and when it was flushed.
    #[derive(Default)]
    struct Recorder {
        fed: Vec<String>,
        /// How many messages had been fed at each flush.
        flushes: Vec<usize>,
    }

    impl Sink<Message> for Recorder {
        type Error = std::convert::Infallible;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), Self::Error> {
            let text = match msg {
                Message::Text(t) => t.to_string(),
                Message::Close(_) => "close".to_owned(),
                other => format!("{other:?}"),
            };
            self.get_mut().fed.push(text);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            let this = self.get_mut();
            this.flushes.push(this.fed.len());
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A protocol with some messages ready, then nothing ready (or its end).
    struct Ready {
        messages: VecDeque<Message>,
        ends: bool,
    }

    impl Stream for Ready {
        type Item = Message;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Message>> {
            let this = self.get_mut();
            match this.messages.pop_front() {
                Some(m) => Poll::Ready(Some(m)),
                None if this.ends => Poll::Ready(None),
                None => Poll::Pending,
            }
        }
    }

    fn text(t: &str) -> Message {
        Message::Text(t.into())
    }

    fn ready(messages: Vec<Message>, ends: bool) -> Ready {
        Ready { messages: messages.into(), ends }
    }

    const IDLE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn messages_ready_together_are_written_in_order_with_one_flush_and_the_rest_wait() {
        let mut socket = Recorder::default();
        let mut protocol = ready(vec![text("2"), text("3")], false);
        assert!(send_ready(&mut socket, &mut protocol, &Gate::new(), text("1"), IDLE).await);
        assert_eq!(socket.fed, ["1", "2", "3"]);
        assert_eq!(socket.flushes, [3], "one flush, after all three");
        // A message alone goes out at once.
        let mut protocol = ready(vec![], false);
        assert!(send_ready(&mut socket, &mut protocol, &Gate::new(), text("4"), IDLE).await);
        assert_eq!(socket.fed, ["1", "2", "3", "4"]);
        assert_eq!(socket.flushes, [3, 4]);
    }

    #[tokio::test]
    async fn a_close_frame_or_the_protocols_end_is_flushed_and_ends_the_connection() {
        let mut socket = Recorder::default();
        let close = Message::Close(Some(CloseFrame { code: 4400, reason: "invalid".into() }));
        let mut protocol = ready(vec![text("2"), close, text("after the close")], false);
        assert!(!send_ready(&mut socket, &mut protocol, &Gate::new(), text("1"), IDLE).await);
        assert_eq!(socket.fed, ["1", "2", "close"], "nothing is sent after a close frame");
        assert_eq!(socket.flushes, [3]);
        let mut socket = Recorder::default();
        let mut protocol = ready(vec![text("2")], true);
        assert!(!send_ready(&mut socket, &mut protocol, &Gate::new(), text("1"), IDLE).await);
        assert_eq!(socket.fed, ["1", "2"]);
        assert_eq!(socket.flushes, [2], "what was ready is still flushed");
    }
}
