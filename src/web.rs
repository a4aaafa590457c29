//! The web application: the static files under `web/`, embedded at build time by `build.rs` or,
//! with `--web-dir`, read from disk for development. `index.html` answers every path that names
//! no file, so the client's own routes survive a reload.

use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// No inline script or style, nothing from another origin; websockets back to this server only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self' ws: wss:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the files come from.
#[derive(Clone, Debug)]
enum Source {
    Embedded,
    Disk(PathBuf),
}

/// The fallback service: serves the web application for every path the API does not claim.
pub fn routes(state: &AppState) -> Router {
    let source = match &state.config.web_dir {
        Some(dir) => Source::Disk(dir.clone()),
        None => Source::Embedded,
    };
    Router::new().fallback(serve).with_state(source)
}

async fn serve(State(source): State<Source>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    if let Some(body) = load(&source, path).await {
        return respond(path, body);
    }
    // A client-side route (no extension) gets the application; a missing file is a 404.
    let last = path.rsplit('/').next().unwrap_or("");
    if !last.contains('.')
        && let Some(body) = load(&source, "index.html").await
    {
        return respond("index.html", body);
    }
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "not found").into_response()
}

async fn load(source: &Source, path: &str) -> Option<Vec<u8>> {
    match source {
        Source::Embedded => embedded::ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| b.to_vec()),
        Source::Disk(dir) => {
            let rel = Path::new(path);
            // Only plain names: no `..`, no absolute path, so nothing outside the directory.
            if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                return None;
            }
            let full = dir.join(rel);
            if !full.is_file() {
                return None;
            }
            tokio::fs::read(full).await.ok()
        }
    }
}

fn respond(path: &str, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    // The files are not fingerprinted: let the browser keep them but check on every use.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// The content type for a file name's extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_embedded() {
        assert!(embedded::ASSETS.iter().any(|(p, _)| *p == "index.html"));
    }

    #[test]
    fn scripts_are_served_as_javascript() {
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
