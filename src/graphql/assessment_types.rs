//! GraphQL types of templates and assessments.
//!
//! A `GqlAssessment` is only ever built from an `assessments::Access`, that is, after the policy
//! allowed the caller to see it; its fields then load what they show through data loaders, which
//! batch the loads of a whole list into one query each.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{ComplexObject, Context, Enum, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::types::{GqlUnit, GqlUser};
use super::{actor, state};
use crate::assessments::{self, Access, Answer, AssessmentRole, Comment, Status, StoredTemplate, scoring};
use crate::clock::from_micros;
use crate::db;
use crate::error::AppError;
use crate::ids::{AssessmentId, TemplateId};
use crate::policy::Action;
use crate::state::AppState;
use crate::templates::{self, QuestionKind};

/// Batches the answers of many assessments into one query.
pub struct AnswersLoader(pub AppState);

impl Loader<AssessmentId> for AnswersLoader {
    type Value = Arc<Vec<Answer>>;
    type Error = Arc<AppErrorBox>;

    async fn load(&self, keys: &[AssessmentId]) -> Result<HashMap<AssessmentId, Self::Value>, Self::Error> {
        let rows = db::assessments::answers_of(&self.0.db.conn, keys).await.map_err(|e| Arc::new(AppErrorBox(e)))?;
        let mut out: HashMap<AssessmentId, Vec<Answer>> = keys.iter().map(|k| (*k, Vec::new())).collect();
        for (id, answer) in rows {
            out.entry(id).or_default().push(answer);
        }
        Ok(out.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
    }
}

/// Batches template loads; templates are immutable, so any copy is current.
pub struct TemplatesLoader(pub AppState);

impl Loader<TemplateId> for TemplatesLoader {
    type Value = Arc<StoredTemplate>;
    type Error = Arc<AppErrorBox>;

    async fn load(&self, keys: &[TemplateId]) -> Result<HashMap<TemplateId, Self::Value>, Self::Error> {
        let mut out = HashMap::new();
        for key in keys {
            if let Some(t) =
                self.0.db.templates.get(&self.0.db.conn, *key).await.map_err(|e| Arc::new(AppErrorBox(e)))?
            {
                out.insert(*key, t);
            }
        }
        Ok(out)
    }
}

/// An `AppError` carried through a data loader; shown to clients only through its conversion.
pub struct AppErrorBox(pub AppError);

fn loader_error(e: Arc<AppErrorBox>) -> async_graphql::Error {
    match Arc::try_unwrap(e) {
        Ok(b) => b.0.into(),
        Err(shared) => AppError::internal(anyhow::anyhow!("{}", crate::error::LogDisplay(&shared.0))).into(),
    }
}

pub fn loaders(state: &AppState) -> (DataLoader<AnswersLoader>, DataLoader<TemplatesLoader>) {
    (
        DataLoader::new(AnswersLoader(state.clone()), tokio::spawn),
        DataLoader::new(TemplatesLoader(state.clone()), tokio::spawn),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(name = "AssessmentStatus")]
pub enum GqlStatus {
    Draft,
    InProgress,
    Submitted,
    Approved,
    Returned,
    Archived,
}

impl From<Status> for GqlStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Draft => GqlStatus::Draft,
            Status::InProgress => GqlStatus::InProgress,
            Status::Submitted => GqlStatus::Submitted,
            Status::Approved => GqlStatus::Approved,
            Status::Returned => GqlStatus::Returned,
            Status::Archived => GqlStatus::Archived,
        }
    }
}

