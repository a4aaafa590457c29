//! The one authorization policy. Every resolver asks it before reading or changing anything, and
//! no resolver decides on its own.
//!
//! Architecture invariant: a resource of another agency is reported as not found, never as
//! forbidden, so that its existence is not revealed.

use crate::agencies::UnitRole;
use crate::assessments::AssessmentRole;
use crate::auth::Actor;
use crate::error::AppError;
use crate::ids::{AgencyId, UnitId, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read one's own account, change one's own password, log out: allowed even while a
    /// password change is pending.
    ManageOwnAccount,
    /// See the agency and its unit tree.
    ViewAgency,
    /// See a user's account and roles.
    ViewUser,
    /// List users (managers see those in their subtrees).
    ListUsers,
    /// Create and change users, their passwords and administrator rights.
    ManageUsers,
    /// Create, rename and move units.
    ManageUnits,
    /// Grant and revoke unit roles.
    ManageRoles,
    /// Read the agency's event stream.
    ReadAgencyLog,
    /// Import templates.
    ManageTemplates,
    /// See an assessment, its answers, comments, history and exports.
    ViewAssessment,
    /// Create assessments in a unit; change an assessment's details, people and assignments;
    /// reopen and archive it.
    ManageAssessment,
    /// Answer questions.
    Answer,
    /// Comment on questions.
    Comment,
    /// Submit for review.
    Submit,
    /// Approve, or return with a reason.
    Review,
    /// Read an assessment's event stream.
    ReadAssessmentLog,
    /// See the deployment's signed checkpoints, with the heads of the agency's own streams.
    ReadCheckpoints,
    /// Take a signed checkpoint of the whole log now.
    CreateCheckpoint,
}

/// What an action is about.
#[derive(Clone, Copy, Debug)]
pub struct Resource<'a> {
    pub agency: AgencyId,
    /// For a resource tied to units: each such unit with all its ancestors. A manager of any unit
    /// listed here manages the resource.
    pub units: &'a [UnitId],
    /// For a user's own account.
    pub owner: Option<UserId>,
    /// For an assessment: the actor's role on it, if any.
    pub assessment_role: Option<AssessmentRole>,
}

impl<'a> Resource<'a> {
    pub fn agency(agency: AgencyId) -> Resource<'static> {
        Resource { agency, units: &[], owner: None, assessment_role: None }
    }

    /// Something inside a unit, such as an assessment, with the unit's ancestry and the actor's
    /// role on it.
    pub fn in_unit(agency: AgencyId, units: &'a [UnitId], assessment_role: Option<AssessmentRole>) -> Resource<'a> {
        Resource { agency, units, owner: None, assessment_role }
    }

    pub fn user(agency: AgencyId, user: UserId, units: &'a [UnitId]) -> Resource<'a> {
        Resource { agency, units, owner: Some(user), assessment_role: None }
    }
}

pub fn authorize(actor: &Actor, action: Action, resource: Resource<'_>) -> Result<(), AppError> {
    if actor.agency_id != resource.agency {
        return Err(AppError::NotFound("resource"));
    }
    if action == Action::ManageOwnAccount {
        return if resource.owner == Some(actor.user_id) {
            Ok(())
        } else {
            Err(AppError::forbidden("only the account's owner may do this"))
        };
    }
    if actor.must_change_password {
        return Err(AppError::forbidden("the password must be changed first"));
    }
    let manages = |units: &[UnitId]| {
        actor.unit_roles.iter().any(|(unit, role)| *role == UnitRole::Manager && units.contains(unit))
    };
    let allowed = match action {
        Action::ManageOwnAccount | Action::ViewAgency => true,
        Action::ViewUser => actor.is_admin || resource.owner == Some(actor.user_id) || manages(resource.units),
        Action::ListUsers => actor.is_admin || actor.unit_roles.iter().any(|(_, r)| *r == UnitRole::Manager),
        Action::ManageUsers
        | Action::ManageUnits
        | Action::ManageRoles
        | Action::ReadAgencyLog
        | Action::ManageTemplates
        | Action::ReadCheckpoints
        | Action::CreateCheckpoint => actor.is_admin,
        Action::ViewAssessment => actor.is_admin || manages(resource.units) || resource.assessment_role.is_some(),
        Action::ManageAssessment => actor.is_admin || manages(resource.units),
        Action::Answer | Action::Submit => {
            actor.is_admin || manages(resource.units) || resource.assessment_role == Some(AssessmentRole::Editor)
        }
        Action::Comment => {
            actor.is_admin
                || manages(resource.units)
                || matches!(resource.assessment_role, Some(AssessmentRole::Editor | AssessmentRole::Reviewer))
        }
        Action::Review | Action::ReadAssessmentLog => {
            actor.is_admin || manages(resource.units) || resource.assessment_role == Some(AssessmentRole::Reviewer)
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(AppError::forbidden(match action {
            Action::ViewUser | Action::ListUsers => {
                "only administrators and the managers of the user's units may see users"
            }
            _ => "only agency administrators may do this",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(is_admin: bool, roles: Vec<(UnitId, UnitRole)>) -> Actor {
        Actor {
            user_id: UserId::new(),
            agency_id: AgencyId(uuid::Uuid::nil()),
            is_admin,
            must_change_password: false,
            unit_roles: roles,
            session: String::new(),
        }
    }

    #[test]
    fn another_agency_is_not_found_even_for_an_administrator() {
        let admin = actor(true, vec![]);
        let other = Resource::agency(AgencyId::new());
        assert!(matches!(authorize(&admin, Action::ViewAgency, other), Err(AppError::NotFound(_))));
    }

    #[test]
    fn a_manager_sees_users_in_the_subtree_only() {
        let (top, elsewhere) = (UnitId::new(), UnitId::new());
        let manager = actor(false, vec![(top, UnitRole::Manager)]);
        let agency = manager.agency_id;
        let inside = [UnitId::new(), top];
        assert!(authorize(&manager, Action::ViewUser, Resource::user(agency, UserId::new(), &inside)).is_ok());
        let outside = [elsewhere];
        assert!(authorize(&manager, Action::ViewUser, Resource::user(agency, UserId::new(), &outside)).is_err());
        assert!(authorize(&manager, Action::ManageUnits, Resource::agency(agency)).is_err());
    }

    #[test]
    fn a_pending_password_change_blocks_everything_but_the_own_account() {
        let mut admin = actor(true, vec![]);
        admin.must_change_password = true;
        let agency = admin.agency_id;
        assert!(authorize(&admin, Action::ManageUsers, Resource::agency(agency)).is_err());
        let own = Resource::user(agency, admin.user_id, &[]);
        assert!(authorize(&admin, Action::ManageOwnAccount, own).is_ok());
    }
}
