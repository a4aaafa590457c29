//! Durability: an acknowledged write survives the server being killed, and a write that fails
//! inside a group commit fails alone.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{TestApp, TestDb, code};

const ADMIN: &str = "durable@agency.test";
const PASSWORD: &str = "a durable administrator password";

/// The real `attest serve` as a separate process.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts a server on `db`, keeping its signing key in `keys` (never the working directory).
    async fn start(db: &TestDb, keys: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_attest"))
            .arg("serve")
            .env("ATTEST_DATABASE_URL", db.url.expose())
            .env("ATTEST_LISTEN", format!("127.0.0.1:{port}"))
            .env("ATTEST_KEY_FILE", keys.join("attest.key"))
            .env("ATTEST_ADMIN_EMAIL", ADMIN)
            .env("ATTEST_ADMIN_PASSWORD", PASSWORD)
            .env("ATTEST_LOGIN_DELAY_MS", "0")
            .env("ATTEST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start attest serve");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return Server { child, base };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("attest serve did not become ready");
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    fn kill(mut self) {
        self.child.kill().expect("kill the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn gql(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
    vars: Value,
) -> Result<Value, String> {
    let mut req = client.post(format!("{base}/graphql")).json(&json!({ "query": query, "variables": vars }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    resp.json::<Value>().await.map_err(|e| e.to_string())
}

async fn ok(client: &reqwest::Client, base: &str, token: Option<&str>, query: &str, vars: Value) -> Value {
    let body = gql(client, base, token, query, vars).await.expect("server answers");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_and_the_log_still_verifies() {
    let db = TestDb::new().await;
    let keys = tempfile::tempdir().expect("a directory for the key");
    let client = reqwest::Client::new();
    let server = Server::start(&db, keys.path()).await;
    let login = ok(
        &client,
        &server.base,
        None,
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
        json!({ "e": ADMIN, "p": PASSWORD }),
    )
    .await;
    let token = login["login"]["token"].as_str().unwrap().to_owned();
    let unit =
        ok(&client, &server.base, Some(&token), "mutation { createUnit(name: \"Durability\") { id } }", json!({}))
            .await["createUnit"]["id"]
            .clone();
    let templates = ok(
        &client,
        &server.base,
        Some(&token),
        "{ templates { id key sections { questions { id choices { id } } } } }",
        json!({}),
    )
    .await;
    let readiness =
        templates["templates"].as_array().unwrap().iter().find(|t| t["key"] == "ai-readiness").unwrap().clone();
    let questions: Vec<(String, Value)> = readiness["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["questions"].as_array().unwrap().clone())
        .filter(|q| q["choices"].as_array().is_some_and(|c| !c.is_empty()))
        .take(16)
        .map(|q| (q["id"].as_str().unwrap().to_owned(), q["choices"][0]["id"].clone()))
        .collect();
    assert_eq!(questions.len(), 16);
    let created = ok(
        &client,
        &server.base,
        Some(&token),
        "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id stream } }",
        json!({ "i": { "unitId": unit, "templateId": readiness["id"], "title": "Crash test", "subject": "Durability" } }),
    )
    .await;
    let id = created["createAssessment"]["id"].as_str().unwrap().to_owned();
    let stream = created["createAssessment"]["stream"].as_str().unwrap().to_owned();

    // The highest write number each writer saw acknowledged, across every run.
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0; questions.len()]));
    let mut server = Some(server);
    for run in 0..3 {
        let running = match server.take() {
            Some(s) => s,
            None => Server::start(&db, keys.path()).await,
        };
        let base = running.base.clone();
        let mut writers = Vec::new();
        for (w, (question, value)) in questions.iter().enumerate() {
            let (client, base, token, id, acked) =
                (client.clone(), base.clone(), token.clone(), id.clone(), acked.clone());
            let (question, value) = (question.clone(), value.clone());
            writers.push(tokio::spawn(async move {
                let mut n = acked.lock().await[w];
                loop {
                    n += 1;
                    let input = json!({ "assessmentId": id, "questionId": question, "value": value, "note": format!("write {n}") });
                    match gql(&client, &base, Some(&token), "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { note } }", json!({ "i": input })).await {
                        Ok(body) if body.get("errors").is_none() => {
                            assert_eq!(body["data"]["setAnswer"]["note"], format!("write {n}"));
                            acked.lock().await[w] = n;
                        }
                        // The server died under the request: not acknowledged.
                        _ => return,
                    }
                }
            }));
        }
        // Let some writes be acknowledged in this run, then kill at a random moment.
        let before: u64 = acked.lock().await.iter().sum();
        for _ in 0..600 {
            if acked.lock().await.iter().sum::<u64>() >= before + 16 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pause = rand::rng().random_range(0..500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        running.kill();
        for w in writers {
            w.await.expect("writer task");
        }
        eprintln!("run {run}: killed after {pause} ms with {:?} acknowledged", acked.lock().await);
    }

    let running = Server::start(&db, keys.path()).await;
    let answers = ok(
        &client,
        &running.base,
        Some(&token),
        "query($id: ID!) { assessment(id: $id) { answers { questionId note } } }",
        json!({ "id": id }),
    )
    .await;
    let acked = acked.lock().await.clone();
    assert!(acked.iter().sum::<u64>() > 0, "some writes were acknowledged");
    for (w, (question, _)) in questions.iter().enumerate() {
        let stored = answers["assessment"]["answers"].as_array().unwrap().iter().find(|a| a["questionId"] == *question);
        let stored_n: u64 = stored
            .and_then(|a| a["note"].as_str())
            .and_then(|n| n.strip_prefix("write "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // A write may have committed without its answer reaching the client, never the reverse.
        assert!(stored_n >= acked[w], "{question}: acknowledged write {} but the database holds {stored_n}", acked[w]);
    }
    let verified = ok(
        &client,
        &running.base,
        Some(&token),
        "query($s: String!) { verifyStream(stream: $s) { ok eventsChecked problem } }",
        json!({ "s": stream }),
    )
    .await;
    assert_eq!(verified["verifyStream"]["ok"], true, "{verified}");
    let check = Command::new(env!("CARGO_BIN_EXE_attest"))
        .args(["rebuild", "--check"])
        .env("ATTEST_DATABASE_URL", db.url.expose())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "state differs from the log after crashes: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[tokio::test]
async fn a_failing_write_in_a_group_fails_alone() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let unit = app.create_unit(&admin, "Group commit", None).await;
    let templates = app.ok(Some(&admin), "{ templates { id key } }", json!({})).await;
    let template =
        templates["templates"].as_array().unwrap().iter().find(|t| t["key"] == "ai-readiness").unwrap()["id"].clone();
    let id = app
        .ok(
            Some(&admin),
            "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id template { sections { questions { id choices { id } } } } } }",
            json!({ "i": { "unitId": unit, "templateId": template, "title": "Many at once", "subject": "Batches" } }),
        )
        .await["createAssessment"]
        .clone();
    let questions: Vec<(String, Value)> = id["template"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["questions"].as_array().unwrap().clone())
        .filter(|q| q["choices"].as_array().is_some_and(|c| !c.is_empty()))
        .take(24)
        .map(|q| (q["id"].as_str().unwrap().to_owned(), q["choices"][0]["id"].clone()))
        .collect();
    let id = id["id"].as_str().unwrap().to_owned();
    // Every third write is invalid (a value no choice has), every third stale (expects a
    // revision the question never had); they all race, so they land in shared commits.
    let writes = questions.iter().enumerate().map(|(i, (q, v))| {
        let mut input = json!({ "assessmentId": id, "questionId": q, "value": v });
        match i % 3 {
            1 => input["value"] = json!("no such choice"),
            2 => input["expectedRevision"] = json!(7),
            _ => {}
        }
        let (app, admin) = (&app, &admin);
        async move {
            app.graphql(
                Some(admin),
                "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { revision } }",
                json!({ "i": input }),
            )
            .await
        }
    });
    let results = futures_util::future::join_all(writes).await;
    for (i, body) in results.iter().enumerate() {
        match i % 3 {
            0 => assert!(body.get("errors").is_none(), "a valid write in the group failed: {body}"),
            1 => assert_eq!(code(body), "INVALID_INPUT", "{body}"),
            _ => assert_eq!(code(body), "CONFLICT", "{body}"),
        }
    }
    let answers = app
        .ok(
            Some(&admin),
            "query($id: ID!) { assessment(id: $id) { answers { questionId value } } }",
            json!({ "id": id }),
        )
        .await;
    let stored: Vec<&str> = answers["assessment"]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["questionId"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> =
        questions.iter().enumerate().filter(|(i, _)| i % 3 == 0).map(|(_, (q, _))| q.as_str()).collect();
    let mut sorted = stored.clone();
    sorted.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(sorted, want, "exactly the valid writes are stored");
    let log =
        app.ok(Some(&admin), "query($id: ID!) { assessmentHistory(id: $id) { type } }", json!({ "id": id })).await;
    let sets = log["assessmentHistory"].as_array().unwrap().iter().filter(|e| e["type"] == "answer.set").count();
    assert_eq!(sets, expected.len(), "one event per valid write, none for a failed one");
    let report = attest::replay::rebuild(&app.state.db, true).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
}