impl From<GqlStatus> for Status {
    fn from(s: GqlStatus) -> Self {
        match s {
            GqlStatus::Draft => Status::Draft,
            GqlStatus::InProgress => Status::InProgress,
            GqlStatus::Submitted => Status::Submitted,
            GqlStatus::Approved => Status::Approved,
            GqlStatus::Returned => Status::Returned,
            GqlStatus::Archived => Status::Archived,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(name = "AssessmentRole")]
pub enum GqlAssessmentRole {
    /// Answers questions.
    Editor,
    /// Comments, approves or returns.
    Reviewer,
    /// Reads.
    Viewer,
}

impl From<AssessmentRole> for GqlAssessmentRole {
    fn from(r: AssessmentRole) -> Self {
        match r {
            AssessmentRole::Editor => GqlAssessmentRole::Editor,
            AssessmentRole::Reviewer => GqlAssessmentRole::Reviewer,
            AssessmentRole::Viewer => GqlAssessmentRole::Viewer,
        }
    }
}

impl From<GqlAssessmentRole> for AssessmentRole {
    fn from(r: GqlAssessmentRole) -> Self {
        match r {
            GqlAssessmentRole::Editor => AssessmentRole::Editor,
            GqlAssessmentRole::Reviewer => AssessmentRole::Reviewer,
            GqlAssessmentRole::Viewer => AssessmentRole::Viewer,
        }
    }
}

// -------------------------------------------------------------------------------------------
// Templates

#[derive(Clone)]
pub struct GqlTemplate(pub Arc<StoredTemplate>);

#[Object(name = "Template")]
impl GqlTemplate {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Stays the same across versions.
    async fn key(&self) -> &str {
        &self.0.template.key
    }
    async fn version(&self) -> i32 {
        self.0.template.version
    }
    async fn title(&self) -> &str {
        &self.0.template.title
    }
    async fn description(&self) -> &str {
        &self.0.template.description
    }
    /// `readiness`, `risk` or `other`.
    async fn kind(&self) -> &str {
        self.0.template.kind.as_str()
    }
    async fn principles(&self) -> &[String] {
        &self.0.template.principles
    }
    /// Shipped with Attest rather than imported by the agency.
    async fn built_in(&self) -> bool {
        self.0.agency_id.is_none()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.created_at)
    }
    async fn sections(&self) -> Vec<GqlSection> {
        self.0.template.sections.iter().map(|s| GqlSection(s.clone())).collect()
    }
    /// Named score levels, lowest first.
    async fn score_levels(&self) -> Vec<ScoreLevel> {
        self.0
            .template
            .scoring
            .iter()
            .flat_map(|s| &s.levels)
            .map(|l| ScoreLevel { id: l.id.clone(), label: l.label.clone(), min: l.min })
            .collect()
    }
    async fn risk_model(&self) -> Option<RiskModel> {
        self.0.template.risk.as_ref().map(|r| RiskModel {
            likelihood: r.likelihood.iter().map(step).collect(),
            impact: r.impact.iter().map(step).collect(),
            levels: r.levels.iter().map(|l| RiskLevel { id: l.id.clone(), label: l.label.clone() }).collect(),
            matrix: r.matrix.clone(),
        })
    }
    /// The whole template document, in the import format.
    async fn document(&self) -> Json<serde_json::Value> {
        Json(serde_json::to_value(&self.0.template).unwrap_or_default())
    }
}

fn step(s: &templates::ScaleStep) -> ScaleStep {
    ScaleStep { value: s.value, label: s.label.clone(), description: s.description.clone() }
}

#[derive(SimpleObject)]
pub struct ScoreLevel {
    pub id: String,
    pub label: String,
    pub min: f64,
}

#[derive(SimpleObject)]
pub struct RiskModel {
    pub likelihood: Vec<ScaleStep>,
    pub impact: Vec<ScaleStep>,
    /// Lowest first.
    pub levels: Vec<RiskLevel>,
    /// `matrix[likelihood - 1][impact - 1]` is a level id.
    pub matrix: Vec<Vec<String>>,
}

#[derive(SimpleObject)]
pub struct ScaleStep {
    pub value: i32,
    pub label: String,
    pub description: String,
}

#[derive(SimpleObject)]
pub struct RiskLevel {
    pub id: String,
    pub label: String,
}

pub struct GqlSection(pub templates::Section);

#[Object(name = "TemplateSection")]
impl GqlSection {
    async fn id(&self) -> &str {
        &self.0.id
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn weight(&self) -> f64 {
        self.0.weight
    }
    async fn questions(&self) -> Vec<GqlQuestion> {
        self.0.questions.iter().map(|q| GqlQuestion(q.clone())).collect()
    }
}

pub struct GqlQuestion(pub templates::Question);

#[derive(SimpleObject)]
pub struct Choice {
    pub id: String,
    pub label: String,
    pub score: Option<f64>,
}

#[derive(SimpleObject)]
pub struct ShowIf {
    /// The question whose answer decides.
    pub question_id: String,
    /// The question is shown when that answer is one of these values.
    pub values: Vec<String>,
}

#[Object(name = "TemplateQuestion")]
impl GqlQuestion {
    /// Stable across versions of the template.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// `single_choice`, `multiple_choice`, `scale`, `yes_no`, `text`, `number`, `date` or `risk`.
    #[graphql(name = "type")]
    async fn kind(&self) -> &str {
        self.0.kind.name()
    }
    async fn prompt(&self) -> &str {
        &self.0.prompt
    }
    async fn guidance(&self) -> &str {
        &self.0.guidance
    }
    async fn required(&self) -> bool {
        self.0.required
    }
    async fn weight(&self) -> f64 {
        self.0.weight
    }
    async fn principles(&self) -> &[String] {
        &self.0.tags.principles
    }
    async fn lifecycle(&self) -> &[String] {
        &self.0.tags.lifecycle
    }
    async fn instrumental(&self) -> &[String] {
        &self.0.tags.instrumental
    }
    async fn show_if(&self) -> Option<ShowIf> {
        self.0.show_if.as_ref().map(|c| ShowIf { question_id: c.question.clone(), values: c.values.clone() })
    }
    /// Options of a choice question, or levels of a scale.
    async fn choices(&self) -> Vec<Choice> {
        self.0
            .kind
            .choices()
            .iter()
            .map(|c| Choice { id: c.id.clone(), label: c.label.clone(), score: c.score })
            .collect()
    }
    async fn min_selected(&self) -> Option<u32> {
        match &self.0.kind {
            QuestionKind::MultipleChoice { min_selected, .. } => *min_selected,
            _ => None,
        }
    }
    async fn max_selected(&self) -> Option<u32> {
        match &self.0.kind {
            QuestionKind::MultipleChoice { max_selected, .. } => *max_selected,
            _ => None,
        }
    }
    async fn max_length(&self) -> Option<u32> {
        match &self.0.kind {
            QuestionKind::Text { max_length } => *max_length,
            _ => None,
        }
    }
    async fn min(&self) -> Option<f64> {
        match &self.0.kind {
            QuestionKind::Number { min, .. } => *min,
            _ => None,
        }
    }
    async fn max(&self) -> Option<f64> {
        match &self.0.kind {
            QuestionKind::Number { max, .. } => *max,
            _ => None,
        }
    }
}

// -------------------------------------------------------------------------------------------
// Assessments

/// An assessment the caller may see, with its answers once a field has loaded them: `answers`,
/// `progress` and `riskRegister` of one object then share one load.
pub struct GqlAssessment(pub Access, tokio::sync::OnceCell<Arc<Vec<Answer>>>);

impl GqlAssessment {
    pub fn new(access: Access) -> Self {
        GqlAssessment(access, tokio::sync::OnceCell::new())
    }

