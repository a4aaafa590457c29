//! Agencies, their unit trees, their users and the roles users hold on units. Every change here
//! appends an event to the agency's stream in the same transaction.

mod types;

pub use types::*;

use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::auth::Actor;
use crate::auth::password::{self, Password};
use crate::db;
use crate::error::AppError;
use crate::events::{self, EventActor, Stream};
use crate::ids::{AgencyId, UnitId, UserId};
use crate::policy::{self, Action, Resource};
use crate::state::AppState;

pub const MAX_NAME_CHARS: usize = 200;

/// The unit and all its ancestors, nearest first.
pub fn ancestry(units: &[Unit], id: UnitId) -> Vec<UnitId> {
    let mut chain = Vec::new();
    let mut next = Some(id);
    while let Some(current) = next {
        if chain.contains(&current) {
            break;
        }
        chain.push(current);
        next = units.iter().find(|u| u.id == current).and_then(|u| u.parent_id);
    }
    chain
}

/// The unit and all its descendants.
pub fn subtree(units: &[Unit], root: UnitId) -> Vec<UnitId> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            units
                .iter()
                .filter(|u| u.parent_id == Some(parent) && !out.contains(&u.id))
                .map(|u| u.id)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    out
}

/// Creates an agency and its first administrator. Used on first start and by operators.
pub async fn create_agency(
    state: &AppState,
    name: &str,
    admin_email: &str,
    admin_password: &Password,
    must_change: bool,
) -> Result<(Agency, User), AppError> {
    let name = parse_name("name", name, MAX_NAME_CHARS)?;
    let email = Email::parse(admin_email)?;
    let hash = password::hash(admin_password).await?;
    let now = state.clock.now_micros();
    let agency = Agency { id: AgencyId::new(), name, created_at: now };
    let admin = User {
        id: UserId::new(),
        agency_id: agency.id,
        email: email.as_str().to_owned(),
        display_name: "Administrator".to_owned(),
        is_admin: true,
        must_change_password: must_change,
        disabled: false,
        created_at: now,
    };
    let tx = events::begin(&state.db, &Stream::Agency(agency.id)).await?;
    db::org::insert_agency(&*tx, &agency)
        .await
        .map_err(|e| rename_conflict(e, "name", "an agency with this name already exists"))?;
    db::org::insert_user(&*tx, &admin, &hash)
        .await
        .map_err(|e| rename_conflict(e, "email", "a user with this email already exists"))?;
    let stream = Stream::Agency(agency.id);
    events::append(
        &tx,
        &state.clock,
        &stream,
        "agency.created",
        EventActor::System,
        json!({ "agency_id": agency.id.to_string(), "name": agency.name }),
    )
    .await?;
    events::append(&tx, &state.clock, &stream, "user.created", EventActor::System, user_payload(&admin)).await?;
    tx.commit().await?;
    Ok((agency, admin))
}

fn rename_conflict(e: AppError, field: &str, reason: &str) -> AppError {
    match e {
        AppError::Conflict(_) => AppError::invalid(field, reason),
        other => other,
    }
}

fn user_payload(u: &User) -> serde_json::Value {
    json!({
        "user_id": u.id.to_string(),
        "email": u.email,
        "display_name": u.display_name,
        "is_admin": u.is_admin,
        "must_change_password": u.must_change_password,
    })
}

pub async fn agency(state: &AppState, actor: &Actor) -> Result<Agency, AppError> {
    policy::authorize(actor, Action::ViewAgency, Resource::agency(actor.agency_id))?;
    db::org::get_agency(&state.db.conn, actor.agency_id).await?.ok_or(AppError::NotFound("agency"))
}

pub async fn units(state: &AppState, actor: &Actor) -> Result<Vec<Unit>, AppError> {
    policy::authorize(actor, Action::ViewAgency, Resource::agency(actor.agency_id))?;
    db::org::list_units(&state.db.conn, actor.agency_id).await
}

