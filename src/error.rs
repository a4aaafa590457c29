//! The one error type of Attest. Its variants mean something to a client; the GraphQL layer maps
//! them to `extensions.code` in one place.
//!
//! `AppError` deliberately does not implement `Display`: async-graphql converts anything that
//! does into an error that carries its text to the client, and an internal error's text must never
//! reach one.

use std::fmt;

#[derive(Debug)]
pub enum AppError {
    /// No valid session, or a failed login. The reason is safe to show.
    Unauthenticated(&'static str),
    /// The actor is known but may not do this. The reason is safe to show.
    Forbidden(String),
    NotFound(&'static str),
    InvalidInput {
        field: String,
        reason: String,
    },
    Conflict(String),
    /// A write named a revision that is no longer current; carries the current answer so that the
    /// client can show both values.
    StaleRevision {
        current: serde_json::Value,
    },
    /// A document (such as a template) with every problem found, each with its path.
    InvalidDocument {
        field: String,
        problems: Vec<String>,
    },
    RateLimited {
        retry_after_secs: u64,
    },
    /// Anything the client cannot act on. The cause is logged once and never sent.
    Internal(anyhow::Error),
}

impl AppError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        AppError::InvalidInput { field: field.into(), reason: reason.into() }
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        AppError::Forbidden(reason.into())
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(cause.into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::InvalidInput { .. } => "INVALID_INPUT",
            AppError::Conflict(_) | AppError::StaleRevision { .. } => "CONFLICT",
            AppError::InvalidDocument { .. } => "INVALID_INPUT",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    /// The message a client sees.
    pub fn client_message(&self) -> String {
        match self {
            AppError::Unauthenticated(reason) => (*reason).to_owned(),
            AppError::Forbidden(reason) => format!("forbidden: {reason}"),
            AppError::NotFound(what) => format!("{what} not found"),
            AppError::InvalidInput { field, reason } => format!("invalid {field}: {reason}"),
            AppError::Conflict(reason) => format!("conflict: {reason}"),
            AppError::StaleRevision { .. } => {
                "conflict: the answer was changed by someone else; compare and choose".into()
            }
            AppError::InvalidDocument { field, problems } => {
                format!("invalid {field}: {} problem(s): {}", problems.len(), problems.join("; "))
            }
            AppError::RateLimited { retry_after_secs } => {
                format!("too many attempts; try again in {retry_after_secs} seconds")
            }
            AppError::Internal(_) => "internal error".into(),
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        if is_unique_violation(&err) {
            return AppError::Conflict("a record with the same unique value already exists".into());
        }
        AppError::Internal(anyhow::Error::new(err).context("database error"))
    }
}

fn is_unique_violation(err: &sea_orm::DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Shows the variant and, for internal errors, the whole cause chain: for logs only.
pub struct LogDisplay<'a>(pub &'a AppError);

impl fmt::Display for LogDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            AppError::Internal(cause) => write!(f, "internal error: {cause:#}"),
            other => f.write_str(&other.client_message()),
        }
    }
}
