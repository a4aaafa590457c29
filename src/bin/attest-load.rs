//! `attest-load`: measures live delivery. It starts an Attest server (or targets one), opens N
//! graphql-transport-ws connections each subscribed to one assessment's events, drives answers
//! at a given rate, and reports mutation throughput, delivery latency to receipt (from the
//! commit, as the server logs it, and from the event's `at`, the writing transaction's clock
//! reading before its commit), and the server's memory per connection. Beside it, in the same run,
//! a bare axum websocket broadcast server sends frames of the same shape to the same number of
//! plain websocket connections, as a baseline.
//!
//! A client is ready when it has received a warm-up frame, not when it sent `subscribe`:
//! graphql-transport-ws does not acknowledge a subscription, so only a delivered event shows that
//! it is live. Memory is read and the timed run starts once every client is ready.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use attest::graphql::transport::{WS_READ_BUFFER, WS_WRITE_BUFFER};
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Each client's websocket read buffer.
const CLIENT_READ_BUFFER: usize = 4096;

#[derive(Parser)]
#[command(name = "attest-load", about = "Measures live delivery of Attest against a bare websocket broadcast")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the baseline: a bare axum websocket broadcast (started by the tool itself).
    BaselineServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Subscribed websocket connections.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Answers written per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds of writing.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Answers in flight at once, at most.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Target a running server (`http://host:port`) instead of starting one.
    #[arg(long)]
    server: Option<String>,
    /// Administrator of the targeted server.
    #[arg(long, default_value = "admin@load.test")]
    admin_email: String,
    #[arg(long, default_value = "load test password")]
    admin_password: String,
    /// The `attest` binary to start (default: next to this one).
    #[arg(long)]
    attest_bin: Option<PathBuf>,
    /// Skip the bare websocket baseline.
    #[arg(long)]
    no_baseline: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Some(Command::BaselineServer { listen }) => rt.block_on(baseline_server(listen)),
        None => rt.block_on(run(cli.run)),
    }
}

/// A child process killed when dropped.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// The run's scratch directory (the server's database), removed when the run ends, however it
/// ends. Declared before the server's `Child`, so that it is dropped after it.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    Ok(me.with_file_name(name))
}

async fn wait_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{base} did not become healthy")
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process has used (user and system), in seconds. `/proc/PID/stat` counts it in
/// clock ticks of 1/100 s (`USER_HZ`, 100 on Linux's common configurations).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The CPU time a process has used since it had used `before`.
fn cpu_since(pid: u32, before: Option<f64>) -> Option<f64> {
    Some(cpu_secs(pid)? - before?)
}