/// Loads a unit, answering not found for a unit of another agency.
async fn load_unit(conn: &impl ConnectionTrait, agency: AgencyId, id: UnitId) -> Result<Unit, AppError> {
    match db::org::get_unit(conn, id).await? {
        Some(u) if u.agency_id == agency => Ok(u),
        _ => Err(AppError::NotFound("unit")),
    }
}

pub async fn unit(state: &AppState, actor: &Actor, id: UnitId) -> Result<Unit, AppError> {
    let unit = load_unit(&state.db.conn, actor.agency_id, id).await?;
    policy::authorize(actor, Action::ViewAgency, Resource::agency(unit.agency_id))?;
    Ok(unit)
}

pub async fn create_unit(
    state: &AppState,
    actor: &Actor,
    name: &str,
    parent: Option<UnitId>,
) -> Result<Unit, AppError> {
    policy::authorize(actor, Action::ManageUnits, Resource::agency(actor.agency_id))?;
    let name = parse_name("name", name, MAX_NAME_CHARS)?;
    let tx = events::begin(&state.db, &Stream::Agency(actor.agency_id)).await?;
    if let Some(parent) = parent {
        load_unit(&*tx, actor.agency_id, parent).await.map_err(|_| AppError::invalid("parentId", "no such unit"))?;
    }
    let unit = Unit {
        id: UnitId::new(),
        agency_id: actor.agency_id,
        parent_id: parent,
        name,
        created_at: tx.now(&state.clock),
    };
    db::org::insert_unit(&*tx, &unit).await?;
    events::append(
        &tx,
        &state.clock,
        &Stream::Agency(actor.agency_id),
        "unit.created",
        actor.event_actor(),
        json!({ "unit_id": unit.id.to_string(), "name": unit.name, "parent_id": parent.map(|p| p.to_string()) }),
    )
    .await?;
    tx.commit().await?;
    Ok(unit)
}

