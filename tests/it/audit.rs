//! Auditing the log: `attest verify` finds tampering done directly in the database, a checkpoint
//! kept before a rewrite exposes it even when every hash was recomputed, bundles verify offline,
//! and the API shows each agency only what is its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use attest::checkpoints::{Checkpoint, InclusionProof, StreamHead, verify_inclusion};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};

use crate::helpers::{TestApp, code};

const TEXT_QUESTIONS: [&str; 3] = ["intake-purpose", "intake-decisions-supported", "intake-data"];

/// Runs the real binary against the app's database and key file.
fn attest(app: &TestApp, args: &[&str]) -> Output {
    attest_with_key(app, &app.state.config.key_file, args)
}

/// Runs the real binary against the app's database, with `key_file` as its key file.
fn attest_with_key(app: &TestApp, key_file: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attest"))
        .args(args)
        .env("ATTEST_DATABASE_URL", app.db.url.expose())
        .env("ATTEST_KEY_FILE", key_file)
        .env("ATTEST_LOG", "warn")
        .output()
        .expect("run attest")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn both(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn file(app: &TestApp, name: &str) -> PathBuf {
    app.key_dir.path().join(name)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Creates a unit and an assessment in it as the administrator, and answers three questions, so
/// that the assessment's stream holds at least four events. Returns the assessment's id.
async fn assessment_with_answers(app: &TestApp, admin: &str) -> String {
    let unit = app.create_unit(admin, "Digital Forensics", None).await;
    let templates = app.ok(Some(admin), "{ templates { id key } }", json!({})).await;
    let template =
        templates["templates"].as_array().unwrap().iter().find(|t| t["key"] == "ai-system-risk").unwrap()["id"].clone();
    let data = app
        .ok(
            Some(admin),
            "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id } }",
            json!({ "i": { "unitId": unit, "templateId": template, "title": "Licence plate readers" } }),
        )
        .await;
    let id = data["createAssessment"]["id"].as_str().unwrap().to_owned();
    for (i, question) in TEXT_QUESTIONS.iter().enumerate() {
        app.ok(
            Some(admin),
            "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { revision } }",
            json!({ "i": { "assessmentId": id, "questionId": question, "value": format!("Answer number {i}") } }),
        )
        .await;
    }
    id
}

/// How many events a stream holds now.
async fn stream_length(app: &TestApp, stream: &str) -> i64 {
    attest::db::events::page(&app.state.db.conn, stream, 0, 1000).await.unwrap().len() as i64
}

/// A raw connection with the append-only triggers of `events` dropped, as someone with database
/// access could.
async fn tamperer(app: &TestApp) -> DatabaseConnection {
    unguarded(app, "events").await
}

/// A raw connection with the append-only triggers of `table` dropped.
async fn unguarded(app: &TestApp, table: &str) -> DatabaseConnection {
    let conn = Database::connect(app.db.url.expose()).await.expect("raw connection");
    let sql = if app.db.is_postgres() {
        format!("DROP TRIGGER {table}_refuse_update ON {table}")
    } else {
        format!("DROP TRIGGER {table}_refuse_update; DROP TRIGGER {table}_refuse_delete")
    };
    conn.execute_unprepared(&sql).await.expect("drop the triggers");
    conn
}

fn assert_problem(out: &Output, stream: &str, seq: i64) {
    let text = stdout(out);
    assert!(!out.status.success(), "verify passed a tampered log:\n{}", both(out));
    let line = text
        .lines()
        .find(|l| l.starts_with("PROBLEM") && l.contains(stream))
        .unwrap_or_else(|| panic!("no problem named {stream}:\n{}", both(out)));
    assert!(line.contains(&format!("at sequence {seq}:")), "{line}");
    assert_eq!(text.lines().filter(|l| l.starts_with("PROBLEM")).count(), 1, "one broken stream:\n{text}");
}

/// The lines of `attest verify`'s output that name a problem.
fn problems(out: &Output) -> Vec<String> {
    stdout(out).lines().filter(|l| l.starts_with("PROBLEM")).map(str::to_owned).collect()
}

/// The one problem line about `stream` that names what `who` says (a stored checkpoint or the
/// kept file), asserting that verify failed.
fn problem_of(out: &Output, who: &str, stream: &str) -> String {
    assert!(!out.status.success(), "verify passed a tampered log:\n{}", both(out));
    let lines: Vec<String> =
        problems(out).into_iter().filter(|l| l.starts_with(&format!("PROBLEM {who}")) && l.contains(stream)).collect();
    assert_eq!(lines.len(), 1, "one problem of {who} with {stream}:\n{}", both(out));
    lines.into_iter().next().unwrap()
}

/// How a stored checkpoint begins its problem lines.
fn stored(c: &attest::audit::StoredCheckpoint) -> String {
    format!(
        "stored checkpoint {} (position {}, taken at {}):",
        c.id, c.signed.checkpoint.position, c.signed.checkpoint.at
    )
}

/// A raw connection with the append-only triggers of `checkpoints` dropped, as someone with
/// database access could.
async fn checkpoint_tamperer(app: &TestApp) -> DatabaseConnection {
    unguarded(app, "checkpoints").await
}

async fn set_answer(app: &TestApp, admin: &str, id: &str, question: &str, value: &str) {
    app.ok(
        Some(admin),
        "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { revision } }",
        json!({ "i": { "assessmentId": id, "questionId": question, "value": value } }),
    )
    .await;
}

async fn store_checkpoint(app: &TestApp) -> attest::audit::StoredCheckpoint {
    attest::audit::create_checkpoint(&app.state, attest::events::EventActor::System).await.unwrap()
}

#[tokio::test]
async fn verify_passes_an_intact_log_and_names_a_changed_payload() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let stream = format!("assessment:{id}");

    let out = attest(&app, &["verify"]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(stdout(&out).contains("OK: the log is intact"), "{}", both(&out));
    assert!(stdout(&out).contains("checked "), "{}", both(&out));

    let conn = tamperer(&app).await;
    conn.execute_unprepared(&format!(
        "UPDATE events SET payload = '{{\"value\":\"Something else\"}}' WHERE stream = '{stream}' AND seq = 3"
    ))
    .await
    .unwrap();
    let out = attest(&app, &["verify"]);
    assert_problem(&out, &stream, 3);
    assert!(stdout(&out).contains("hash does not match"), "{}", both(&out));
}

#[tokio::test]
async fn verify_finds_a_deleted_event() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let stream = format!("assessment:{id}");

    let conn = tamperer(&app).await;
    conn.execute_unprepared(&format!("DELETE FROM events WHERE stream = '{stream}' AND seq = 2")).await.unwrap();
    let out = attest(&app, &["verify"]);
    assert_problem(&out, &stream, 2);
    assert!(stdout(&out).contains("expected sequence 2, found 3"), "{}", both(&out));
}

#[tokio::test]
async fn verify_finds_two_swapped_events() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let stream = format!("assessment:{id}");

    let conn = tamperer(&app).await;
    let swap = |from: i64, to: i64| format!("UPDATE events SET seq = {to} WHERE stream = '{stream}' AND seq = {from}");
    for sql in [swap(2, -2), swap(3, 2), swap(-2, 3)] {
        conn.execute_unprepared(&sql).await.unwrap();
    }
    let out = attest(&app, &["verify"]);
    assert_problem(&out, &stream, 2);
}

/// Rewrites one event of a stream and recomputes its hash, every later hash and the head, so
/// that the chain is intact again.
async fn rewrite_and_rehash(conn: &DatabaseConnection, stream: &str, seq: i64) {
    let mut events = attest::db::events::page(conn, stream, 0, 1000).await.unwrap();
    let mut prev = attest::events::GENESIS_HASH.to_owned();
    for event in &mut events {
        if event.seq == seq {
            event.payload["value"] = json!("A harmless rewrite");
        }
        if event.seq >= seq {
            event.prev_hash = prev.clone();
            event.hash = event.recompute_hash();
            let payload = serde_jcs::to_string(&event.payload).unwrap().replace('\'', "''");
            conn.execute_unprepared(&format!(
                "UPDATE events SET payload = '{payload}', prev_hash = '{}', hash = '{}' WHERE stream = '{stream}' AND seq = {}",
                event.prev_hash, event.hash, event.seq
            ))
            .await
            .unwrap();
        }
        prev = event.hash.clone();
    }
    conn.execute_unprepared(&format!("UPDATE stream_heads SET hash = '{prev}' WHERE stream = '{stream}'"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rewritten_and_rehashed_stream_fails_against_a_kept_checkpoint() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let stream = format!("assessment:{id}");

    let kept = file(&app, "kept-checkpoint.json");
    let out = attest(&app, &["checkpoint", "--out", path_str(&kept)]);
    assert!(out.status.success(), "{}", both(&out));
    let covered = stream_length(&app, &stream).await;
    let out = attest(&app, &["verify", "--checkpoint", path_str(&kept)]);
    assert!(out.status.success(), "{}", both(&out));

    // Later changes are not the checkpoint's business.
    set_answer(&app, &admin, &id, "intake-people-affected", "About 2,000 drivers a day").await;

    let conn = tamperer(&app).await;
    rewrite_and_rehash(&conn, &stream, 2).await;

    // The kept file and its stored copy (`attest checkpoint` stores what it prints) both say so.
    let out = attest(&app, &["verify", "--checkpoint", path_str(&kept)]);
    let line = problem_of(&out, "stream", &stream);
    assert!(line.contains(&format!("at sequence {covered}:")), "{line}");
    assert!(line.contains("rewritten since the checkpoint"), "{line}");
    let line = problem_of(&out, "stored checkpoint", &stream);
    assert!(line.contains(&format!("at sequence {covered}:")), "{line}");
    assert_eq!(problems(&out).len(), 2, "{}", both(&out));

    // A checkpoint signed by another key is refused before the log is even read.
    let other = attest::checkpoints::ServerKey::generate().public_key_hex();
    let out = attest(&app, &["verify", "--checkpoint", path_str(&kept), "--public-key", &other]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("not by the trusted key"), "{}", both(&out));
}

#[tokio::test]
async fn a_rewritten_and_rehashed_stream_fails_plain_verify_naming_each_stored_checkpoint() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let stream = format!("assessment:{id}");
    let first = store_checkpoint(&app).await;
    let first_seq = stream_length(&app, &stream).await;
    set_answer(&app, &admin, &id, "intake-people-affected", "About 2,000 drivers a day").await;
    let second = store_checkpoint(&app).await;
    let second_seq = stream_length(&app, &stream).await;
    // Taken while the stream did not change: it names the same head as the second.
    let third = store_checkpoint(&app).await;
    assert!(attest(&app, &["verify"]).status.success());

    let conn = tamperer(&app).await;
    rewrite_and_rehash(&conn, &stream, 2).await;

    let out = attest(&app, &["verify"]);
    assert!(!out.status.success(), "a stored checkpoint covered the stream:\n{}", both(&out));
    assert!(stdout(&out).contains("3 stored checkpoints checked"), "{}", both(&out));
    let lines = problems(&out);
    assert_eq!(lines.len(), 2, "one line per head the log no longer matches:\n{}", both(&out));
    assert!(lines[0].starts_with(&format!("PROBLEM {}", stored(&first))), "{}", lines[0]);
    assert!(lines[0].contains(&format!("stream {stream} at sequence {first_seq}:")), "{}", lines[0]);
    assert!(lines[0].contains("rewritten since the checkpoint"), "{}", lines[0]);
    assert!(lines[1].starts_with(&format!("PROBLEM {}", stored(&second))), "{}", lines[1]);
    assert!(lines[1].contains(&format!("stream {stream} at sequence {second_seq}:")), "{}", lines[1]);
    assert!(lines[1].contains(&format!("in 1 later stored checkpoint(s), up to {}", third.id)), "{}", lines[1]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 stream(s) with problems"), "{}", both(&out));
}

#[tokio::test]
async fn a_changed_stored_checkpoint_fails_its_signature() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let stream = format!("assessment:{id}");
    let first = store_checkpoint(&app).await;
    set_answer(&app, &admin, &id, "intake-people-affected", "About 2,000 drivers a day").await;
    let second = store_checkpoint(&app).await;

    // Someone rewrites the stream and, without the server's key, makes the stored checkpoints
    // agree: the first with a head rewritten in its document, the second with a new signature.
    let conn = tamperer(&app).await;
    rewrite_and_rehash(&conn, &stream, 2).await;
    let now = attest::db::events::head(&conn, &stream).await.unwrap().unwrap();
    let checkpoints = checkpoint_tamperer(&app).await;
    let mut forged = first.signed.clone();
    let head = forged.heads.iter_mut().find(|h| h.stream == stream).unwrap();
    let at_head = attest::db::events::page(&conn, &stream, head.seq - 1, 1).await.unwrap().remove(0);
    head.hash = at_head.hash;
    let document = serde_json::to_string(&forged).unwrap();
    checkpoints
        .execute_unprepared(&format!("UPDATE checkpoints SET document = '{document}' WHERE id = {}", first.id))
        .await
        .unwrap();
    let heads = second.signed.heads.iter().map(|h| {
        let hash = if h.stream == stream { now.1.clone() } else { h.hash.clone() };
        StreamHead { stream: h.stream.clone(), seq: h.seq, hash }
    });
    let mut resigned = Checkpoint::create(
        &attest::checkpoints::ServerKey::generate(),
        heads.collect(),
        second.signed.checkpoint.position,
        second.signed.checkpoint.at.clone(),
    );
    resigned.checkpoint.public_key = second.signed.checkpoint.public_key.clone();
    let document = serde_json::to_string(&resigned).unwrap();
    checkpoints
        .execute_unprepared(&format!(
            "UPDATE checkpoints SET document = '{document}', merkle_root = '{}' WHERE id = {}",
            resigned.checkpoint.merkle_root, second.id
        ))
        .await
        .unwrap();

    let out = attest(&app, &["verify"]);
    assert!(!out.status.success(), "{}", both(&out));
    let lines = problems(&out);
    assert_eq!(lines.len(), 2, "{}", both(&out));
    assert!(lines[0].starts_with(&format!("PROBLEM {} signature check failed:", stored(&first))), "{}", lines[0]);
    assert!(lines[0].contains("Merkle root"), "{}", lines[0]);
    assert!(lines[1].starts_with(&format!("PROBLEM {} signature check failed:", stored(&second))), "{}", lines[1]);
    assert!(lines[1].contains("checkpoint signature"), "{}", lines[1]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 stored checkpoint(s) that do not verify"),
        "{}",
        both(&out)
    );
}

#[tokio::test]
async fn an_intact_log_passes_with_every_stored_checkpoint_checked() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let out = attest(&app, &["verify"]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(stdout(&out).contains("0 stored checkpoints checked"), "{}", both(&out));

    let id = assessment_with_answers(&app, &admin).await;
    store_checkpoint(&app).await;
    set_answer(&app, &admin, &id, "intake-people-affected", "About 2,000 drivers a day").await;
    store_checkpoint(&app).await;
    app.create_unit(&admin, "Cyber Crime", None).await;
    let kept = file(&app, "kept-checkpoint.json");
    assert!(attest(&app, &["checkpoint", "--out", path_str(&kept)]).status.success());
    set_answer(&app, &admin, &id, "intake-people-affected", "About 3,000 drivers a day").await;

    let key = app.state.key.public_key_hex();
    for args in [vec!["verify"], vec!["verify", "--checkpoint", path_str(&kept)]] {
        let out = attest(&app, &args);
        assert!(out.status.success(), "{}", both(&out));
        let text = stdout(&out);
        assert!(text.contains(&format!("3 stored checkpoints checked against key {key}")), "{text}");
        assert!(text.contains("OK: the log is intact"), "{text}");
        assert!(problems(&out).is_empty(), "{text}");
    }

    // Without a trusted key, the stored checkpoints are held to the oldest one's key, on trust.
    let out = Command::new(env!("CARGO_BIN_EXE_attest"))
        .arg("verify")
        .env("ATTEST_DATABASE_URL", app.db.url.expose())
        .env("ATTEST_KEY_FILE", app.key_dir.path().join("absent.key"))
        .env("ATTEST_LOG", "warn")
        .output()
        .expect("run attest");
    assert!(out.status.success(), "{}", both(&out));
    assert!(stdout(&out).contains(&format!("3 stored checkpoints checked against key {key}")), "{}", both(&out));
    let warning = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        warning.contains(&format!("warning: no trusted key (--public-key or a key file): only the embedded key {key}")),
        "{warning}"
    );
}

#[tokio::test]
async fn stored_checkpoints_fail_against_another_trusted_key() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    assessment_with_answers(&app, &admin).await;
    let first = store_checkpoint(&app).await;
    let second = store_checkpoint(&app).await;

    let other = attest::checkpoints::ServerKey::generate().public_key_hex();
    let out = attest(&app, &["verify", "--public-key", &other]);
    assert!(!out.status.success(), "{}", both(&out));
    let lines = problems(&out);
    assert_eq!(lines.len(), 2, "{}", both(&out));
    for (line, c) in lines.iter().zip([&first, &second]) {
        assert!(line.starts_with(&format!("PROBLEM {} signature check failed:", stored(c))), "{line}");
        assert!(line.contains(&format!("not by the trusted key {other}")), "{line}");
    }

    let out = attest(&app, &["verify", "--public-key", &app.state.key.public_key_hex()]);
    assert!(out.status.success(), "{}", both(&out));
}

