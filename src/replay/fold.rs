//! Folding an assessment's events into its state. The fold checks the chain as it reads (gap-free
//! sequence, links, hashes), so a state it returns comes from an intact log.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::assessments::{
    Answer, Approval, Assessment, AssessmentRole, Comment, CommentVersion, Member, SectionAssignment, Status,
};
use crate::events::{Event, GENESIS_HASH};
use crate::ids::{AgencyId, AssessmentId, CommentId, TemplateId, UnitId, UserId};
use crate::templates::Template;

/// An assessment's state as of one event: everything its current-state tables hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub assessment: Assessment,
    /// Sorted by user id.
    pub members: Vec<Member>,
    /// Sorted by section, then user.
    pub assignments: Vec<SectionAssignment>,
    /// Sorted by question id.
    pub answers: Vec<Answer>,
    /// In creation order (creation time, then id), as the live query returns them.
    pub comments: Vec<Comment>,
    /// Sorted by comment id, then version.
    pub comment_versions: Vec<CommentVersion>,
    /// The sequence, time and hash of the last event folded.
    pub seq: i64,
    pub at: String,
    pub hash: String,
}

/// Why a stream could not be folded: the sequence of the event and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoldError {
    pub seq: i64,
    pub problem: String,
}

impl std::fmt::Display for FoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event {}: {}", self.seq, self.problem)
    }
}

/// The state being built, one event at a time.
pub struct Fold {
    stream: String,
    seq: i64,
    hash: String,
    at: String,
    assessment: Option<Assessment>,
    members: BTreeMap<UserId, AssessmentRole>,
    assignments: BTreeMap<(String, UserId), ()>,
    answers: BTreeMap<String, Answer>,
    comments: Vec<Comment>,
    versions: Vec<CommentVersion>,
}

type Step = Result<(), String>;

impl Fold {
    pub fn new(stream: &str) -> Fold {
        Fold {
            stream: stream.to_owned(),
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
            at: String::new(),
            assessment: None,
            members: BTreeMap::new(),
            assignments: BTreeMap::new(),
            answers: BTreeMap::new(),
            comments: Vec::new(),
            versions: Vec::new(),
        }
    }

    /// The sequence of the last event folded (0 before any).
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// The template the assessment was created on, once its creation has been folded.
    pub fn template_id(&self) -> Option<TemplateId> {
        self.assessment.as_ref().map(|a| a.template_id)
    }

    /// Checks `event` against the chain so far, then applies it.
    pub fn apply(&mut self, event: &Event) -> Result<(), FoldError> {
        let fail = |problem: String| FoldError { seq: event.seq, problem };
        if event.stream != self.stream {
            return Err(fail(format!("belongs to stream {}", event.stream)));
        }
        if event.seq != self.seq + 1 {
            return Err(FoldError {
                seq: self.seq + 1,
                problem: format!("expected sequence {}, found {}", self.seq + 1, event.seq),
            });
        }
        if event.prev_hash != self.hash {
            return Err(fail("prev_hash does not match the previous event's hash".into()));
        }
        if event.recompute_hash() != event.hash {
            return Err(fail("hash does not match the event's contents".into()));
        }
        self.step(event).map_err(fail)?;
        self.seq = event.seq;
        self.hash = event.hash.clone();
        self.at = event.at.clone();
        Ok(())
    }

    /// The state after the events folded so far, with its progress summary computed against
    /// `template` (the one `template_id` names). `None` before the creation event.
    pub fn snapshot(&self, template: &Template) -> Option<Snapshot> {
        let mut assessment = self.assessment.clone()?;
        let answers: Vec<Answer> = self.answers.values().cloned().collect();
        crate::assessments::refresh_summary(&mut assessment, template, &answers);
        let mut comments = self.comments.clone();
        comments.sort_by_key(|c| (c.created_at, c.id.to_string()));
        let mut comment_versions = self.versions.clone();
        comment_versions.sort_by_key(|v| (v.comment_id.to_string(), v.version));
        Some(Snapshot {
            members: self.members.iter().map(|(user_id, role)| Member { user_id: *user_id, role: *role }).collect(),
            assignments: self
                .assignments
                .keys()
                .map(|(section_id, user_id)| SectionAssignment {
                    assessment_id: assessment.id,
                    section_id: section_id.clone(),
                    user_id: *user_id,
                })
                .collect(),
            answers,
            comments,
            comment_versions,
            seq: self.seq,
            at: self.at.clone(),
            hash: self.hash.clone(),
            assessment,
        })
    }

