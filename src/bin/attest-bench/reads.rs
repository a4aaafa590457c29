//! Reads: one assessment with 100 answers, and a unit's dashboard, served by Attest, by
//! PostGraphile 4 over the same PostgreSQL database, and by a plain axum handler running plain
//! SQL (the ceiling), measured alternately in one run with every response body checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sea_orm::sqlx::{self, PgPool};
use serde_json::{Value, json};

use super::{PASSWORD, ScratchDatabase, graphql, median};

#[derive(clap::Args)]
pub struct Options {
    /// The URL of a database on a PostgreSQL server where the benchmark may create (and then
    /// drop) a database of its own.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Concurrent clients, each sending its next request when the previous answer arrived.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of unmeasured load on each server before the first round.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Rounds of (Attest, PostGraphile, plain), run alternately.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// PostGraphile's worker processes (its `--cluster-workers`); by default one per core, as
    /// Attest's runtime has one thread per core.
    #[arg(long)]
    postgraphile_workers: Option<usize>,
    /// Where PostGraphile is installed with npm on first use.
    #[arg(long, default_value = "target/bench-node")]
    node_dir: PathBuf,
}

const ADMIN: &str = "bench@agency.test";
const TITLE: &str = "Hundred answers";

/// The assessment as the editor reads it: the row, every answer, the progress.
const ATTEST_ASSESSMENT: &str = "query($id: ID!) { assessment(id: $id) { id title subject dueDate status updatedAt \
    answers { questionId value note revision carriedOver updatedBy updatedAt } \
    progress { answered required requiredAnswered } } }";
/// The dashboard's own selection (web/js/views/dashboard.js).
const ATTEST_DASHBOARD: &str = "query($u: ID!) { unitDashboard(unitId: $u) { unit { id name parentId } depth \
    byStatus { status count } requiredTotal requiredAnswered completion overdue highestResidual } }";
/// The same rows through PostGraphile: the assessment row and its answer rows.
const PG_ASSESSMENT: &str = "query($id: String!) { assessmentById(id: $id) { id title subject dueDate status updatedAt \
    requiredTotal requiredAnswered \
    answersByAssessmentId { nodes { questionId value note revision carriedOver updatedBy updatedAt } } } }";
/// The rows the dashboard is computed from: the agency's units, each with its assessments.
const PG_DASHBOARD: &str = "query($a: String!) { allUnits(condition: { agencyId: $a }) { nodes { id name parentId \
    assessmentsByUnitId { nodes { id status dueDate requiredTotal requiredAnswered highestResidual highestResidualRank } } } } }";

pub async fn run(o: Options) -> anyhow::Result<()> {
    ensure!(o.clients > 0 && o.rounds > 0 && o.seconds > 0, "--clients, --rounds and --seconds must be positive");
    let postgraphile = install_postgraphile(&o.node_dir).await?;
    let db = ScratchDatabase::create(&o.postgres, "attest_bench_reads").await.context("--postgres")?;
    // PostGraphile's driver talks plain TCP to PostgreSQL unless told otherwise, while sqlx would
    // negotiate TLS where the server offers it: all three use plain TCP, so that they do the
    // same work.
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let result = measure(&o, &format!("{}{sep}sslmode=disable", db.url), &postgraphile).await;
    db.remove().await;
    result
}

/// The data every server reads, created through Attest's API.
struct Seed {
    token: String,
    agency: String,
    root: String,
    assessment: String,
    /// Question id to (value, note) of the assessment's answers.
    answers: BTreeMap<String, (Value, String)>,
    units: usize,
    assessments: usize,
}

