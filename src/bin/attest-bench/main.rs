//! Benchmarks that compare Attest with a baseline measured side by side in the same run:
//! `cargo run --release --bin attest-bench -- replay --help` (also `writes`, `reads`).

use std::time::{Duration, Instant};

use anyhow::Context;
use attest::assessments::{self, NewAssessment, SetAnswer};
use attest::auth::{self, ClientAddress};
use attest::clock::Clock;
use attest::config::{DatabaseUrl, Secret, ServeConfig};
use attest::ids::AssessmentId;
use attest::state::AppState;
use clap::{Parser, Subcommand};
use sea_orm::ConnectionTrait;

#[derive(Parser)]
#[command(name = "attest-bench", about = "Attest benchmarks, each beside its baseline")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Replaying an assessment (reading, hash checks and fold) against the database alone
    /// scanning the same rows.
    Replay {
        /// A database URL; by default a fresh SQLite file in a temporary directory. A PostgreSQL
        /// URL must name an empty database, which the benchmark fills.
        #[arg(long)]
        database_url: Option<String>,
        /// How many events the assessment gets.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Rounds of (database scan, replay), run alternately.
        #[arg(long, default_value_t = 7)]
        rounds: usize,
    },
    /// Durable answer writes through the GraphQL API (each response body checked) against the
    /// same statements (lock the stream head, insert the event, upsert the answer) run by a plain
    /// client, one transaction per write: a program of its own on SQLite, pgbench on PostgreSQL.
    Writes {
        /// A PostgreSQL URL of a server where the benchmark may create and drop a database; by
        /// default SQLite in a temporary directory.
        #[arg(long)]
        postgres: Option<String>,
        /// Concurrent clients, one assessment each; every count is run.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        clients: Vec<usize>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Rounds of (Attest, baseline), run alternately.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Reads of an assessment with 100 answers and of a unit dashboard: the release `attest`
    /// server against PostGraphile 4 (installed from npm on first use) over the same PostgreSQL
    /// database, and a plain axum handler running the same SQL as the ceiling. Every response
    /// body is checked.
    Reads(reads::Options),
    /// The plain axum server of `reads`, started by it as a child process.
    #[command(hide = true)]
    ReadsPlainServer {
        #[arg(long)]
        database_url: String,
        #[arg(long)]
        listen: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Replay { database_url, events, rounds } => replay(database_url, events, rounds).await,
        Bench::Writes { postgres, clients, seconds, rounds } => writes::run(postgres, clients, seconds, rounds).await,
        Bench::Reads(options) => reads::run(options).await,
        Bench::ReadsPlainServer { database_url, listen } => reads::plain_server(&database_url, &listen).await,
    }
}

mod reads;
mod writes;

const PASSWORD: &str = "benchmark administrator password";

async fn replay(url: Option<String>, events: usize, rounds: usize) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let url = url.unwrap_or_else(|| format!("sqlite://{}/bench.db?mode=rwc", dir.display()));
    let mut config = ServeConfig::defaults();
    config.admin_email = "bench@agency.test".into();
    config.admin_password = Some(Secret::new(PASSWORD));
    let state = attest::bootstrap::start(&DatabaseUrl::new(url.clone()), config, Clock::System).await?;
    attest::bootstrap::first_start(&state).await.map_err(|e| anyhow::anyhow!("first start: {e:?}"))?;
    let id = fill(&state, events).await?;
    let conn = &state.db.conn;
    let stream = format!("assessment:{id}");
    println!(
        "replay benchmark on {}, {} events, {rounds} rounds",
        if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" },
        events
    );

    let mut scans = Vec::new();
    let mut folds = Vec::new();
    for round in 0..rounds {
        let started = Instant::now();
        let rows = scan(conn, &stream).await?;
        let scan_time = started.elapsed();
        let started = Instant::now();
        let snapshot = attest::replay::fold_assessment(conn, id)
            .await
            .map_err(|e| anyhow::anyhow!("replay failed: {e:?}"))?
            .context("the assessment has no events")?;
        let fold_time = started.elapsed();
        anyhow::ensure!(rows as i64 == snapshot.seq, "scan saw {rows} rows, replay {} events", snapshot.seq);
        let (a, b) = (rate(rows, scan_time), rate(rows, fold_time));
        println!("round {round}: database scan {a:>10.0} events/s   replay {b:>10.0} events/s   ratio {:.2}", b / a);
        scans.push(a);
        folds.push(b);
    }
    let ratios: Vec<f64> = scans.iter().zip(&folds).map(|(a, b)| b / a).collect();
    println!(
        "median: database scan {:.0} events/s, replay {:.0} events/s, median ratio {:.2} (target at least 0.50)",
        median(scans),
        median(folds),
        median(ratios)
    );
    Ok(())
}