pub async fn rename_unit(state: &AppState, actor: &Actor, id: UnitId, name: &str) -> Result<Unit, AppError> {
    policy::authorize(actor, Action::ManageUnits, Resource::agency(actor.agency_id))?;
    let name = parse_name("name", name, MAX_NAME_CHARS)?;
    let tx = events::begin(&state.db, &Stream::Agency(actor.agency_id)).await?;
    let before = load_unit(&*tx, actor.agency_id, id).await?;
    if before.name == name {
        return Ok(before);
    }
    let after = Unit { name, ..before.clone() };
    db::org::update_unit(&*tx, &after).await?;
    events::append(
        &tx,
        &state.clock,
        &Stream::Agency(actor.agency_id),
        "unit.renamed",
        actor.event_actor(),
        json!({ "unit_id": id.to_string(), "before": { "name": before.name }, "after": { "name": after.name } }),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Moves a unit under another parent (or to the top). A unit cannot move into its own subtree.
pub async fn move_unit(state: &AppState, actor: &Actor, id: UnitId, parent: Option<UnitId>) -> Result<Unit, AppError> {
    policy::authorize(actor, Action::ManageUnits, Resource::agency(actor.agency_id))?;
    let tx = events::begin(&state.db, &Stream::Agency(actor.agency_id)).await?;
    let before = load_unit(&*tx, actor.agency_id, id).await?;
    if let Some(parent) = parent {
        load_unit(&*tx, actor.agency_id, parent).await.map_err(|_| AppError::invalid("parentId", "no such unit"))?;
        let all = db::org::list_units(&*tx, actor.agency_id).await?;
        if subtree(&all, id).contains(&parent) {
            return Err(AppError::invalid("parentId", "a unit cannot be moved under itself or its descendants"));
        }
    }
    if before.parent_id == parent {
        return Ok(before);
    }
    let after = Unit { parent_id: parent, ..before.clone() };
    db::org::update_unit(&*tx, &after).await?;
    let show = |p: Option<UnitId>| p.map(|p| p.to_string());
    events::append(
        &tx,
        &state.clock,
        &Stream::Agency(actor.agency_id),
        "unit.moved",
        actor.event_actor(),
        json!({ "unit_id": id.to_string(), "before": { "parent_id": show(before.parent_id) }, "after": { "parent_id": show(parent) } }),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Every unit the user holds a role on, with their ancestors: what the policy needs to know
/// whether a manager may see the user.
async fn user_resource_units(state: &AppState, user: &User) -> Result<Vec<UnitId>, AppError> {
    let roles = db::org::roles_of_user(&state.db.conn, user.id).await?;
    if roles.is_empty() {
        return Ok(Vec::new());
    }
    let all = db::org::list_units(&state.db.conn, user.agency_id).await?;
    Ok(roles.iter().flat_map(|g| ancestry(&all, g.unit_id)).collect())
}

/// Loads a user the actor may see; another agency's user is not found.
pub async fn user(state: &AppState, actor: &Actor, id: UserId) -> Result<User, AppError> {
    let user = match db::org::get_user(&state.db.conn, id).await? {
        Some(u) if u.agency_id == actor.agency_id => u,
        _ => return Err(AppError::NotFound("user")),
    };
    let action = if id == actor.user_id { Action::ManageOwnAccount } else { Action::ViewUser };
    let units = if action == Action::ViewUser { user_resource_units(state, &user).await? } else { Vec::new() };
    policy::authorize(actor, action, Resource::user(user.agency_id, user.id, &units))?;
    Ok(user)
}

/// The users the actor may see: all of the agency for an administrator, those holding a role in
/// a managed subtree for a manager.
pub async fn users(state: &AppState, actor: &Actor) -> Result<Vec<User>, AppError> {
    policy::authorize(actor, Action::ListUsers, Resource::agency(actor.agency_id))?;
    let all = db::org::list_users(&state.db.conn, actor.agency_id).await?;
    if actor.is_admin {
        return Ok(all);
    }
    let units = db::org::list_units(&state.db.conn, actor.agency_id).await?;
    let managed: Vec<UnitId> = actor
        .unit_roles
        .iter()
        .filter(|(_, r)| *r == UnitRole::Manager)
        .flat_map(|(u, _)| subtree(&units, *u))
        .collect();
    let grants = db::org::roles_on_units(&state.db.conn, &managed).await?;
    Ok(all.into_iter().filter(|u| u.id == actor.user_id || grants.iter().any(|g| g.user_id == u.id)).collect())
}

/// The roles a user holds, if the actor may see the user.
pub async fn roles_of(state: &AppState, actor: &Actor, id: UserId) -> Result<Vec<RoleGrant>, AppError> {
    user(state, actor, id).await?;
    db::org::roles_of_user(&state.db.conn, id).await
}

/// The role grants on one unit, for administrators and the unit's managers.
pub async fn roles_on_unit(state: &AppState, actor: &Actor, id: UnitId) -> Result<Vec<RoleGrant>, AppError> {
    let unit = load_unit(&state.db.conn, actor.agency_id, id).await?;
    let all = db::org::list_units(&state.db.conn, actor.agency_id).await?;
    let chain = ancestry(&all, unit.id);
    policy::authorize(actor, Action::ViewUser, Resource::in_unit(unit.agency_id, &chain, None))?;
    db::org::roles_on_units(&state.db.conn, &[unit.id]).await
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password: &'a str,
    pub is_admin: bool,
}

/// An administrator creates a user with an initial password, which must be changed at first login.
pub async fn create_user(state: &AppState, actor: &Actor, new: NewUser<'_>) -> Result<User, AppError> {
    policy::authorize(actor, Action::ManageUsers, Resource::agency(actor.agency_id))?;
    insert_user(state, actor.agency_id, actor.event_actor(), new, true).await
}

/// Creates a user without a policy check: for operators at the command line, who hold the
/// database already.
pub async fn insert_user(
    state: &AppState,
    agency: AgencyId,
    by: EventActor,
    new: NewUser<'_>,
    must_change: bool,
) -> Result<User, AppError> {
    let email = Email::parse(new.email)?;
    let display_name = parse_name("displayName", new.display_name, MAX_NAME_CHARS)?;
    let password = Password::parse("password", new.password)?;
    let hash = password::hash(&password).await?;
    let user = User {
        id: UserId::new(),
        agency_id: agency,
        email: email.as_str().to_owned(),
        display_name,
        is_admin: new.is_admin,
        must_change_password: must_change,
        disabled: false,
        created_at: state.clock.now_micros(),
    };
    let stream = Stream::Agency(agency);
    let tx = events::begin(&state.db, &stream).await?;
    if db::org::get_user_by_email(&*tx, email.as_str()).await?.is_some() {
        return Err(AppError::invalid("email", "a user with this email already exists"));
    }
    // Emails are unique across agencies: a concurrent insert elsewhere still meets the index.
    db::org::insert_user(&*tx, &user, &hash)
        .await
        .map_err(|e| rename_conflict(e, "email", "a user with this email already exists"))?;
    events::append(&tx, &state.clock, &stream, "user.created", by, user_payload(&user)).await?;
    tx.commit().await?;
    Ok(user)
}

/// Loads a user of the given agency inside a transaction; another agency's user is not found.
async fn load_user(conn: &impl ConnectionTrait, agency: AgencyId, id: UserId) -> Result<User, AppError> {
    match db::org::get_user(conn, id).await? {
        Some(u) if u.agency_id == agency => Ok(u),
        _ => Err(AppError::NotFound("user")),
    }
}

/// A change an administrator makes to another user's account.
pub enum UserChange<'a> {
    DisplayName(&'a str),
    Administrator(bool),
    Disabled(bool),
}

pub async fn update_user(
    state: &AppState,
    actor: &Actor,
    id: UserId,
    change: UserChange<'_>,
) -> Result<User, AppError> {
    policy::authorize(actor, Action::ManageUsers, Resource::agency(actor.agency_id))?;
    let stream = Stream::Agency(actor.agency_id);
    let tx = events::begin(&state.db, &stream).await?;
    let before = load_user(&*tx, actor.agency_id, id).await?;
    let mut after = before.clone();
    let (kind, field) = match change {
        UserChange::DisplayName(name) => {
            after.display_name = parse_name("displayName", name, MAX_NAME_CHARS)?;
            ("user.renamed", "display_name")
        }
        UserChange::Administrator(admin) => {
            if id == actor.user_id && !admin {
                return Err(AppError::invalid(
                    "isAdmin",
                    "administrators cannot remove their own administrator rights",
                ));
            }
            after.is_admin = admin;
            (if admin { "user.admin_granted" } else { "user.admin_revoked" }, "is_admin")
        }
        UserChange::Disabled(disabled) => {
            if id == actor.user_id && disabled {
                return Err(AppError::invalid("disabled", "administrators cannot disable their own account"));
            }
            after.disabled = disabled;
            (if disabled { "user.disabled" } else { "user.enabled" }, "disabled")
        }
    };
    if after == before {
        return Ok(before);
    }
    let value = |u: &User| match field {
        "display_name" => json!(u.display_name),
        "is_admin" => json!(u.is_admin),
        _ => json!(u.disabled),
    };
    db::org::update_user(&*tx, &after).await?;
    if after.disabled {
        db::accounts::delete_user_sessions(&*tx, id, None).await?;
    }
    events::append(
        &tx,
        &state.clock,
        &stream,
        kind,
        actor.event_actor(),
        json!({ "user_id": id.to_string(), "before": { field: value(&before) }, "after": { field: value(&after) } }),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// An administrator sets a new password for another user, which must be changed at next login;
/// the user's sessions end.
pub async fn reset_password(state: &AppState, actor: &Actor, id: UserId, new: &str) -> Result<User, AppError> {
    policy::authorize(actor, Action::ManageUsers, Resource::agency(actor.agency_id))?;
    let user = load_user(&state.db.conn, actor.agency_id, id).await?;
    set_password(state, actor.event_actor(), &user, new, true).await
}

/// Sets a user's password without a policy check (for operators) and ends their sessions.
pub async fn set_password(
    state: &AppState,
    by: EventActor,
    user: &User,
    new: &str,
    must_change: bool,
) -> Result<User, AppError> {
    let password = Password::parse("password", new)?;
    let hash = password::hash(&password).await?;
    let stream = Stream::Agency(user.agency_id);
    let tx = events::begin(&state.db, &stream).await?;
    db::org::set_password_hash(&*tx, user.id, &hash, must_change).await?;
    let ended = db::accounts::delete_user_sessions(&*tx, user.id, None).await?;
    events::append(
        &tx,
        &state.clock,
        &stream,
        "user.password_reset",
        by,
        json!({ "user_id": user.id.to_string(), "must_change_password": must_change, "sessions_ended": ended }),
    )
    .await?;
    tx.commit().await?;
    Ok(User { must_change_password: must_change, ..user.clone() })
}

pub async fn grant_role(
    state: &AppState,
    actor: &Actor,
    user_id: UserId,
    unit_id: UnitId,
    role: UnitRole,
) -> Result<RoleGrant, AppError> {
    policy::authorize(actor, Action::ManageRoles, Resource::agency(actor.agency_id))?;
    let stream = Stream::Agency(actor.agency_id);
    let tx = events::begin(&state.db, &stream).await?;
    let before = role_before(&*tx, actor.agency_id, user_id, unit_id).await?;
    if let Some(before) = before.as_ref().filter(|b| b.role == role) {
        return Ok(before.clone());
    }
    let grant = RoleGrant { user_id, unit_id, role, granted_at: tx.now(&state.clock) };
    db::org::upsert_role(&*tx, &grant).await?;
    events::append(
        &tx,
        &state.clock,
        &stream,
        "role.granted",
        actor.event_actor(),
        json!({
            "user_id": user_id.to_string(),
            "unit_id": unit_id.to_string(),
            "before": { "role": before.map(|b| b.role.as_str()) },
            "after": { "role": role.as_str() },
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(grant)
}

pub async fn revoke_role(state: &AppState, actor: &Actor, user_id: UserId, unit_id: UnitId) -> Result<bool, AppError> {
    policy::authorize(actor, Action::ManageRoles, Resource::agency(actor.agency_id))?;
    let stream = Stream::Agency(actor.agency_id);
    let tx = events::begin(&state.db, &stream).await?;
    let Some(before) = role_before(&*tx, actor.agency_id, user_id, unit_id).await? else {
        return Ok(false);
    };
    db::org::delete_role(&*tx, user_id, unit_id).await?;
    events::append(
        &tx,
        &state.clock,
        &stream,
        "role.revoked",
        actor.event_actor(),
        json!({
            "user_id": user_id.to_string(),
            "unit_id": unit_id.to_string(),
            "before": { "role": before.role.as_str() },
            "after": { "role": null },
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Checks that the user and the unit belong to the agency and returns the user's current role
/// on the unit.
async fn role_before(
    conn: &impl ConnectionTrait,
    agency: AgencyId,
    user_id: UserId,
    unit_id: UnitId,
) -> Result<Option<RoleGrant>, AppError> {
    let user = load_user(conn, agency, user_id).await?;
    let unit = load_unit(conn, agency, unit_id).await?;
    Ok(db::org::roles_of_user(conn, user.id).await?.into_iter().find(|g| g.unit_id == unit.id))
}

/// A page of the agency's event stream, for administrators.
pub async fn agency_events(
    state: &AppState,
    actor: &Actor,
    stream: &Stream,
    after: i64,
    first: u64,
) -> Result<Vec<events::Event>, AppError> {
    let agency = match stream {
        Stream::Agency(id) => *id,
        Stream::Assessment(id) => return crate::assessments::stream_events(state, actor, *id, after, first).await,
        Stream::System => return Err(AppError::NotFound("stream")),
    };
    policy::authorize(actor, Action::ReadAgencyLog, Resource::agency(agency))?;
    events::page(&state.db.conn, stream, after, first).await
}
