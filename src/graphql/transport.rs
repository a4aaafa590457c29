//! GraphQL over HTTP (`POST /graphql`, GraphiQL on `GET /graphql`) and over websockets
//! (`/graphql/ws`, graphql-transport-ws).

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

use super::{AttestSchema, Caller, build_schema};
use crate::auth;
use crate::error::{AppError, LogDisplay};
use crate::http::{client_address, same_origin, session_cookie, session_token};
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
    let caller = match identify(&ep.state, &parts.headers, peer).await {
        Ok(caller) => caller,
        Err(err) => {
            tracing::error!(error = %LogDisplay(&err), "authentication failed");
            return request_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error".into());
        }
    };
    let response = ep.schema.execute(request.data(caller)).await;
    let mut out = Json(&response).into_response();
    for (name, value) in response.http_headers.iter() {
        out.headers_mut().append(name, value.clone());
    }
    out.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
}

/// graphql-transport-ws. The session token comes in `connection_init`'s payload
/// (`{"token": "…"}`) or, when the page is the server's own, as the session cookie.
async fn graphql_ws(
    State(ep): State<Endpoint>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let address = client_address(&ep.state.config, &headers, peer);
    let cookie_token = if same_origin(&headers) { session_cookie(&headers) } else { None };
    upgrade
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(ep.state.config.max_request_bytes)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let state = ep.state.clone();
            GraphQLWebSocket::new(socket, ep.schema.clone(), protocol)
                .keepalive_timeout(Duration::from_secs(60))
                .on_connection_init(move |payload| async move {
                    let token = payload.get("token").and_then(|t| t.as_str()).map(str::to_owned).or(cookie_token);
                    let token = token.ok_or_else(|| async_graphql::Error::new("authentication required"))?;
                    let actor = auth::authenticate(&state, &token).await.map_err(|e| {
                        if let AppError::Internal(_) = &e {
                            tracing::error!(error = %LogDisplay(&e), "websocket authentication failed");
                        }
                        async_graphql::Error::new(e.client_message())
                    })?;
                    let mut data = async_graphql::Data::default();
                    data.insert(Caller { actor: Some(actor), refused: None, address });
                    Ok(data)
                })
                .serve()
                .await
        })
}
