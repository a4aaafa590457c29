//! Reviewers' view of the past: an assessment at any point, its timeline, differences between two
//! points, and its filtered event log.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::assessment_types::{
    GqlAnswer, GqlAssessmentRole, GqlStatus, GqlTemplate, Progress, RiskRegister, progress, risk_register,
};
use super::types::{EventPage, GqlEvent};
use super::{actor, state};
use crate::assessments;
use crate::error::AppError;
use crate::ids::AssessmentId;
use crate::replay::{self, DiffEntry, HistoryEntry, LogFilter, Point, Snapshot};

#[derive(Default)]
pub struct HistoryQuery;

/// An assessment as it was just after one event, computed from its log.
pub struct GqlSnapshot {
    snapshot: Snapshot,
    template: Arc<assessments::StoredTemplate>,
}

#[Object(name = "AssessmentSnapshot")]
impl GqlSnapshot {
    async fn id(&self) -> ID {
        ID(self.snapshot.assessment.id.to_string())
    }
    /// The sequence number of the last event included.
    async fn seq(&self) -> i64 {
        self.snapshot.seq
    }
    /// The time of that event, exactly as logged.
    async fn at(&self) -> &str {
        &self.snapshot.at
    }
    /// The hash of that event.
    async fn hash(&self) -> &str {
        &self.snapshot.hash
    }
    async fn title(&self) -> &str {
        &self.snapshot.assessment.title
    }
    async fn subject(&self) -> &str {
        &self.snapshot.assessment.subject
    }
    async fn due_date(&self) -> Option<String> {
        self.snapshot.assessment.due_date.map(|d| d.to_string())
    }
    async fn status(&self) -> GqlStatus {
        self.snapshot.assessment.status.into()
    }
    async fn return_reason(&self) -> Option<&str> {
        self.snapshot.assessment.return_reason.as_deref()
    }
    async fn template(&self) -> GqlTemplate {
        GqlTemplate(self.template.clone())
    }
    async fn answers(&self) -> Vec<GqlAnswer> {
        self.snapshot.answers.iter().cloned().map(GqlAnswer).collect()
    }
    async fn comments(&self) -> Vec<SnapshotComment> {
        self.snapshot
            .comments
            .iter()
            .map(|c| SnapshotComment {
                id: ID(c.id.to_string()),
                question_id: c.question_id.clone(),
                parent_id: c.parent_id.map(|p| ID(p.to_string())),
                author_id: c.author_id.clone(),
                author_name: c.author_name.clone(),
                body: c.body.clone(),
                version: c.version,
                resolved: c.resolved,
                created_at: assessments::rfc3339(c.created_at),
            })
            .collect()
    }
    async fn assignments(&self) -> Vec<SnapshotAssignment> {
        self.snapshot
            .assignments
            .iter()
            .map(|a| SnapshotAssignment { section_id: a.section_id.clone(), user_id: ID(a.user_id.to_string()) })
            .collect()
    }
    async fn members(&self) -> Vec<SnapshotMember> {
        self.snapshot
            .members
            .iter()
            .map(|m| SnapshotMember { user_id: ID(m.user_id.to_string()), role: m.role.into() })
            .collect()
    }
    async fn progress(&self) -> Progress {
        let ev = self.evaluation();
        progress(&ev.progress)
    }
    async fn risk_register(&self) -> Option<RiskRegister> {
        self.evaluation().risk.map(risk_register)
    }
}

impl GqlSnapshot {
    fn evaluation(&self) -> assessments::Evaluation {
        assessments::evaluation(self.template.clone(), self.snapshot.answers.clone())
    }
}

#[derive(SimpleObject)]
pub struct SnapshotComment {
    id: ID,
    question_id: String,
    parent_id: Option<ID>,
    /// A user id.
    author_id: String,
    author_name: String,
    body: String,
    version: i32,
    resolved: bool,
    created_at: String,
}

#[derive(SimpleObject)]
pub struct SnapshotAssignment {
    section_id: String,
    user_id: ID,
}

#[derive(SimpleObject)]
pub struct SnapshotMember {
    user_id: ID,
    role: GqlAssessmentRole,
}

/// One change in an assessment's timeline.
#[derive(SimpleObject)]
#[graphql(name = "HistoryEntry")]
pub struct GqlHistoryEntry {
    seq: i64,
    at: String,
    #[graphql(name = "type")]
    kind: String,
    /// A user id, or `system`.
    actor: String,
    /// The actor's display name today, when the actor is a user of the agency.
    actor_name: Option<String>,
    question_id: Option<String>,
    /// The change in a few words.
    summary: String,
    before: Option<Json<serde_json::Value>>,
    after: Option<Json<serde_json::Value>>,
}

