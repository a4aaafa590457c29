//! Queries of sessions and login throttles.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::entities::{login_throttle, session};
use crate::auth::throttle::Throttle;
use crate::error::AppError;
use crate::ids::UserId;

/// A stored session, identified by the digest of its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub token_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

pub async fn insert_session(conn: &impl ConnectionTrait, s: &SessionRow) -> Result<(), AppError> {
    session::ActiveModel {
        token_hash: Set(s.token_hash.clone()),
        user_id: Set(s.user_id.clone()),
        created_at: Set(s.created_at),
        last_seen_at: Set(s.last_seen_at),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn touch_session(conn: &impl ConnectionTrait, token_hash: &str, now: i64) -> Result<(), AppError> {
    session::Entity::update_many()
        .col_expr(session::Column::LastSeenAt, Expr::value(now))
        .filter(session::Column::TokenHash.eq(token_hash))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn delete_session(conn: &impl ConnectionTrait, token_hash: &str) -> Result<u64, AppError> {
    Ok(session::Entity::delete_by_id(token_hash.to_owned()).exec(conn).await?.rows_affected)
}

/// Ends every session of a user except, optionally, one to keep.
pub async fn delete_user_sessions(
    conn: &impl ConnectionTrait,
    user: UserId,
    keep: Option<&str>,
) -> Result<u64, AppError> {
    let mut q = session::Entity::delete_many().filter(session::Column::UserId.eq(user.to_string()));
    if let Some(keep) = keep {
        q = q.filter(session::Column::TokenHash.ne(keep));
    }
    Ok(q.exec(conn).await?.rows_affected)
}

pub async fn get_throttle(conn: &impl ConnectionTrait, key: &str) -> Result<Option<Throttle>, AppError> {
    Ok(login_throttle::Entity::find_by_id(key.to_owned()).one(conn).await?.map(|m| Throttle {
        failures: m.failures,
        window_start: m.window_start,
        locked_until: m.locked_until,
    }))
}

pub async fn put_throttle(conn: &impl ConnectionTrait, key: &str, t: &Throttle) -> Result<(), AppError> {
    login_throttle::Entity::insert(login_throttle::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(t.failures),
        window_start: Set(t.window_start),
        locked_until: Set(t.locked_until),
    })
    .on_conflict(
        OnConflict::column(login_throttle::Column::Key)
            .update_columns([
                login_throttle::Column::Failures,
                login_throttle::Column::WindowStart,
                login_throttle::Column::LockedUntil,
            ])
            .to_owned(),
    )
    .exec(conn)
    .await?;
    Ok(())
}

pub async fn delete_throttle(conn: &impl ConnectionTrait, key: &str) -> Result<(), AppError> {
    login_throttle::Entity::delete_by_id(key.to_owned()).exec(conn).await?;
    Ok(())
}
