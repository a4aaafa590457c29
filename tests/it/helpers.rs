//! `TestApp`: the real server on a random port with its own database, and helpers to talk to it.

use std::time::Duration;

use attest::clock::Clock;
use attest::config::{DatabaseUrl, Secret, ServeConfig};
use attest::state::AppState;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const ADMIN_EMAIL: &str = "admin@agency.test";
pub const ADMIN_PASSWORD: &str = "correct horse battery";
pub const NEW_PASSWORD: &str = "a brand new passphrase";

/// A database for one test, removed afterwards.
pub struct TestDb {
    pub url: DatabaseUrl,
    pg_drop: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        match std::env::var("ATTEST_TEST_DATABASE_URL") {
            Ok(base) if !base.is_empty() => {
                let name = format!("attest_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&base).await.expect("ATTEST_TEST_DATABASE_URL must reach PostgreSQL");
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
                admin.close().await.ok();
                let (without_query, query) = match base.split_once('?') {
                    Some((b, q)) => (b, format!("?{q}")),
                    None => (base.as_str(), String::new()),
                };
                let (prefix, _) = without_query.rsplit_once('/').expect("a PostgreSQL URL ends with /database");
                let url = format!("{prefix}/{name}{query}");
                TestDb { url: DatabaseUrl::new(url), pg_drop: Some((base, name)), _dir: None }
            }
            _ => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("attest.db").display());
                TestDb { url: DatabaseUrl::new(url), pg_drop: None, _dir: Some(dir) }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_drop.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, name)) = self.pg_drop.take() {
            // Drop runs outside any runtime we could block on: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = Database::connect(&base).await {
                        let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                        admin.close().await.ok();
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Clock,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    pub db: TestDb,
    /// Holds the server's key file (`state.config.key_file`), removed afterwards.
    pub key_dir: tempfile::TempDir,
}

pub fn test_config() -> ServeConfig {
    let mut config = ServeConfig::defaults();
    config.admin_email = ADMIN_EMAIL.into();
    config.admin_password = Some(Secret::new(ADMIN_PASSWORD));
    config.agency_name = "North Police".into();
    config.login_delay_ms = 0;
    config
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// Serves `state` on a free port until the `TestApp` is dropped.
    async fn serve(state: AppState, clock: Clock, db: TestDb, key_dir: tempfile::TempDir) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (tx, rx) = oneshot::channel();
        let server_state = state.clone();
        tokio::spawn(async move {
            attest::http::serve(server_state, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        TestApp { base, client, clock, state, shutdown: Some(tx), db, key_dir }
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
        let key_dir = tempfile::tempdir().expect("create a temporary directory");
        let mut config = test_config();
        config.key_file = key_dir.path().join("attest.key");
        adjust(&mut config);
        let db = TestDb::new().await;
        let clock = Clock::manual_at(chrono::Utc::now());
        let state = attest::bootstrap::start(&db.url, config, clock.clone()).await.expect("server state");
        attest::bootstrap::first_start(&state).await.expect("first start");
        TestApp::serve(state, clock, db, key_dir).await
    }

    /// Sends a GraphQL request and returns the whole JSON response.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req =
            self.client.post(format!("{}/graphql", self.base)).json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("request sent");
        resp.json().await.expect("JSON response")
    }

    /// Sends a request that must succeed, returning `data`.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.graphql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        self.graphql(
            None,
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token user { id email mustChangePassword } } }",
            json!({ "e": email, "p": password }),
        )
        .await
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let body = self.login(email, password).await;
        body["data"]["login"]["token"].as_str().unwrap_or_else(|| panic!("login failed: {body}")).to_owned()
    }

    pub async fn admin(&self) -> String {
        self.token(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    pub async fn agency_stream(&self, token: &str) -> String {
        self.ok(Some(token), "{ agency { stream } }", json!({})).await["agency"]["stream"]
            .as_str()
            .expect("stream")
            .to_owned()
    }

    pub async fn create_unit(&self, token: &str, name: &str, parent: Option<&str>) -> String {
        let data = self
            .ok(
                Some(token),
                "mutation($n: String!, $p: ID) { createUnit(name: $n, parentId: $p) { id } }",
                json!({ "n": name, "p": parent }),
            )
            .await;
        data["createUnit"]["id"].as_str().expect("unit id").to_owned()
    }

    /// Creates a user as the given administrator, then signs in as that user and sets a new
    /// password, so the returned token can do everything the user's roles allow.
    pub async fn create_user(&self, admin: &str, email: &str, is_admin: bool) -> (String, String) {
        let data = self
            .ok(
                Some(admin),
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                json!({ "i": { "email": email, "displayName": email, "password": "initial password 1", "isAdmin": is_admin } }),
            )
            .await;
        let id = data["createUser"]["id"].as_str().expect("user id").to_owned();
        let first = self.token(email, "initial password 1").await;
        self.ok(
            Some(&first),
            "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) { id } }",
            json!({ "c": "initial password 1", "n": NEW_PASSWORD }),
        )
        .await;
        (id, first)
    }

    pub async fn grant(&self, admin: &str, user: &str, unit: &str, role: &str) {
        self.ok(
            Some(admin),
            &format!("mutation($u: ID!, $n: ID!) {{ grantRole(userId: $u, unitId: $n, role: {role}) {{ role }} }}"),
            json!({ "u": user, "n": unit }),
        )
        .await;
    }

    /// All events of a stream, read directly with the administrator's token.
    pub async fn events(&self, admin: &str, stream: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let data = self
                .ok(
                    Some(admin),
                    "query($s: String!, $a: String) { events(stream: $s, after: $a, first: 100) {
                        pageInfo { hasNextPage endCursor }
                        nodes { position stream seq type actor at payload prevHash hash } } }",
                    json!({ "s": stream, "a": after }),
                )
                .await;
            let page = &data["events"];
            out.extend(page["nodes"].as_array().expect("nodes").iter().cloned());
            if !page["pageInfo"]["hasNextPage"].as_bool().unwrap_or(false) {
                return out;
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The error code of the first error of a response.
pub fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("expected an error with a code: {body}"))
}

