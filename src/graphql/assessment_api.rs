//! Queries and mutations of templates and assessments.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, InputObject, Json, MaybeUndefined, Object};
use chrono::NaiveDate;

use super::assessment_types::{
    GqlAnswer, GqlAssessment, GqlAssessmentRole, GqlComment, GqlStatus, GqlTemplate, UnitSummary,
};
use super::types::paginate;
use super::{actor, state};
use crate::assessments::{self, DetailsChange, Member, NewAssessment, SetAnswer, Transition};
use crate::error::AppError;
use crate::ids::{AssessmentId, CommentId, TemplateId, UnitId, UserId};

fn date(field: &str, s: &str) -> Result<NaiveDate, AppError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| AppError::invalid(field, "expected a date as YYYY-MM-DD"))
}

#[derive(Default)]
pub struct AssessmentQuery;

#[derive(Clone, Copy, PartialEq, Eq, Enum)]
pub enum ExportFormat {
    /// Complete, importable into another Attest.
    Json,
    /// One row per question.
    Csv,
}

#[derive(async_graphql::SimpleObject)]
pub struct MyAssignment {
    pub assessment: GqlAssessment,
    pub section_id: String,
}

#[Object]
impl AssessmentQuery {
    /// Templates the agency may use: built-in ones and its own, every version.
    async fn templates(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<GqlTemplate>> {
        let all = assessments::templates(state(ctx), actor(ctx)?).await?;
        Ok(all.into_iter().map(|t| GqlTemplate(std::sync::Arc::new(t))).collect())
    }

    async fn template(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<GqlTemplate> {
        let t = assessments::template(state(ctx), actor(ctx)?, TemplateId::parse(&id)?).await?;
        Ok(GqlTemplate(t))
    }

    /// Assessments the caller may see, newest first: in the managed subtrees, and those the caller
    /// has a role on. Optionally within one unit's subtree, or with one status.
    async fn assessments(
        &self,
        ctx: &Context<'_>,
        unit_id: Option<ID>,
        status: Option<GqlStatus>,
        after: Option<String>,
        first: Option<i32>,
    ) -> async_graphql::Result<Connection<String, GqlAssessment>> {
        let unit = unit_id.map(|u| UnitId::parse(&u)).transpose()?;
        let actor = actor(ctx)?;
        let state = state(ctx);
        let list = assessments::visible_assessments(state, actor, unit).await?;
        let roles = crate::db::assessments::memberships(&state.db.conn, actor.user_id).await?;
        let units = crate::db::org::list_units(&state.db.conn, actor.agency_id).await?;
        let items: Vec<GqlAssessment> = list
            .into_iter()
            .filter(|a| status.is_none_or(|s| a.status == s.into()))
            .map(|a| {
                let role = roles.iter().find(|(id, _)| *id == a.id).map(|(_, r)| *r);
                let ancestry = crate::agencies::ancestry(&units, a.unit_id);
                GqlAssessment::new(assessments::Access { assessment: a, ancestry, role })
            })
            .collect();
        Ok(paginate(items, after, first, |a| a.0.assessment.id.to_string())?)
    }

    async fn assessment(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<GqlAssessment> {
        Ok(GqlAssessment::new(assessments::assessment(state(ctx), actor(ctx)?, AssessmentId::parse(&id)?).await?))
    }

    /// The sections assigned to the caller.
    async fn my_assignments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MyAssignment>> {
        let actor = actor(ctx)?;
        let state = state(ctx);
        let mut out = Vec::new();
        for (a, section_id) in assessments::my_assignments(state, actor).await? {
            if let Ok(access) = assessments::assessment(state, actor, a.id).await {
                out.push(MyAssignment { assessment: GqlAssessment::new(access), section_id });
            }
        }
        Ok(out)
    }

    /// A manager's view: the unit and every unit below it, each summarizing its own subtree.
    async fn unit_dashboard(&self, ctx: &Context<'_>, unit_id: ID) -> async_graphql::Result<Vec<UnitSummary>> {
        let rows = assessments::unit_dashboard(state(ctx), actor(ctx)?, UnitId::parse(&unit_id)?).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The assessment as a JSON document (complete, importable) or as CSV (one row per question).
    async fn export_assessment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        format: ExportFormat,
    ) -> async_graphql::Result<String> {
        let id = AssessmentId::parse(&id)?;
        match format {
            ExportFormat::Json => {
                let doc = assessments::export_json(state(ctx), actor(ctx)?, id).await?;
                Ok(serde_json::to_string_pretty(&doc).map_err(AppError::internal)?)
            }
            ExportFormat::Csv => Ok(assessments::export_csv(state(ctx), actor(ctx)?, id).await?),
        }
    }
}

#[derive(InputObject)]
pub struct MemberInput {
    pub user_id: ID,
    pub role: GqlAssessmentRole,
}

#[derive(InputObject)]
pub struct CreateAssessmentInput {
    pub unit_id: ID,
    pub template_id: ID,
    pub title: String,
    /// What is assessed, for example the AI system.
    #[graphql(default)]
    pub subject: String,
    /// `YYYY-MM-DD`.
    pub due_date: Option<String>,
    #[graphql(default)]
    pub members: Vec<MemberInput>,
}

#[derive(InputObject)]
pub struct SetAnswerInput {
    pub assessment_id: ID,
    pub question_id: String,
    /// The value, shaped by the question's type; null clears the answer.
    pub value: Option<Json<serde_json::Value>>,
    /// A note beside the answer; left out keeps the current note, an empty string removes it.
    pub note: Option<String>,
    /// The revision this change is based on (0 for an unanswered question). A different current
    /// revision fails with CONFLICT and the current answer. Left out, the write overwrites.
    pub expected_revision: Option<i64>,
}

#[derive(InputObject)]
pub struct AddCommentInput {
    pub assessment_id: ID,
    pub question_id: String,
    pub body: String,
    /// The comment this one answers.
    pub parent_id: Option<ID>,
}

#[derive(Default)]
pub struct AssessmentMutation;

fn assessment_id(id: &ID) -> Result<AssessmentId, AppError> {
    AssessmentId::parse(id)
}

#[Object]
impl AssessmentMutation {
    /// Publishes a template (YAML or JSON) for the agency after checking all of it; with
    /// `checkOnly`, only checks. Problems come back as INVALID_INPUT with `problems`, each with
    /// its path.
    async fn import_template(
        &self,
        ctx: &Context<'_>,
        source: String,
        check_only: Option<bool>,
    ) -> async_graphql::Result<Option<GqlTemplate>> {
        let check_only = check_only.unwrap_or(false);
        let t = assessments::import_template(state(ctx), actor(ctx)?, &source, check_only).await?;
        Ok(t.map(|t| GqlTemplate(std::sync::Arc::new(t))))
    }

    async fn create_assessment(
        &self,
        ctx: &Context<'_>,
        input: CreateAssessmentInput,
    ) -> async_graphql::Result<GqlAssessment> {
        let actor = actor(ctx)?;
        let members = input
            .members
            .iter()
            .map(|m| Ok(Member { user_id: UserId::parse(&m.user_id)?, role: m.role.into() }))
            .collect::<Result<Vec<_>, AppError>>()?;
        let new = NewAssessment {
            unit_id: UnitId::parse(&input.unit_id)?,
            template_id: TemplateId::parse(&input.template_id)?,
            title: input.title,
            subject: input.subject,
            due_date: input.due_date.as_deref().map(|d| date("dueDate", d)).transpose()?,
            members,
        };
        let a = assessments::create_assessment(state(ctx), actor, new).await?;
        Ok(GqlAssessment::new(assessments::assessment(state(ctx), actor, a.id).await?))
    }

    /// Changes an assessment's title, subject or due date (null removes the due date).
    async fn update_assessment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        title: Option<String>,
        subject: Option<String>,
        due_date: MaybeUndefined<String>,
    ) -> async_graphql::Result<GqlAssessment> {
        let actor = actor(ctx)?;
        let id = assessment_id(&id)?;
        let due_date = match due_date {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(d) => Some(Some(date("dueDate", &d)?)),
        };
        assessments::update_details(state(ctx), actor, id, DetailsChange { title, subject, due_date }).await?;
        Ok(GqlAssessment::new(assessments::assessment(state(ctx), actor, id).await?))
    }

    /// Gives a person a role on the assessment, changes it, or with a null role removes it.
    async fn set_assessment_member(
        &self,
        ctx: &Context<'_>,
        assessment_id: ID,
        user_id: ID,
        role: Option<GqlAssessmentRole>,
    ) -> async_graphql::Result<GqlAssessment> {
        let actor = actor(ctx)?;
        let id = self::assessment_id(&assessment_id)?;
        assessments::set_member(state(ctx), actor, id, UserId::parse(&user_id)?, role.map(Into::into)).await?;
        Ok(GqlAssessment::new(assessments::assessment(state(ctx), actor, id).await?))
    }

    /// Assigns a section to one of the assessment's editors, or withdraws it.
    async fn assign_section(
        &self,
        ctx: &Context<'_>,
        assessment_id: ID,
        section_id: String,
        user_id: ID,
        #[graphql(default = true)] assigned: bool,
    ) -> async_graphql::Result<GqlAssessment> {
        let actor = actor(ctx)?;
        let id = self::assessment_id(&assessment_id)?;
        assessments::assign_section(state(ctx), actor, id, &section_id, UserId::parse(&user_id)?, assigned).await?;
        Ok(GqlAssessment::new(assessments::assessment(state(ctx), actor, id).await?))
    }

    /// Answers a question. See `SetAnswerInput` for conflicts.
    async fn set_answer(&self, ctx: &Context<'_>, input: SetAnswerInput) -> async_graphql::Result<GqlAnswer> {
        let input = SetAnswer {
            assessment_id: assessment_id(&input.assessment_id)?,
            question_id: input.question_id,
            value: input.value.map(|j| j.0),
            note: input.note,
            expected_revision: input.expected_revision,
        };
        Ok(GqlAnswer(assessments::set_answer(state(ctx), actor(ctx)?, input).await?))
    }

    /// Confirms an answer carried over from an earlier cycle.
    async fn confirm_answer(
        &self,
        ctx: &Context<'_>,
        assessment_id: ID,
        question_id: String,
        expected_revision: Option<i64>,
    ) -> async_graphql::Result<GqlAnswer> {
        let id = self::assessment_id(&assessment_id)?;
        Ok(GqlAnswer(assessments::confirm_answer(state(ctx), actor(ctx)?, id, &question_id, expected_revision).await?))
    }

    async fn add_comment(&self, ctx: &Context<'_>, input: AddCommentInput) -> async_graphql::Result<GqlComment> {
        let parent = input.parent_id.map(|p| CommentId::parse(&p)).transpose()?;
        let id = assessment_id(&input.assessment_id)?;
        Ok(GqlComment(
            assessments::add_comment(state(ctx), actor(ctx)?, id, &input.question_id, &input.body, parent).await?,
        ))
    }

    /// Edits one's own comment; earlier versions are kept.
    async fn edit_comment(&self, ctx: &Context<'_>, id: ID, body: String) -> async_graphql::Result<GqlComment> {
        Ok(GqlComment(assessments::edit_comment(state(ctx), actor(ctx)?, CommentId::parse(&id)?, &body).await?))
    }

    /// Resolves a comment, or reopens it with `resolved: false`.
    async fn set_comment_resolved(
        &self,
        ctx: &Context<'_>,
        id: ID,
        resolved: bool,
    ) -> async_graphql::Result<GqlComment> {
        Ok(GqlComment(
            assessments::set_comment_resolved(state(ctx), actor(ctx)?, CommentId::parse(&id)?, resolved).await?,
        ))
    }

    /// Submits for review; every required question shown must be answered.
    async fn submit_assessment(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<GqlAssessment> {
        transition(ctx, id, Transition::Submit, None).await
    }

    /// Approves a submitted assessment, recording the head of its event log; it is then locked.
    async fn approve_assessment(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<GqlAssessment> {
        transition(ctx, id, Transition::Approve, None).await
    }

    /// Returns a submitted assessment to its editors, with a reason.
    async fn return_assessment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> async_graphql::Result<GqlAssessment> {
        transition(ctx, id, Transition::Return, Some(reason)).await
    }

    /// Reopens an approved or archived assessment, clearing its approval.
    async fn reopen_assessment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> async_graphql::Result<GqlAssessment> {
        transition(ctx, id, Transition::Reopen, reason).await
    }

    async fn archive_assessment(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<GqlAssessment> {
        transition(ctx, id, Transition::Archive, None).await
    }

    /// Starts the next cycle of an assessment: a new one on the latest version of its template,
    /// with answers carried over until confirmed or changed.
    async fn start_next_cycle(
        &self,
        ctx: &Context<'_>,
        previous_id: ID,
        title: Option<String>,
        due_date: Option<String>,
    ) -> async_graphql::Result<GqlAssessment> {
        let actor = actor(ctx)?;
        let due = due_date.as_deref().map(|d| date("dueDate", d)).transpose()?;
        let a = assessments::start_next_cycle(state(ctx), actor, assessment_id(&previous_id)?, title.as_deref(), due)
            .await?;
        Ok(GqlAssessment::new(assessments::assessment(state(ctx), actor, a.id).await?))
    }

    /// Imports a JSON export (from this or another Attest) into a unit, as an archived assessment.
    async fn import_assessment(
        &self,
        ctx: &Context<'_>,
        unit_id: ID,
        document: String,
    ) -> async_graphql::Result<GqlAssessment> {
        let actor = actor(ctx)?;
        let a = assessments::import_assessment(state(ctx), actor, UnitId::parse(&unit_id)?, &document).await?;
        Ok(GqlAssessment::new(assessments::assessment(state(ctx), actor, a.id).await?))
    }
}

async fn transition(
    ctx: &Context<'_>,
    id: ID,
    t: Transition,
    reason: Option<String>,
) -> async_graphql::Result<GqlAssessment> {
    let actor = actor(ctx)?;
    let id = assessment_id(&id)?;
    assessments::transition(state(ctx), actor, id, t, reason.as_deref()).await?;
    Ok(GqlAssessment::new(assessments::assessment(state(ctx), actor, id).await?))
}
