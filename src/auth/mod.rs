//! Who is calling: passwords, sessions, login with throttling, and the authenticated `Actor`.

pub mod password;
pub mod throttle;
pub mod token;

use std::time::Duration;

use serde_json::json;

use crate::agencies::{Email, RoleGrant, UnitRole, User};
use crate::config::Secret;
use crate::db::{self, accounts::SessionRow};
use crate::error::AppError;
use crate::events::{self, EventActor, Stream};
use crate::ids::{AgencyId, UnitId, UserId};
use crate::state::AppState;

use password::Password;
use throttle::Limits;

/// The authenticated user behind a request, with everything the policy needs to decide.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: UserId,
    pub agency_id: AgencyId,
    pub is_admin: bool,
    pub must_change_password: bool,
    pub unit_roles: Vec<(UnitId, UnitRole)>,
    /// Digest of the session token the request came with.
    pub session: String,
}

impl Actor {
    pub fn event_actor(&self) -> EventActor {
        EventActor::User(self.user_id)
    }
}

/// What a successful login hands back.
#[derive(Debug)]
pub struct LoginOutcome {
    pub token: Secret,
    pub user: User,
    pub expires_at: i64,
}

/// Where a request came from, for throttling and the log.
#[derive(Clone, Debug)]
pub struct ClientAddress(pub String);