/// Creates an assessment and answers its questions over and over until it has `events` events.
pub(crate) async fn fill(state: &AppState, events: usize) -> anyhow::Result<AssessmentId> {
    let fail = |e: attest::AppError| anyhow::anyhow!("{e:?}");
    let login =
        auth::login(state, "bench@agency.test", PASSWORD, &ClientAddress("bench".into())).await.map_err(fail)?;
    let actor = auth::authenticate(state, login.token.expose()).await.map_err(fail)?;
    let unit = attest::agencies::create_unit(state, &actor, "Benchmark unit", None).await.map_err(fail)?;
    let template = assessments::templates(state, &actor)
        .await
        .map_err(fail)?
        .into_iter()
        .find(|t| t.template.key == "ai-readiness")
        .context("the built-in readiness template")?;
    let questions: Vec<String> = template.template.questions().map(|(_, q)| q.id.clone()).collect();
    let new = NewAssessment {
        unit_id: unit.id,
        template_id: template.id,
        title: "Replay benchmark".into(),
        subject: "Many answers".into(),
        due_date: None,
        members: Vec::new(),
    };
    let a = assessments::create_assessment(state, &actor, new).await.map_err(fail)?;
    let started = Instant::now();
    for i in 1..events {
        let question = &questions[i % questions.len()];
        let value = template.template.question(question).map(|q| sample(q, i));
        let input = SetAnswer {
            assessment_id: a.id,
            question_id: question.clone(),
            value,
            note: Some(format!("Note {i}: checked against the register of systems")),
            expected_revision: None,
        };
        assessments::set_answer(state, &actor, input).await.map_err(fail)?;
    }
    eprintln!("filled {events} events in {:.1} s", started.elapsed().as_secs_f64());
    Ok(a.id)
}

/// A valid answer for a readiness question, varying with `i`.
fn sample(q: &attest::templates::Question, i: usize) -> serde_json::Value {
    use attest::templates::QuestionKind;
    let choices: Vec<&str> = q.kind.choices().iter().map(|c| c.id.as_str()).collect();
    match &q.kind {
        QuestionKind::MultipleChoice { .. } => serde_json::json!([choices[i % choices.len()]]),
        QuestionKind::SingleChoice { .. } | QuestionKind::Scale { .. } => serde_json::json!(choices[i % choices.len()]),
        QuestionKind::YesNo => serde_json::json!(["yes", "no"][i % 2]),
        _ => serde_json::json!(format!("Answer number {i}")),
    }
}

/// The database alone: every row of the stream, every column read, nothing parsed or checked.
async fn scan(conn: &impl ConnectionTrait, stream: &str) -> anyhow::Result<usize> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "SELECT position, stream, seq, type, actor, at, payload, prev_hash, hash FROM events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT 2000"
        }
        _ => {
            "SELECT position, stream, seq, type, actor, at, payload, prev_hash, hash FROM events WHERE stream = ? AND seq > ? ORDER BY seq LIMIT 2000"
        }
    };
    let (mut after, mut total, mut bytes) = (0i64, 0usize, 0usize);
    loop {
        let rows = conn
            .query_all_raw(sea_orm::Statement::from_sql_and_values(backend, sql, [stream.into(), after.into()]))
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get::<i64>("", "seq")?;
        for row in &rows {
            for column in ["stream", "type", "actor", "at", "payload", "prev_hash", "hash"] {
                bytes += row.try_get::<String>("", column)?.len();
            }
        }
        total += rows.len();
    }
    std::hint::black_box(bytes);
    Ok(total)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("attest-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A database of its own on a PostgreSQL server, for one run; `remove` drops it.
pub(crate) struct ScratchDatabase {
    server: String,
    name: String,
    /// The new database's URL.
    pub url: String,
}

impl ScratchDatabase {
    /// `server` is the URL of any database on the server, used to create and drop this one.
    pub async fn create(server: &str, prefix: &str) -> anyhow::Result<Self> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(server).await.context("connecting to the PostgreSQL server")?;
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
        admin.close().await.ok();
        let (prefix, _) = server.rsplit_once('/').context("a PostgreSQL URL ends with /database")?;
        Ok(Self { server: server.to_owned(), url: format!("{prefix}/{name}"), name })
    }

    /// Drops the database, closing whatever connections still use it.
    pub async fn remove(self) {
        if let Ok(admin) = sea_orm::Database::connect(self.server.as_str()).await {
            let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
            admin.close().await.ok();
        }
    }
}

/// Sends a GraphQL request to `{base}/graphql` and returns its `data`; a response with errors
/// is an error.
pub(crate) async fn graphql(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
    vars: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut req = http.post(format!("{base}/graphql")).json(&serde_json::json!({ "query": query, "variables": vars }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let body: serde_json::Value = req.send().await?.json().await?;
    if body.get("errors").is_some() {
        anyhow::bail!("request failed: {body}");
    }
    Ok(body["data"].clone())
}