async fn measure(o: &Options, url: &str, postgraphile: &Path) -> anyhow::Result<()> {
    let dir = super::tempfile_dir()?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(o.clients * 2).build()?;

    let attest_port = free_port()?;
    let attest = Server::start(
        tokio::process::Command::new(sibling("attest")?)
            .arg("serve")
            .env("ATTEST_LISTEN", format!("127.0.0.1:{attest_port}"))
            .env("ATTEST_DATABASE_URL", url)
            .env("ATTEST_KEY_FILE", dir.join("attest.key"))
            .env("ATTEST_ADMIN_EMAIL", ADMIN)
            .env("ATTEST_ADMIN_PASSWORD", PASSWORD)
            .env("ATTEST_LOGIN_DELAY_MS", "0")
            .env("ATTEST_LOG", "warn"),
    )?;
    let attest_base = format!("http://127.0.0.1:{attest_port}");
    wait_ready(&http, &format!("{attest_base}/healthz"), false).await?;
    let started = Instant::now();
    let seed = seed(&http, &attest_base).await?;
    eprintln!(
        "created {} units, {} assessments and {} answers through the API in {:.1} s",
        seed.units,
        seed.assessments,
        seed.answers.len(),
        started.elapsed().as_secs_f64()
    );

    let workers = o.postgraphile_workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pg_port = free_port()?;
    let mut command = tokio::process::Command::new(postgraphile);
    command.args(["--connection", url, "--schema", "public", "--host", "127.0.0.1"]).args([
        "--port",
        &pg_port.to_string(),
        "--disable-default-mutations",
        "--disable-graphiql",
        "--disable-query-log",
        "--max-pool-size",
        // Attest's pool and the plain server's hold 20 connections; so do PostGraphile's
        // workers together.
        &(20 / workers).max(1).to_string(),
    ]);
    if workers > 1 {
        command.args(["--cluster-workers", &workers.to_string()]);
    }
    let postgraphile = Server::start(&mut command)?;
    let pg_base = format!("http://127.0.0.1:{pg_port}");
    wait_ready(&http, &format!("{pg_base}/graphql"), true).await?;

    let plain_port = free_port()?;
    let plain = Server::start(
        tokio::process::Command::new(std::env::current_exe()?)
            .args(["reads-plain-server", "--database-url", url, "--listen"])
            .arg(format!("127.0.0.1:{plain_port}")),
    )?;
    let plain_base = format!("http://127.0.0.1:{plain_port}");
    wait_ready(&http, &format!("{plain_base}/healthz"), false).await?;

    let pairs = [
        (
            "assessment with 100 answers",
            [
                Request::graphql(
                    "attest",
                    &attest_base,
                    Some(&seed.token),
                    ATTEST_ASSESSMENT,
                    json!({ "id": seed.assessment }),
                ),
                Request::graphql("postgraphile", &pg_base, None, PG_ASSESSMENT, json!({ "id": seed.assessment })),
                Request::get("plain", format!("{plain_base}/assessments/{}", seed.assessment)),
            ],
        ),
        (
            "unit dashboard",
            [
                Request::graphql(
                    "attest",
                    &attest_base,
                    Some(&seed.token),
                    ATTEST_DASHBOARD,
                    json!({ "u": seed.root }),
                ),
                Request::graphql("postgraphile", &pg_base, None, PG_DASHBOARD, json!({ "a": seed.agency })),
                Request::get("plain", format!("{plain_base}/agencies/{}/units", seed.agency)),
            ],
        ),
    ];

    println!(
        "reads on PostgreSQL, {} clients, {} s per measurement after {} s of warm-up, {} rounds, alternating; \
         PostGraphile with {workers} worker(s)",
        o.clients, o.seconds, o.warmup, o.rounds
    );
    let meter = CpuMeter::connect(url).await?;
    let pids = [attest.pid()?, postgraphile.pid()?, plain.pid()?];
    let mut summaries = Vec::new();
    for (name, requests) in pairs {
        // Each server's first answer is checked field by field; every later answer must equal it.
        let mut targets = Vec::new();
        for (r, pid) in requests.into_iter().zip(pids) {
            let body = r.fetch(&http).await?;
            check_first(name, r.server, &body, &seed).with_context(|| format!("{} answered {body}", r.server))?;
            targets.push(Arc::new(Target { request: r, expected: body, pid }));
        }
        ensure!(
            targets[1].expected["data"] == targets[2].expected["data"],
            "PostGraphile and the plain handler returned different rows"
        );
        for t in &targets {
            run_load(&http, t, o.clients, Duration::from_secs(o.warmup)).await?;
        }
        println!("\n{name}");
        println!(
            "{:>6} {:<13} {:>10} {:>9} {:>9} {:>13} {:>13}",
            "round", "server", "req/s", "p50 ms", "p99 ms", "server CPU ms", "pg CPU ms"
        );
        let mut rounds: Vec<[Measured; 3]> = Vec::new();
        for round in 1..=o.rounds {
            let mut row = Vec::new();
            for t in &targets {
                let before = meter.sample(t.pid).await?;
                let mut m = run_load(&http, t, o.clients, Duration::from_secs(o.seconds)).await?;
                let after = meter.sample(t.pid).await?;
                (m.server_cpu, m.db_cpu) = after.per_request_since(&before, m.requests);
                println!(
                    "{round:>6} {:<13} {:>10.0} {:>9.1} {:>9.1} {:>13.2} {:>13.2}",
                    t.request.server,
                    m.rate,
                    ms(m.p50),
                    ms(m.p99),
                    ms(m.server_cpu),
                    ms(m.db_cpu)
                );
                row.push(m);
            }
            rounds.push(row.try_into().map_err(|_| anyhow::anyhow!("three measurements a round"))?);
        }
        summaries.push((name, rounds));
    }

    println!("\nmedians over the rounds; each ratio is the median of the rounds' ratios");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "query", "attest/s", "pgraph/s", "plain/s", "a p99", "pg p99", "pl p99", "a/pg req", "a/pg p99", "a/pl req"
    );
    for (name, rounds) in &summaries {
        let col = |i: usize, f: fn(&Measured) -> f64| median(rounds.iter().map(|r| f(&r[i])).collect());
        let ratio =
            |i: usize, j: usize, f: fn(&Measured) -> f64| median(rounds.iter().map(|r| f(&r[i]) / f(&r[j])).collect());
        let rate: fn(&Measured) -> f64 = |m| m.rate;
        let p99: fn(&Measured) -> f64 = |m| ms(m.p99);
        println!(
            "{name:<28} {:>10.0} {:>10.0} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>10.2} {:>10.2} {:>10.2}",
            col(0, rate),
            col(1, rate),
            col(2, rate),
            col(0, p99),
            col(1, p99),
            col(2, p99),
            ratio(0, 1, rate),
            ratio(0, 1, p99),
            ratio(0, 2, rate)
        );
    }
    println!("target: a/pg req at least 1.50 and a/pg p99 at most 1.00");
    println!("\nCPU per request (ms, medians): the server's processes, and PostgreSQL's backends for this database");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "query", "attest", "a pg", "pgraph", "pg pg", "plain", "pl pg"
    );
    for (name, rounds) in &summaries {
        let col = |i: usize, f: fn(&Measured) -> Duration| median(rounds.iter().map(|r| ms(f(&r[i]))).collect());
        println!(
            "{name:<28} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            col(0, |m| m.server_cpu),
            col(0, |m| m.db_cpu),
            col(1, |m| m.server_cpu),
            col(1, |m| m.db_cpu),
            col(2, |m| m.server_cpu),
            col(2, |m| m.db_cpu)
        );
    }
    for server in [attest, postgraphile, plain] {
        server.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The data

/// A template of ten sections of ten required questions each (the built-in ones have fewer than
/// 100): scales, yes/no questions and free text.
fn hundred_question_template() -> String {
    let mut s = String::from(
        "key: bench-hundred\nversion: 1\ntitle: Hundred questions\n\
         description: Ten sections of ten questions, for the reads benchmark.\nkind: other\nsections:\n",
    );
    for section in 0..10 {
        s += &format!("  - id: section-{section}\n    title: Section {section}\n    questions:\n");
        for q in 0..10 {
            s += &format!(
                "      - id: q-{section}-{q}\n        prompt: Question {q} of section {section}.\n        required: true\n"
            );
            match q % 3 {
                0 => {
                    s += "        type: scale\n        levels:\n";
                    for level in 0..5 {
                        s += &format!("          - {{ id: \"{level}\", label: \"Level {level}\", score: {level} }}\n");
                    }
                }
                1 => s += "        type: yes_no\n",
                _ => s += "        type: text\n",
            }
        }
    }
    s
}

/// The answer the benchmark gives to question `q` of a section.
fn answer_value(section: usize, q: usize) -> Value {
    match q % 3 {
        0 => json!(((section + q) % 5).to_string()),
        1 => json!(["yes", "no"][(section + q) % 2]),
        _ => json!(format!("Section {section}, question {q}: described in the unit's register of AI systems.")),
    }
}

/// One region with three districts of three stations, five officers, two readiness assessments
/// per unit (half of them started), and in one station the assessment with 100 answers.
async fn seed(http: &reqwest::Client, base: &str) -> anyhow::Result<Seed> {
    let login = graphql(
        http,
        base,
        None,
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
        json!({ "e": ADMIN, "p": PASSWORD }),
    )
    .await?;
    let token = login["login"]["token"].as_str().context("a session token")?.to_owned();
    let gql = |query: &'static str, vars: Value| {
        let token = token.clone();
        async move { graphql(http, base, Some(&token), query, vars).await }
    };
    let agency = str_at(&gql("{ agency { id } }", json!({})).await?, &["agency", "id"])?;
    let imported =
        gql("mutation($s: String!) { importTemplate(source: $s) { id } }", json!({ "s": hundred_question_template() }))
            .await?;
    let hundred = str_at(&imported, &["importTemplate", "id"])?;
    let templates = gql("{ templates { id key } }", json!({})).await?;
    let readiness = templates["templates"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["key"] == "ai-readiness"))
        .context("the readiness template")?["id"]
        .clone();

    const UNIT: &str = "mutation($n: String!, $p: ID) { createUnit(name: $n, parentId: $p) { id } }";
    let root = str_at(&gql(UNIT, json!({ "n": "Northern region", "p": null })).await?, &["createUnit", "id"])?;
    let mut units = vec![root.clone()];
    for d in 1..=3 {
        let district =
            str_at(&gql(UNIT, json!({ "n": format!("District {d}"), "p": root })).await?, &["createUnit", "id"])?;
        units.push(district.clone());
        for s in 1..=3 {
            let n = format!("Station {d}.{s}");
            units.push(str_at(&gql(UNIT, json!({ "n": n, "p": district })).await?, &["createUnit", "id"])?);
        }
    }
    let station = units[2].clone();
    let mut officers = Vec::new();
    for i in 1..=5 {
        let user = gql(
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            json!({ "i": { "email": format!("officer{i}@agency.test"), "displayName": format!("Officer {i}"), "password": "an initial password" } }),
        )
        .await?;
        let id = str_at(&user, &["createUser", "id"])?;
        gql(
            "mutation($u: ID!, $n: ID!) { grantRole(userId: $u, unitId: $n, role: MEMBER) { role } }",
            json!({ "u": id, "n": station }),
        )
        .await?;
        officers.push(id);
    }

    const CREATE: &str = "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id } }";
    const ANSWER: &str = "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { revision } }";
    let mut assessments = 0;
    for (i, unit) in units.iter().enumerate() {
        for k in 0..2 {
            let created = gql(
                CREATE,
                json!({ "i": { "unitId": unit, "templateId": readiness, "title": format!("Readiness {i}.{k}"), "subject": "The unit", "dueDate": "2027-06-30" } }),
            )
            .await?;
            assessments += 1;
            if k == 0 {
                let id = str_at(&created, &["createAssessment", "id"])?;
                let value = ((i % 5) as u8).to_string();
                gql(
                    ANSWER,
                    json!({ "i": { "assessmentId": id, "questionId": "rd-leadership-vision", "value": value } }),
                )
                .await?;
            }
        }
    }
    let created = gql(
        CREATE,
        json!({ "i": {
            "unitId": station, "templateId": hundred, "title": TITLE, "subject": "Automatic number plate recognition",
            "dueDate": "2027-03-31",
            "members": [{ "userId": officers[0], "role": "EDITOR" }, { "userId": officers[1], "role": "REVIEWER" }],
        } }),
    )
    .await?;
    assessments += 1;
    let assessment = str_at(&created, &["createAssessment", "id"])?;
    let mut answers = BTreeMap::new();
    for section in 0..10 {
        for q in 0..10 {
            let question = format!("q-{section}-{q}");
            let value = answer_value(section, q);
            let note = format!("Checked with the station's data protection officer ({section}.{q}).");
            gql(
                ANSWER,
                json!({ "i": { "assessmentId": assessment, "questionId": question, "value": value, "note": note } }),
            )
            .await?;
            answers.insert(question, (value, note));
        }
    }
    Ok(Seed { token, agency, root, assessment, answers, units: units.len(), assessments })
}