async fn graphql(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
    vars: Value,
) -> anyhow::Result<Value> {
    let mut req = http.post(format!("{base}/graphql")).json(&json!({ "query": query, "variables": vars }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let body: Value = req.send().await?.json().await?;
    if let Some(errors) = body.get("errors") {
        bail!("GraphQL errors: {errors}");
    }
    Ok(body["data"].clone())
}

/// The value below which a share `p` of the sorted values `sorted` lie.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0)
}

/// A frame a client received: the event's sequence number, the time from its `at` to receipt,
/// and the moment of receipt (microseconds since 1970).
#[derive(Clone, Copy)]
struct Received {
    seq: i64,
    from_at_us: u64,
    at_us: i64,
}

type ClientTask = tokio::task::JoinHandle<anyhow::Result<Vec<Received>>>;

/// When the server committed each event, by stream and sequence (microseconds since 1970), read
/// from its `attest::commits` log lines.
type Commits = Arc<std::sync::Mutex<std::collections::HashMap<(String, i64), i64>>>;

/// What a set of clients saw.
struct Outcome {
    connected: usize,
    /// Clients that received the warm-up frame, and the seconds from the last `subscribe` until
    /// the last of them did.
    live: usize,
    live_secs: f64,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    sent: u64,
    send_secs: f64,
    /// How long each change took, from its request to its response (which follows the commit).
    round_trips_us: Vec<u64>,
    /// The server's CPU time from the first write to 5 s after the last (the clients then have
    /// everything).
    cpu_secs: Option<f64>,
    /// This tool's own CPU time over the same span: the clients, the writer and the log reader,
    /// which share the machine's cores with the server.
    tool_cpu_secs: Option<f64>,
    delivered: u64,
    expected: u64,
    /// From each event's `at` to its receipt.
    latencies_us: Vec<u64>,
    /// From each event's commit to its receipt, when the commits are known.
    from_commit_us: Option<Vec<u64>>,
    /// When each timed event was committed (published, for the baseline), microseconds since
    /// 1970, by sequence number: how evenly the changes reached the subscribers' side.
    commits_us: std::collections::BTreeMap<i64, i64>,
}

impl Outcome {
    fn print(&self, name: &str) {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        let pct = |p: f64| percentile(&l, p);
        let mut trips = self.round_trips_us.clone();
        trips.sort_unstable();
        let per_conn = match (self.rss_before_kib, self.rss_after_kib) {
            (Some(b), Some(a)) if self.connected > 0 => {
                format!("{:.1} KiB", (a.saturating_sub(b)) as f64 / self.connected as f64)
            }
            _ => "n/a".into(),
        };
        println!("== {name}");
        println!("connections:            {}", self.connected);
        println!(
            "live before the run:    {} of {} received the warm-up frame, {:.1} s after the last subscribe",
            self.live, self.connected, self.live_secs
        );
        println!(
            "server RSS:             {} KiB before, {} KiB with every client live ({per_conn} per connection)",
            self.rss_before_kib.map_or("?".into(), |v| v.to_string()),
            self.rss_after_kib.map_or("?".into(), |v| v.to_string())
        );
        println!(
            "changes:                {} in {:.1} s ({:.1}/s)",
            self.sent,
            self.send_secs,
            self.sent as f64 / self.send_secs
        );
        println!(
            "change round trip:      p50 {:.1} ms, p99 {:.1} ms (request to response)",
            percentile(&trips, 0.50) as f64 / 1000.0,
            percentile(&trips, 0.99) as f64 / 1000.0
        );
        if let Some(cpu) = self.cpu_secs {
            println!(
                "server CPU:             {cpu:.2} s during the run ({:.2} ms per change)",
                cpu * 1000.0 / self.sent.max(1) as f64
            );
        }
        if let Some(cpu) = self.tool_cpu_secs {
            println!(
                "load tool CPU:          {cpu:.2} s during the run ({:.2} ms per change)",
                cpu * 1000.0 / self.sent.max(1) as f64
            );
        }
        println!("deliveries:             {} of {} expected", self.delivered, self.expected);
        if let Some(from_commit) = &self.from_commit_us {
            let mut c = from_commit.clone();
            c.sort_unstable();
            println!(
                "latency commit->client: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries)",
                percentile(&c, 0.50) as f64 / 1000.0,
                percentile(&c, 0.99) as f64 / 1000.0,
                c.last().copied().unwrap_or(0) as f64 / 1000.0,
                c.len()
            );
        }
        let mut spacing: Vec<i64> =
            self.commits_us.values().zip(self.commits_us.values().skip(1)).map(|(a, b)| b - a).collect();
        spacing.sort_unstable();
        if let Some(&longest) = spacing.last() {
            let close = spacing.partition_point(|&d| d < 2_000);
            println!(
                "commit spacing:         p50 {:.1} ms, {:.1}% within 2 ms of the one before, longest {:.1} ms",
                spacing[spacing.len() / 2] as f64 / 1000.0,
                close as f64 * 100.0 / spacing.len() as f64,
                longest as f64 / 1000.0
            );
        }
        println!(
            "latency at->client:     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(0.50) as f64 / 1000.0,
            pct(0.99) as f64 / 1000.0,
            l.last().copied().unwrap_or(0) as f64 / 1000.0
        );
    }
}

/// How far the clients have come: subscribed (`subscribe` sent, or connected for the baseline),
/// and live (a first frame received). Frames up to `warm_until` (every frame while warming up)
/// are warm-up frames, not timed.
struct Progress {
    subscribed: AtomicU64,
    live: AtomicU64,
    warm_until: AtomicI64,
}

impl Progress {
    fn new() -> Arc<Progress> {
        Arc::new(Progress {
            subscribed: AtomicU64::new(0),
            live: AtomicU64::new(0),
            warm_until: AtomicI64::new(i64::MAX),
        })
    }
}

/// A frame as a client reads it: only what the measurement needs, borrowed from the frame's text.
/// Typed rather than a `serde_json::Value`, which allocates a map per object: the clients share
/// the two cores with the server they measure, and every microsecond they spend per frame is one
/// the server does not get.
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    payload: Option<FramePayload<'a>>,
}

#[derive(serde::Deserialize)]
struct FramePayload<'a> {
    #[serde(borrow)]
    data: Option<FrameData<'a>>,
    errors: Option<Value>,
}

