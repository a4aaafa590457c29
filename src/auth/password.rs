//! Password rules and argon2id hashing, always off the async runtime.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::config::Secret;
use crate::error::AppError;

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A password that meets the rules. Its `Debug` never shows it.
#[derive(Clone, Debug)]
pub struct Password(Secret);

impl Password {
    pub fn parse(field: &str, s: &str) -> Result<Password, AppError> {
        let chars = s.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(AppError::invalid(field, format!("must be at least {MIN_PASSWORD_CHARS} characters")));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(AppError::invalid(field, format!("must be at most {MAX_PASSWORD_CHARS} characters")));
        }
        Ok(Password(Secret::new(s)))
    }

    /// A strong random password: 24 characters from an alphabet without look-alikes.
    pub fn generate() -> Password {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut rng = rand::rng();
        let s: String = (0..24).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
        Password(Secret::new(s))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// Argon2id v19 with 19 MiB, 2 iterations and 1 lane: OWASP's recommended minimum.
fn hasher() -> Argon2<'static> {
    Argon2::default()
}

pub async fn hash(password: &Password) -> Result<String, AppError> {
    let pw = password.clone();
    tokio::task::spawn_blocking(move || {
        hasher()
            .hash_password(pw.expose().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AppError::internal(anyhow::anyhow!("hashing a password failed: {e}")))
    })
    .await
    .map_err(AppError::internal)?
}

/// Checks a candidate password against a stored hash. With no stored hash (unknown account) it
/// checks against `dummy_hash`, so that the answer takes as long either way.
pub async fn verify(candidate: &str, stored: Option<String>, dummy_hash: &str) -> bool {
    let known = stored.is_some();
    let hash = stored.unwrap_or_else(|| dummy_hash.to_owned());
    let candidate = Secret::new(candidate);
    let ok = tokio::task::spawn_blocking(move || {
        hasher().verify_password(candidate.expose().as_bytes(), hash.as_str()).is_ok()
    })
    .await
    .unwrap_or(false);
    ok && known
}

/// A hash of a random password with the same parameters as real ones.
pub async fn dummy_hash() -> Result<String, AppError> {
    hash(&Password::generate()).await
}