/// The string at `path` in a response.
fn str_at(v: &Value, path: &[&str]) -> anyhow::Result<String> {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    at.as_str().map(str::to_owned).with_context(|| format!("no {} in {v}", path.join(".")))
}

/// Checks the first answer of each server in detail; later answers are compared with it.
fn check_first(query: &str, server: &str, body: &Value, seed: &Seed) -> anyhow::Result<()> {
    ensure!(body.get("errors").is_none(), "errors");
    let data = &body["data"];
    let assessment = query.starts_with("assessment");
    match (server, assessment) {
        ("attest", true) => {
            let a = &data["assessment"];
            ensure!(a["title"] == TITLE && a["id"] == seed.assessment.as_str(), "another assessment");
            ensure!(a["progress"]["answered"] == 100 && a["progress"]["requiredAnswered"] == 100, "progress");
            let answers = a["answers"].as_array().context("answers")?;
            check_answers(answers, seed, |v| Some(v.clone()))
        }
        (_, true) => {
            let a = &data["assessmentById"];
            ensure!(a["title"] == TITLE && a["id"] == seed.assessment.as_str(), "another assessment");
            ensure!(a["requiredAnswered"] == 100 && a["requiredTotal"] == 100, "progress");
            let answers = a["answersByAssessmentId"]["nodes"].as_array().context("answer rows")?;
            // The column holds the value as JSON text.
            check_answers(answers, seed, |v| v.as_str().and_then(|s| serde_json::from_str(s).ok()))
        }
        ("attest", false) => {
            let rows = data["unitDashboard"].as_array().context("dashboard rows")?;
            ensure!(rows.len() == seed.units, "{} rows for {} units", rows.len(), seed.units);
            let top = &rows[0];
            ensure!(top["unit"]["id"] == seed.root.as_str() && top["depth"] == 0, "the first row is not the region");
            let counted: i64 =
                top["byStatus"].as_array().context("byStatus")?.iter().filter_map(|s| s["count"].as_i64()).sum();
            ensure!(counted == seed.assessments as i64, "{counted} assessments counted");
            // 100 answered in the big assessment, and one in each unit's first readiness one.
            ensure!(top["requiredAnswered"] == 100 + seed.units as i64, "required answered");
            Ok(())
        }
        (_, false) => {
            let units = data["allUnits"]["nodes"].as_array().context("unit rows")?;
            ensure!(units.len() == seed.units, "{} unit rows", units.len());
            let rows: Vec<&Value> =
                units.iter().filter_map(|u| u["assessmentsByUnitId"]["nodes"].as_array()).flatten().collect();
            ensure!(rows.len() == seed.assessments, "{} assessment rows", rows.len());
            let answered: i64 = rows.iter().filter_map(|r| r["requiredAnswered"].as_i64()).sum();
            ensure!(answered == 100 + seed.units as i64, "required answered");
            Ok(())
        }
    }
}