#[tokio::test]
async fn checkpoints_signed_before_a_key_rotation_verify_when_the_former_key_is_trusted_too() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let before = store_checkpoint(&app).await;
    let former = app.state.key.public_key_hex();
    // The operator rotates the key: a new key file, created by the first command that signs.
    let rotated = file(&app, "rotated.key");
    assert!(attest_with_key(&app, &rotated, &["checkpoint"]).status.success());
    set_answer(&app, &admin, &id, "intake-people-affected", "About 2,000 drivers a day").await;
    assert!(attest_with_key(&app, &rotated, &["checkpoint"]).status.success());
    let shown = stdout(&attest_with_key(&app, &rotated, &["key", "show"]));
    let current = shown.lines().find_map(|l| l.strip_prefix("public_key: ")).expect("the key is shown").to_owned();
    assert_ne!(current, former);

    // Trusting only the current key, the checkpoint from before the rotation is refused, by name.
    let out = attest_with_key(&app, &rotated, &["verify"]);
    assert!(!out.status.success(), "{}", both(&out));
    let lines = problems(&out);
    assert_eq!(lines.len(), 1, "{}", both(&out));
    assert!(lines[0].starts_with(&format!("PROBLEM {}", stored(&before))), "{}", lines[0]);
    assert!(lines[0].contains(&format!("signed by key {former}, not by the trusted key {current}")), "{}", lines[0]);

    // Trusting both, all three verify.
    let out = attest(&app, &["verify", "--public-key", &former, "--public-key", &current]);
    assert!(out.status.success(), "{}", both(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("3 stored checkpoints checked against keys {former}, {current}")), "{text}");
    assert!(text.contains("OK: the log is intact"), "{text}");

    // A value that is not a key is refused before anything is read.
    let out = attest(&app, &["verify", "--public-key", &former, "--public-key", "not-a-key"]);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(both(&out).contains("is not a public key"), "{}", both(&out));
}

