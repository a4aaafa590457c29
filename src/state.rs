//! The state one running server shares between requests: no process-global state, so two servers
//! in one process never see each other.

use std::sync::Arc;

use crate::auth::SessionReuse;
use crate::checkpoints::ServerKey;
use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::db::Db;
use crate::live::Hub;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: Clock,
    pub config: Arc<ServeConfig>,
    /// An argon2 hash of a random password, checked when a login names an unknown account so
    /// that the answer takes as long as for a known one.
    pub dummy_hash: Arc<String>,
    /// The Ed25519 key that signs checkpoints, loaded (or created) from `config.key_file`.
    pub key: Arc<ServerKey>,
    /// Live delivery: event streams, presence and progress subscriptions of this server.
    pub live: Hub,
    /// Sessions read recently, reused for a moment while nothing changed (`auth`).
    pub sessions: Arc<SessionReuse>,
}