fn check_answers(answers: &[Value], seed: &Seed, value: impl Fn(&Value) -> Option<Value>) -> anyhow::Result<()> {
    ensure!(answers.len() == seed.answers.len(), "{} answers", answers.len());
    for a in answers {
        let question = a["questionId"].as_str().context("a question id")?;
        let (expected, note) = seed.answers.get(question).context("an unknown question")?;
        ensure!(value(&a["value"]).as_ref() == Some(expected), "the value of {question}");
        ensure!(a["note"] == note.as_str(), "the note of {question}");
        // PostGraphile sends BIGINT columns as strings.
        ensure!(a["revision"] == 1 || a["revision"] == "1", "the revision of {question}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The load

struct Request {
    server: &'static str,
    url: String,
    token: Option<String>,
    /// A JSON body to POST; none for a GET.
    body: Option<String>,
}

impl Request {
    fn graphql(server: &'static str, base: &str, token: Option<&str>, query: &str, vars: Value) -> Self {
        let body = json!({ "query": query, "variables": vars }).to_string();
        Self { server, url: format!("{base}/graphql"), token: token.map(str::to_owned), body: Some(body) }
    }

    fn get(server: &'static str, url: String) -> Self {
        Self { server, url, token: None, body: None }
    }

    async fn send(&self, http: &reqwest::Client) -> anyhow::Result<axum::body::Bytes> {
        let mut req = match &self.body {
            Some(b) => http.post(&self.url).header("content-type", "application/json").body(b.clone()),
            None => http.get(&self.url),
        };
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        ensure!(status.is_success(), "{} answered {status}: {}", self.server, String::from_utf8_lossy(&body));
        Ok(body)
    }

    async fn fetch(&self, http: &reqwest::Client) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.send(http).await?)?)
    }
}