#[tokio::test]
async fn a_shortened_stream_fails_against_a_kept_and_a_stored_checkpoint() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let stream = format!("assessment:{id}");
    let kept = file(&app, "kept-checkpoint.json");
    assert!(attest(&app, &["checkpoint", "--out", path_str(&kept)]).status.success());
    let last = stream_length(&app, &stream).await;

    let conn = tamperer(&app).await;
    conn.execute_unprepared(&format!("DELETE FROM events WHERE stream = '{stream}' AND seq = {last}")).await.unwrap();
    let prev = attest::db::events::page(&conn, &stream, last - 2, 1).await.unwrap().remove(0).hash;
    conn.execute_unprepared(&format!(
        "UPDATE stream_heads SET seq = {}, hash = '{prev}' WHERE stream = '{stream}'",
        last - 1
    ))
    .await
    .unwrap();

    // A cut tail leaves an intact chain, but `attest checkpoint` stored what it wrote to the file.
    let out = attest(&app, &["verify"]);
    let line = problem_of(&out, "stored checkpoint", &stream);
    assert!(line.contains(&format!("at sequence {last}:")), "{line}");
    assert!(line.contains("ends before it"), "{line}");
    assert_eq!(problems(&out).len(), 1, "{}", both(&out));

    let out = attest(&app, &["verify", "--checkpoint", path_str(&kept)]);
    let line = problem_of(&out, "stream", &stream);
    assert!(line.contains(&format!("at sequence {last}:")), "{line}");
    assert!(line.contains("ends before it"), "{line}");
}

