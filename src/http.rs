//! The HTTP server: routes, the GraphQL endpoint, health checks, request ids and graceful
//! shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{self, ClientAddress};
use crate::graphql::{self, AttestSchema, Caller};
use crate::state::AppState;

#[derive(Clone)]
struct Http {
    state: AppState,
    schema: AttestSchema,
}

pub fn router(state: AppState) -> Router {
    let schema = graphql::build_schema(state.clone());
    let http = Http { state, schema };
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/graphql", get(graphiql).post(graphql_post))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(http)
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

async fn readyz(State(http): State<Http>) -> Response {
    if http.state.db.ping().await {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
    }
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

fn bearer_or_cookie(headers: &HeaderMap) -> Option<String> {
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return auth.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == graphql::SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

fn client_address(http: &Http, headers: &HeaderMap, peer: SocketAddr) -> ClientAddress {
    if http.state.config.trust_forwarded_for
        && let Some(first) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    {
        return ClientAddress(first.to_owned());
    }
    ClientAddress(peer.ip().to_string())
}

async fn identify(http: &Http, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller, crate::AppError> {
    let address = client_address(http, headers, peer);
    let Some(token) = bearer_or_cookie(headers) else {
        return Ok(Caller { actor: None, refused: None, address });
    };
    match auth::authenticate(&http.state, &token).await {
        Ok(actor) => Ok(Caller { actor: Some(actor), refused: None, address }),
        Err(crate::AppError::Unauthenticated(reason)) => Ok(Caller { actor: None, refused: Some(reason), address }),
        Err(other) => Err(other),
    }
}

/// A GraphQL-shaped error response outside the executor.
fn request_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

async fn graphql_post(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let limit = http.state.config.max_request_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return request_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "INVALID_INPUT",
            format!("request body is larger than {limit} bytes"),
        );
    };
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                format!("request body is not a GraphQL request: {e}"),
            );
        }
    };
    let caller = match identify(&http, &parts.headers, peer).await {
        Ok(caller) => caller,
        Err(err) => {
            tracing::error!(error = %crate::error::LogDisplay(&err), "authentication failed");
            return request_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error".into());
        }
    };
    let mut response = http.schema.execute(request.data(caller)).await;
    for err in &mut response.errors {
        graphql::ensure_code(err);
    }
    let mut out = Json(&response).into_response();
    for (name, value) in response.http_headers.iter() {
        out.headers_mut().append(name, value.clone());
    }
    out.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
}

/// graphql-transport-ws. The session token comes in `connection_init`'s payload
/// (`{"token": "…"}`) or, from the server's own pages, as the session cookie.
async fn graphql_ws(
    State(http): State<Http>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let address = client_address(&http, &headers, peer);
    let cookie_token = bearer_or_cookie(&headers);
    upgrade
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(http.state.config.max_request_bytes)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let state = http.state.clone();
            GraphQLWebSocket::new(socket, http.schema.clone(), protocol)
                .keepalive_timeout(Duration::from_secs(60))
                .on_connection_init(move |payload| async move {
                    let token = payload.get("token").and_then(|t| t.as_str()).map(str::to_owned).or(cookie_token);
                    let token = token.ok_or_else(|| async_graphql::Error::new("authentication required"))?;
                    let actor = auth::authenticate(&state, &token)
                        .await
                        .map_err(|e| async_graphql::Error::new(e.client_message()))?;
                    let mut data = async_graphql::Data::default();
                    data.insert(Caller { actor: Some(actor), refused: None, address });
                    Ok(data)
                })
                .serve()
                .await
        })
}
