//! Queries of agencies, units, users and unit roles.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};

use super::accounts::SessionRow;
use super::entities::{agency, unit, unit_role, user};
use super::stmt;
use crate::agencies::{Agency, RoleGrant, Unit, UnitRole, User};
use crate::error::AppError;
use crate::ids::{AgencyId, UnitId, UserId};

fn bad_row(what: &str) -> AppError {
    AppError::internal(anyhow::anyhow!("a stored {what} row holds an invalid id"))
}

fn agency_from(m: agency::Model) -> Result<Agency, AppError> {
    Ok(Agency { id: AgencyId::parse(&m.id).map_err(|_| bad_row("agency"))?, name: m.name, created_at: m.created_at })
}

fn unit_from(m: unit::Model) -> Result<Unit, AppError> {
    Ok(Unit {
        id: UnitId::parse(&m.id).map_err(|_| bad_row("unit"))?,
        agency_id: AgencyId::parse(&m.agency_id).map_err(|_| bad_row("unit"))?,
        parent_id: m.parent_id.as_deref().map(UnitId::parse).transpose().map_err(|_| bad_row("unit"))?,
        name: m.name,
        created_at: m.created_at,
    })
}

fn user_from(m: user::Model) -> Result<(User, String), AppError> {
    let u = User {
        id: UserId::parse(&m.id).map_err(|_| bad_row("user"))?,
        agency_id: AgencyId::parse(&m.agency_id).map_err(|_| bad_row("user"))?,
        email: m.email,
        display_name: m.display_name,
        is_admin: m.is_admin,
        must_change_password: m.must_change_password,
        disabled: m.disabled,
        created_at: m.created_at,
    };
    Ok((u, m.password_hash))
}

fn grant_from(m: unit_role::Model) -> Result<RoleGrant, AppError> {
    Ok(RoleGrant {
        user_id: UserId::parse(&m.user_id).map_err(|_| bad_row("role"))?,
        unit_id: UnitId::parse(&m.unit_id).map_err(|_| bad_row("role"))?,
        role: UnitRole::parse(&m.role).map_err(|_| bad_row("role"))?,
        granted_at: m.granted_at,
    })
}

pub async fn count_agencies(conn: &impl ConnectionTrait) -> Result<u64, AppError> {
    Ok(agency::Entity::find().count(conn).await?)
}

pub async fn insert_agency(conn: &impl ConnectionTrait, a: &Agency) -> Result<(), AppError> {
    agency::ActiveModel { id: Set(a.id.to_string()), name: Set(a.name.clone()), created_at: Set(a.created_at) }
        .insert(conn)
        .await?;
    Ok(())
}

pub async fn get_agency(conn: &impl ConnectionTrait, id: AgencyId) -> Result<Option<Agency>, AppError> {
    agency::Entity::find_by_id(id.to_string()).one(conn).await?.map(agency_from).transpose()
}

pub async fn list_agencies(conn: &impl ConnectionTrait) -> Result<Vec<Agency>, AppError> {
    let rows = agency::Entity::find().order_by_asc(agency::Column::CreatedAt).all(conn).await?;
    rows.into_iter().map(agency_from).collect()
}