    fn step(&mut self, e: &Event) -> Step {
        let p = &e.payload;
        let at = micros(&e.at)?;
        if e.kind == "assessment.created" {
            if self.assessment.is_some() {
                return Err("a second creation event".into());
            }
            return self.create(e, at);
        }
        let actor = e.actor.clone();
        let a = self.assessment.as_mut().ok_or("an event before the assessment's creation")?;
        match e.kind.as_str() {
            "assessment.details_changed" => {
                let after = field(p, "after")?;
                a.title = text(after, "title")?;
                a.subject = text(after, "subject")?;
                a.due_date = opt_text(after, "due_date")?
                    .map(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d"))
                    .transpose()
                    .map_err(|_| "after.due_date is not a date")?;
                a.updated_at = at;
            }
            "assessment.status_changed" => {
                a.status = status(field(p, "after")?)?;
            }
            "assessment.submitted" => {
                a.status = status(field(p, "after")?)?;
                a.return_reason = None;
                a.updated_at = at;
            }
            "assessment.approved" => {
                let head = field(p, "approved_head")?;
                a.status = status(field(p, "after")?)?;
                a.approval = Some(Approval {
                    by: user(&actor)?,
                    at,
                    seq: field(head, "seq")?.as_i64().ok_or("approved_head.seq is not a number")?,
                    hash: text(head, "hash")?,
                });
                a.updated_at = at;
            }
            "assessment.returned" => {
                a.status = status(field(p, "after")?)?;
                a.return_reason = Some(text(p, "reason")?);
                a.updated_at = at;
            }
            "assessment.reopened" => {
                a.status = status(field(p, "after")?)?;
                a.approval = None;
                a.updated_at = at;
            }
            "assessment.archived" => {
                a.status = status(field(p, "after")?)?;
                a.updated_at = at;
            }
            "member.changed" => {
                let user_id = user(&text(p, "user_id")?)?;
                match opt_text(field(p, "after")?, "role")? {
                    Some(role) => {
                        self.members.insert(user_id, AssessmentRole::parse(&role).map_err(|_| "unknown role")?);
                    }
                    None => {
                        self.members.remove(&user_id);
                    }
                }
            }
            "section.assigned" | "section.unassigned" => {
                let key = (text(p, "section_id")?, user(&text(p, "user_id")?)?);
                if e.kind == "section.assigned" {
                    self.assignments.insert(key, ());
                } else {
                    self.assignments.remove(&key);
                }
            }
            "answer.set" | "answer.cleared" | "answer.carried_over" => {
                let after = field(p, "after")?;
                let answer = Answer {
                    question_id: text(p, "question_id")?,
                    value: after.get("value").filter(|v| !v.is_null()).cloned(),
                    note: opt_text(after, "note")?,
                    revision: field(after, "revision")?.as_i64().ok_or("after.revision is not a number")?,
                    carried_over: field(after, "carried_over")?
                        .as_bool()
                        .ok_or("after.carried_over is not a boolean")?,
                    updated_by: actor,
                    updated_at: at,
                };
                if e.kind != "answer.carried_over" {
                    a.updated_at = at;
                }
                self.answers.insert(answer.question_id.clone(), answer);
            }
            "answer.confirmed" => {
                let question = text(p, "question_id")?;
                let answer = self.answers.get_mut(&question).ok_or("confirms an answer that does not exist")?;
                answer.revision = field(p, "revision")?.as_i64().ok_or("revision is not a number")?;
                answer.carried_over = false;
                answer.updated_by = actor;
                answer.updated_at = at;
                a.updated_at = at;
            }
            "answer.imported" => {
                let answer = Answer {
                    question_id: text(p, "question_id")?,
                    value: p.get("value").filter(|v| !v.is_null()).cloned(),
                    note: opt_text(p, "note")?,
                    revision: field(p, "revision")?.as_i64().ok_or("revision is not a number")?,
                    carried_over: field(p, "carried_over")?.as_bool().ok_or("carried_over is not a boolean")?,
                    updated_by: text(p, "updated_by")?,
                    updated_at: micros(&text(p, "updated_at")?)?,
                };
                self.answers.insert(answer.question_id.clone(), answer);
            }
            "comment.added" => {
                let comment = Comment {
                    id: comment_id(&text(p, "comment_id")?)?,
                    assessment_id: a.id,
                    question_id: text(p, "question_id")?,
                    parent_id: opt_text(p, "parent_id")?.map(|c| comment_id(&c)).transpose()?,
                    author_id: actor,
                    author_name: text(p, "author_name")?,
                    body: text(p, "body")?,
                    version: 1,
                    created_at: at,
                    edited_at: None,
                    resolved: false,
                    resolved_by: None,
                    resolved_at: None,
                };
                self.versions.push(CommentVersion {
                    comment_id: comment.id,
                    version: 1,
                    body: comment.body.clone(),
                    written_at: at,
                });
                self.comments.push(comment);
            }
            "comment.edited" => {
                let id = comment_id(&text(p, "comment_id")?)?;
                let after = field(p, "after")?;
                let comment = self.comments.iter_mut().find(|c| c.id == id).ok_or("edits an unknown comment")?;
                comment.body = text(after, "body")?;
                comment.version = int(after, "version")?;
                comment.edited_at = Some(at);
                self.versions.push(CommentVersion {
                    comment_id: id,
                    version: comment.version,
                    body: comment.body.clone(),
                    written_at: at,
                });
            }
            "comment.resolved" | "comment.reopened" => {
                let id = comment_id(&text(p, "comment_id")?)?;
                let comment = self.comments.iter_mut().find(|c| c.id == id).ok_or("resolves an unknown comment")?;
                let resolved = e.kind == "comment.resolved";
                comment.resolved = resolved;
                comment.resolved_by = resolved.then_some(actor);
                comment.resolved_at = resolved.then_some(at);
            }
            "comment.imported" => {
                let id = comment_id(&text(p, "id")?)?;
                let comment = Comment {
                    id,
                    assessment_id: a.id,
                    question_id: text(p, "question_id")?,
                    parent_id: opt_text(p, "parent_id")?.map(|c| comment_id(&c)).transpose()?,
                    author_id: text(p, "author_id")?,
                    author_name: text(p, "author_name")?,
                    body: text(p, "body")?,
                    version: int(p, "version")?,
                    created_at: micros(&text(p, "created_at")?)?,
                    edited_at: opt_text(p, "edited_at")?.map(|t| micros(&t)).transpose()?,
                    resolved: field(p, "resolved")?.as_bool().ok_or("resolved is not a boolean")?,
                    resolved_by: opt_text(p, "resolved_by")?,
                    resolved_at: opt_text(p, "resolved_at")?.map(|t| micros(&t)).transpose()?,
                };
                for v in field(p, "versions")?.as_array().ok_or("versions is not a list")? {
                    self.versions.push(CommentVersion {
                        comment_id: id,
                        version: int(v, "version")?,
                        body: text(v, "body")?,
                        written_at: micros(&text(v, "written_at")?)?,
                    });
                }
                self.comments.push(comment);
            }
            other => return Err(format!("unknown event type {other} in an assessment stream")),
        }
        Ok(())
    }

    fn create(&mut self, e: &Event, at: i64) -> Step {
        let p = &e.payload;
        let id = AssessmentId::parse(&text(p, "assessment_id")?).map_err(|_| "assessment_id is not an id")?;
        if self.stream != format!("assessment:{id}") {
            return Err("creates another assessment than its stream's".into());
        }
        let imported = p.get("import").is_some_and(|i| !i.is_null());
        self.assessment = Some(Assessment {
            id,
            agency_id: AgencyId::parse(&text(p, "agency_id")?).map_err(|_| "agency_id is not an id")?,
            unit_id: UnitId::parse(&text(p, "unit_id")?).map_err(|_| "unit_id is not an id")?,
            template_id: TemplateId::parse(&text(p, "template_id")?).map_err(|_| "template_id is not an id")?,
            title: text(p, "title")?,
            subject: text(p, "subject")?,
            due_date: opt_text(p, "due_date")?
                .map(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d"))
                .transpose()
                .map_err(|_| "due_date is not a date")?,
            status: if imported { Status::Archived } else { Status::Draft },
            previous_id: opt_text(p, "previous_id")?
                .map(|x| AssessmentId::parse(&x))
                .transpose()
                .map_err(|_| "previous_id is not an id")?,
            created_by: user(&e.actor)?,
            created_at: at,
            updated_at: at,
            approval: None,
            return_reason: None,
            required_total: 0,
            required_answered: 0,
            highest_residual: None,
            highest_residual_rank: None,
        });
        for m in field(p, "members")?.as_array().ok_or("members is not a list")? {
            let role = AssessmentRole::parse(&text(m, "role")?).map_err(|_| "unknown role")?;
            self.members.insert(user(&text(m, "user_id")?)?, role);
        }
        Ok(())
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name).ok_or_else(|| format!("payload has no {name}"))
}

fn text(v: &Value, name: &str) -> Result<String, String> {
    field(v, name)?.as_str().map(str::to_owned).ok_or_else(|| format!("{name} is not a string"))
}

fn opt_text(v: &Value, name: &str) -> Result<Option<String>, String> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn int(v: &Value, name: &str) -> Result<i32, String> {
    field(v, name)?.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| format!("{name} is not a number"))
}

fn status(after: &Value) -> Result<Status, String> {
    Status::parse(&text(after, "status")?).map_err(|_| "unknown status".to_owned())
}

fn user(s: &str) -> Result<UserId, String> {
    UserId::parse(s).map_err(|_| format!("{s} is not a user id"))
}

fn comment_id(s: &str) -> Result<CommentId, String> {
    CommentId::parse(s).map_err(|_| format!("{s} is not a comment id"))
}

/// An event time (RFC 3339) in microseconds.
pub fn micros(at: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(at).map(|t| t.timestamp_micros()).map_err(|_| format!("{at} is not a time"))
}
