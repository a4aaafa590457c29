//! Rendering live events once for all their subscribers. When an event goes to a thousand
//! subscribers of `assessmentEvents` that sent the same subscription, the first one's message
//! payload (the response, serialized) is kept, and the others send that text: the executor and
//! the serializer run once per event and request, not once per subscriber.
//!
//! The rendering of an event depends only on the event and on the request (query text, operation
//! name, variables: they fix the selection, its fragments, aliases and `@skip`/`@include`), never
//! on who asks: `Event`'s fields read nothing but the event. Authorization is untouched, because a
//! subscriber only ever looks up events its own, already authorized, stream handed to it, under
//! the assessment's id and the event's sequence number.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::futures_util::{Stream, StreamExt};
use async_graphql::parser::types::{ExecutableDocument, Field};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, Data, Name, OutputType, Positioned, Request, Response, ServerResult, Value};
use axum::extract::ws::Utf8Bytes;

use super::AttestSchema;
use super::types::GqlEvent;
use crate::events::Event;
use crate::ids::AssessmentId;

/// Runs an operation that came over the websocket, with the connection's data. Its `Relay` is
/// where an `assessmentEvents` subscription of it leaves the events whose payload is already
/// rendered, for the protocol to send as they are.
pub(super) fn execute_stream(
    schema: &AttestSchema,
    mut request: Request,
    data: Arc<Data>,
) -> (Arc<Relay>, BoxStream<'static, Response>) {
    let payloads = schema.data::<Arc<Payloads>>().cloned().expect("build_schema registers the payload cache");
    let relay = Arc::new(Relay { key: RequestKey::of(&request), payloads, state: Mutex::default() });
    if let Some(document) = schema.data::<Documents>().and_then(|d| d.parsed(&request.query)) {
        request.set_parsed_query(document);
    }
    let stream = schema.execute_stream_with_session_data(request.data(relay.clone()), data);
    (relay, Box::pin(stream.map(super::with_codes)))
}

/// Everything in a request that decides how an event is rendered, as the SHA-256 of the query
/// text, operation name and variables: every subscription keeps its key for as long as it lives,
/// and 32 bytes are less than the request's text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct RequestKey([u8; 32]);

impl RequestKey {
    fn of(request: &Request) -> RequestKey {
        use sha2::{Digest, Sha256};
        // Variables serialize to JSON without fail (they came from JSON); the NUL separators
        // cannot occur unescaped in either part, so different requests hash different texts.
        let variables = serde_json::to_string(&request.variables).unwrap_or_default();
        let operation = request.operation_name.as_deref().unwrap_or("");
        let mut hash = Sha256::new();
        for part in [operation, "\0", &variables, "\0", &request.query] {
            hash.update(part.as_bytes());
        }
        RequestKey(hash.finalize().into())
    }

    #[cfg(test)]
    fn from_text(text: &str) -> RequestKey {
        RequestKey::of(&Request::new(text))
    }
}

/// The longest query text whose parsed form is kept: the cache holds at most its capacity times
/// this much text.
const MAX_KEPT_QUERY: usize = 16 * 1024;

/// Parsed query documents, by query text, for HTTP requests and websocket subscriptions. A
/// subscription keeps its parsed document for as long as it lives; a copy of a document parsed
/// before shares its names and has no spare room in its lists, so it takes about half the memory
/// of a fresh parse (and no parsing). Held in the schema's data, so one per server, and bounded:
/// the oldest documents leave first. Depth, directive and validation checks still run on every
/// request, as for a fresh parse.
pub struct Documents {
    inner: Mutex<Parsed>,
    capacity: usize,
}

#[derive(Default)]
struct Parsed {
    map: HashMap<Arc<str>, ExecutableDocument>,
    order: VecDeque<Arc<str>>,
}

