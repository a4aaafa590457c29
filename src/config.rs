//! Server configuration: every option is a command-line flag and an `ATTEST_*` environment
//! variable. Secrets are redacted in `Debug` so a logged configuration never reveals them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, ValueEnum};

/// A value that must never be printed: its `Debug` shows only that it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A database URL whose password is hidden in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(s: impl Into<String>) -> Self {
        DatabaseUrl(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }

    /// The URL with any password replaced by `***`: in the user information (split at the last
    /// `@`, since an unencoded `@` may appear in a password) and in a `password=` parameter.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let (main, query) = match rest.split_once('?') {
            Some((main, query)) => (main, Some(query)),
            None => (rest, None),
        };
        let main = match main.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => main.to_owned(),
        };
        let query = query.map(|q| {
            q.split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("&")
        });
        match query {
            Some(q) => format!("{scheme}://{main}?{q}"),
            None => format!("{scheme}://{main}"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with("sqlite:") || s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(DatabaseUrl(s.to_owned()))
        } else {
            Err("expected a sqlite: or postgres:// URL".into())
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// Database to use: a `sqlite:` file URL (created on first start) or a `postgres://` URL.
    #[arg(
        long,
        env = "ATTEST_DATABASE_URL",
        default_value = "sqlite://attest.db?mode=rwc",
        global = true,
        hide_env_values = true
    )]
    pub database_url: DatabaseUrl,
}

/// Where the server's Ed25519 signing key is kept, when no `--key-file` is given.
pub const DEFAULT_KEY_FILE: &str = "attest.key";

/// The server's signing key, for `serve` and every operator command that signs or verifies.
#[derive(Args, Clone, Debug)]
pub struct KeyArgs {
    /// File holding the server's Ed25519 key that signs checkpoints; created on first start.
    /// Keep it private, and back it up with the database.
    #[arg(long, env = "ATTEST_KEY_FILE", default_value = DEFAULT_KEY_FILE, global = true)]
    pub key_file: PathBuf,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `attest serve` needs.
#[derive(Args, Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "ATTEST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Email of the administrator created on first start.
    #[arg(long, env = "ATTEST_ADMIN_EMAIL", default_value = "admin@example.org")]
    pub admin_email: String,

    /// Password of the administrator created on first start. Without it, a random one is
    /// generated, printed once, and must be changed at first login.
    #[arg(long, env = "ATTEST_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret>,

    /// Name of the agency created on first start.
    #[arg(long, env = "ATTEST_AGENCY_NAME", default_value = "My agency")]
    pub agency_name: String,

    /// A session ends after this many seconds without a request.
    #[arg(long, env = "ATTEST_SESSION_IDLE_SECS", default_value_t = 2 * 3600)]
    pub session_idle_secs: u64,

    /// A session ends this many seconds after login, however active.
    #[arg(long, env = "ATTEST_SESSION_MAX_SECS", default_value_t = 12 * 3600)]
    pub session_max_secs: u64,

    /// Failed logins for one account, within the window, before it is refused for a while.
    #[arg(long, env = "ATTEST_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,

    /// Failed logins from one address, within the window, before it is refused for a while.
    #[arg(long, env = "ATTEST_LOGIN_MAX_FAILURES_PER_ADDRESS", default_value_t = 30)]
    pub login_max_failures_per_address: u32,

    /// Window in seconds over which failed logins are counted.
    #[arg(long, env = "ATTEST_LOGIN_WINDOW_SECS", default_value_t = 900)]
    pub login_window_secs: u64,

    /// How long, in seconds, an account or address is refused once over the limit.
    #[arg(long, env = "ATTEST_LOGIN_LOCKOUT_SECS", default_value_t = 900)]
    pub login_lockout_secs: u64,

    /// Extra delay in milliseconds per earlier failure before a failed login is answered.
    #[arg(long, env = "ATTEST_LOGIN_DELAY_MS", default_value_t = 200)]
    pub login_delay_ms: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ATTEST_MAX_REQUEST_BYTES", default_value_t = 256 * 1024)]
    pub max_request_bytes: usize,

    /// Deepest accepted GraphQL query.
    #[arg(long, env = "ATTEST_MAX_QUERY_DEPTH", default_value_t = 12)]
    pub max_query_depth: usize,

