//! Durable answer writes: Attest's GraphQL API against the database running the same statements
//! for a plain client, alternately in one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use attest::clock::Clock;
use attest::config::{DatabaseUrl, Secret, ServeConfig};
use sea_orm::ConnectionTrait;
use sea_orm::sqlx;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{PASSWORD, ScratchDatabase, graphql, median};

const QUESTION: &str = "rd-leadership-vision";
const LEVELS: [&str; 5] = ["0", "1", "2", "3", "4"];

struct Target {
    base: String,
    token: String,
    assessments: Vec<String>,
    url: String,
    postgres: bool,
}

pub async fn run(postgres: Option<String>, clients: Vec<usize>, seconds: u64, rounds: usize) -> anyhow::Result<()> {
    ensure!(!clients.is_empty() && clients.iter().all(|c| *c > 0), "--clients needs positive counts");
    let dir = super::tempfile_dir()?;
    let scratch = match &postgres {
        Some(server) => Some(ScratchDatabase::create(server, "attest_bench").await.context("--postgres")?),
        None => None,
    };
    let url = match &scratch {
        // Both Attest (sqlx) and pgbench (libpq) would negotiate TLS where the server offers it:
        // both use plain TCP, as in `reads`, so that neither pays for encryption.
        Some(db) => format!("{}{}sslmode=disable", db.url, if db.url.contains('?') { '&' } else { '?' }),
        None => format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
    };
    let result = measure(&url, postgres.is_some(), &clients, seconds, rounds).await;
    if let Some(db) = scratch {
        db.remove().await;
    }
    result
}

async fn measure(url: &str, postgres: bool, clients: &[usize], seconds: u64, rounds: usize) -> anyhow::Result<()> {
    let target = start(url, postgres, *clients.iter().max().expect("at least one count")).await?;
    let baseline = if postgres { "pgbench, same statements" } else { "plain program, one transaction per write" };
    println!(
        "durable answer writes on {}, {seconds} s per measurement, {rounds} rounds, alternating",
        if postgres { "PostgreSQL" } else { "SQLite (WAL, synchronous=FULL)" }
    );
    println!(
        "{:>8} {:>14} {:>14} {:>8} {:>14}   baseline: {baseline}; ceiling: `{{ __typename }}` through the same HTTP stack",
        "clients", "attest w/s", "baseline w/s", "ratio", "ceiling req/s"
    );
    for &n in clients {
        let (mut ours, mut theirs, mut ratios, mut ceilings) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let a = attest_writes(&target, n, Duration::from_secs(seconds)).await?;
            let b = if postgres {
                pgbench(&target, n, seconds).await?
            } else {
                plain_sqlite(&target, n, Duration::from_secs(seconds)).await?
            };
            let c = ceiling(&target, n, Duration::from_secs(seconds)).await?;
            println!("{n:>8} {a:>14.0} {b:>14.0} {:>8.2} {c:>14.0}", a / b);
            ours.push(a);
            theirs.push(b);
            ratios.push(a / b);
            ceilings.push(c);
        }
        println!(
            "{n:>8} {:>14.0} {:>14.0} {:>8.2} {:>14.0}   (medians; the ratio is the median of the rounds' ratios)",
            median(ours),
            median(theirs),
            median(ratios),
            median(ceilings)
        );
    }
    Ok(())
}