#[derive(serde::Deserialize)]
struct FrameData<'a> {
    #[serde(rename = "assessmentEvents", borrow)]
    event: Option<FrameEvent<'a>>,
}

#[derive(serde::Deserialize)]
struct FrameEvent<'a> {
    seq: i64,
    #[serde(borrow)]
    at: std::borrow::Cow<'a, str>,
}

/// Receives frames on one connection, recording each event's receipt, until `stop` fires or the
/// connection ends. The warm-up frame and anything before it only mark the client live.
async fn client(
    url: String,
    init: Option<(String, String, i64)>,
    progress: Arc<Progress>,
    stop: oneshot::Receiver<()>,
) -> anyhow::Result<Vec<Received>> {
    let mut req = url.into_client_request()?;
    if init.is_some() {
        req.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    }
    // tungstenite zero-fills its whole read buffer before every read: at the default 128 KiB
    // that was a quarter of the clients' CPU. The frames here are a few hundred bytes.
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), false).await?;
    if let Some((token, assessment, after)) = &init {
        ws.send(Message::Text(json!({ "type": "connection_init", "payload": { "token": token } }).to_string().into()))
            .await?;
        let ack = ws.next().await.context("closed before ack")??;
        if !ack.to_text().unwrap_or("").contains("connection_ack") {
            bail!("no ack: {ack:?}");
        }
        let sub = json!({ "id": "1", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!, $after: Int) { assessmentEvents(assessmentId: $id, afterSeq: $after) { seq at } }",
            "variables": { "id": assessment, "after": after } } });
        ws.send(Message::Text(sub.to_string().into())).await?;
    }
    progress.subscribed.fetch_add(1, Ordering::Relaxed);
    let mut live = false;
    let mut latencies = Vec::new();
    // One stop future for the whole loop: polling it again costs an atomic load, where a fresh
    // `watch::changed` per frame would join and leave a list that every client shares.
    let mut stop = std::pin::pin!(stop);
    loop {
        let msg = tokio::select! {
            biased;
            msg = ws.next() => msg,
            _ = &mut stop => break,
        };
        let Some(msg) = msg else { break };
        let Message::Text(text) = msg? else { continue };
        let now = chrono::Utc::now();
        let frame: Frame<'_> = serde_json::from_str(text.as_str())?;
        if frame.kind == "ping" {
            ws.send(Message::Text(json!({ "type": "pong" }).to_string().into())).await?;
            continue;
        }
        let Some(payload) = frame.payload else { continue };
        let Some(event) = payload.data.and_then(|d| d.event) else {
            if let Some(errors) = payload.errors {
                bail!("subscription error: {errors}");
            }
            continue;
        };
        if !live {
            live = true;
            progress.live.fetch_add(1, Ordering::Relaxed);
        }
        if event.seq <= progress.warm_until.load(Ordering::Acquire) {
            continue;
        }
        let at = chrono::DateTime::parse_from_rfc3339(&event.at)?;
        let from_at_us =
            u64::try_from((now - at.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0)).unwrap_or(0);
        latencies.push(Received { seq: event.seq, from_at_us, at_us: now.timestamp_micros() });
    }
    Ok(latencies)
}

/// Tells every client of a run to stop.
struct Stop(Vec<oneshot::Sender<()>>);

impl Stop {
    fn all(self) {
        for s in self.0 {
            let _ = s.send(());
        }
    }
}

