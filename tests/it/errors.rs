//! Errors are clear to clients and never leak internals; abusive requests are refused.

use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::helpers::{TestApp, code};

#[tokio::test]
async fn a_database_failure_shows_only_a_generic_internal_error() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    app.state.db.conn.execute_unprepared("ALTER TABLE units RENAME TO units_gone").await.unwrap();
    let body = app.graphql(Some(&admin), "{ units { nodes { id } } }", json!({})).await;
    assert_eq!(code(&body), "INTERNAL");
    assert_eq!(body["errors"][0]["message"], "internal error");
    let text = body.to_string().to_lowercase();
    for leak in ["units", "table", "relation", "sql", "database"] {
        assert!(!text.replace("\"units\"", "").contains(leak), "response leaks {leak:?}: {body}");
    }
}

#[tokio::test]
async fn malformed_and_invalid_requests_get_invalid_input() {
    let app = TestApp::spawn().await;
    let syntax = app.graphql(None, "{ me { ", json!({})).await;
    assert_eq!(code(&syntax), "INVALID_INPUT");
    let unknown = app.graphql(None, "{ nothingHere }", json!({})).await;
    assert_eq!(code(&unknown), "INVALID_INPUT");
    let admin = app.admin().await;
    let bad_id = app.graphql(Some(&admin), "{ unit(id: \"not-a-uuid\") { id } }", json!({})).await;
    assert_eq!(code(&bad_id), "INVALID_INPUT");
    assert_eq!(bad_id["errors"][0]["extensions"]["field"], "id");
    let missing = app
        .graphql(Some(&admin), "query($id: ID!) { unit(id: $id) { id } }", json!({ "id": uuid::Uuid::new_v4() }))
        .await;
    assert_eq!(code(&missing), "NOT_FOUND");
    let resp = app.client.post(format!("{}/graphql", app.base)).body("not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(code(&body), "INVALID_INPUT");
}

#[tokio::test]
async fn too_deep_too_complex_or_too_large_requests_are_refused() {
    let app = TestApp::spawn_with(|c| {
        c.max_query_depth = 4;
        c.max_query_complexity = 20;
        c.max_request_bytes = 4096;
    })
    .await;
    let admin = app.admin().await;
    let deep = app.graphql(Some(&admin), "{ users { edges { node { roles { role } } } } }", json!({})).await;
    assert_eq!(code(&deep), "INVALID_INPUT");
    assert!(deep["errors"][0]["message"].as_str().unwrap().to_lowercase().contains("deep"), "{deep}");
    let wide = (0..30).map(|i| format!("a{i}: me {{ id }}")).collect::<Vec<_>>().join(" ");
    let complex = app.graphql(Some(&admin), &format!("{{ {wide} }}"), json!({})).await;
    assert_eq!(code(&complex), "INVALID_INPUT");
    assert!(complex["errors"][0]["message"].as_str().unwrap().to_lowercase().contains("complex"), "{complex}");
    let big = format!("{{ me {{ id }} }} #{}", "x".repeat(8000));
    let resp = app.client.post(format!("{}/graphql", app.base)).json(&json!({ "query": big })).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(code(&body), "INVALID_INPUT");
}

#[tokio::test]
async fn health_and_readiness_answer_and_requests_get_an_id() {
    let app = TestApp::spawn().await;
    let health = app.client.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(ready.headers().get("x-request-id").is_some());
    let graphiql = app.client.get(format!("{}/graphql", app.base)).send().await.unwrap();
    assert!(graphiql.text().await.unwrap().to_lowercase().contains("graphiql"));
}

#[test]
fn a_database_url_never_shows_its_password() {
    for raw in [
        "postgres://attest:s3cret-pw@db.internal:5432/attest",
        "postgres://attest:s3cret@pw@db.internal/attest",
        "postgres://db.internal/attest?user=attest&password=s3cret-pw",
    ] {
        let url = attest::config::DatabaseUrl::new(raw);
        assert!(!format!("{url:?}").contains("s3cret"), "{url:?}");
        assert!(!url.to_string().contains("s3cret"), "{url}");
        assert!(url.to_string().contains("db.internal"), "{url}");
    }
    let secret = attest::config::Secret::new("hunter2hunter2");
    assert!(!format!("{secret:?}").contains("hunter2"));
}
