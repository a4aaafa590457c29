//! The GraphQL API: the only module that knows async-graphql. Resolvers parse input into typed
//! values, call the domain modules (which ask the policy), and map `AppError` to
//! `extensions.code` here, in one place.

mod assessment_api;
mod assessment_types;
mod audit_api;
mod history_api;
mod live;
mod mutation;
mod query;
mod subscription;
pub mod transport;
mod types;
mod ws;

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, Response, Schema, ServerError};

use crate::auth::{Actor, ClientAddress};
use crate::config::ServeConfig;
use crate::error::{AppError, LogDisplay};
use crate::state::AppState;

use assessment_api::{AssessmentMutation, AssessmentQuery};
use audit_api::{AuditMutation, AuditQuery};
use history_api::HistoryQuery;
use mutation::CoreMutation;
use query::CoreQuery;
use subscription::{LiveMutation, Subscription};

#[derive(async_graphql::MergedObject, Default)]
pub struct Query(CoreQuery, AssessmentQuery, HistoryQuery, AuditQuery);

#[derive(async_graphql::MergedObject, Default)]
pub struct Mutation(CoreMutation, AssessmentMutation, AuditMutation, LiveMutation);

pub type AttestSchema = Schema<Query, Mutation, Subscription>;

/// Event payloads kept for live subscribers: enough for the recent events of busy assessments
/// under a few distinct subscription requests, each payload a few hundred bytes.
const PAYLOAD_CACHE_CAPACITY: usize = 1024;

/// Parsed query documents kept, for websocket subscriptions and HTTP requests alike: clients of
/// one kind send the same few queries.
const DOCUMENT_CACHE_CAPACITY: usize = 64;

/// What the HTTP layer learned about the caller, handed to every resolver.
#[derive(Clone, Debug)]
pub struct Caller {
    pub actor: Option<Actor>,
    /// Why a presented token was not accepted, if one was presented and refused.
    pub refused: Option<&'static str>,
    pub address: ClientAddress,
}

pub fn build_schema(state: AppState) -> AttestSchema {
    let config: Arc<ServeConfig> = state.config.clone();
    let (answers, templates) = assessment_types::loaders(&state);
    Schema::build(Query::default(), Mutation::default(), Subscription)
        .data(state)
        .data(answers)
        .data(templates)
        .data(Arc::new(live::Payloads::new(PAYLOAD_CACHE_CAPACITY)))
        .data(live::Documents::new(DOCUMENT_CACHE_CAPACITY))
        .limit_depth(config.max_query_depth)
        .limit_complexity(config.max_query_complexity)
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), Subscription).finish().sdl()
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        if let AppError::Internal(_) = &err {
            tracing::error!(error = %LogDisplay(&err), "request failed");
        }
        async_graphql::Error::new(err.client_message()).extend_with(|_, ext| {
            ext.set("code", err.code());
            match &err {
                AppError::InvalidInput { field, reason } => {
                    ext.set("field", field.as_str());
                    ext.set("reason", reason.as_str());
                }
                AppError::RateLimited { retry_after_secs } => ext.set("retryAfterSeconds", *retry_after_secs),
                AppError::StaleRevision { current } => {
                    if let Ok(v) = async_graphql::Value::from_json(current.clone()) {
                        ext.set("current", v);
                    }
                }
                AppError::InvalidDocument { field, problems } => {
                    ext.set("field", field.as_str());
                    ext.set("problems", problems.clone());
                }
                _ => {}
            }
        })
    }
}

pub(crate) fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

pub(crate) fn caller<'a>(ctx: &Context<'a>) -> Option<&'a Caller> {
    ctx.data_opt::<Caller>()
}

/// The authenticated actor, or UNAUTHENTICATED with the reason a token was refused.
pub(crate) fn actor<'a>(ctx: &Context<'a>) -> Result<&'a Actor, AppError> {
    match caller(ctx) {
        Some(Caller { actor: Some(actor), .. }) => Ok(actor),
        Some(Caller { refused: Some(reason), .. }) => Err(AppError::Unauthenticated(reason)),
        _ => Err(AppError::Unauthenticated("authentication required")),
    }
}

/// Makes sure every error leaving the executor carries a code. An error from a resolver without
/// one (async-graphql's own conversions of foreign errors) could carry internal text, so it is
/// replaced by a generic internal error and logged; an error outside any field (parsing,
/// validation, depth and complexity limits) describes the request and is marked INVALID_INPUT.
/// Every response goes through here before it is sent (`transport`, `live`). It is not a schema
/// extension: with any extension registered, async-graphql wraps every field's resolution in the
/// extension chain, a boxed future per field.
pub(crate) fn with_codes(mut response: Response) -> Response {
    for err in &mut response.errors {
        ensure_code(err);
    }
    response
}

fn ensure_code(err: &mut ServerError) {
    let has_code = err.extensions.as_ref().is_some_and(|e| e.get("code").is_some());
    if has_code {
        return;
    }
    // async-graphql's own complaints about argument values describe the request, not the server.
    let about_input =
        err.message.starts_with("Invalid value for argument") || err.message.starts_with("Failed to parse");
    if err.path.is_empty() || about_input {
        let message = err.message.clone();
        *err = ServerError { extensions: None, ..err.clone() };
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", "INVALID_INPUT");
        ext.set("reason", message);
        err.extensions = Some(ext);
    } else {
        tracing::error!(error = %err.message, path = ?err.path, "resolver error without a code");
        err.message = "internal error".to_owned();
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", "INTERNAL");
        err.extensions = Some(ext);
        err.source = None;
    }
}