#[tokio::test]
async fn an_exported_bundle_verifies_offline_and_one_changed_byte_names_its_line() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let key = app.ok(Some(&admin), "{ serverKey { publicKey } }", json!({})).await["serverKey"]["publicKey"]
        .as_str()
        .unwrap()
        .to_owned();

    let bundle = file(&app, "bundle.jsonl");
    let out = attest(&app, &["export", "--assessment", &id, "--out", path_str(&bundle)]);
    assert!(out.status.success(), "{}", both(&out));
    let text = std::fs::read_to_string(&bundle).unwrap();
    let events = stream_length(&app, &format!("assessment:{id}")).await;
    assert_eq!(text.lines().count() as i64, 1 + events, "a header and every event");

    // Offline: the database named cannot be reached, and no key file is at hand.
    let offline = |path: &Path, key: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_attest"));
        cmd.args(["verify-bundle", path_str(path)]);
        if let Some(key) = key {
            cmd.args(["--public-key", key]);
        }
        cmd.env("ATTEST_DATABASE_URL", "postgres://nobody@127.0.0.1:1/nowhere")
            .env("ATTEST_KEY_FILE", app.key_dir.path().join("absent.key"))
            .output()
            .expect("run attest")
    };
    let out = offline(&bundle, Some(&key));
    assert!(out.status.success(), "{}", both(&out));
    assert!(stdout(&out).contains(&format!("{events} events of stream assessment:{id}")), "{}", both(&out));
    let out = offline(&bundle, None);
    assert!(out.status.success(), "{}", both(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: no trusted key"), "{}", both(&out));

    // One byte inside the payload of line 3 (the second event).
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = lines[2].find("\"payload\":{\"").expect("an event line with a payload") + "\"payload\":{\"".len();
    let mut bytes = lines[2].clone().into_bytes();
    bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
    lines[2] = String::from_utf8(bytes).unwrap();
    let tampered = file(&app, "tampered.jsonl");
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let out = offline(&tampered, Some(&key));
    assert!(!out.status.success());
    assert!(both(&out).contains("line 3:"), "{}", both(&out));

    let out = offline(&bundle, Some(&attest::checkpoints::ServerKey::generate().public_key_hex()));
    assert!(!out.status.success());
    assert!(both(&out).contains("line 1:"), "{}", both(&out));
}

#[tokio::test]
async fn key_show_prints_the_key_the_api_serves() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let data = app.ok(Some(&admin), "{ serverKey { algorithm publicKey } }", json!({})).await;
    assert_eq!(data["serverKey"]["algorithm"], "Ed25519");
    let out = attest(&app, &["key", "show"]);
    assert!(out.status.success(), "{}", both(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("public_key: {}", data["serverKey"]["publicKey"].as_str().unwrap())), "{text}");
    assert!(text.contains(&format!("key_file: {}", app.state.config.key_file.display())), "{text}");
    assert_eq!(code(&app.graphql(None, "{ serverKey { publicKey } }", json!({})).await), "UNAUTHENTICATED");
}

