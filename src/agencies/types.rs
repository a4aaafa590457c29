//! Plain records of agencies, units, users and roles, as the rest of the server sees them.

use crate::error::AppError;
use crate::ids::{AgencyId, UnitId, UserId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agency {
    pub id: AgencyId,
    pub name: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub id: UnitId,
    pub agency_id: AgencyId,
    pub parent_id: Option<UnitId>,
    pub name: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub agency_id: AgencyId,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
    pub must_change_password: bool,
    pub disabled: bool,
    pub created_at: i64,
}

/// A role a user holds on a unit and, through it, on the unit's whole subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnitRole {
    Manager,
    Member,
}

impl UnitRole {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitRole::Manager => "manager",
            UnitRole::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Result<UnitRole, AppError> {
        match s {
            "manager" => Ok(UnitRole::Manager),
            "member" => Ok(UnitRole::Member),
            _ => Err(AppError::invalid("role", "unknown role")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleGrant {
    pub user_id: UserId,
    pub unit_id: UnitId,
    pub role: UnitRole,
    pub granted_at: i64,
}

/// An email address, trimmed and lower-cased, with a plausible shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Email, AppError> {
        let s = s.trim().to_lowercase();
        let valid = s.len() <= 254
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
            })
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && s.matches('@').count() == 1;
        if valid { Ok(Email(s)) } else { Err(AppError::invalid("email", "not a valid email address")) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name or unit name: trimmed, not empty, at most `max` characters, no control
/// characters.
pub fn parse_name(field: &str, s: &str, max: usize) -> Result<String, AppError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(AppError::invalid(field, "must not be empty"));
    }
    if s.chars().count() > max {
        return Err(AppError::invalid(field, format!("must be at most {max} characters")));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(AppError::invalid(field, "must not contain control characters"));
    }
    Ok(s.to_owned())
}