impl From<HistoryEntry> for GqlHistoryEntry {
    fn from(e: HistoryEntry) -> Self {
        GqlHistoryEntry {
            seq: e.seq,
            at: e.at,
            kind: e.kind,
            actor: e.actor,
            actor_name: e.actor_name,
            question_id: e.question_id,
            summary: e.summary,
            before: e.before.map(Json),
            after: e.after.map(Json),
        }
    }
}

/// One difference between two points of an assessment's history.
#[derive(SimpleObject)]
#[graphql(name = "DiffEntry")]
pub struct GqlDiffEntry {
    /// The question, or null for the assessment itself.
    question_id: Option<String>,
    /// `title`, `subject`, `due_date`, `status`, `return_reason`, `value`, `note`, `comment`,
    /// `member` or `assignment`.
    field: String,
    before: Option<Json<serde_json::Value>>,
    after: Option<Json<serde_json::Value>>,
}

impl From<DiffEntry> for GqlDiffEntry {
    fn from(d: DiffEntry) -> Self {
        GqlDiffEntry {
            question_id: d.question_id,
            field: d.field,
            before: d.before.map(Json),
            after: d.after.map(Json),
        }
    }
}

fn event_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[Object]
impl HistoryQuery {
    /// The assessment as it was just after event `seq`, or at time `at` (give one of them),
    /// computed by replaying its log. Everything is as it was then: answers, notes, comments,
    /// status, people, progress and the risk register.
    async fn assessment_at(
        &self,
        ctx: &Context<'_>,
        id: ID,
        seq: Option<i64>,
        at: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<GqlSnapshot> {
        let id = AssessmentId::parse(&id)?;
        let point = match (seq, at) {
            (Some(seq), None) => Point::Seq(seq),
            (None, Some(at)) => Point::Time(at.timestamp_micros()),
            _ => return Err(AppError::invalid("seq", "give either seq or at").into()),
        };
        let (snapshot, template) = replay::assessment_at(state(ctx), actor(ctx)?, id, point).await?;
        Ok(GqlSnapshot { snapshot, template: Arc::new(template) })
    }

    /// The timeline of an assessment's changes, oldest first; only those about one question when
    /// `questionId` is given.
    async fn assessment_history(
        &self,
        ctx: &Context<'_>,
        id: ID,
        question_id: Option<String>,
    ) -> async_graphql::Result<Vec<GqlHistoryEntry>> {
        let id = AssessmentId::parse(&id)?;
        let entries = replay::history(state(ctx), actor(ctx)?, id, question_id.as_deref()).await?;
        Ok(entries.into_iter().map(GqlHistoryEntry::from).collect())
    }

    /// What changed from just after event `fromSeq` to just after event `toSeq`.
    async fn assessment_diff(
        &self,
        ctx: &Context<'_>,
        id: ID,
        from_seq: i64,
        to_seq: i64,
    ) -> async_graphql::Result<Vec<GqlDiffEntry>> {
        let id = AssessmentId::parse(&id)?;
        let entries = replay::diff(state(ctx), actor(ctx)?, id, from_seq, to_seq).await?;
        Ok(entries.into_iter().map(GqlDiffEntry::from).collect())
    }

    /// The events of an assessment's log, in order, optionally only those of one actor, of some
    /// types, or within a time range; for its reviewers, the managers of its unit and
    /// administrators.
    #[allow(clippy::too_many_arguments)]
    async fn assessment_log(
        &self,
        ctx: &Context<'_>,
        id: ID,
        actor_id: Option<String>,
        types: Option<Vec<String>>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        after: Option<String>,
        first: Option<i32>,
    ) -> async_graphql::Result<Connection<String, GqlEvent>> {
        let id = AssessmentId::parse(&id)?;
        let page = EventPage::parse(after, first)?;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(AppError::invalid("from", "must not be after to").into());
        }
        let filter = LogFilter {
            actor: actor_id,
            types: types.unwrap_or_default(),
            from: from.map(event_time),
            to: to.map(event_time),
        };
        let events = replay::log(state(ctx), actor(ctx)?, id, &filter, page.after_seq, page.limit()).await?;
        Ok(page.connection(events))
    }
}