#[tokio::test]
async fn periodic_checkpoints_are_stored_and_logged() {
    let app = TestApp::spawn_with(|c| c.checkpoint_interval_secs = 1).await;
    let admin = app.admin().await;
    let agency_stream = app.agency_stream(&admin).await;
    app.create_unit(&admin, "Cyber Crime", None).await;

    let query = "{ checkpoints(first: 5) { id position at streamCount merkleRoot publicKey signature document heads { stream seq hash } } }";
    let mut checkpoints = Vec::new();
    for _ in 0..120 {
        checkpoints = app.ok(Some(&admin), query, json!({})).await["checkpoints"].as_array().unwrap().clone();
        if !checkpoints.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let latest = checkpoints.first().expect("a periodic checkpoint within 30 seconds");
    let key = app.state.key.public_key_hex();
    let checkpoint: Checkpoint = serde_json::from_value(latest["document"].clone()).unwrap();
    checkpoint.verify_signature(&attest::checkpoints::TrustedKeys::new([key.clone()])).unwrap();
    let streams: Vec<&str> =
        latest["heads"].as_array().unwrap().iter().map(|h| h["stream"].as_str().unwrap()).collect();
    assert_eq!(streams, [agency_stream.as_str()], "an administrator sees the agency's own heads only");

    let system = attest::db::events::page(&app.state.db.conn, "system", 0, 1000).await.unwrap();
    let logged = system.iter().find(|e| e.kind == "checkpoint.created").expect("a checkpoint.created event");
    assert_eq!(logged.actor, "system");
    assert_eq!(logged.payload["merkle_root"], json!(checkpoint.merkle_root));
    assert_eq!(logged.payload["signature"], json!(checkpoint.signature));
    assert_eq!(logged.payload["stream_count"], json!(checkpoint.stream_count));
    assert_eq!(logged.payload["public_key"], json!(key));
}

#[tokio::test]
async fn checkpoints_are_for_administrators_and_show_each_agency_only_its_own_streams() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let stream = format!("assessment:{id}");
    app.create_user(&admin, "analyst@agency.test", false).await;
    let member = app.token("analyst@agency.test", crate::helpers::NEW_PASSWORD).await;
    let password = attest::auth::password::Password::parse("p", "other agency password").unwrap();
    attest::agencies::create_agency(&app.state, "South Police", "chief@south.test", &password, false).await.unwrap();
    let foreign = app.token("chief@south.test", "other agency password").await;

    let create = "mutation { createCheckpoint { id merkleRoot streamCount heads { stream seq hash proof { index siblings { side hash } } } } }";
    assert_eq!(code(&app.graphql(Some(&member), create, json!({})).await), "FORBIDDEN");
    assert_eq!(code(&app.graphql(Some(&member), "{ checkpoints { id } }", json!({})).await), "FORBIDDEN");

    let query = "query($id: ID!) { assessmentCheckpoint(id: $id) { checkpoint { merkleRoot heads { stream } } head { stream seq hash proof { index siblings { side hash } } } } }";
    let before = app.ok(Some(&admin), query, json!({ "id": id })).await;
    assert!(before["assessmentCheckpoint"].is_null(), "no checkpoint covers it yet: {before}");

    let mine = app.ok(Some(&admin), create, json!({})).await["createCheckpoint"].clone();
    let heads = mine["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 2, "the agency's stream and its assessment's: {mine}");
    for head in heads {
        let proven: StreamHead = serde_json::from_value(json!({
            "stream": head["stream"], "seq": head["seq"], "hash": head["hash"] }))
        .unwrap();
        let proof = proof_of(&head["proof"]);
        assert!(verify_inclusion(&proven, &proof, mine["merkleRoot"].as_str().unwrap()), "{head}");
    }
    let theirs = app.ok(Some(&foreign), create, json!({})).await["createCheckpoint"].clone();
    let theirs_streams: Vec<&str> =
        theirs["heads"].as_array().unwrap().iter().map(|h| h["stream"].as_str().unwrap()).collect();
    assert_eq!(theirs_streams.len(), 1);
    assert!(theirs_streams[0].starts_with("agency:"));
    assert!(!theirs.to_string().contains(&stream), "another agency's stream leaked: {theirs}");

    let data = app.ok(Some(&admin), query, json!({ "id": id })).await["assessmentCheckpoint"].clone();
    assert_eq!(data["head"]["stream"], json!(stream));
    assert_eq!(data["head"]["seq"], json!(stream_length(&app, &stream).await));
    assert_eq!(data["checkpoint"]["heads"].as_array().unwrap().len(), 1);
    let head: StreamHead = serde_json::from_value(json!({
        "stream": data["head"]["stream"], "seq": data["head"]["seq"], "hash": data["head"]["hash"] }))
    .unwrap();
    assert!(verify_inclusion(
        &head,
        &proof_of(&data["head"]["proof"]),
        data["checkpoint"]["merkleRoot"].as_str().unwrap()
    ));
    assert_eq!(code(&app.graphql(Some(&foreign), query, json!({ "id": id })).await), "NOT_FOUND");
    assert_eq!(code(&app.graphql(Some(&member), query, json!({ "id": id })).await), "FORBIDDEN");

    // Stored like the log: the database refuses to change a checkpoint.
    let conn = Database::connect(app.db.url.expose()).await.unwrap();
    assert!(conn.execute_unprepared("UPDATE checkpoints SET merkle_root = 'x'").await.is_err());
    assert!(conn.execute_unprepared("DELETE FROM checkpoints").await.is_err());
}

fn proof_of(value: &Value) -> InclusionProof {
    let siblings: Vec<Value> = value["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({ "side": s["side"].as_str().unwrap().to_lowercase(), "hash": s["hash"] }))
        .collect();
    serde_json::from_value(json!({ "index": value["index"], "siblings": siblings })).unwrap()
}

#[tokio::test]
async fn verify_assessment_log_reports_the_first_problem_after_tampering() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let password = attest::auth::password::Password::parse("p", "other agency password").unwrap();
    attest::agencies::create_agency(&app.state, "South Police", "chief@south.test", &password, false).await.unwrap();
    let foreign = app.token("chief@south.test", "other agency password").await;

    let query = "query($id: ID!) { verifyAssessmentLog(id: $id) { ok eventsChecked headHash problemSeq problem } }";
    let data = app.ok(Some(&admin), query, json!({ "id": id })).await;
    assert_eq!(data["verifyAssessmentLog"]["ok"], true, "{data}");
    assert_eq!(
        data["verifyAssessmentLog"]["eventsChecked"],
        json!(stream_length(&app, &format!("assessment:{id}")).await)
    );
    assert_eq!(code(&app.graphql(Some(&foreign), query, json!({ "id": id })).await), "NOT_FOUND");

    let conn = tamperer(&app).await;
    conn.execute_unprepared(&format!(
        "UPDATE events SET actor = 'system' WHERE stream = 'assessment:{id}' AND seq = 2"
    ))
    .await
    .unwrap();
    let data = app.ok(Some(&admin), query, json!({ "id": id })).await;
    assert_eq!(data["verifyAssessmentLog"]["ok"], false, "{data}");
    assert_eq!(data["verifyAssessmentLog"]["problemSeq"], 2);
    assert_eq!(data["verifyAssessmentLog"]["eventsChecked"], 1);
}

#[tokio::test]
async fn a_checkpoint_is_skipped_when_nothing_was_appended_since_the_last() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let first = attest::audit::create_checkpoint_if_changed(&app.state).await.unwrap();
    assert!(first.is_some(), "the first checkpoint is always taken");
    let again = attest::audit::create_checkpoint_if_changed(&app.state).await.unwrap();
    assert!(again.is_none(), "only the checkpoint's own event was appended since");

    app.create_unit(&admin, "Cyber Crime", None).await;
    let next = attest::audit::create_checkpoint_if_changed(&app.state).await.unwrap().expect("a new checkpoint");
    let first = first.unwrap().signed;
    assert!(next.signed.checkpoint.position > first.checkpoint.position);
    // The next checkpoint covers the first one's checkpoint.created event in `system`.
    let system = |signed: &attest::checkpoints::SignedCheckpoint| signed.head("system").unwrap().seq;
    assert_eq!(system(&next.signed), system(&first) + 1);
}

#[tokio::test]
async fn verify_names_every_broken_stream_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = assessment_with_answers(&app, &admin).await;
    let agency = app.agency_stream(&admin).await;

    let conn = tamperer(&app).await;
    for (stream, seq) in [(format!("assessment:{id}"), 2), (format!("assessment:{id}"), 3), (agency.clone(), 1)] {
        conn.execute_unprepared(&format!(
            "UPDATE events SET at = '2020-01-01T00:00:00.000000Z' WHERE stream = '{stream}' AND seq = {seq}"
        ))
        .await
        .unwrap();
    }
    let out = attest(&app, &["verify"]);
    assert!(!out.status.success());
    let text = stdout(&out);
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 2, "{text}");
    assert!(problems.iter().any(|l| l.contains(&format!("stream assessment:{id} at sequence 2:"))), "{text}");
    assert!(problems.iter().any(|l| l.contains(&format!("stream {agency} at sequence 1:"))), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 stream(s) with problems"), "{}", both(&out));
}