    async fn answers_of(&self, ctx: &Context<'_>) -> async_graphql::Result<Arc<Vec<Answer>>> {
        let loaded = self
            .1
            .get_or_try_init(|| async {
                let loader = ctx.data_unchecked::<DataLoader<AnswersLoader>>();
                let answers = loader.load_one(self.0.assessment.id).await.map_err(loader_error)?;
                Ok::<_, async_graphql::Error>(answers.unwrap_or_default())
            })
            .await?;
        Ok(loaded.clone())
    }

    async fn template_of(&self, ctx: &Context<'_>) -> async_graphql::Result<Arc<StoredTemplate>> {
        let loader = ctx.data_unchecked::<DataLoader<TemplatesLoader>>();
        loader
            .load_one(self.0.assessment.template_id)
            .await
            .map_err(loader_error)?
            .ok_or_else(|| AppError::NotFound("template").into())
    }

    async fn evaluation(&self, ctx: &Context<'_>) -> async_graphql::Result<assessments::Evaluation> {
        let template = self.template_of(ctx).await?;
        let answers = self.answers_of(ctx).await?;
        Ok(assessments::evaluation(template, (*answers).clone()))
    }
}

#[Object(name = "Assessment")]
impl GqlAssessment {
    async fn id(&self) -> ID {
        ID(self.0.assessment.id.to_string())
    }
    async fn title(&self) -> &str {
        &self.0.assessment.title
    }
    /// What is assessed, for example the AI system.
    async fn subject(&self) -> &str {
        &self.0.assessment.subject
    }
    /// `YYYY-MM-DD`.
    async fn due_date(&self) -> Option<String> {
        self.0.assessment.due_date.map(|d| d.to_string())
    }
    async fn status(&self) -> GqlStatus {
        self.0.assessment.status.into()
    }
    async fn overdue(&self, ctx: &Context<'_>) -> bool {
        self.0.assessment.is_overdue(state(ctx).clock.now().date_naive())
    }
    async fn unit(&self, ctx: &Context<'_>) -> async_graphql::Result<GqlUnit> {
        Ok(GqlUnit(crate::agencies::unit(state(ctx), actor(ctx)?, self.0.assessment.unit_id).await?))
    }
    async fn template(&self, ctx: &Context<'_>) -> async_graphql::Result<GqlTemplate> {
        Ok(GqlTemplate(self.template_of(ctx).await?))
    }
    /// The assessment this one continues, in an earlier cycle.
    async fn previous_id(&self) -> Option<ID> {
        self.0.assessment.previous_id.map(|p| ID(p.to_string()))
    }
    async fn created_by(&self) -> ID {
        ID(self.0.assessment.created_by.to_string())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.assessment.created_at)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        from_micros(self.0.assessment.updated_at)
    }
    async fn approval(&self) -> Option<Approval> {
        self.0.assessment.approval.as_ref().map(|a| Approval {
            approved_by: ID(a.by.to_string()),
            approved_at: from_micros(a.at),
            head_seq: a.seq,
            head_hash: a.hash.clone(),
        })
    }
    /// Why the assessment was last returned, while it is returned.
    async fn return_reason(&self) -> Option<&str> {
        self.0.assessment.return_reason.as_deref()
    }
    /// The caller's own role on the assessment, if any.
    async fn my_role(&self) -> Option<GqlAssessmentRole> {
        self.0.role.map(Into::into)
    }
    /// What the caller may do here.
    async fn permissions(&self, ctx: &Context<'_>) -> async_graphql::Result<Permissions> {
        let actor = actor(ctx)?;
        let may = |a| assessments::may(actor, &self.0, a);
        Ok(Permissions {
            answer: may(Action::Answer),
            comment: may(Action::Comment),
            submit: may(Action::Submit),
            review: may(Action::Review),
            manage: may(Action::ManageAssessment),
            read_history: may(Action::ReadAssessmentLog),
        })
    }
    /// The key of the assessment's event stream.
    async fn stream(&self) -> String {
        crate::events::Stream::Assessment(self.0.assessment.id).key()
    }
    async fn members(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<AssessmentMember>> {
        let members = db::assessments::members(&state(ctx).db.conn, self.0.assessment.id).await?;
        Ok(members
            .into_iter()
            .map(|m| AssessmentMember { user_id: ID(m.user_id.to_string()), role: m.role.into() })
            .collect())
    }
    async fn assignments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SectionAssignment>> {
        let all = db::assessments::assignments(&state(ctx).db.conn, self.0.assessment.id).await?;
        Ok(all
            .into_iter()
            .map(|a| SectionAssignment { section_id: a.section_id, user_id: ID(a.user_id.to_string()) })
            .collect())
    }
    /// Every answer given so far, cleared ones included (with a null value).
    async fn answers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<GqlAnswer>> {
        Ok(self.answers_of(ctx).await?.iter().cloned().map(GqlAnswer).collect())
    }
    async fn answer(&self, ctx: &Context<'_>, question_id: String) -> async_graphql::Result<Option<GqlAnswer>> {
        Ok(self.answers_of(ctx).await?.iter().find(|a| a.question_id == question_id).cloned().map(GqlAnswer))
    }
    /// Comments, oldest first; on one question when given.
    async fn comments(&self, ctx: &Context<'_>, question_id: Option<String>) -> async_graphql::Result<Vec<GqlComment>> {
        let all = db::assessments::comments(&state(ctx).db.conn, self.0.assessment.id).await?;
        Ok(all
            .into_iter()
            .filter(|c| question_id.as_ref().is_none_or(|q| *q == c.question_id))
            .map(GqlComment)
            .collect())
    }
    /// Required questions answered, per section and overall, counting only questions shown; scores
    /// and levels where the template declares them.
    async fn progress(&self, ctx: &Context<'_>) -> async_graphql::Result<Progress> {
        let ev = self.evaluation(ctx).await?;
        Ok(progress(&ev.progress))
    }
    /// For a risk assessment: every risk item with its inherent and residual level.
    async fn risk_register(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<RiskRegister>> {
        let ev = self.evaluation(ctx).await?;
        Ok(ev.risk.map(risk_register))
    }
}

pub(super) fn risk_register(r: scoring::RiskRegister) -> RiskRegister {
    RiskRegister {
        items: r
            .items
            .into_iter()
            .map(|i| RiskItem {
                question_id: i.question_id,
                section_id: i.section_id,
                inherent: i.inherent.map(rating),
                residual: i.residual.map(rating),
                mitigations: i.mitigations,
            })
            .collect(),
        inherent_counts: r.inherent_counts.into_iter().map(|(level, count)| LevelCount { level, count }).collect(),
        residual_counts: r.residual_counts.into_iter().map(|(level, count)| LevelCount { level, count }).collect(),
        highest_residual: r.highest_residual,
    }
}

fn rating(r: scoring::Rating) -> Rating {
    Rating { likelihood: r.likelihood, impact: r.impact, level: r.level }
}

pub(super) fn progress(p: &scoring::Progress) -> Progress {
    Progress {
        shown: p.shown,
        answered: p.answered,
        required: p.required,
        required_answered: p.required_answered,
        score: p.score,
        level: p.level.clone(),
        sections: p
            .sections
            .iter()
            .map(|s| SectionProgress {
                section_id: s.section_id.clone(),
                shown: s.shown,
                answered: s.answered,
                required: s.required,
                required_answered: s.required_answered,
                score: s.score,
                level: s.level.clone(),
            })
            .collect(),
    }
}

#[derive(SimpleObject)]
pub struct Permissions {
    pub answer: bool,
    pub comment: bool,
    pub submit: bool,
    /// Approve or return.
    pub review: bool,
    /// Change details and people, reopen, archive.
    pub manage: bool,
    pub read_history: bool,
}

#[derive(SimpleObject)]
pub struct Approval {
    pub approved_by: ID,
    pub approved_at: DateTime<Utc>,
    /// The head of the assessment's event stream when it was approved: the exact state approved.
    pub head_seq: i64,
    pub head_hash: String,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct AssessmentMember {
    pub user_id: ID,
    pub role: GqlAssessmentRole,
}

#[ComplexObject]
impl AssessmentMember {
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<GqlUser>> {
        Ok(user_of(ctx, &self.user_id).await)
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct SectionAssignment {
    pub section_id: String,
    pub user_id: ID,
}

#[ComplexObject]
impl SectionAssignment {
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<GqlUser>> {
        Ok(user_of(ctx, &self.user_id).await)
    }
}

/// A colleague's name and email, as people on an assessment see each other.
async fn user_of(ctx: &Context<'_>, id: &ID) -> Option<GqlUser> {
    let id = crate::ids::UserId::parse(id).ok()?;
    let user = db::org::get_user(&state(ctx).db.conn, id).await.ok()??;
    let actor = actor(ctx).ok()?;
    (user.agency_id == actor.agency_id).then_some(GqlUser(user))
}

pub struct GqlAnswer(pub Answer);

#[Object(name = "Answer")]
impl GqlAnswer {
    async fn question_id(&self) -> &str {
        &self.0.question_id
    }
    /// The answer's value (null when cleared); its shape depends on the question's type.
    async fn value(&self) -> Option<Json<serde_json::Value>> {
        self.0.value.clone().map(Json)
    }
    async fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    /// Send this as `expectedRevision` to change the answer without overwriting someone else's.
    async fn revision(&self) -> i64 {
        self.0.revision
    }
    /// Carried over from an earlier cycle and not yet confirmed or changed.
    async fn carried_over(&self) -> bool {
        self.0.carried_over
    }
    /// A user id, or `system`.
    async fn updated_by(&self) -> &str {
        &self.0.updated_by
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        from_micros(self.0.updated_at)
    }
}

pub struct GqlComment(pub Comment);

#[derive(SimpleObject)]
pub struct CommentVersion {
    pub version: i32,
    pub body: String,
    pub written_at: DateTime<Utc>,
}

#[Object(name = "Comment")]
impl GqlComment {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn question_id(&self) -> &str {
        &self.0.question_id
    }
    /// The comment this one answers, in a thread.
    async fn parent_id(&self) -> Option<ID> {
        self.0.parent_id.map(|p| ID(p.to_string()))
    }
    async fn author_id(&self) -> &str {
        &self.0.author_id
    }
    async fn author_name(&self) -> &str {
        &self.0.author_name
    }
    async fn body(&self) -> &str {
        &self.0.body
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        from_micros(self.0.created_at)
    }
    async fn edited_at(&self) -> Option<DateTime<Utc>> {
        self.0.edited_at.map(from_micros)
    }
    async fn resolved(&self) -> bool {
        self.0.resolved
    }
    async fn resolved_by(&self) -> Option<&str> {
        self.0.resolved_by.as_deref()
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at.map(from_micros)
    }
    /// Every version of the text, the first included.
    async fn versions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<CommentVersion>> {
        let versions = assessments::comment_versions(state(ctx), actor(ctx)?, self.0.id).await?;
        Ok(versions
            .into_iter()
            .map(|v| CommentVersion { version: v.version, body: v.body, written_at: from_micros(v.written_at) })
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct SectionProgress {
    pub section_id: String,
    pub shown: i32,
    pub answered: i32,
    pub required: i32,
    pub required_answered: i32,
    pub score: Option<f64>,
    pub level: Option<String>,
}

#[derive(SimpleObject)]
pub struct Progress {
    pub shown: i32,
    pub answered: i32,
    pub required: i32,
    pub required_answered: i32,
    pub score: Option<f64>,
    pub level: Option<String>,
    pub sections: Vec<SectionProgress>,
}

#[derive(SimpleObject)]
pub struct Rating {
    pub likelihood: i32,
    pub impact: i32,
    pub level: String,
}

#[derive(SimpleObject)]
pub struct RiskItem {
    pub question_id: String,
    pub section_id: String,
    pub inherent: Option<Rating>,
    pub residual: Option<Rating>,
    pub mitigations: Option<String>,
}

#[derive(SimpleObject)]
pub struct LevelCount {
    pub level: String,
    pub count: i32,
}

#[derive(SimpleObject)]
pub struct RiskRegister {
    pub items: Vec<RiskItem>,
    pub inherent_counts: Vec<LevelCount>,
    pub residual_counts: Vec<LevelCount>,
    pub highest_residual: Option<String>,
}

#[derive(SimpleObject)]
pub struct StatusCount {
    pub status: GqlStatus,
    pub count: i32,
}

#[derive(SimpleObject)]
pub struct UnitSummary {
    pub unit: GqlUnit,
    /// 0 for the unit asked about, 1 for its children, and so on.
    pub depth: i32,
    pub by_status: Vec<StatusCount>,
    pub required_total: i64,
    pub required_answered: i64,
    /// Required questions answered over required questions shown, from 0 to 1 (1 when none).
    pub completion: f64,
    pub overdue: Vec<ID>,
    pub highest_residual: Option<String>,
}

impl From<assessments::UnitSummary> for UnitSummary {
    fn from(s: assessments::UnitSummary) -> Self {
        UnitSummary {
            completion: if s.required_total == 0 { 1.0 } else { s.required_answered as f64 / s.required_total as f64 },
            unit: GqlUnit(s.unit),
            depth: i32::try_from(s.depth).unwrap_or(i32::MAX),
            by_status: s
                .by_status
                .into_iter()
                .map(|(status, count)| StatusCount { status: status.into(), count })
                .collect(),
            required_total: s.required_total,
            required_answered: s.required_answered,
            overdue: s.overdue.into_iter().map(|id| ID(id.to_string())).collect(),
            highest_residual: s.highest_residual,
        }
    }
}