impl Documents {
    pub fn new(capacity: usize) -> Documents {
        Documents { inner: Mutex::new(Parsed::default()), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Parsed> {
        // Every critical section is one map operation: a poisoned lock still holds a consistent map.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The parsed form of `query`, or `None` when it does not parse or is longer than any
    /// query kept (async-graphql then parses it itself, and reports any error as usual).
    pub(super) fn parsed(&self, query: &str) -> Option<ExecutableDocument> {
        if query.len() > MAX_KEPT_QUERY {
            return None;
        }
        if let Some(document) = self.lock().map.get(query) {
            return Some(document.clone());
        }
        let document = async_graphql::parser::parse_query(query).ok()?;
        let mut parsed = self.lock();
        if !parsed.map.contains_key(query) {
            while parsed.order.len() >= self.capacity {
                if let Some(old) = parsed.order.pop_front() {
                    parsed.map.remove(&old);
                }
            }
            let key: Arc<str> = query.into();
            parsed.order.push_back(key.clone());
            parsed.map.insert(key, document.clone());
        }
        Some(document)
    }
}

/// The payloads of recent events' messages, per (assessment, sequence number, request, response
/// key), as JSON text. Held in the schema's data, so one per server. Bounded: the oldest leave
/// first, and a subscriber that finds none has the event rendered through the executor.
pub struct Payloads {
    inner: Mutex<Kept>,
    capacity: usize,
}

/// Where a rendering belongs. The response key (the field's alias, or its name) is part of it,
/// because one subscription may name the same field twice under different aliases.
type RenderKey = (AssessmentId, i64, RequestKey, Name);

#[derive(Default)]
struct Kept {
    /// Looked up once per event and subscriber, hence a fast hash: the keys are ours, not an
    /// attacker's to choose (ids, sequence numbers, a hash of the request, a field name).
    map: HashMap<RenderKey, Arc<Rendered>, foldhash::fast::RandomState>,
    order: VecDeque<RenderKey>,
}

/// An event's payload as one request renders it, and the whole `next` message that carries it,
/// built once for the subscribers whose messages start alike (same protocol and operation id:
/// clients of one application tend to number their operations alike).
pub(super) struct Rendered {
    payload: Box<str>,
    /// The message's text before the payload, and the whole message.
    message: OnceLock<(Box<str>, Utf8Bytes)>,
}

impl Rendered {
    fn new(payload: String) -> Rendered {
        Rendered { payload: payload.into(), message: OnceLock::new() }
    }

    /// The `next` message that is `prefix`, the payload and a closing brace: shared with the
    /// subscribers before whose prefix was the same, built otherwise.
    pub(super) fn message(&self, prefix: &str) -> Utf8Bytes {
        if let Some((p, message)) = self.message.get()
            && **p == *prefix
        {
            return message.clone();
        }
        let message = Utf8Bytes::from(framed(prefix, &self.payload));
        // The first prefix keeps the shared message; any other builds its own each time.
        let _ = self.message.set((prefix.into(), message.clone()));
        message
    }
}

/// `prefix`, `payload` and a closing brace: a `next` message.
pub(super) fn framed(prefix: &str, payload: &str) -> String {
    let mut text = String::with_capacity(prefix.len() + payload.len() + 1);
    text.push_str(prefix);
    text.push_str(payload);
    text.push('}');
    text
}

impl Payloads {
    pub fn new(capacity: usize) -> Payloads {
        Payloads { inner: Mutex::new(Kept::default()), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Every critical section is one map operation: a poisoned lock still holds a consistent map.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key: &RenderKey) -> Option<Arc<Rendered>> {
        self.lock().map.get(key).cloned()
    }

    fn put(&self, key: RenderKey, payload: Arc<Rendered>) {
        let mut kept = self.lock();
        if kept.map.contains_key(&key) {
            return;
        }
        while kept.order.len() >= self.capacity {
            if let Some(old) = kept.order.pop_front() {
                kept.map.remove(&old);
            }
        }
        kept.order.push_back(key.clone());
        kept.map.insert(key, payload);
    }
}

/// Between one websocket operation and the protocol that sends its messages: the payloads
/// already rendered that its subscription took instead of handing the events to the executor,
/// and which events it did hand over, so that their renderings can be kept for the others.
pub(super) struct Relay {
    key: RequestKey,
    payloads: Arc<Payloads>,
    state: Mutex<RelayState>,
}

#[derive(Default)]
struct RelayState {
    /// Payloads to send, in order, before anything the executor returns next.
    ready: VecDeque<Arc<Rendered>>,
    /// Per root field (by response key), the event it handed to the executor last.
    rendering: Vec<RenderKey>,
}

impl Relay {
    fn lock(&self) -> std::sync::MutexGuard<'_, RelayState> {
        // Every critical section is one queue or list operation: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands the payloads waiting to be sent to `send`, oldest first. The queue keeps its room
    /// for the next ones.
    pub(super) fn drain_ready(&self, mut send: impl FnMut(&Rendered)) {
        for rendered in self.lock().ready.drain(..) {
            send(&rendered);
        }
    }

    /// The executor returned `response`, whose payload is `payload`: if it is the rendering of an
    /// event a subscription handed over, the other subscribers of the same request may send it.
    /// A response with errors is nobody's rendering.
    pub(super) fn rendered(&self, response: &Response, payload: String) {
        let Value::Object(fields) = &response.data else { return };
        let Some(field) = fields.keys().next() else { return };
        let key = {
            let mut state = self.lock();
            let Some(i) = state.rendering.iter().position(|k| k.3 == *field) else { return };
            state.rendering.swap_remove(i)
        };
        if response.errors.is_empty() && fields.len() == 1 {
            self.payloads.put(key, Arc::new(Rendered::new(payload)));
        }
    }
}

/// The events of an `assessmentEvents` subscription as the executor takes them: an event whose
/// payload another subscriber's identical request already rendered goes to the operation's
/// `Relay` instead (websocket operations have one), and only the others reach the executor.
pub(super) struct Relayed<S> {
    events: Pin<Box<S>>,
    assessment: AssessmentId,
    /// The relay and the field's response key, when the operation has a relay.
    relay: Option<(Arc<Relay>, Name)>,
}

impl<S> Relayed<S> {
    pub(super) fn new(ctx: &async_graphql::Context<'_>, assessment: AssessmentId, events: S) -> Relayed<S> {
        let relay = ctx.data_opt::<Arc<Relay>>().map(|relay| {
            let field = ctx.field();
            (relay.clone(), Name::new(field.alias().unwrap_or_else(|| field.name())))
        });
        Relayed { events: Box::pin(events), assessment, relay }
    }
}

impl<S> Stream for Relayed<S>
where
    S: Stream<Item = async_graphql::Result<Arc<Event>>>,
{
    type Item = async_graphql::Result<LiveEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let event = match this.events.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => event,
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            if let Some((relay, field)) = &this.relay {
                let key = (this.assessment, event.seq, relay.key, field.clone());
                if let Some(payload) = relay.payloads.get(&key) {
                    // Sent as it is; the loop goes on to the next event, and the protocol sends
                    // what the relay holds before anything the executor returns.
                    relay.lock().ready.push_back(payload);
                    continue;
                }
                let mut state = relay.lock();
                state.rendering.retain(|k| k.3 != key.3);
                state.rendering.push(key);
            }
            return Poll::Ready(Some(Ok(LiveEvent(event))));
        }
    }
}

/// An event of an `assessmentEvents` subscription that reaches the executor: an `Event` to the
/// schema, without copying it out of the stream's `Arc`.
pub(super) struct LiveEvent(Arc<Event>);

impl OutputType for LiveEvent {
    fn type_name() -> Cow<'static, str> {
        GqlEvent::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        GqlEvent::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        // Boxed: the subscription's stream keeps room for this future for as long as it lives,
        // though it only runs for events no other subscriber rendered.
        Box::pin(GqlEvent((*self.0).clone()).resolve(ctx, field)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: i64, request: &str) -> RenderKey {
        (AssessmentId::new(), seq, RequestKey::from_text(request), Name::new("assessmentEvents"))
    }

    fn text(payload: Option<Arc<Rendered>>) -> Option<String> {
        payload.map(|p| p.payload.to_string())
    }

    fn rendered(payload: &str) -> Arc<Rendered> {
        Arc::new(Rendered::new(payload.to_owned()))
    }

    #[test]
    fn the_oldest_payloads_leave_first_when_the_cache_is_full() {
        let cache = Payloads::new(2);
        let (a, b, c) = (key(1, "q"), key(2, "q"), key(3, "q"));
        cache.put(a.clone(), rendered("1"));
        cache.put(b.clone(), rendered("2"));
        cache.put(c.clone(), rendered("3"));
        assert!(cache.get(&a).is_none());
        assert_eq!(text(cache.get(&b)).as_deref(), Some("2"));
        assert_eq!(text(cache.get(&c)).as_deref(), Some("3"));
        assert_eq!(cache.lock().order.len(), 2);
    }

    #[test]
    fn a_payload_is_kept_under_its_own_request_event_and_field_only() {
        let cache = Payloads::new(8);
        let k = key(1, "{ seq }");
        cache.put(k.clone(), rendered("first"));
        // A second rendering of the same key does not replace the first.
        cache.put(k.clone(), rendered("second"));
        assert_eq!(text(cache.get(&k)).as_deref(), Some("first"));
        assert!(cache.get(&(k.0, 1, RequestKey::from_text("{ at }"), k.3.clone())).is_none());
        assert!(cache.get(&(k.0, 2, k.2, k.3.clone())).is_none());
        assert!(cache.get(&(AssessmentId::new(), 1, k.2, k.3.clone())).is_none());
        assert!(cache.get(&(k.0, 1, k.2, Name::new("alias"))).is_none());
    }

    #[test]
    fn a_rendering_is_kept_only_for_the_field_that_handed_its_event_over_and_without_errors() {
        let payloads = Arc::new(Payloads::new(8));
        let relay = Relay { key: RequestKey::from_text("q"), payloads: payloads.clone(), state: Mutex::default() };
        let (a, b) = (key(1, "q"), (AssessmentId::new(), 1, RequestKey::from_text("q"), Name::new("other")));
        relay.lock().rendering = vec![a.clone(), b.clone()];
        let response = |field: &str| {
            let mut data = async_graphql::indexmap::IndexMap::new();
            data.insert(Name::new(field), Value::from(1));
            Response::new(Value::Object(data))
        };
        relay.rendered(&response("assessmentEvents"), "a".into());
        assert_eq!(text(payloads.get(&a)).as_deref(), Some("a"));
        assert!(payloads.get(&b).is_none(), "another field's rendering is not this one");
        let mut failed = response("other");
        failed.errors.push(async_graphql::ServerError::new("limit", None));
        relay.rendered(&failed, "b".into());
        assert!(payloads.get(&b).is_none(), "a response with errors is not kept");
        assert!(relay.lock().rendering.is_empty());
    }

    #[test]
    fn subscribers_with_the_same_prefix_share_one_message_and_others_get_their_own() {
        let r = rendered(r#"{"data":1}"#);
        let first = r.message(r#"{"type":"next","id":"1","payload":"#);
        let again = r.message(r#"{"type":"next","id":"1","payload":"#);
        assert_eq!(first.as_str(), r#"{"type":"next","id":"1","payload":{"data":1}}"#);
        assert_eq!(first.as_str().as_ptr(), again.as_str().as_ptr(), "the same bytes, not a copy");
        let other = r.message(r#"{"type":"data","id":"x","payload":"#);
        assert_eq!(other.as_str(), r#"{"type":"data","id":"x","payload":{"data":1}}"#);
        assert_eq!(r.message(r#"{"type":"next","id":"1","payload":"#).as_str(), first.as_str());
    }

    #[test]
    fn a_document_is_parsed_once_and_the_oldest_leave_first() {
        let documents = Documents::new(2);
        let q = "subscription { assessmentEvents(assessmentId: \"a\") { seq } }";
        let first = documents.parsed(q).expect("parses");
        assert_eq!(format!("{:?}", documents.parsed(q).expect("kept")), format!("{first:?}"));
        assert!(documents.parsed("subscription {").is_none(), "a document that does not parse is not kept");
        documents.parsed("{ a }");
        documents.parsed("{ b }");
        assert!(!documents.lock().map.contains_key(q));
        assert_eq!(documents.lock().order.len(), 2);
    }

    #[test]
    fn requests_differing_in_variables_or_operation_get_different_keys() {
        let q = "subscription S($id: ID!) { assessmentEvents(assessmentId: $id) { seq } }";
        let base = Request::new(q);
        let vars = |id: &str| async_graphql::Variables::from_json(serde_json::json!({ "id": id }));
        let a = RequestKey::of(&Request::new(q).variables(vars("a")));
        let b = RequestKey::of(&Request::new(q).variables(vars("b")));
        let named = RequestKey::of(&Request::new(q).operation_name("S"));
        assert!(a == RequestKey::of(&Request::new(q).variables(vars("a"))));
        assert!(a != b);
        assert!(named != RequestKey::of(&base));
    }
}