struct Target {
    request: Request,
    expected: Value,
    /// The server's process.
    pid: u32,
}

struct Measured {
    requests: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time per request of the server's processes, and of PostgreSQL's backends.
    server_cpu: Duration,
    db_cpu: Duration,
}

/// `clients` clients sending the request back to back for `length`; every body must equal the
/// checked first one.
async fn run_load(
    http: &reqwest::Client,
    t: &Arc<Target>,
    clients: usize,
    length: Duration,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, t) = (http.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < length {
                let sent = Instant::now();
                let body = t.request.send(&http).await?;
                latencies.push(sent.elapsed());
                let body: Value = serde_json::from_slice(&body)?;
                ensure!(body == t.expected, "{} answered differently: {body}", t.request.server);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed();
    ensure!(!all.is_empty(), "no request completed");
    all.sort();
    let at = |p: usize| all[(all.len() * p / 100).min(all.len() - 1)];
    Ok(Measured {
        requests: all.len(),
        rate: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(50),
        p99: at(99),
        server_cpu: Duration::ZERO,
        db_cpu: Duration::ZERO,
    })
}

/// Reads CPU time from Linux's /proc: a server's process with its children (PostGraphile's
/// workers), and the PostgreSQL backends connected to the benchmark's database, which no other
/// client uses.
struct CpuMeter(sea_orm::DatabaseConnection);

struct CpuSample {
    server: f64,
    backends: BTreeMap<u32, f64>,
}

impl CpuMeter {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(Self(sea_orm::Database::connect(url).await?))
    }

    async fn sample(&self, server: u32) -> anyhow::Result<CpuSample> {
        use sea_orm::ConnectionTrait;
        let rows = self
            .0
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            ))
            .await?;
        let mut backends = BTreeMap::new();
        for row in rows {
            let pid: i32 = row.try_get("", "pid")?;
            let pid = u32::try_from(pid)?;
            backends.insert(pid, proc_stat(pid).map_or(0.0, |s| s.cpu));
        }
        let children: f64 = proc_pids().filter_map(proc_stat).filter(|s| s.parent == server).map(|s| s.cpu).sum();
        let server = proc_stat(server).map_or(0.0, |s| s.cpu) + children;
        Ok(CpuSample { server, backends })
    }
}

