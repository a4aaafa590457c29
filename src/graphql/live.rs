//! Rendering live events once for all their subscribers. When an event goes to a thousand
//! subscribers of `assessmentEvents` that sent the same subscription, async-graphql would resolve
//! the same selection of the same event a thousand times; here the first subscriber's rendering
//! is kept and the others take a copy of it.
//!
//! The rendering of an event depends only on the event and on the request (query text, operation
//! name, variables: they fix the selection, its fragments, aliases and `@skip`/`@include`), never
//! on who asks: `Event`'s fields read nothing but the event. Authorization is untouched, because a
//! subscriber only ever looks up events its own, already authorized, stream handed to it, under
//! the assessment's id and the event's sequence number.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_graphql::futures_util::StreamExt;
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::{ExecutableDocument, Field};
use async_graphql::registry::Registry;
use async_graphql::{
    ContextSelectionSet, Data, Executor, OutputType, Positioned, Request, Response, ServerResult, Value,
};

use super::AttestSchema;
use super::types::GqlEvent;
use crate::events::Event;
use crate::ids::AssessmentId;

/// The schema as the websocket transport runs it: each subscription request is tagged with the
/// key of its rendering, so that subscribers who sent the same request can share renderings.
#[derive(Clone)]
pub struct LiveExecutor {
    schema: AttestSchema,
}

impl LiveExecutor {
    pub fn new(schema: AttestSchema) -> LiveExecutor {
        LiveExecutor { schema }
    }
}

impl Executor for LiveExecutor {
    async fn execute(&self, request: Request) -> Response {
        super::with_codes(self.schema.execute(request).await)
    }

    fn execute_stream(&self, mut request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, Response> {
        let key = RequestKey::of(&request);
        if let Some(document) = self.schema.data::<Documents>().and_then(|d| d.parsed(&request.query)) {
            request.set_parsed_query(document);
        }
        let stream = self.schema.execute_stream_with_session_data(request.data(key), session_data.unwrap_or_default());
        Box::pin(stream.map(super::with_codes))
    }
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

/// Renderings of recent events, per (assessment, sequence number, request). Held in the schema's
/// data, so one per server. Bounded: the oldest renderings leave first, and a subscriber that
/// finds none renders the event itself.
pub struct RenderCache {
    inner: Mutex<Renders>,
    capacity: usize,
}

type RenderKey = (AssessmentId, i64, RequestKey);

#[derive(Default)]
struct Renders {
    map: HashMap<RenderKey, Arc<Value>>,
    order: VecDeque<RenderKey>,
}

impl RenderCache {
    pub fn new(capacity: usize) -> RenderCache {
        RenderCache { inner: Mutex::new(Renders::default()), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Renders> {
        // Every critical section is one map operation: a poisoned lock still holds a consistent map.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key: &RenderKey) -> Option<Arc<Value>> {
        self.lock().map.get(key).cloned()
    }

    fn put(&self, key: RenderKey, value: Arc<Value>) {
        let mut renders = self.lock();
        if renders.map.contains_key(&key) {
            return;
        }
        while renders.order.len() >= self.capacity {
            if let Some(old) = renders.order.pop_front() {
                renders.map.remove(&old);
            }
        }
        renders.order.push_back(key);
        renders.map.insert(key, value);
    }
}

/// An event of an `assessmentEvents` subscription: an `Event` to the schema, rendered through
/// the cache when the request carries a key (websocket subscriptions do).
pub(super) struct LiveEvent {
    pub assessment: AssessmentId,
    pub event: Arc<Event>,
}

impl OutputType for LiveEvent {
    fn type_name() -> Cow<'static, str> {
        GqlEvent::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        GqlEvent::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let shared = match (ctx.data_opt::<RequestKey>(), ctx.data_opt::<RenderCache>()) {
            (Some(request), Some(cache)) => Some((cache, (self.assessment, self.event.seq, *request))),
            _ => None,
        };
        if let Some((cache, key)) = &shared
            && let Some(value) = cache.get(key)
        {
            return Ok((*value).clone());
        }
        // Boxed: the subscription's stream keeps room for this future for as long as it lives,
        // though it only runs when an event is not in the cache.
        let value = Box::pin(GqlEvent((*self.event).clone()).resolve(ctx, field)).await?;
        if let Some((cache, key)) = shared {
            cache.put(key, Arc::new(value.clone()));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: i64, request: &str) -> RenderKey {
        (AssessmentId::new(), seq, RequestKey::from_text(request))
    }

    #[test]
    fn the_oldest_renderings_leave_first_when_the_cache_is_full() {
        let cache = RenderCache::new(2);
        let (a, b, c) = (key(1, "q"), key(2, "q"), key(3, "q"));
        cache.put(a, Arc::new(Value::from(1)));
        cache.put(b, Arc::new(Value::from(2)));
        cache.put(c, Arc::new(Value::from(3)));
        assert!(cache.get(&a).is_none());
        assert_eq!(cache.get(&b).as_deref(), Some(&Value::from(2)));
        assert_eq!(cache.get(&c).as_deref(), Some(&Value::from(3)));
        assert_eq!(cache.lock().order.len(), 2);
    }

    #[test]
    fn a_rendering_is_kept_under_its_own_request_and_event_only() {
        let cache = RenderCache::new(8);
        let k = key(1, "{ seq }");
        cache.put(k, Arc::new(Value::from("first")));
        // A second rendering of the same key does not replace the first.
        cache.put(k, Arc::new(Value::from("second")));
        assert_eq!(cache.get(&k).as_deref(), Some(&Value::from("first")));
        assert!(cache.get(&(k.0, 1, RequestKey::from_text("{ at }"))).is_none());
        assert!(cache.get(&(k.0, 2, k.2)).is_none());
        assert!(cache.get(&(AssessmentId::new(), 1, k.2)).is_none());
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
