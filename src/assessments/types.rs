//! Plain records of assessments, the people on them, answers and comments.

use chrono::NaiveDate;
use serde_json::Value;

use crate::error::AppError;
use crate::ids::{AgencyId, AssessmentId, CommentId, TemplateId, UnitId, UserId};
use crate::templates::Template;

/// A template as stored: built in, or imported by one agency.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTemplate {
    pub id: TemplateId,
    /// `None` for a built-in template, which every agency may use.
    pub agency_id: Option<AgencyId>,
    pub template: Template,
    pub created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Draft,
    InProgress,
    Submitted,
    Approved,
    Returned,
    Archived,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Draft, Status::InProgress, Status::Submitted, Status::Approved, Status::Returned, Status::Archived];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::InProgress => "in_progress",
            Status::Submitted => "submitted",
            Status::Approved => "approved",
            Status::Returned => "returned",
            Status::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Result<Status, AppError> {
        Status::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| AppError::invalid("status", "unknown status"))
    }

    /// Whether answers may change in this status.
    pub fn accepts_answers(self) -> bool {
        matches!(self, Status::Draft | Status::InProgress | Status::Returned)
    }

    /// Approved and archived assessments are locked: nothing changes until they are reopened.
    pub fn is_locked(self) -> bool {
        matches!(self, Status::Approved | Status::Archived)
    }
}

/// A person's role on one assessment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AssessmentRole {
    /// Answers questions.
    Editor,
    /// Comments, approves or returns.
    Reviewer,
    /// Reads.
    Viewer,
}

impl AssessmentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AssessmentRole::Editor => "editor",
            AssessmentRole::Reviewer => "reviewer",
            AssessmentRole::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Result<AssessmentRole, AppError> {
        match s {
            "editor" => Ok(AssessmentRole::Editor),
            "reviewer" => Ok(AssessmentRole::Reviewer),
            "viewer" => Ok(AssessmentRole::Viewer),
            _ => Err(AppError::invalid("role", "unknown assessment role")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub by: UserId,
    pub at: i64,
    /// The head of the assessment's event stream when it was approved: the exact state approved.
    pub seq: i64,
    pub hash: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub id: AssessmentId,
    pub agency_id: AgencyId,
    pub unit_id: UnitId,
    pub template_id: TemplateId,
    pub title: String,
    pub subject: String,
    pub due_date: Option<NaiveDate>,
    pub status: Status,
    pub previous_id: Option<AssessmentId>,
    pub created_by: UserId,
    pub created_at: i64,
    pub updated_at: i64,
    pub approval: Option<Approval>,
    pub return_reason: Option<String>,
    pub required_total: i32,
    pub required_answered: i32,
    pub highest_residual: Option<String>,
    pub highest_residual_rank: Option<i32>,
}

impl Assessment {
    /// Past its due date and not yet approved or archived.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        self.due_date.is_some_and(|d| d < today) && !matches!(self.status, Status::Approved | Status::Archived)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub role: AssessmentRole,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionAssignment {
    pub assessment_id: AssessmentId,
    pub section_id: String,
    pub user_id: UserId,
}

/// The current answer to one question. A cleared answer keeps its row (value `None`) so that its
/// revision keeps counting.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub question_id: String,
    pub value: Option<Value>,
    pub note: Option<String>,
    pub revision: i64,
    pub carried_over: bool,
    /// A user id (or `system`); kept as text so that imported history keeps its authors.
    pub updated_by: String,
    pub updated_at: i64,
}

impl Answer {
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "question_id": self.question_id,
            "value": self.value,
            "note": self.note,
            "revision": self.revision,
            "carried_over": self.carried_over,
            "updated_by": self.updated_by,
            "updated_at": crate::clock::from_micros(self.updated_at).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub id: CommentId,
    pub assessment_id: AssessmentId,
    pub question_id: String,
    pub parent_id: Option<CommentId>,
    pub author_id: String,
    pub author_name: String,
    pub body: String,
    pub version: i32,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub resolved: bool,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
}

impl Comment {
    /// The comment with its kept versions, as exported and as logged when imported.
    pub fn to_json(&self, versions: &[CommentVersion]) -> Value {
        let time = |m: i64| crate::clock::from_micros(m).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        serde_json::json!({
            "id": self.id.to_string(),
            "question_id": self.question_id,
            "parent_id": self.parent_id.map(|p| p.to_string()),
            "author_id": self.author_id,
            "author_name": self.author_name,
            "body": self.body,
            "version": self.version,
            "created_at": time(self.created_at),
            "edited_at": self.edited_at.map(time),
            "resolved": self.resolved,
            "resolved_by": self.resolved_by,
            "resolved_at": self.resolved_at.map(time),
            "versions": versions
                .iter()
                .map(|v| serde_json::json!({ "version": v.version, "body": v.body, "written_at": time(v.written_at) }))
                .collect::<Vec<_>>(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentVersion {
    pub comment_id: CommentId,
    pub version: i32,
    pub body: String,
    pub written_at: i64,
}

/// Comments ordered so that every reply comes after the comment it answers.
pub fn parents_first(comments: &[Comment]) -> Vec<Comment> {
    let mut out: Vec<Comment> = Vec::with_capacity(comments.len());
    let mut rest: Vec<&Comment> = comments.iter().collect();
    while !rest.is_empty() {
        let before = rest.len();
        rest.retain(|c| {
            let ready = c.parent_id.is_none_or(|p| out.iter().any(|o| o.id == p));
            if ready {
                out.push((*c).clone());
            }
            !ready
        });
        if rest.len() == before {
            // A reply whose parent is not in the log: keep it, the database will refuse it.
            out.extend(rest.drain(..).cloned());
        }
    }
    out
}