impl CpuSample {
    /// CPU time per request since `before`: the server's, and PostgreSQL's.
    fn per_request_since(&self, before: &CpuSample, requests: usize) -> (Duration, Duration) {
        let db: f64 =
            self.backends.iter().map(|(pid, cpu)| cpu - before.backends.get(pid).copied().unwrap_or(0.0)).sum();
        let n = requests.max(1) as f64;
        (
            Duration::from_secs_f64(((self.server - before.server) / n).max(0.0)),
            Duration::from_secs_f64((db / n).max(0.0)),
        )
    }
}

struct ProcStat {
    parent: u32,
    /// User and system time, in seconds.
    cpu: f64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses: state, ppid, ... utime (the
    // 12th of these), stime; in clock ticks of 1/100 s.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some(ProcStat { parent: fields.get(1)?.parse().ok()?, cpu: (ticks(11)? + ticks(12)?) / 100.0 })
}

fn proc_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// The servers

/// A server child process, stopped when dropped.
struct Server(tokio::process::Child);

impl Server {
    fn pid(&self) -> anyhow::Result<u32> {
        self.0.id().context("a server exited early")
    }

    fn start(command: &mut tokio::process::Command) -> anyhow::Result<Self> {
        let child = command.stdout(Stdio::null()).kill_on_drop(true).spawn().context("starting a server")?;
        Ok(Self(child))
    }
}

impl Server {
    /// Stops the server with SIGTERM, so that PostGraphile's master process also stops its
    /// workers (dropping a `Server` kills only the process itself), and waits for it.
    async fn stop(mut self) {
        if let Some(pid) = self.0.id() {
            let _ = tokio::process::Command::new("kill").arg(pid.to_string()).status().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), self.0.wait()).await;
        }
    }
}