/// Starts Attest in this process on a free port, with one assessment per client.
async fn start(url: &str, postgres: bool, clients: usize) -> anyhow::Result<Target> {
    let mut config = ServeConfig::defaults();
    config.admin_email = "bench@agency.test".into();
    config.admin_password = Some(Secret::new(PASSWORD));
    config.login_delay_ms = 0;
    let state = attest::bootstrap::start(&DatabaseUrl::new(url.to_owned()), config, Clock::System).await?;
    attest::bootstrap::first_start(&state).await.map_err(|e| anyhow::anyhow!("first start: {e:?}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(attest::http::serve(state, listener, std::future::pending()));
    let http = reqwest::Client::new();
    let login = graphql(
        &http,
        &base,
        None,
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
        json!({ "e": "bench@agency.test", "p": PASSWORD }),
    )
    .await?;
    let token = login["login"]["token"].as_str().context("a session token")?.to_owned();
    let unit =
        graphql(&http, &base, Some(&token), "mutation { createUnit(name: \"Benchmark\") { id } }", json!({})).await?;
    let templates = graphql(&http, &base, Some(&token), "{ templates { id key } }", json!({})).await?;
    let template = templates["templates"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["key"] == "ai-readiness"))
        .context("the readiness template")?["id"]
        .clone();
    let mut assessments = Vec::new();
    for i in 0..clients {
        let a = graphql(
            &http,
            &base,
            Some(&token),
            "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id } }",
            json!({ "i": { "unitId": unit["createUnit"]["id"], "templateId": template, "title": format!("Writer {i}"), "subject": "Benchmark" } }),
        )
        .await?;
        assessments.push(a["createAssessment"]["id"].as_str().context("an assessment id")?.to_owned());
    }
    Ok(Target { base, token, assessments, url: url.to_owned(), postgres })
}

/// `clients` clients, each answering its own assessment's question over and over through the API.
async fn attest_writes(t: &Target, clients: usize, length: Duration) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in t.assessments.iter().take(clients) {
        let (id, http, base, token, done) = (id.clone(), http.clone(), t.base.clone(), t.token.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = 0usize;
            while started.elapsed() < length {
                k += 1;
                let value = LEVELS[k % LEVELS.len()];
                let data = graphql(
                    &http,
                    &base,
                    Some(&token),
                    "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { value revision } }",
                    json!({ "i": { "assessmentId": id, "questionId": QUESTION, "value": value } }),
                )
                .await?;
                // The body, not only the status: the write must have done what was asked.
                ensure!(
                    data["setAnswer"]["value"] == value && data["setAnswer"]["revision"].is_i64(),
                    "bad answer: {data}"
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// The most requests per second the server's HTTP and GraphQL stack answers at all, with the same
/// client: `{ __typename }`, which reads nothing, without a session. No write through the API can
/// be faster.
async fn ceiling(t: &Target, clients: usize, length: Duration) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, done) = (http.clone(), t.base.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < length {
                let data = graphql(&http, &base, None, "{ __typename }", json!({})).await?;
                ensure!(data["__typename"] == "Query", "bad answer: {data}");
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// The same three statements per write, each write its own durable transaction, from a plain
/// program with one connection per client.
async fn plain_sqlite(t: &Target, clients: usize, length: Duration) -> anyhow::Result<f64> {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&t.url)?
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30));
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(clients as u32).connect_with(opts).await?;
    for i in 0..clients {
        sqlx::query("INSERT INTO stream_heads (stream, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (stream) DO NOTHING")
            .bind(format!("baseline:{i}"))
            .bind(attest::events::GENESIS_HASH)
            .execute(&pool)
            .await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, id) in t.assessments.iter().take(clients).cloned().enumerate() {
        let (pool, done) = (pool.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let stream = format!("baseline:{i}");
            let mut conn = pool.acquire().await?;
            while started.elapsed() < length {
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                let (seq, prev): (i64, String) =
                    sqlx::query_as("UPDATE stream_heads SET seq = seq + 1 WHERE stream = $1 RETURNING seq, hash")
                        .bind(&stream)
                        .fetch_one(&mut *conn)
                        .await?;
                let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let payload = format!("{{\"question_id\":\"{QUESTION}\",\"value\":\"{}\"}}", LEVELS[seq as usize % 5]);
                let hash = hex::encode(Sha256::digest(format!("{stream}{seq}{at}{payload}{prev}")));
                sqlx::query("INSERT INTO events (stream, seq, type, actor, at, payload, prev_hash, hash) VALUES ($1, $2, 'answer.set', 'baseline', $3, $4, $5, $6)")
                    .bind(&stream).bind(seq).bind(&at).bind(&payload).bind(&prev).bind(&hash)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("UPDATE stream_heads SET hash = $1 WHERE stream = $2").bind(&hash).bind(&stream).execute(&mut *conn).await?;
                sqlx::query("INSERT INTO answers (assessment_id, question_id, value, note, revision, carried_over, updated_by, updated_at) VALUES ($1, 'baseline', $2, NULL, 1, false, 'baseline', 0) ON CONFLICT (assessment_id, question_id) DO UPDATE SET value = excluded.value, revision = answers.revision + 1")
                    .bind(&id).bind(format!("\"{}\"", LEVELS[seq as usize % 5]))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

/// pgbench with the same statements, on the same database, each client on its own stream.
async fn pgbench(t: &Target, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    debug_assert!(t.postgres);
    let db = sea_orm::Database::connect(t.url.as_str()).await?;
    for i in 0..clients {
        db.execute_unprepared(&format!(
            "INSERT INTO stream_heads (stream, seq, hash) VALUES ('baseline:{i}', 0, '{}') ON CONFLICT (stream) DO NOTHING",
            attest::events::GENESIS_HASH
        ))
        .await?;
    }
    db.close().await.ok();
    let script = std::env::temp_dir().join(format!("attest-bench-{}.sql", uuid::Uuid::new_v4().simple()));
    let ids: Vec<String> = t.assessments.iter().map(|a| format!("'{a}'")).collect();
    std::fs::write(
        &script,
        format!(
            "\\set v random(0, 4)
BEGIN;
UPDATE stream_heads SET seq = seq + 1 WHERE stream = 'baseline:' || :client_id RETURNING seq, hash;
INSERT INTO events (stream, seq, type, actor, at, payload, prev_hash, hash) SELECT stream, seq, 'answer.set', 'baseline', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '{{\"question_id\":\"{QUESTION}\",\"value\":\"' || :v || '\"}}', hash, encode(sha256(convert_to(stream || seq || clock_timestamp()::text || hash, 'UTF8')), 'hex') FROM stream_heads WHERE stream = 'baseline:' || :client_id;
UPDATE stream_heads SET hash = (SELECT hash FROM events WHERE stream = 'baseline:' || :client_id ORDER BY seq DESC LIMIT 1) WHERE stream = 'baseline:' || :client_id;
INSERT INTO answers (assessment_id, question_id, value, note, revision, carried_over, updated_by, updated_at) VALUES ((ARRAY[{}])[:client_id + 1], 'baseline', '\"' || :v || '\"', NULL, 1, false, 'baseline', 0) ON CONFLICT (assessment_id, question_id) DO UPDATE SET value = excluded.value, revision = answers.revision + 1;
COMMIT;
",
            ids.join(", ")
        ),
    )?;
    let out = tokio::process::Command::new("pgbench")
        .args(["-n", "-c", &clients.to_string(), "-j", &clients.min(2).to_string(), "-T", &seconds.to_string(), "-f"])
        .arg(&script)
        .arg(&t.url)
        .output()
        .await
        .context("running pgbench")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "pgbench failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    let failed = text.lines().find(|l| l.contains("number of failed transactions")).unwrap_or_default();
    ensure!(failed.is_empty() || failed.contains(": 0 "), "pgbench transactions failed: {failed}");
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no tps in pgbench's output")
}