pub async fn insert_unit(conn: &impl ConnectionTrait, u: &Unit) -> Result<(), AppError> {
    unit::ActiveModel {
        id: Set(u.id.to_string()),
        agency_id: Set(u.agency_id.to_string()),
        parent_id: Set(u.parent_id.map(|p| p.to_string())),
        name: Set(u.name.clone()),
        created_at: Set(u.created_at),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn get_unit(conn: &impl ConnectionTrait, id: UnitId) -> Result<Option<Unit>, AppError> {
    unit::Entity::find_by_id(id.to_string()).one(conn).await?.map(unit_from).transpose()
}

pub async fn list_units(conn: &impl ConnectionTrait, agency: AgencyId) -> Result<Vec<Unit>, AppError> {
    let rows = unit::Entity::find()
        .filter(unit::Column::AgencyId.eq(agency.to_string()))
        .order_by_asc(unit::Column::CreatedAt)
        .order_by_asc(unit::Column::Id)
        .all(conn)
        .await?;
    rows.into_iter().map(unit_from).collect()
}

pub async fn update_unit(conn: &impl ConnectionTrait, u: &Unit) -> Result<(), AppError> {
    unit::Entity::update_many()
        .col_expr(unit::Column::Name, Expr::value(u.name.clone()))
        .col_expr(unit::Column::ParentId, Expr::value(u.parent_id.map(|p| p.to_string())))
        .filter(unit::Column::Id.eq(u.id.to_string()))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn insert_user(conn: &impl ConnectionTrait, u: &User, password_hash: &str) -> Result<(), AppError> {
    user::ActiveModel {
        id: Set(u.id.to_string()),
        agency_id: Set(u.agency_id.to_string()),
        email: Set(u.email.clone()),
        display_name: Set(u.display_name.clone()),
        password_hash: Set(password_hash.to_owned()),
        is_admin: Set(u.is_admin),
        must_change_password: Set(u.must_change_password),
        disabled: Set(u.disabled),
        created_at: Set(u.created_at),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn get_user(conn: &impl ConnectionTrait, id: UserId) -> Result<Option<User>, AppError> {
    Ok(user::Entity::find_by_id(id.to_string()).one(conn).await?.map(user_from).transpose()?.map(|(u, _)| u))
}

/// The user with this (normalized) email and their password hash.
pub async fn get_user_by_email(conn: &impl ConnectionTrait, email: &str) -> Result<Option<(User, String)>, AppError> {
    user::Entity::find().filter(user::Column::Email.eq(email)).one(conn).await?.map(user_from).transpose()
}

pub async fn list_users(conn: &impl ConnectionTrait, agency: AgencyId) -> Result<Vec<User>, AppError> {
    let rows = user::Entity::find()
        .filter(user::Column::AgencyId.eq(agency.to_string()))
        .order_by_asc(user::Column::Email)
        .all(conn)
        .await?;
    rows.into_iter().map(|m| user_from(m).map(|(u, _)| u)).collect()
}

/// Writes every field of the user except the password hash.
pub async fn update_user(conn: &impl ConnectionTrait, u: &User) -> Result<(), AppError> {
    user::Entity::update_many()
        .col_expr(user::Column::DisplayName, Expr::value(u.display_name.clone()))
        .col_expr(user::Column::IsAdmin, Expr::value(u.is_admin))
        .col_expr(user::Column::MustChangePassword, Expr::value(u.must_change_password))
        .col_expr(user::Column::Disabled, Expr::value(u.disabled))
        .filter(user::Column::Id.eq(u.id.to_string()))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn set_password_hash(
    conn: &impl ConnectionTrait,
    id: UserId,
    hash: &str,
    must_change: bool,
) -> Result<(), AppError> {
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(hash.to_owned()))
        .col_expr(user::Column::MustChangePassword, Expr::value(must_change))
        .filter(user::Column::Id.eq(id.to_string()))
        .exec(conn)
        .await?;
    Ok(())
}

/// The user of a session, with the user's unit roles: one query, since every authenticated
/// request starts with it. `None` when no session has this digest.
pub async fn session_user(
    conn: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<(SessionRow, User, Vec<RoleGrant>)>, AppError> {
    const SQL: &str = "SELECT u.id, u.agency_id, u.email, u.display_name, u.password_hash, u.is_admin, \
        u.must_change_password, u.disabled, u.created_at, s.created_at AS session_created_at, \
        s.last_seen_at AS session_last_seen_at, r.unit_id AS role_unit_id, r.role AS role_name, \
        r.granted_at AS role_granted_at \
        FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN unit_roles r ON r.user_id = u.id \
        WHERE s.token_hash = $1";
    let rows = conn.query_all_raw(stmt(conn.get_database_backend(), SQL, [token_hash.into()])).await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let (user, _) = user_from(user::Model::from_query_result(first, "")?)?;
    let session = SessionRow {
        token_hash: token_hash.to_owned(),
        user_id: user.id.to_string(),
        created_at: first.try_get("", "session_created_at")?,
        last_seen_at: first.try_get("", "session_last_seen_at")?,
    };
    let mut roles = Vec::new();
    for row in &rows {
        let Some(unit_id) = row.try_get::<Option<String>>("", "role_unit_id")? else { continue };
        roles.push(grant_from(unit_role::Model {
            user_id: session.user_id.clone(),
            unit_id,
            role: row.try_get("", "role_name")?,
            granted_at: row.try_get("", "role_granted_at")?,
        })?);
    }
    Ok(Some((session, user, roles)))
}

pub async fn roles_of_user(conn: &impl ConnectionTrait, id: UserId) -> Result<Vec<RoleGrant>, AppError> {
    let rows = unit_role::Entity::find().filter(unit_role::Column::UserId.eq(id.to_string())).all(conn).await?;
    rows.into_iter().map(grant_from).collect()
}

/// Every role grant on the given units.
pub async fn roles_on_units(conn: &impl ConnectionTrait, units: &[UnitId]) -> Result<Vec<RoleGrant>, AppError> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = units.iter().map(|u| u.to_string()).collect();
    let rows = unit_role::Entity::find().filter(unit_role::Column::UnitId.is_in(ids)).all(conn).await?;
    rows.into_iter().map(grant_from).collect()
}

pub async fn upsert_role(conn: &impl ConnectionTrait, g: &RoleGrant) -> Result<(), AppError> {
    unit_role::Entity::insert(unit_role::ActiveModel {
        user_id: Set(g.user_id.to_string()),
        unit_id: Set(g.unit_id.to_string()),
        role: Set(g.role.as_str().to_owned()),
        granted_at: Set(g.granted_at),
    })
    .on_conflict(
        OnConflict::columns([unit_role::Column::UserId, unit_role::Column::UnitId])
            .update_columns([unit_role::Column::Role, unit_role::Column::GrantedAt])
            .to_owned(),
    )
    .exec(conn)
    .await?;
    Ok(())
}

pub async fn delete_role(conn: &impl ConnectionTrait, user_id: UserId, unit_id: UnitId) -> Result<u64, AppError> {
    let res = unit_role::Entity::delete_many()
        .filter(unit_role::Column::UserId.eq(user_id.to_string()))
        .filter(unit_role::Column::UnitId.eq(unit_id.to_string()))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}