async fn wait_ready(http: &reqwest::Client, url: &str, graphql: bool) -> anyhow::Result<()> {
    for _ in 0..600 {
        let req = if graphql { http.post(url).json(&json!({ "query": "{ __typename }" })) } else { http.get(url) };
        if req.send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not answer within a minute")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A binary built beside this one.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    ensure!(path.exists(), "{} is missing: cargo build --release --bin {name}", path.display());
    Ok(path)
}

/// Installs PostGraphile 4 into `dir` with npm unless it is there, and returns its command.
async fn install_postgraphile(dir: &Path) -> anyhow::Result<PathBuf> {
    let bin = dir.join("node_modules/.bin/postgraphile");
    if !bin.exists() {
        eprintln!("installing postgraphile@4 into {}", dir.display());
        std::fs::create_dir_all(dir)?;
        let status = tokio::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .arg("postgraphile@4")
            .status()
            .await
            .context("running npm")?;
        ensure!(status.success(), "npm install postgraphile@4 failed");
    }
    Ok(bin)
}

// ---------------------------------------------------------------------------------------------
// The ceiling: a plain axum server, no GraphQL, no sessions, no access checks

/// Serves the same rows as PostGraphile, in the same JSON, each with plain SQL.
pub async fn plain_server(url: &str, listen: &str) -> anyhow::Result<()> {
    use axum::routing::get;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(20).connect(url).await?;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/assessments/{id}", get(plain_assessment))
        .route("/agencies/{id}/units", get(plain_units))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

type Reply = Result<axum::Json<Value>, (axum::http::StatusCode, String)>;

fn failed(e: sqlx::Error) -> (axum::http::StatusCode, String) {
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn plain_assessment(
    axum::extract::State(pool): axum::extract::State<PgPool>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Reply {
    type Row = (String, String, String, Option<String>, String, i64, i32, i32);
    let a: Row = sqlx::query_as(
        "SELECT id, title, subject, due_date, status, updated_at, required_total, required_answered \
         FROM assessments WHERE id = $1",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .map_err(failed)?;
    type AnswerRow = (String, Option<String>, Option<String>, i64, bool, String, i64);
    let answers: Vec<AnswerRow> = sqlx::query_as(
        "SELECT question_id, value, note, revision, carried_over, updated_by, updated_at \
         FROM answers WHERE assessment_id = $1 ORDER BY question_id",
    )
    .bind(&id)
    .fetch_all(&pool)
    .await
    .map_err(failed)?;
    let nodes: Vec<Value> = answers
        .into_iter()
        .map(|(question, value, note, revision, carried, by, at)| {
            json!({ "questionId": question, "value": value, "note": note, "revision": revision.to_string(),
                    "carriedOver": carried, "updatedBy": by, "updatedAt": at.to_string() })
        })
        .collect();
    Ok(axum::Json(json!({ "data": { "assessmentById": {
        "id": a.0, "title": a.1, "subject": a.2, "dueDate": a.3, "status": a.4, "updatedAt": a.5.to_string(),
        "requiredTotal": a.6, "requiredAnswered": a.7, "answersByAssessmentId": { "nodes": nodes },
    } } })))
}

async fn plain_units(
    axum::extract::State(pool): axum::extract::State<PgPool>,
    axum::extract::Path(agency): axum::extract::Path<String>,
) -> Reply {
    let units: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, parent_id FROM units WHERE agency_id = $1 ORDER BY id")
            .bind(&agency)
            .fetch_all(&pool)
            .await
            .map_err(failed)?;
    type Row = (String, String, String, Option<String>, i32, i32, Option<String>, Option<i32>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, unit_id, status, due_date, required_total, required_answered, highest_residual, \
         highest_residual_rank FROM assessments WHERE agency_id = $1 ORDER BY id",
    )
    .bind(&agency)
    .fetch_all(&pool)
    .await
    .map_err(failed)?;
    let mut by_unit: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (id, unit, status, due, total, answered, highest, rank) in rows {
        by_unit.entry(unit).or_default().push(json!({
            "id": id, "status": status, "dueDate": due, "requiredTotal": total, "requiredAnswered": answered,
            "highestResidual": highest, "highestResidualRank": rank,
        }));
    }
    let nodes: Vec<Value> = units
        .into_iter()
        .map(|(id, name, parent)| {
            let assessments = by_unit.remove(&id).unwrap_or_default();
            json!({ "id": id, "name": name, "parentId": parent, "assessmentsByUnitId": { "nodes": assessments } })
        })
        .collect();
    Ok(axum::Json(json!({ "data": { "allUnits": { "nodes": nodes } } })))
}