/// A graphql-transport-ws client connection.
pub struct Ws {
    socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

/// How long a test waits for a message that should come.
pub const WAIT: Duration = Duration::from_secs(30);

impl TestApp {
    /// Opens `/graphql/ws` without sending anything yet. With `recv_buffer`, the client socket's
    /// receive buffer is that small, so that a client that stops reading is soon noticed.
    pub async fn ws_raw(&self, recv_buffer: Option<u32>) -> Ws {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let addr: std::net::SocketAddr = self.base.trim_start_matches("http://").parse().expect("server address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("receive buffer size");
        }
        let stream = socket.connect(addr).await.expect("connect");
        let mut req = format!("ws://{addr}/graphql/ws").into_client_request().expect("request");
        req.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
        let (socket, _) = tokio_tungstenite::client_async(req, stream).await.expect("websocket handshake");
        Ws { socket }
    }

    /// Opens `/graphql/ws` and completes `connection_init` with the token.
    pub async fn ws(&self, token: &str) -> Ws {
        self.ws_with(token, None).await
    }

    pub async fn ws_with(&self, token: &str, recv_buffer: Option<u32>) -> Ws {
        let mut ws = self.ws_raw(recv_buffer).await;
        ws.send(json!({ "type": "connection_init", "payload": { "token": token } })).await;
        let ack = ws.next().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws
    }
}

impl Ws {
    pub async fn send(&mut self, message: Value) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        self.socket.send(Message::Text(message.to_string().into())).await.expect("send");
    }

    /// Starts a subscription (or any operation) under `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next protocol message, or a panic if the connection closes or nothing comes in time.
    pub async fn next(&mut self) -> Value {
        match self.next_or_close().await {
            Ok(message) => message,
            Err((code, reason)) => panic!("connection closed ({code}): {reason}"),
        }
    }

    /// The next protocol message, or the close code and reason.
    pub async fn next_or_close(&mut self) -> Result<Value, (u16, String)> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        // One deadline for the whole wait: the server's pings must not extend it.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.socket.next()).await.expect("a message in time");
            match msg {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON message");
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Ok(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.as_str().to_owned())));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err((1006, e.to_string())),
                None => return Err((1006, "connection ended".into())),
            }
        }
    }

    /// The next `next` payload of subscription `id`, skipping other subscriptions' messages.
    pub async fn next_of(&mut self, id: &str) -> Value {
        loop {
            let msg = self.next().await;
            if msg["id"] == id {
                assert!(msg["type"] == "next" || msg["type"] == "error", "unexpected message {msg}");
                return msg["payload"].clone();
            }
        }
    }

    /// Waits for the server to close the connection, returning the code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Err(close) = self.next_or_close().await {
                return close;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

impl TestApp {
    /// A second server on the same database as this one (for several servers sharing
    /// PostgreSQL). The database belongs to `self` and is dropped with it.
    pub async fn spawn_beside(&self, adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
        let mut config = test_config();
        adjust(&mut config);
        // The same key as the first server: several servers of one deployment share it.
        let key_dir = tempfile::tempdir().expect("create a temporary directory");
        config.key_file = key_dir.path().join("attest.key");
        std::fs::copy(&self.state.config.key_file, &config.key_file).expect("copy the server key");
        let db = TestDb { url: self.db.url.clone(), pg_drop: None, _dir: None };
        let clock = Clock::manual_at(chrono::Utc::now());
        let state = attest::bootstrap::start(&db.url, config, clock.clone()).await.expect("server state");
        TestApp::serve(state, clock, db, key_dir).await
    }
}