    /// Highest accepted GraphQL query complexity.
    #[arg(long, env = "ATTEST_MAX_QUERY_COMPLEXITY", default_value_t = 2000)]
    pub max_query_complexity: usize,

    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    #[arg(long, env = "ATTEST_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Mark the session cookie `Secure` (serve over HTTPS).
    #[arg(long, env = "ATTEST_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,

    /// Largest accepted WebSocket message, in bytes.
    #[arg(long, env = "ATTEST_WS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_message_bytes: usize,

    /// WebSocket connections one user may hold open at once; more are refused.
    #[arg(long, env = "ATTEST_WS_MAX_CONNECTIONS_PER_USER", default_value_t = 16)]
    pub ws_max_connections_per_user: usize,

    /// Seconds between the server's pings on an idle WebSocket connection.
    #[arg(long, env = "ATTEST_WS_PING_SECS", default_value_t = 10)]
    pub ws_ping_secs: u64,

    /// Seconds between checks that a WebSocket connection's session still holds and that the
    /// user's rights (unit roles, administrator, assessment memberships) are unchanged. A
    /// connection whose session ended is closed with 4401, one whose rights changed with 4403,
    /// and the client connects again so that each subscription is authorized anew.
    #[arg(long, env = "ATTEST_WS_RECHECK_SECS", default_value_t = 30)]
    pub ws_recheck_secs: u64,

    /// A WebSocket connection from which nothing (not even a pong) arrived for this many seconds
    /// is closed, and its presence ends.
    #[arg(long, env = "ATTEST_WS_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub ws_idle_timeout_secs: u64,

    /// Events buffered per live subscription; a subscriber further behind is cut off and told to
    /// resume with `afterSeq`.
    #[arg(long, env = "ATTEST_LIVE_BUFFER", default_value_t = 256)]
    pub live_buffer: usize,

    /// Milliseconds between safety reads of the log by live streams, in case a notification
    /// was lost.
    #[arg(long, env = "ATTEST_LIVE_POLL_MS", default_value_t = 5000)]
    pub live_poll_ms: u64,

    /// Least milliseconds between two `unitProgress` updates of one subscription.
    #[arg(long, env = "ATTEST_LIVE_PROGRESS_INTERVAL_MS", default_value_t = 300)]
    pub live_progress_interval_ms: u64,

    /// Milliseconds between two publications of a server's presence to the other servers on the
    /// same PostgreSQL database (at most a third of the presence timeout).
    #[arg(long, env = "ATTEST_PRESENCE_HEARTBEAT_MS", default_value_t = 10_000)]
    pub presence_heartbeat_ms: u64,

    /// Milliseconds after which the presence entries of another server that stopped publishing
    /// them are dropped; by default the WebSocket idle timeout.
    #[arg(long, env = "ATTEST_PRESENCE_TIMEOUT_MS")]
    pub presence_timeout_ms: Option<u64>,

    /// Log format.
    #[arg(long, env = "ATTEST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Serve the web application from this directory instead of the copy built into the binary
    /// (for working on it without rebuilding).
    #[arg(long, env = "ATTEST_WEB_DIR")]
    pub web_dir: Option<std::path::PathBuf>,

    /// On an empty database, create a sample agency with users, units and assessments, and print
    /// the users' passwords.
    #[arg(long, env = "ATTEST_DEMO", default_value_t = false)]
    pub demo: bool,

    /// Seconds between signed checkpoints of the event log; 0 takes none. A checkpoint is
    /// skipped when nothing was appended since the last one.
    #[arg(long, env = "ATTEST_CHECKPOINT_INTERVAL_SECS", default_value_t = 3600)]
    pub checkpoint_interval_secs: u64,

    /// The key file. Set from the command line's global `--key-file` (`KeyArgs`), which every
    /// command shares.
    #[arg(skip = PathBuf::from(DEFAULT_KEY_FILE))]
    pub key_file: PathBuf,
}

impl ServeConfig {
    /// Defaults for embedding and tests, as if no flag were given.
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: ServeConfig,
        }
        Wrapper::parse_from(["attest"]).config
    }
}