/// Checks an email and password, creating a session on success.
pub async fn login(
    state: &AppState,
    email: &str,
    candidate: &str,
    from: &ClientAddress,
) -> Result<LoginOutcome, AppError> {
    let config = &state.config;
    let now = state.clock.now_micros();
    // An unparseable email still goes through the same path, so its answer looks the same.
    let email = Email::parse(email).map(|e| e.as_str().to_owned()).unwrap_or_else(|_| email.trim().to_lowercase());
    let account_key = throttle::account_key(&email);
    let address_key = throttle::address_key(&from.0);

    let account = db::accounts::get_throttle(&state.db.conn, &account_key).await?;
    let address = db::accounts::get_throttle(&state.db.conn, &address_key).await?;
    let locked = throttle::locked_for(account.as_ref(), now).max(throttle::locked_for(address.as_ref(), now));
    if let Some(retry_after_secs) = locked {
        return Err(AppError::RateLimited { retry_after_secs });
    }

    let found = db::org::get_user_by_email(&state.db.conn, &email).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let password_ok = password::verify(candidate, hash, &state.dummy_hash).await;

    match user {
        Some(user) if password_ok && !user.disabled => {
            let token = token::generate();
            let tx = events::begin(&state.db, &Stream::Agency(user.agency_id)).await?;
            let session = SessionRow {
                token_hash: token::digest(token.expose()),
                user_id: user.id.to_string(),
                created_at: now,
                last_seen_at: now,
            };
            db::accounts::insert_session(&*tx, &session).await?;
            db::accounts::delete_throttle(&*tx, &account_key).await?;
            events::append(
                &tx,
                &state.clock,
                &Stream::Agency(user.agency_id),
                "login.succeeded",
                EventActor::User(user.id),
                json!({ "user_id": user.id.to_string(), "address": from.0 }),
            )
            .await?;
            tx.commit().await?;
            let expires_at = now + secs_to_micros(config.session_max_secs);
            Ok(LoginOutcome { token, user, expires_at })
        }
        user => {
            let reason = match &user {
                None => "unknown_account",
                Some(u) if u.disabled => "account_disabled",
                Some(_) => "wrong_password",
            };
            let stream = user.as_ref().map_or(Stream::System, |u| Stream::Agency(u.agency_id));
            // Count this failure on the latest state: another failure may have landed meanwhile.
            let tx = events::begin(&state.db, &stream).await?;
            let account = db::accounts::get_throttle(&*tx, &account_key).await?;
            let address = db::accounts::get_throttle(&*tx, &address_key).await?;
            let (account_next, account_locked) =
                throttle::after_failure(account.as_ref(), now, Limits::for_account(config));
            let (address_next, address_locked) =
                throttle::after_failure(address.as_ref(), now, Limits::for_address(config));
            db::accounts::put_throttle(&*tx, &account_key, &account_next).await?;
            db::accounts::put_throttle(&*tx, &address_key, &address_next).await?;
            let user_id = user.as_ref().map(|u| u.id.to_string());
            events::append(
                &tx,
                &state.clock,
                &stream,
                "login.failed",
                EventActor::System,
                json!({ "email": email, "user_id": user_id, "address": from.0, "reason": reason }),
            )
            .await?;
            for (locked, scope, next) in
                [(account_locked, "account", &account_next), (address_locked, "address", &address_next)]
            {
                if locked {
                    let until = next
                        .locked_until
                        .map(|u| crate::clock::from_micros(u).to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
                    events::append(
                        &tx,
                        &state.clock,
                        &stream,
                        "login.locked",
                        EventActor::System,
                        json!({ "scope": scope, "email": email, "user_id": user_id, "address": from.0, "until": until }),
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            // Each earlier failure in the window slows the answer a little more.
            let earlier =
                u64::try_from(account_next.failures.max(address_next.failures).saturating_sub(1)).unwrap_or(0);
            let delay = Duration::from_millis(config.login_delay_ms.saturating_mul(earlier).min(3_000));
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if account_locked || address_locked {
                return Err(AppError::RateLimited { retry_after_secs: config.login_lockout_secs });
            }
            Err(AppError::Unauthenticated("invalid email or password"))
        }
    }
}

fn secs_to_micros(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000).saturating_mul(1_000_000)
}

/// Turns a session token into the actor behind it, ending the session if it has expired.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Actor, AppError> {
    authenticate_session(state, token::digest(token)).await
}

/// Authenticates a session by the digest of its token (`Actor::session`): how a long-lived
/// connection checks that the session it started with still holds.
pub async fn authenticate_session(state: &AppState, digest: String) -> Result<Actor, AppError> {
    let now = state.clock.now_micros();
    let idle = secs_to_micros(state.config.session_idle_secs);
    let max = secs_to_micros(state.config.session_max_secs);
    // Read before the database: a change committed after this reading is not missed.
    let generation = state.db.org_generation();
    if let Some(actor) = state.sessions.reuse(&digest, generation, now, idle, max) {
        return Ok(actor);
    }
    let Some((session, user, roles)) = db::org::session_user(&state.db.conn, &digest).await? else {
        return Err(AppError::Unauthenticated("session is unknown or has ended"));
    };
    if now - session.last_seen_at > idle || now - session.created_at > max {
        db::accounts::delete_session(&state.db.conn, &digest).await?;
        return Err(AppError::Unauthenticated("session has expired"));
    }
    if user.disabled {
        return Err(AppError::Unauthenticated("session is unknown or has ended"));
    }
    // Refreshing the idle timer costs a write, so do it at most once a minute per session.
    let mut last_seen = session.last_seen_at;
    if now - last_seen > TOUCH_EVERY {
        db::accounts::touch_session(&state.db.conn, &digest, now).await?;
        last_seen = now;
    }
    let actor = actor_from(&user, &roles, digest);
    state.sessions.keep(&actor, generation, session.created_at, last_seen);
    Ok(actor)
}

/// How often a session's idle timer is written, at most.
const TOUCH_EVERY: i64 = 60_000_000;

/// How long a session read from the database answers for it again without reading: a burst of
/// requests (a page load, a benchmark) reads it once. A change to the agency made through this
/// server (a logout, a role, a disabled account) ends the reuse at once, and one announced by
/// another server as soon as its notification arrives; this bounds the rest (another process's
/// change on SQLite, a lost notification).
const SESSION_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The most sessions kept for reuse; when full, the kept ones are dropped and read again.
const SESSIONS_KEPT: usize = 10_000;

/// Sessions read recently, by token digest, for `authenticate_session`.
#[derive(Default)]
pub struct SessionReuse {
    kept: std::sync::Mutex<std::collections::HashMap<String, Kept>>,
}

struct Kept {
    actor: Actor,
    /// `Db::org_generation` when the session was read.
    generation: u64,
    read_at: std::time::Instant,
    created_at: i64,
    last_seen_at: i64,
}

impl SessionReuse {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Kept>> {
        // Every critical section is one map operation: a poisoned lock still holds a consistent map.
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The actor of a session read less than `SESSION_REUSE` ago, with no agency change heard of
    /// since, which has neither expired nor needs its idle timer written.
    fn reuse(&self, digest: &str, generation: u64, now: i64, idle: i64, max: i64) -> Option<Actor> {
        let kept = self.lock();
        let k = kept.get(digest)?;
        let fresh = k.generation == generation && k.read_at.elapsed() < SESSION_REUSE;
        let valid = now - k.last_seen_at <= idle.min(TOUCH_EVERY) && now - k.created_at <= max;
        (fresh && valid).then(|| k.actor.clone())
    }

    fn keep(&self, actor: &Actor, generation: u64, created_at: i64, last_seen_at: i64) {
        let mut kept = self.lock();
        if kept.len() >= SESSIONS_KEPT {
            kept.clear();
        }
        let read_at = std::time::Instant::now();
        kept.insert(
            actor.session.clone(),
            Kept { actor: actor.clone(), generation, read_at, created_at, last_seen_at },
        );
    }
}

/// A fingerprint of everything that decides what the actor may see: the user's rights and the
/// assessments they belong to, with their roles. A long-lived connection compares it with the one
/// it was authorized under, and ends when it changed.
pub async fn rights(state: &AppState, actor: &Actor) -> Result<u64, AppError> {
    use std::hash::{Hash, Hasher};
    let memberships = db::assessments::memberships_of_user(&state.db.conn, actor.user_id).await?;
    let mut roles = actor.unit_roles.clone();
    roles.sort_by_key(|(unit, _)| *unit);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (actor.agency_id, actor.is_admin, actor.must_change_password, roles, memberships).hash(&mut hasher);
    Ok(hasher.finish())
}

fn actor_from(user: &User, roles: &[RoleGrant], session: String) -> Actor {
    Actor {
        user_id: user.id,
        agency_id: user.agency_id,
        is_admin: user.is_admin,
        must_change_password: user.must_change_password,
        unit_roles: roles.iter().map(|g| (g.unit_id, g.role)).collect(),
        session,
    }
}

/// Ends the caller's session.
pub async fn logout(state: &AppState, actor: &Actor) -> Result<(), AppError> {
    let tx = events::begin(&state.db, &Stream::Agency(actor.agency_id)).await?;
    db::accounts::delete_session(&*tx, &actor.session).await?;
    events::append(
        &tx,
        &state.clock,
        &Stream::Agency(actor.agency_id),
        "logout",
        actor.event_actor(),
        json!({ "user_id": actor.user_id.to_string() }),
    )
    .await?;
    tx.commit().await
}

/// Changes the caller's own password after checking the current one; ends their other sessions.
pub async fn change_password(state: &AppState, actor: &Actor, current: &str, new: &str) -> Result<(), AppError> {
    let new = Password::parse("newPassword", new)?;
    if current == new.expose() {
        return Err(AppError::invalid("newPassword", "must differ from the current password"));
    }
    let (_, hash) = db::org::get_user_by_email(&state.db.conn, &email_of(state, actor.user_id).await?)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    if !password::verify(current, Some(hash), &state.dummy_hash).await {
        return Err(AppError::invalid("currentPassword", "does not match the current password"));
    }
    let new_hash = password::hash(&new).await?;
    let tx = events::begin(&state.db, &Stream::Agency(actor.agency_id)).await?;
    db::org::set_password_hash(&*tx, actor.user_id, &new_hash, false).await?;
    let ended = db::accounts::delete_user_sessions(&*tx, actor.user_id, Some(&actor.session)).await?;
    events::append(
        &tx,
        &state.clock,
        &Stream::Agency(actor.agency_id),
        "user.password_changed",
        actor.event_actor(),
        json!({ "user_id": actor.user_id.to_string(), "other_sessions_ended": ended }),
    )
    .await?;
    tx.commit().await
}

async fn email_of(state: &AppState, id: UserId) -> Result<String, AppError> {
    Ok(db::org::get_user(&state.db.conn, id).await?.ok_or(AppError::NotFound("user"))?.email)
}