/// Opens `n` clients, a few at a time, and waits until all have subscribed (or failed).
async fn open_clients(
    n: usize,
    url: &str,
    init: Option<(String, String, i64)>,
    progress: &Arc<Progress>,
) -> (Vec<ClientTask>, Stop) {
    let gate = Arc::new(Semaphore::new(64));
    let mut handles = Vec::with_capacity(n);
    let mut stops = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (stop_tx, stop) = oneshot::channel();
        stops.push(stop_tx);
        let (url, init, progress) = (url.to_owned(), init.clone(), progress.clone());
        handles.push(tokio::spawn(async move {
            let r = client(url, init, progress, stop);
            drop(permit);
            r.await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while (progress.subscribed.load(Ordering::Relaxed) as usize) < alive(&handles) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (handles, Stop(stops))
}

fn alive(handles: &[ClientTask]) -> usize {
    handles.iter().filter(|h| !h.is_finished()).count()
}

/// Sends warm-up frames (once, or every `repeat` until every client is live) and waits, at most
/// `limit`, until every client still connected received one. Afterwards frames up to the last
/// warm-up frame's sequence number are not timed. Returns how many clients are live and the
/// seconds it took.
async fn warm_up<F, Fut>(
    handles: &[ClientTask],
    progress: &Progress,
    limit: Duration,
    repeat: Option<Duration>,
    send: F,
) -> anyhow::Result<(usize, f64)>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<i64>>,
{
    let start = Instant::now();
    let mut last = send().await.context("sending a warm-up frame")?;
    let mut sent_at = Instant::now();
    while (progress.live.load(Ordering::Relaxed) as usize) < alive(handles) && start.elapsed() < limit {
        if repeat.is_some_and(|every| sent_at.elapsed() >= every) {
            last = send().await.context("sending a warm-up frame")?;
            sent_at = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.warm_until.store(last, Ordering::Release);
    Ok((progress.live.load(Ordering::Relaxed) as usize, start.elapsed().as_secs_f64()))
}

async fn collect(handles: Vec<ClientTask>) -> (Vec<Received>, Option<String>) {
    let mut all = Vec::new();
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => {
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    (all, first_error)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let dir = Scratch(std::env::temp_dir().join(format!("attest-load-{}", std::process::id())));
    // A directory left by an earlier run whose process had the same id would hold its database.
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0)?;
    let commits: Option<Commits> = args.server.is_none().then(Commits::default);
    let (base, _server, server_pid) = match &args.server {
        Some(base) => (base.trim_end_matches('/').to_owned(), None, None),
        None => {
            let port = free_port()?;
            let bin = match &args.attest_bin {
                Some(b) => b.clone(),
                None => sibling("attest")?,
            };
            let child = tokio::process::Command::new(&bin)
                .arg("serve")
                .env("ATTEST_LISTEN", format!("127.0.0.1:{port}"))
                .env("ATTEST_DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.0.join("attest.db").display()))
                .env("ATTEST_ADMIN_EMAIL", &args.admin_email)
                .env("ATTEST_ADMIN_PASSWORD", &args.admin_password)
                .env("ATTEST_WS_MAX_CONNECTIONS_PER_USER", (args.connections + 16).to_string())
                // Each commit's log line, whose timestamp is when the commit was announced.
                .env("ATTEST_LOG", "warn,attest::commits=debug")
                .env("ATTEST_LOG_FORMAT", "json")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let mut child = child;
            if let (Some(stderr), Some(commits)) = (child.stderr.take(), commits.clone()) {
                tokio::spawn(read_commits(stderr, commits));
            }
            let pid = child.id();
            (format!("http://127.0.0.1:{port}"), Some(Child(child)), pid)
        }
    };
    wait_healthy(&http, &base).await?;
    let login = graphql(
        &http,
        &base,
        None,
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
        json!({ "e": args.admin_email, "p": args.admin_password }),
    )
    .await?;
    let token = login["login"]["token"].as_str().context("no token")?.to_owned();
    let unit = graphql(&http, &base, Some(&token), "mutation { createUnit(name: \"Load\") { id } }", json!({})).await?
        ["createUnit"]["id"]
        .as_str()
        .context("no unit")?
        .to_owned();
    let templates = graphql(&http, &base, Some(&token), "{ templates { id key } }", json!({})).await?;
    let template = templates["templates"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["key"] == "ai-readiness"))
        .and_then(|t| t["id"].as_str())
        .context("no readiness template")?
        .to_owned();
    let created = graphql(
        &http,
        &base,
        Some(&token),
        "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id } }",
        json!({ "i": { "unitId": unit, "templateId": template, "title": "Load" } }),
    )
    .await?;
    let assessment = created["createAssessment"]["id"].as_str().context("no assessment")?.to_owned();
    // Warm up: the first answer also moves the status; start after it.
    set_answer(&http, &base, &token, &assessment, "change 0".into()).await?;
    let head = graphql(
        &http,
        &base,
        Some(&token),
        "query($s: String!) { events(stream: $s, first: 100) { nodes { seq } } }",
        json!({ "s": format!("assessment:{assessment}") }),
    )
    .await?["events"]["nodes"]
        .as_array()
        .map_or(0, |n| n.len() as i64);

    // Attest.
    let rss_before = server_pid.and_then(rss_kib);
    let ws_url = format!("{}/graphql/ws", base.replacen("http://", "ws://", 1));
    let progress = Progress::new();
    let init = Some((token.clone(), assessment.clone(), head));
    let (handles, stop) = open_clients(args.connections, &ws_url, init, &progress).await;
    // One answer, after `head`: every subscription receives it, from the tailer or from the log.
    let (live, live_secs) = warm_up(&handles, &progress, WARM_UP_LIMIT, None, || async {
        set_answer(&http, &base, &token, &assessment, "warm-up".into()).await?;
        Ok(head + 1)
    })
    .await?;
    tokio::time::sleep(SETTLE).await;
    let rss_after = server_pid.and_then(rss_kib);
    let connected = alive(&handles);
    eprintln!("attest: {connected} connections open, {live} live; writing");
    let cpu_before = server_pid.and_then(cpu_secs);
    let tool_before = cpu_secs(std::process::id());
    let (sent, send_secs, round_trips) = drive(args.rate, args.duration, args.writers, |i| {
        let (http, base, token, assessment) = (http.clone(), base.clone(), token.clone(), assessment.clone());
        async move { set_answer(&http, &base, &token, &assessment, format!("change {}", i + 1)).await }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = server_pid.and_then(|pid| cpu_since(pid, cpu_before));
    let tool_cpu = cpu_since(std::process::id(), tool_before);
    stop.all();
    let (received, error) = collect(handles).await;
    if let Some(e) = error {
        eprintln!("attest: a client failed: {e}");
    }
    let stream = format!("assessment:{assessment}");
    // Each receipt's commit, looked up once: the latency from it, and when each event committed.
    let mut commits_us = std::collections::BTreeMap::new();
    let from_commit = commits.map(|commits| {
        let commits = commits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut from_commit = Vec::with_capacity(received.len());
        for r in &received {
            if let Some(&committed) = commits.get(&(stream.clone(), r.seq)) {
                from_commit.push(u64::try_from(r.at_us - committed).unwrap_or(0));
                commits_us.insert(r.seq, committed);
            }
        }
        from_commit
    });
    let latencies: Vec<u64> = received.iter().map(|r| r.from_at_us).collect();
    let attest = Outcome {
        connected,
        live,
        live_secs,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        sent,
        send_secs,
        cpu_secs: cpu,
        tool_cpu_secs: tool_cpu,
        round_trips_us: round_trips,
        delivered: latencies.len() as u64,
        expected: sent * connected as u64,
        latencies_us: latencies,
        from_commit_us: from_commit,
        commits_us,
    };
    attest.print("attest (graphql-transport-ws, assessmentEvents)");
    drop(_server);

    if args.no_baseline {
        return Ok(());
    }
    // Baseline: the same number of plain websocket connections and the same rate.
    let port = free_port()?;
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["baseline-server", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let _baseline = Child(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&http, &base).await?;
    let rss_before = pid.and_then(rss_kib);
    let progress = Progress::new();
    let (handles, stop) = open_clients(args.connections, &format!("ws://127.0.0.1:{port}/ws"), None, &progress).await;
    // A broadcast has no catch-up: a frame published before a connection's receiver exists never
    // reaches it, so warm-up frames go out until every connection has received one.
    let published = AtomicI64::new(0);
    let (live, live_secs) = warm_up(&handles, &progress, WARM_UP_LIMIT, Some(Duration::from_millis(200)), || async {
        http.post(format!("{base}/publish")).send().await?.error_for_status()?;
        Ok(published.fetch_add(1, Ordering::Relaxed) + 1)
    })
    .await?;
    tokio::time::sleep(SETTLE).await;
    let rss_after = pid.and_then(rss_kib);
    let connected = alive(&handles);
    eprintln!("baseline: {connected} connections open, {live} live; publishing");
    let cpu_before = pid.and_then(cpu_secs);
    let tool_before = cpu_secs(std::process::id());
    let (sent, send_secs, round_trips) = drive(args.rate, args.duration, args.writers, |i| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.post(format!("{base}/publish")).body(i.to_string()).send().await?.error_for_status()?;
            Ok(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = pid.and_then(|pid| cpu_since(pid, cpu_before));
    let tool_cpu = cpu_since(std::process::id(), tool_before);
    stop.all();
    let (received, error) = collect(handles).await;
    if let Some(e) = error {
        eprintln!("baseline: a client failed: {e}");
    }
    // A frame is stamped as it is published, which is the broadcast's commit.
    let latencies: Vec<u64> = received.iter().map(|r| r.from_at_us).collect();
    let commits_us = received.iter().map(|r| (r.seq, r.at_us - i64::try_from(r.from_at_us).unwrap_or(0))).collect();
    Outcome {
        connected,
        live,
        live_secs,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        sent,
        send_secs,
        cpu_secs: cpu,
        tool_cpu_secs: tool_cpu,
        round_trips_us: round_trips,
        delivered: latencies.len() as u64,
        expected: sent * connected as u64,
        from_commit_us: Some(latencies.clone()),
        commits_us,
        latencies_us: latencies,
    }
    .print("baseline (bare axum websocket broadcast)");
    Ok(())
}

/// Reads the server's log: each `attest::commits` line gives the moment a commit was announced
/// (its timestamp) and the stream and sequence numbers it committed; other lines are passed on.
async fn read_commits(stderr: tokio::process::ChildStderr, commits: Commits) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            eprintln!("{line}");
            continue;
        };
        let fields = &v["fields"];
        let commit = (v["target"] == "attest::commits").then(|| {
            let at = chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str()?).ok()?.timestamp_micros();
            Some((
                fields["stream"].as_str()?.to_owned(),
                fields["first_seq"].as_i64()?,
                fields["last_seq"].as_i64()?,
                at,
            ))
        });
        match commit.flatten() {
            Some((stream, first, last, at)) => {
                let mut commits = commits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                for seq in first..=last {
                    commits.insert((stream.clone(), seq), at);
                }
            }
            None => eprintln!("{line}"),
        }
    }
}

/// How long the clients may take to receive the warm-up frame.
const WARM_UP_LIMIT: Duration = Duration::from_secs(300);

/// The pause between every client being live and reading the server's memory.
const SETTLE: Duration = Duration::from_secs(2);

async fn set_answer(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    assessment: &str,
    value: String,
) -> anyhow::Result<()> {
    graphql(
        http,
        base,
        Some(token),
        "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { revision } }",
        json!({ "i": { "assessmentId": assessment, "questionId": "rd-leadership-evidence", "value": value } }),
    )
    .await?;
    Ok(())
}

/// Calls `op` `rate` times per second for `secs` seconds, at most `writers` at once; returns how
/// many succeeded and the seconds it took until the last one finished.
async fn drive<F, Fut>(rate: u64, secs: u64, writers: usize, op: F) -> (u64, f64, Vec<u64>)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(writers.max(1)));
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let mut tasks = Vec::new();
    for i in 0..rate * secs {
        tick.tick().await;
        let permit = gate.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (fut, done) = (op(i), done.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let took = match fut.await {
                Ok(()) => {
                    done.fetch_add(1, Ordering::Relaxed);
                    Some(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX))
                }
                Err(e) => {
                    eprintln!("a change failed: {e:#}");
                    None
                }
            };
            drop(permit);
            took
        }));
    }
    let mut round_trips = Vec::new();
    for t in tasks {
        if let Ok(Some(took)) = t.await {
            round_trips.push(took);
        }
    }
    (done.load(Ordering::Relaxed), start.elapsed().as_secs_f64(), round_trips)
}

/// The baseline: every published body becomes one frame shaped like a graphql-transport-ws
/// `next` message of `assessmentEvents`, stamped with the time it was published, and is sent to
/// every connection through a broadcast channel.
async fn baseline_server(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use axum::extract::State;
    use axum::extract::ws::{Message as AxMessage, WebSocketUpgrade};
    use axum::routing::{get, post};

    let (tx, _) = broadcast::channel::<Arc<str>>(1024);
    let seq = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/publish",
            post(|State((tx, seq)): State<(broadcast::Sender<Arc<str>>, Arc<AtomicU64>)>| async move {
                let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
                let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let frame = json!({ "id": "1", "type": "next", "payload": { "data": { "assessmentEvents": { "seq": n, "at": at } } } });
                let _ = tx.send(Arc::from(frame.to_string()));
                "ok"
            }),
        )
        .route(
            "/ws",
            get(|State((tx, _)): State<(broadcast::Sender<Arc<str>>, Arc<AtomicU64>)>, up: WebSocketUpgrade| async move {
                up.read_buffer_size(WS_READ_BUFFER).write_buffer_size(WS_WRITE_BUFFER).on_upgrade(move |mut socket| async move {
                    let mut rx = tx.subscribe();
                    loop {
                        tokio::select! {
                            frame = rx.recv() => match frame {
                                Ok(f) => if socket.send(AxMessage::Text(f.as_ref().into())).await.is_err() { return },
                                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(broadcast::error::RecvError::Closed) => return,
                            },
                            msg = socket.recv() => if msg.is_none_or(|m| m.is_err()) { return },
                        }
                    }
                })
            }),
        )
        .with_state((tx, seq));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
