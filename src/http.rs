//! The HTTP server: routes, health checks, request ids, client addresses, and graceful shutdown.
//! The GraphQL endpoints themselves live in `graphql::transport`.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::ClientAddress;
use crate::config::ServeConfig;
use crate::state::AppState;

/// Name of the cookie that carries the session token for the web application.
pub const SESSION_COOKIE: &str = "attest_session";

pub fn router(state: AppState) -> Router {
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state.clone())
        .merge(crate::graphql::transport::routes(state.clone()))
        // Last: the web application answers whatever path the API does not claim.
        .fallback_service(crate::web::routes(&state))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish. Periodic checkpoints
/// are taken meanwhile, and stop with the server.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let checkpoints = crate::audit::PeriodicCheckpoints::start(state.clone());
    // Live delivery runs as long as the server; dropping `live` stops it and closes websockets.
    let live = state.live.start();
    let hub = state.live.clone();
    let shutdown = async move {
        shutdown.await;
        // Websockets are not requests in flight: tell them to close now.
        hub.stop();
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    // After the connections closed: on PostgreSQL, the other servers hear that everyone left.
    live.stop().await;
    if let Some(checkpoints) = checkpoints {
        checkpoints.stop().await;
    }
    served?;
    Ok(())
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.db.ping().await {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
    }
}

/// The session token of a request: the bearer token, or else the session cookie.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return auth.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    session_cookie(headers)
}

pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the request's `Origin` is this server itself (same host and port as `Host`).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin.split_once("://").is_some_and(|(_, rest)| rest == host),
        _ => false,
    }
}

/// Where a request came from. Behind a trusted proxy, that proxy appends the address it saw as
/// the last `X-Forwarded-For` entry; earlier entries are the client's to forge.
pub fn client_address(config: &ServeConfig, headers: &HeaderMap, peer: SocketAddr) -> ClientAddress {
    if config.trust_forwarded_for
        && let Some(last) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty())
    {
        return ClientAddress(last.to_owned());
    }
    ClientAddress(peer.ip().to_string())
}
