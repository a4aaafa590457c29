//! Starting a server: connecting, migrating, and creating the first agency and its administrator
//! on an empty database.

use std::sync::Arc;

use crate::agencies;
use crate::auth::password::{self, Password};
use crate::checkpoints::ServerKey;
use crate::clock::Clock;
use crate::config::{DatabaseUrl, ServeConfig};
use crate::db::Db;
use crate::error::{AppError, LogDisplay};
use crate::state::AppState;

/// Connects, runs pending migrations, installs new built-in templates and prepares the state a
/// server shares. The server's signing key is read from `config.key_file`, and created there on
/// first start.
pub async fn start(url: &DatabaseUrl, config: ServeConfig, clock: Clock) -> anyhow::Result<AppState> {
    let path = config.key_file.clone();
    let key = tokio::task::spawn_blocking(move || ServerKey::load_or_create(&path)).await??;
    start_with_key(url, config, clock, key).await
}

/// As `start`, with a key the caller already holds.
pub async fn start_with_key(
    url: &DatabaseUrl,
    config: ServeConfig,
    clock: Clock,
    key: ServerKey,
) -> anyhow::Result<AppState> {
    let db = Db::connect(url).await?;
    // Several servers may start at once on one PostgreSQL database; one of them applies the
    // migrations and the others, failing on the half-applied state, try again after it.
    let mut attempt = 0;
    while let Err(err) = db.migrate().await {
        attempt += 1;
        if attempt >= 5 {
            return Err(err);
        }
        tracing::warn!(error = %format!("{err:#}"), attempt, "migrations failed; retrying");
        tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
    }
    let dummy_hash = password::dummy_hash().await.map_err(|e| anyhow::anyhow!("{}", LogDisplay(&e)))?;
    let live = crate::live::Hub::new(db.clone(), url.clone(), crate::live::Settings::from_config(&config));
    let state = AppState {
        db,
        clock,
        config: Arc::new(config),
        dummy_hash: Arc::new(dummy_hash),
        key: Arc::new(key),
        live,
        sessions: Arc::default(),
    };
    let installed = crate::assessments::install_builtin_templates(&state)
        .await
        .map_err(|e| anyhow::anyhow!("{}", LogDisplay(&e)))?;
    if installed > 0 {
        tracing::info!(installed, "built-in templates installed");
    }
    Ok(state)
}

/// The administrator created on first start, with the password when it was generated.
pub struct FirstAdmin {
    pub email: String,
    pub generated_password: Option<Password>,
}

/// On an empty database, creates the first agency and its administrator. A generated password
/// must be changed at first login.
pub async fn first_start(state: &AppState) -> Result<Option<FirstAdmin>, AppError> {
    if crate::db::org::count_agencies(&state.db.conn).await? > 0 {
        return Ok(None);
    }
    let config = &state.config;
    let (password, generated) = match &config.admin_password {
        Some(given) => (Password::parse("ATTEST_ADMIN_PASSWORD", given.expose())?, false),
        None => (Password::generate(), true),
    };
    match agencies::create_agency(state, &config.agency_name, &config.admin_email, &password, generated).await {
        Ok((_, admin)) => {
            Ok(Some(FirstAdmin { email: admin.email, generated_password: generated.then_some(password) }))
        }
        // Another server starting at the same moment created it first.
        Err(_) if crate::db::org::count_agencies(&state.db.conn).await? > 0 => Ok(None),
        Err(err) => Err(err),
    }
}
