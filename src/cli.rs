//! The command line: `attest serve` (the default), `migrate`, `schema`, operators' commands for
//! agencies and users, and the auditor's commands: `key show`, `checkpoint`, `verify`, `export`
//! and `verify-bundle`.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::agencies::{self, Email, NewUser};
use crate::auth::password::Password;
use crate::bootstrap;
use crate::checkpoints::{ServerKey, SignedCheckpoint, TrustedKeys};
use crate::clock::Clock;
use crate::config::{DatabaseArgs, KeyArgs, LogFormat, ServeConfig};
use crate::db::{self, Db};
use crate::error::{AppError, LogDisplay};
use crate::events::EventActor;
use crate::state::AppState;

#[derive(Parser, Debug)]
#[command(
    name = "attest",
    version,
    about = "Responsible-AI self-assessments for law enforcement, with a verifiable history"
)]
pub struct Cli {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run pending migrations, then serve the API (what plain `attest` does).
    Serve(Box<ServeConfig>),
    /// Run pending migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Manage agencies.
    #[command(subcommand)]
    Agency(AgencyCommand),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage assessment templates.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Recompute every assessment's current-state tables (assessment, people, assignments,
    /// answers, comments and their versions) from the event log.
    Rebuild {
        /// Only report every difference between the tables and the log; change nothing. Exits
        /// non-zero when there is any.
        #[arg(long)]
        check: bool,
    },
    /// The server's signing key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Take a signed checkpoint of the whole log now (stored, and logged as
    /// `checkpoint.created`), and print it with every stream head: the document an auditor keeps.
    Checkpoint {
        /// Write the checkpoint to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check every stream of the log (hashes, links, gap-free sequence numbers and heads) and
    /// every checkpoint stored in the database: its signature, and that the log still holds
    /// exactly what it committed to. Exits non-zero and names each problem if anything is wrong.
    Verify {
        /// Also check that the log still holds exactly what this kept checkpoint (written by
        /// `attest checkpoint`) committed to.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// A trusted public key (64 hex digits): the kept checkpoint and every stored one must be
        /// signed by one of those given. Give it again for each key the server had: after a
        /// rotation, the older checkpoints are signed by the key before. Without it, the key file
        /// is used if present, else the key embedded in the kept checkpoint, or else in the
        /// oldest stored checkpoint.
        #[arg(long)]
        public_key: Vec<String>,
    },
    /// Write the bundle of an assessment's stream, with a fresh checkpoint covering it, for
    /// offline verification.
    Export {
        /// The assessment's id.
        #[arg(long)]
        assessment: String,
        /// Write the bundle to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a bundle offline, without any database.
    VerifyBundle {
        file: PathBuf,
        /// A trusted public key (64 hex digits); the bundle's checkpoint must be signed by one of
        /// those given. Without it, the key file is used if present, else the key embedded in the
        /// bundle.
        #[arg(long)]
        public_key: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Print the server's public key (hex) and the key file's path; creates the key if missing.
    Show,
}

#[derive(Subcommand, Debug)]
pub enum TemplateCommand {
    /// Check a template file (YAML or JSON) and publish it for an agency. Every problem is
    /// printed with its path; any problem rejects the whole file.
    Import {
        file: std::path::PathBuf,
        /// Only check the file; publish nothing.
        #[arg(long)]
        check: bool,
        /// The agency's name; may be left out when the deployment has only one agency.
        #[arg(long)]
        agency: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgencyCommand {
    /// Create another agency with its first administrator; prints a generated password.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user. The password is read from standard input with --password-stdin, or
    /// generated, printed, and must be changed at first login.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        display_name: String,
        /// The agency's name; may be left out when the deployment has only one agency.
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (read from standard input with --password-stdin, or generated and
    /// printed); the user's sessions end.
    SetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
        /// Require a change at next login.
        #[arg(long)]
        must_change: bool,
    },
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATTEST_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn domain(err: AppError) -> anyhow::Error {
    anyhow::anyhow!("{}", LogDisplay(&err))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let url = cli.db.database_url;
    let key_file = cli.key.key_file;
    match cli.command {
        None => serve(&url, ServeConfig { key_file, ..ServeConfig::defaults() }).await,
        Some(Command::Serve(config)) => serve(&url, ServeConfig { key_file, ..*config }).await,
        Some(Command::Migrate) => {
            init_logging(LogFormat::Text);
            Db::connect(&url).await?.migrate().await?;
            println!("migrations are up to date on {url}");
            Ok(())
        }
        Some(Command::Schema) => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Some(Command::Agency(AgencyCommand::Create { name, admin_email })) => {
            let state = operator_state(&url, &key_file).await?;
            let password = Password::generate();
            let (agency, admin) =
                agencies::create_agency(&state, &name, &admin_email, &password, true).await.map_err(domain)?;
            println!("created agency {} ({})", agency.name, agency.id);
            println!(
                "administrator {} with password {} (to be changed at first login)",
                admin.email,
                password.expose()
            );
            Ok(())
        }
        Some(Command::User(cmd)) => user_command(&url, &key_file, cmd).await,
        Some(Command::Rebuild { check }) => rebuild(&url, check).await,
        Some(Command::Template(TemplateCommand::Import { file, check, agency })) => {
            let source = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let template = match crate::templates::parse(&source) {
                Ok(t) => t,
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("{}: {e}", file.display());
                    }
                    bail!("{} problem(s) found; nothing was imported", errors.0.len());
                }
            };
            if check {
                println!("{}: template {} version {} is valid", file.display(), template.key, template.version);
                return Ok(());
            }
            let state = operator_state(&url, &key_file).await?;
            let agency = pick_agency(&state, agency).await?;
            let stored = crate::assessments::publish_template(&state, agency.id, EventActor::System, template)
                .await
                .map_err(domain)?;
            println!(
                "published template {} version {} ({}) for {}",
                stored.template.key, stored.template.version, stored.id, agency.name
            );
            Ok(())
        }
        Some(Command::Key(KeyCommand::Show)) => {
            let path = key_file.clone();
            let key = tokio::task::spawn_blocking(move || ServerKey::load_or_create(&path)).await??;
            println!("algorithm: {}", crate::audit::KEY_ALGORITHM);
            println!("public_key: {}", key.public_key_hex());
            println!("key_file: {}", key_file.display());
            Ok(())
        }
        Some(Command::Checkpoint { out }) => {
            let state = signing_state(&url, &key_file).await?;
            let stored = crate::audit::create_checkpoint(&state, EventActor::System).await.map_err(domain)?;
            let mut json = serde_json::to_string_pretty(&stored.signed)?;
            json.push('\n');
            let c = &stored.signed.checkpoint;
            match out {
                Some(path) => {
                    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
                    println!(
                        "checkpoint {} at position {} over {} streams, Merkle root {}, written to {}",
                        c.at,
                        c.position,
                        c.stream_count,
                        c.merkle_root,
                        path.display()
                    );
                }
                None => print!("{json}"),
            }
            Ok(())
        }
        Some(Command::Verify { checkpoint, public_key }) => {
            verify(&url, &key_file, checkpoint.as_deref(), &public_key).await
        }
        Some(Command::Export { assessment, out }) => {
            let id = crate::ids::AssessmentId::parse(&assessment).map_err(domain)?;
            let state = signing_state(&url, &key_file).await?;
            let export = crate::audit::export_assessment(&state, id).await.map_err(domain)?;
            let c = &export.checkpoint.signed.checkpoint;
            let summary = format!(
                "bundle of {}: {} events, covered by checkpoint {} at position {} (public key {})",
                export.stream, export.events, c.at, c.position, c.public_key
            );
            match out {
                Some(path) => {
                    std::fs::write(&path, &export.bundle).with_context(|| format!("writing {}", path.display()))?;
                    println!("{summary}, written to {}", path.display());
                }
                None => {
                    print!("{}", export.bundle);
                    eprintln!("{summary}");
                }
            }
            Ok(())
        }
        Some(Command::VerifyBundle { file, public_key }) => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let trusted = trusted_keys(&public_key, &key_file)?;
            match crate::checkpoints::verify_bundle(&text, &trusted) {
                Ok(report) => {
                    println!(
                        "OK: {} holds {} events of stream {}, ending in sequence {} with hash {}",
                        file.display(),
                        report.events,
                        report.stream,
                        report.head_seq,
                        report.head_hash
                    );
                    println!(
                        "covered by the checkpoint taken at {}, signed by {}",
                        report.checkpoint_at, report.public_key
                    );
                    if trusted.is_empty() {
                        warn_untrusted(&report.public_key);
                    }
                    Ok(())
                }
                Err(problem) => {
                    println!("FAILED: {}: {problem}", file.display());
                    bail!("the bundle {} does not verify: {problem}", file.display())
                }
            }
        }
    }
}

async fn rebuild(url: &crate::config::DatabaseUrl, check: bool) -> anyhow::Result<()> {
    init_logging(LogFormat::Text);
    let db = Db::connect(url).await?;
    db.migrate().await?;
    let started = std::time::Instant::now();
    let report = crate::replay::rebuild(&db, check).await.map_err(domain)?;
    for difference in &report.differences {
        println!("{difference}");
    }
    println!(
        "{} assessment(s), {} event(s) replayed in {:.2} s: {} difference(s){}",
        report.assessments,
        report.events,
        started.elapsed().as_secs_f64(),
        report.differences.len(),
        if check { String::new() } else { format!(", {} assessment(s) rewritten", report.rewritten) }
    );
    if check && !report.differences.is_empty() {
        bail!("the current-state tables differ from the log");
    }
    Ok(())
}

/// The keys a checkpoint may be signed by: those given, else the key file's if there is one.
/// None means only the embedded key can be checked.
fn trusted_keys(given: &[String], key_file: &Path) -> anyhow::Result<TrustedKeys> {
    if !given.is_empty() {
        for key in given {
            let valid = key.trim().len() == 64 && key.trim().bytes().all(|b| b.is_ascii_hexdigit());
            anyhow::ensure!(valid, "--public-key {key:?} is not a public key: 64 hex digits are expected");
        }
        return Ok(TrustedKeys::new(given.iter().cloned()));
    }
    Ok(TrustedKeys::new(ServerKey::load(key_file)?.map(|key| key.public_key_hex())))
}

fn warn_untrusted(embedded: &str) {
    eprintln!(
        "warning: no trusted key (--public-key or a key file): only the embedded key {embedded} was checked; \
         compare it with the server's published key"
    );
}

async fn verify(
    url: &crate::config::DatabaseUrl,
    key_file: &Path,
    checkpoint: Option<&Path>,
    public_keys: &[String],
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let trusted = trusted_keys(public_keys, key_file)?;
    let signed = match checkpoint {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let signed: SignedCheckpoint = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a checkpoint written by `attest checkpoint`", path.display()))?;
            let checked = signed.verify().and_then(|()| signed.checkpoint.verify_signature(&trusted));
            if let Err(problem) = checked {
                println!("PROBLEM checkpoint {}: {problem}", path.display());
                bail!("the checkpoint {} does not verify", path.display());
            }
            Some(signed)
        }
    };
    let db = Db::connect(url).await?;
    let report = crate::audit::verify_log(&db, signed.as_ref(), &trusted).await.map_err(domain)?;
    println!(
        "checked {} streams, {} events in {:.2} s",
        report.streams,
        report.events_checked,
        started.elapsed().as_secs_f64()
    );
    if let Some(signed) = &signed {
        let c = &signed.checkpoint;
        println!(
            "checkpoint taken at {} (position {}, {} streams, signed by {}): {} streams compared",
            c.at, c.position, c.stream_count, c.public_key, report.checkpoint_streams
        );
    }
    match report.stored_keys.keys() {
        [] => println!("{} stored checkpoints checked", report.stored_checkpoints),
        keys => println!(
            "{} stored checkpoints checked against {} {}: {} distinct heads compared",
            report.stored_checkpoints,
            if keys.len() == 1 { "key" } else { "keys" },
            keys.join(", "),
            report.stored_heads_compared
        ),
    }
    // Without a trusted key, the kept checkpoint's key (if any) is what the stored ones were
    // held to; one warning names the key that was taken on trust.
    if trusted.is_empty()
        && let Some(key) = signed.as_ref().map(|s| &s.checkpoint.public_key).or(report.stored_keys.keys().first())
    {
        warn_untrusted(key);
    }
    for problem in &report.problems {
        println!("PROBLEM {problem}");
    }
    for bad in &report.bad_checkpoints {
        println!("PROBLEM {bad}");
    }
    for mismatch in &report.mismatches {
        println!("PROBLEM {mismatch}");
    }
    if !report.is_intact() {
        let mut broken: Vec<&str> = report.problems.iter().map(|p| p.stream.as_str()).collect();
        broken.extend(report.mismatches.iter().map(|m| m.problem.stream.as_str()));
        broken.sort_unstable();
        broken.dedup();
        let mut found = Vec::new();
        if !broken.is_empty() {
            found.push(format!("{} stream(s) with problems", broken.len()));
        }
        if !report.bad_checkpoints.is_empty() {
            found.push(format!("{} stored checkpoint(s) that do not verify", report.bad_checkpoints.len()));
        }
        bail!("the log is not intact: {}", found.join(", "));
    }
    println!("OK: the log is intact");
    Ok(())
}

async fn pick_agency(state: &AppState, name: Option<String>) -> anyhow::Result<crate::agencies::Agency> {
    let all = db::org::list_agencies(&state.db.conn).await.map_err(domain)?;
    match name {
        Some(name) => all.into_iter().find(|a| a.name == name || a.id.to_string() == name),
        None if all.len() == 1 => all.into_iter().next(),
        None => bail!("this deployment has several agencies: name one with --agency"),
    }
    .context("no such agency")
}

/// The state of an operator command that signs nothing: the server's key if it exists, else an
/// unsaved one, so that creating a user does not leave a key file behind as a side effect.
async fn operator_state(url: &crate::config::DatabaseUrl, key_file: &Path) -> anyhow::Result<AppState> {
    let key = ServerKey::load(key_file)?.unwrap_or_else(ServerKey::generate);
    let config = ServeConfig { key_file: key_file.to_owned(), ..ServeConfig::defaults() };
    bootstrap::start_with_key(url, config, Clock::System, key).await
}

/// The state of an operator command that signs: the server's key, created on first use.
async fn signing_state(url: &crate::config::DatabaseUrl, key_file: &Path) -> anyhow::Result<AppState> {
    let config = ServeConfig { key_file: key_file.to_owned(), ..ServeConfig::defaults() };
    bootstrap::start(url, config, Clock::System).await
}

fn read_password(from_stdin: bool) -> anyhow::Result<(Password, bool)> {
    if !from_stdin {
        return Ok((Password::generate(), true));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    let line = line.trim_end_matches(['\r', '\n']);
    Ok((Password::parse("password", line).map_err(domain)?, false))
}

async fn user_command(url: &crate::config::DatabaseUrl, key_file: &Path, cmd: UserCommand) -> anyhow::Result<()> {
    let state = operator_state(url, key_file).await?;
    match cmd {
        UserCommand::Create { email, display_name, agency, admin, password_stdin } => {
            let agency = pick_agency(&state, agency).await?;
            let (password, generated) = read_password(password_stdin)?;
            let new =
                NewUser { email: &email, display_name: &display_name, password: password.expose(), is_admin: admin };
            let user =
                agencies::insert_user(&state, agency.id, EventActor::System, new, generated).await.map_err(domain)?;
            println!("created user {} ({}) in {}", user.email, user.id, agency.name);
            if generated {
                println!("password: {} (to be changed at first login)", password.expose());
            }
        }
        UserCommand::SetPassword { email, password_stdin, must_change } => {
            let email = Email::parse(&email).map_err(domain)?;
            let (user, _) = db::org::get_user_by_email(&state.db.conn, email.as_str())
                .await
                .map_err(domain)?
                .context("no user with this email")?;
            let (password, generated) = read_password(password_stdin)?;
            agencies::set_password(&state, EventActor::System, &user, password.expose(), must_change || generated)
                .await
                .map_err(domain)?;
            println!("password of {} set; their sessions have ended", user.email);
            if generated {
                println!("password: {} (to be changed at next login)", password.expose());
            }
        }
    }
    Ok(())
}

async fn serve(url: &crate::config::DatabaseUrl, config: ServeConfig) -> anyhow::Result<()> {
    init_logging(config.log_format);
    let listen = config.listen;
    let demo = config.demo;
    let state = bootstrap::start(url, config, Clock::System).await?;
    if demo {
        let seeded = crate::demo::seed(&state).await?;
        println!("==============================================================");
        println!(" Demo: {} with {} sample assessments.", seeded.agency, seeded.assessments);
        println!(" Passwords (shown only once):");
        for user in &seeded.users {
            println!("   {:<14} {:<28} {}", user.role, user.email, user.password.expose());
        }
        println!("==============================================================");
    }
    if let Some(first) = bootstrap::first_start(&state).await.map_err(domain)? {
        match first.generated_password {
            Some(password) => {
                println!("==============================================================");
                println!(" First start: administrator {} created.", first.email);
                println!(" Password (shown only once; change it at first login):");
                println!("   {}", password.expose());
                println!("==============================================================");
            }
            None => println!("First start: administrator {} created.", first.email),
        }
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, database = %url, "Attest is serving");
    crate::http::serve(state, listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
