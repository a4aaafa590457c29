//! Assessments: created from a template version in a unit, co-edited by their people, reviewed
//! and signed off. Every change appends an event to the assessment's stream
//! (`assessment:<id>`) in the same transaction.

mod exchange;
pub mod scoring;
mod types;
pub mod values;

use std::sync::Arc;

use chrono::NaiveDate;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

pub use exchange::{export_csv, export_json, import_assessment};
pub use types::*;

use crate::agencies::{self, parse_name};
use crate::auth::Actor;
use crate::db;
use crate::error::AppError;
use crate::events::{self, EventActor, Stream};
use crate::ids::{AssessmentId, CommentId, TemplateId, UnitId, UserId};
use crate::policy::{self, Action, Resource};
use crate::state::AppState;
use crate::templates::{self, Template};

pub const MAX_TITLE_CHARS: usize = 300;
pub const MAX_NOTE_CHARS: usize = 10_000;
pub const MAX_COMMENT_CHARS: usize = 10_000;
pub const MAX_REASON_CHARS: usize = 5_000;

pub(crate) fn rfc3339(m: i64) -> String {
    crate::clock::from_micros(m).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

// ---------------------------------------------------------------------------------------------
// Templates

/// Installs the built-in templates that are not yet in the database. Runs on every start, so a
/// new built-in version arrives with the binary that carries it.
pub async fn install_builtin_templates(state: &AppState) -> Result<usize, AppError> {
    let mut installed = 0;
    for (name, source) in templates::BUILTIN {
        let template = templates::parse(source).map_err(|e| {
            AppError::internal(anyhow::anyhow!("built-in template {name} is invalid: {}", e.0.join("; ")))
        })?;
        let tx = state.db.begin_write().await?;
        if db::assessments::find_template(&*tx, None, &template.key, template.version).await?.is_some() {
            continue;
        }
        let stored =
            StoredTemplate { id: TemplateId::new(), agency_id: None, template, created_at: state.clock.now_micros() };
        db::assessments::insert_template(&*tx, &stored).await?;
        tx.commit().await?;
        installed += 1;
    }
    Ok(installed)
}

/// Validates a template document and, unless `check_only`, publishes it for the actor's agency.
/// Every problem is reported; any problem rejects the whole document.
pub async fn import_template(
    state: &AppState,
    actor: &Actor,
    source: &str,
    check_only: bool,
) -> Result<Option<StoredTemplate>, AppError> {
    policy::authorize(actor, Action::ManageTemplates, Resource::agency(actor.agency_id))?;
    if source.len() > 2 * 1024 * 1024 {
        return Err(AppError::invalid("source", "a template document is limited to 2 MiB"));
    }
    let template =
        templates::parse(source).map_err(|e| AppError::InvalidDocument { field: "source".into(), problems: e.0 })?;
    if check_only {
        return Ok(None);
    }
    publish_template(state, actor.agency_id, actor.event_actor(), template).await.map(Some)
}

/// Publishes a checked template for an agency. A published version is immutable: the same key
/// and version again is refused unless the document is identical, in which case the existing
/// template is returned.
pub async fn publish_template(
    state: &AppState,
    agency: crate::ids::AgencyId,
    by: EventActor,
    template: Template,
) -> Result<StoredTemplate, AppError> {
    let stream = Stream::Agency(agency);
    let tx = events::begin(&state.db, &stream).await?;
    if let Some(existing) = db::assessments::find_template(&*tx, Some(agency), &template.key, template.version).await? {
        if existing.template == template {
            return Ok(existing);
        }
        return Err(AppError::invalid(
            "source",
            format!(
                "version {} of \"{}\" is already published and cannot change; publish a new version",
                template.version, template.key
            ),
        ));
    }
    let stored =
        StoredTemplate { id: TemplateId::new(), agency_id: Some(agency), template, created_at: tx.now(&state.clock) };
    db::assessments::insert_template(&*tx, &stored).await?;
    let document = serde_json::to_value(&stored.template).map_err(AppError::internal)?;
    let digest =
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(serde_jcs::to_vec(&document).map_err(AppError::internal)?));
    events::append(
        &tx,
        &state.clock,
        &stream,
        "template.published",
        by,
        json!({
            "template_id": stored.id.to_string(),
            "key": stored.template.key,
            "version": stored.template.version,
            "title": stored.template.title,
            "document_sha256": digest,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(stored)
}

pub async fn templates(state: &AppState, actor: &Actor) -> Result<Vec<StoredTemplate>, AppError> {
    policy::authorize(actor, Action::ViewAgency, Resource::agency(actor.agency_id))?;
    db::assessments::list_templates(&state.db.conn, actor.agency_id).await
}

/// A template the actor's agency may use: built in or its own.
pub async fn template(state: &AppState, actor: &Actor, id: TemplateId) -> Result<Arc<StoredTemplate>, AppError> {
    policy::authorize(actor, Action::ViewAgency, Resource::agency(actor.agency_id))?;
    load_template(state, &state.db.conn, actor.agency_id, id).await
}

async fn load_template(
    state: &AppState,
    conn: &impl ConnectionTrait,
    agency: crate::ids::AgencyId,
    id: TemplateId,
) -> Result<Arc<StoredTemplate>, AppError> {
    match state.db.templates.get(conn, id).await? {
        Some(t) if t.agency_id.is_none_or(|a| a == agency) => Ok(t),
        _ => Err(AppError::NotFound("template")),
    }
}

// ---------------------------------------------------------------------------------------------
// Access

/// An assessment with what the policy needs to decide about it.
pub struct Access {
    pub assessment: Assessment,
    pub ancestry: Vec<UnitId>,
    pub role: Option<AssessmentRole>,
}

impl Access {
    fn resource(&self) -> Resource<'_> {
        Resource::in_unit(self.assessment.agency_id, &self.ancestry, self.role)
    }
}

/// Loads an assessment for the actor (not found for another agency's) and checks the action.
async fn access(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    id: AssessmentId,
    action: Action,
) -> Result<Access, AppError> {
    let (assessment, role, ancestry) = match db::assessments::assessment_access(conn, id, actor.user_id).await? {
        Some((a, role, ancestry)) if a.agency_id == actor.agency_id => (a, role, ancestry),
        _ => return Err(AppError::NotFound("assessment")),
    };
    let access = Access { assessment, ancestry, role };
    policy::authorize(actor, action, access.resource())?;
    Ok(access)
}

/// Begins a write to an assessment's answers: the stream's head locked, the assessment loaded
/// for the actor and checked for `action`, and its answers read. On PostgreSQL that is one
/// statement, so one round trip after `BEGIN`, where it would be three; on SQLite one request to
/// the database's worker thread.
async fn begin_answering(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    action: Action,
) -> Result<(db::WriteTx, Access, Vec<Answer>), AppError> {
    let key = Stream::Assessment(id).key();
    let tx = state.db.begin_write().await?;
    let loaded = db::assessments::for_answer(&*tx, &key, id, actor.user_id, true).await?;
    let loaded =
        loaded.filter(|l| l.assessment.agency_id == actor.agency_id).ok_or(AppError::NotFound("assessment"))?;
    let (seq, hash) = match &loaded.head {
        Some(head) => head.clone(),
        None => db::events::lock_head(&*tx, &key).await?,
    };
    tx.set_head(&key, seq, &hash);
    if !loaded.fresh {
        // Another writer committed while this one waited for the lock: read again.
        let access = access(&*tx, actor, id, action).await?;
        let answers = db::assessments::answers(&*tx, id).await?;
        return Ok((tx, access, answers));
    }
    let (access, answers) = authorized_for_answer(actor, action, loaded)?;
    Ok((tx, access, answers))
}

/// What `db::assessments::for_answer` read, if the actor may take `action` on it: the access and
/// the answers.
fn authorized_for_answer(
    actor: &Actor,
    action: Action,
    loaded: db::assessments::ForAnswer,
) -> Result<(Access, Vec<Answer>), AppError> {
    let access = Access { assessment: loaded.assessment, ancestry: loaded.ancestry, role: loaded.role };
    policy::authorize(actor, action, access.resource())?;
    Ok((access, loaded.answers))
}

/// The assessment, if the actor may see it.
pub async fn assessment(state: &AppState, actor: &Actor, id: AssessmentId) -> Result<Access, AppError> {
    access(&state.db.conn, actor, id, Action::ViewAssessment).await
}

/// Whether the actor may take an action on an assessment already loaded with `assessment`.
pub fn may(actor: &Actor, access: &Access, action: Action) -> bool {
    policy::authorize(actor, action, access.resource()).is_ok()
}

fn ensure_not_locked(a: &Assessment) -> Result<(), AppError> {
    if a.status.is_locked() {
        return Err(AppError::Conflict(format!(
            "the assessment is {}; it must be reopened before it can change",
            a.status.as_str()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Creating and changing assessments

pub struct NewAssessment {
    pub unit_id: UnitId,
    pub template_id: TemplateId,
    pub title: String,
    pub subject: String,
    pub due_date: Option<NaiveDate>,
    pub members: Vec<Member>,
}

pub async fn create_assessment(state: &AppState, actor: &Actor, new: NewAssessment) -> Result<Assessment, AppError> {
    let units = db::org::list_units(&state.db.conn, actor.agency_id).await?;
    if !units.iter().any(|u| u.id == new.unit_id) {
        return Err(AppError::NotFound("unit"));
    }
    let ancestry = agencies::ancestry(&units, new.unit_id);
    policy::authorize(actor, Action::ManageAssessment, Resource::in_unit(actor.agency_id, &ancestry, None))?;
    let title = parse_name("title", &new.title, MAX_TITLE_CHARS)?;
    let subject = new.subject.trim().to_owned();
    if subject.chars().count() > MAX_TITLE_CHARS {
        return Err(AppError::invalid("subject", format!("must be at most {MAX_TITLE_CHARS} characters")));
    }
    let template = load_template(state, &state.db.conn, actor.agency_id, new.template_id)
        .await
        .map_err(|_| AppError::invalid("templateId", "no such template"))?;
    let id = AssessmentId::new();
    let tx = events::begin(&state.db, &Stream::Assessment(id)).await?;
    let now = tx.now(&state.clock);
    let assessment = fresh(
        actor,
        now,
        Fresh {
            id,
            unit_id: new.unit_id,
            template: &template,
            title,
            subject,
            due_date: new.due_date,
            status: Status::Draft,
            previous_id: None,
        },
        &[],
    );
    insert_new(state, &tx, actor.event_actor(), &assessment, &template, &new.members, None).await?;
    tx.commit().await?;
    Ok(assessment)
}

/// Inserts a new assessment with its people, and its creation event.
async fn insert_new(
    state: &AppState,
    tx: &db::WriteTx,
    by: EventActor,
    a: &Assessment,
    template: &StoredTemplate,
    members: &[Member],
    extra: Option<Value>,
) -> Result<(), AppError> {
    db::assessments::insert_assessment(&**tx, a).await?;
    for m in members {
        match db::org::get_user(&**tx, m.user_id).await? {
            Some(u) if u.agency_id == a.agency_id => db::assessments::upsert_member(&**tx, a.id, m).await?,
            _ => return Err(AppError::invalid("members", format!("no such user {}", m.user_id))),
        }
    }
    let mut payload = json!({
        "assessment_id": a.id.to_string(),
        "agency_id": a.agency_id.to_string(),
        "unit_id": a.unit_id.to_string(),
        "template_id": template.id.to_string(),
        "template_key": template.template.key,
        "template_version": template.template.version,
        "title": a.title,
        "subject": a.subject,
        "due_date": a.due_date.map(|d| d.to_string()),
        "previous_id": a.previous_id.map(|p| p.to_string()),
        "members": members.iter().map(|m| json!({ "user_id": m.user_id.to_string(), "role": m.role.as_str() })).collect::<Vec<_>>(),
    });
    if let (Some(extra), Some(obj)) = (extra, payload.as_object_mut()) {
        obj.insert("import".into(), extra);
    }
    events::append(tx, &state.clock, &Stream::Assessment(a.id), "assessment.created", by, payload).await?;
    Ok(())
}

/// Changes to an assessment's details; `None` leaves a field as it is.
#[derive(Default)]
pub struct DetailsChange {
    pub title: Option<String>,
    pub subject: Option<String>,
    /// `Some(None)` removes the due date.
    pub due_date: Option<Option<NaiveDate>>,
}

pub async fn update_details(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    change: DetailsChange,
) -> Result<Assessment, AppError> {
    let tx = events::begin(&state.db, &Stream::Assessment(id)).await?;
    let Access { assessment: before, .. } = access(&*tx, actor, id, Action::ManageAssessment).await?;
    ensure_not_locked(&before)?;
    let mut after = before.clone();
    if let Some(title) = &change.title {
        after.title = parse_name("title", title, MAX_TITLE_CHARS)?;
    }
    if let Some(subject) = &change.subject {
        let subject = subject.trim();
        if subject.chars().count() > MAX_TITLE_CHARS {
            return Err(AppError::invalid("subject", format!("must be at most {MAX_TITLE_CHARS} characters")));
        }
        after.subject = subject.to_owned();
    }
    if let Some(due) = change.due_date {
        after.due_date = due;
    }
    if after == before {
        return Ok(before);
    }
    after.updated_at = tx.now(&state.clock);
    db::assessments::update_assessment(&*tx, &after).await?;
    let view = |a: &Assessment| json!({ "title": a.title, "subject": a.subject, "due_date": a.due_date.map(|d| d.to_string()) });
    events::append(
        &tx,
        &state.clock,
        &Stream::Assessment(id),
        "assessment.details_changed",
        actor.event_actor(),
        json!({ "before": view(&before), "after": view(&after) }),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Gives a person a role on the assessment, changes it, or (with `None`) removes it.
pub async fn set_member(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    user_id: UserId,
    role: Option<AssessmentRole>,
) -> Result<Vec<Member>, AppError> {
    let tx = events::begin(&state.db, &Stream::Assessment(id)).await?;
    let access = access(&*tx, actor, id, Action::ManageAssessment).await?;
    ensure_not_locked(&access.assessment)?;
    match db::org::get_user(&*tx, user_id).await? {
        Some(u) if u.agency_id == actor.agency_id => {}
        _ => return Err(AppError::invalid("userId", "no such user")),
    }
    let before = db::assessments::member_role(&*tx, id, user_id).await?;
    if before == role {
        return db::assessments::members(&*tx, id).await;
    }
    match role {
        Some(role) => db::assessments::upsert_member(&*tx, id, &Member { user_id, role }).await?,
        None => db::assessments::delete_member(&*tx, id, user_id).await?,
    }
    events::append(
        &tx,
        &state.clock,
        &Stream::Assessment(id),
        "member.changed",
        actor.event_actor(),
        json!({
            "user_id": user_id.to_string(),
            "before": { "role": before.map(|r| r.as_str()) },
            "after": { "role": role.map(|r| r.as_str()) },
        }),
    )
    .await?;
    let members = db::assessments::members(&*tx, id).await?;
    tx.commit().await?;
    Ok(members)
}

/// Assigns a section to an editor of the assessment, or withdraws the assignment.
pub async fn assign_section(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    section_id: &str,
    user_id: UserId,
    assigned: bool,
) -> Result<Vec<SectionAssignment>, AppError> {
    let tx = events::begin(&state.db, &Stream::Assessment(id)).await?;
    let access = access(&*tx, actor, id, Action::ManageAssessment).await?;
    ensure_not_locked(&access.assessment)?;
    let template = load_template(state, &*tx, actor.agency_id, access.assessment.template_id).await?;
    if !template.template.sections.iter().any(|s| s.id == section_id) {
        return Err(AppError::invalid("sectionId", "no such section in this assessment's template"));
    }
    if assigned && db::assessments::member_role(&*tx, id, user_id).await? != Some(AssessmentRole::Editor) {
        return Err(AppError::invalid("userId", "sections can only be assigned to the assessment's editors"));
    }
    let a = SectionAssignment { assessment_id: id, section_id: section_id.to_owned(), user_id };
    if db::assessments::set_assignment(&*tx, &a, assigned).await? {
        events::append(
            &tx,
            &state.clock,
            &Stream::Assessment(id),
            if assigned { "section.assigned" } else { "section.unassigned" },
            actor.event_actor(),
            json!({ "section_id": section_id, "user_id": user_id.to_string() }),
        )
        .await?;
    }
    let all = db::assessments::assignments(&*tx, id).await?;
    tx.commit().await?;
    Ok(all)
}

// ---------------------------------------------------------------------------------------------
// Answers

pub struct SetAnswer {
    pub assessment_id: AssessmentId,
    pub question_id: String,
    /// `None` clears the answer.
    pub value: Option<Value>,
    /// `None` keeps the note; `Some("")` removes it.
    pub note: Option<String>,
    /// The revision the writer last saw (0 for a question never answered). Without it, the write
    /// overwrites on purpose.
    pub expected_revision: Option<i64>,
}

/// Recomputes the progress summary kept on the assessment row.
pub(crate) fn refresh_summary(a: &mut Assessment, template: &Template, answers: &[Answer]) {
    let values: scoring::Values<'_> =
        answers.iter().filter_map(|ans| ans.value.as_ref().map(|v| (ans.question_id.as_str(), v))).collect();
    let progress = scoring::progress(template, &values);
    a.required_total = progress.required;
    a.required_answered = progress.required_answered;
    let register = scoring::risk_register(template, &values);
    a.highest_residual = register.as_ref().and_then(|r| r.highest_residual.clone());
    a.highest_residual_rank = register.and_then(|r| r.highest_residual_rank);
}

/// The details a new assessment starts with.
struct Fresh<'a> {
    id: AssessmentId,
    unit_id: UnitId,
    template: &'a StoredTemplate,
    title: String,
    subject: String,
    due_date: Option<NaiveDate>,
    status: Status,
    previous_id: Option<AssessmentId>,
}

/// A new assessment created by `actor` now, its progress summary computed from `answers`.
fn fresh(actor: &Actor, now: i64, f: Fresh<'_>, answers: &[Answer]) -> Assessment {
    let mut a = Assessment {
        id: f.id,
        agency_id: actor.agency_id,
        unit_id: f.unit_id,
        template_id: f.template.id,
        title: f.title,
        subject: f.subject,
        due_date: f.due_date,
        status: f.status,
        previous_id: f.previous_id,
        created_by: actor.user_id,
        created_at: now,
        updated_at: now,
        approval: None,
        return_reason: None,
        required_total: 0,
        required_answered: 0,
        highest_residual: None,
        highest_residual_rank: None,
    };
    refresh_summary(&mut a, &f.template.template, answers);
    a
}

/// Moves a draft or returned assessment to in progress when work starts on it again.
async fn resume_if_needed(
    state: &AppState,
    tx: &db::WriteTx,
    actor: &Actor,
    a: &mut Assessment,
) -> Result<(), AppError> {
    if let Some(before) = resume(a) {
        append_resumed(state, tx, actor, a.id, before).await?;
    }
    Ok(())
}

/// Moves a draft or returned assessment to in progress, as answering does; returns the status it
/// had, if it changed.
fn resume(a: &mut Assessment) -> Option<Status> {
    let before = a.status;
    matches!(before, Status::Draft | Status::Returned).then(|| {
        a.status = Status::InProgress;
        before
    })
}

/// Records that answering moved the assessment from `before` to in progress.
async fn append_resumed(
    state: &AppState,
    tx: &db::WriteTx,
    actor: &Actor,
    id: AssessmentId,
    before: Status,
) -> Result<(), AppError> {
    let payload =
        json!({ "before": { "status": before.as_str() }, "after": { "status": Status::InProgress.as_str() } });
    events::append(
        tx,
        &state.clock,
        &Stream::Assessment(id),
        "assessment.status_changed",
        actor.event_actor(),
        payload,
    )
    .await?;
    Ok(())
}

fn writable_for_answers(a: &Assessment) -> Result<(), AppError> {
    if a.status.accepts_answers() {
        Ok(())
    } else {
        Err(AppError::Conflict(format!(
            "answers cannot change while the assessment is {}",
            a.status.as_str().replace('_', " ")
        )))
    }
}

pub async fn set_answer(state: &AppState, actor: &Actor, input: SetAnswer) -> Result<Answer, AppError> {
    let id = input.assessment_id;
    if input.note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(AppError::invalid("note", format!("must be at most {MAX_NOTE_CHARS} characters")));
    }
    // A write first goes without holding the stream's head: one read, then one write that
    // appends the event only if the head has not moved since (see `events::append_alone`). On
    // PostgreSQL that is two round trips where a transaction holding the head locked takes four,
    // and no lock to wait for; on SQLite the writer's turn in the shared transaction is one trip
    // to the database's worker thread instead of four, and the read runs outside it, beside the
    // other writers. Should the head have moved, or should the answer also change the
    // assessment's status, the write is done again the locked way. So it is at once when this
    // process is already writing to the assessment: the head would most likely move meanwhile.
    let stream = Stream::Assessment(id);
    let writing = state.db.writing(&stream.key());
    if writing.alone()
        && let Some(answer) = set_answer_unlocked(state, actor, &input).await?
    {
        return Ok(answer);
    }
    let (tx, Access { assessment, .. }, all) = begin_answering(state, actor, id, Action::Answer).await?;
    let now = tx.now(&state.clock);
    let w = match plan_answer(state, &*tx, actor, &input, assessment, all, now).await? {
        AnswerPlan::Unchanged(answer) => return Ok(answer),
        AnswerPlan::Write(w) => w,
    };
    if let Some(before) = w.resumed_from {
        append_resumed(state, &tx, actor, id, before).await?;
    }
    events::append_with(&tx, &state.clock, &stream, w.kind, actor.event_actor(), w.payload, w.writes).await?;
    tx.commit().await?;
    Ok(w.answer)
}

/// `set_answer` without holding the stream's head: the answer written, or `None` when it must be
/// written the locked way. It starts from what this user's last write to the assessment left
/// (`db::assessments::AnswerStates`) when that was kept, and from a read otherwise. Only a write
/// may start from a kept state, since the write's place in the stream proves the state current:
/// should the kept state decide anything else (the answer is unchanged, the revision is stale,
/// the assessment is locked), the decision is taken again from a read.
async fn set_answer_unlocked(state: &AppState, actor: &Actor, input: &SetAnswer) -> Result<Option<Answer>, AppError> {
    let (id, stream) = (input.assessment_id, Stream::Assessment(input.assessment_id));
    let generation = state.db.org_generation();
    let mut kept = state.db.answer_states.take(id, actor.user_id, generation);
    loop {
        let from_kept = kept.is_some();
        let loaded = match kept.take() {
            Some(loaded) => loaded,
            None => {
                let loaded =
                    db::assessments::for_answer(&state.db.conn, &stream.key(), id, actor.user_id, false).await?;
                loaded.filter(|l| l.assessment.agency_id == actor.agency_id).ok_or(AppError::NotFound("assessment"))?
            }
        };
        let Some(head) = loaded.head.clone() else { return Ok(None) };
        let (access, all) = match authorized_for_answer(actor, Action::Answer, loaded) {
            Ok(found) => found,
            Err(_) if from_kept => continue,
            Err(err) => return Err(err),
        };
        let Access { assessment, ancestry, role } = access;
        let now = state.clock.now_micros();
        let w = match plan_answer(state, &state.db.conn, actor, input, assessment, all, now).await {
            Ok(AnswerPlan::Write(w)) if w.resumed_from.is_none() => w,
            Ok(_) | Err(_) if from_kept => continue,
            Ok(AnswerPlan::Unchanged(answer)) => return Ok(Some(answer)),
            Ok(AnswerPlan::Write(_)) => return Ok(None),
            Err(err) => return Err(err),
        };
        let AnswerWrite { answer, kind, payload, writes, after, .. } = *w;
        let written =
            events::append_alone(&state.db, now, &stream, head, kind, actor.event_actor(), payload, writes).await?;
        let Some(event) = written else { return Ok(None) };
        let (assessment, answers) = after;
        let left = db::assessments::ForAnswer {
            head: Some((event.seq, event.hash.clone())),
            fresh: true,
            assessment,
            role,
            ancestry,
            answers,
        };
        state.db.answer_states.put(id, actor.user_id, generation, left);
        return Ok(Some(answer));
    }
}

/// What `setAnswer` decided from the state it read.
enum AnswerPlan {
    /// Nothing changes: the answer as it stands.
    Unchanged(Answer),
    Write(Box<AnswerWrite>),
}

/// A change of answer: its event and the writes that record it.
struct AnswerWrite {
    answer: Answer,
    kind: &'static str,
    payload: Value,
    writes: Vec<db::Write>,
    /// The assessment's status before, when answering moves it to in progress: that change is an
    /// event of its own, before the answer's.
    resumed_from: Option<Status>,
    /// The assessment and all its answers once the write is done.
    after: (Assessment, Vec<Answer>),
}

/// Checks `input` against the template and the answers read, and works out the new answer and
/// everything its write changes, as of `now`. Reads only the (cached) template.
async fn plan_answer(
    state: &AppState,
    conn: &impl ConnectionTrait,
    actor: &Actor,
    input: &SetAnswer,
    mut a: Assessment,
    mut all: Vec<Answer>,
    now: crate::clock::Micros,
) -> Result<AnswerPlan, AppError> {
    writable_for_answers(&a)?;
    let template = load_template(state, conn, actor.agency_id, a.template_id).await?;
    let question = template.template.question(&input.question_id).ok_or_else(|| {
        AppError::invalid("questionId", format!("\"{}\" is not a question of this assessment", input.question_id))
    })?;
    let value = match &input.value {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            values::check(question, template.template.risk.as_ref(), v)
                .map_err(|reason| AppError::invalid("value", format!("question \"{}\": {reason}", question.id)))?,
        ),
    };
    // Every answer is read once: the one to change, and the rest for the progress summary.
    let current = all.iter().find(|c| c.question_id == question.id).cloned();
    let current_revision = current.as_ref().map_or(0, |c| c.revision);
    if let Some(expected) = input.expected_revision
        && expected != current_revision
    {
        let current_json = current.as_ref().map_or_else(
            || json!({ "question_id": question.id, "value": null, "note": null, "revision": 0 }),
            Answer::to_json,
        );
        return Err(AppError::StaleRevision { current: current_json });
    }
    let note = match &input.note {
        Some(n) if n.trim().is_empty() => None,
        Some(n) => Some(n.clone()),
        None => current.as_ref().and_then(|c| c.note.clone()),
    };
    if let Some(c) = &current
        && c.value == value
        && c.note == note
        && !c.carried_over
    {
        return Ok(AnswerPlan::Unchanged(c.clone()));
    }
    let answer = Answer {
        question_id: question.id.clone(),
        value,
        note,
        revision: current_revision + 1,
        carried_over: false,
        updated_by: actor.user_id.to_string(),
        updated_at: now,
    };
    let resumed_from = resume(&mut a);
    match all.iter_mut().find(|c| c.question_id == answer.question_id) {
        Some(slot) => *slot = answer.clone(),
        None => all.push(answer.clone()),
    }
    refresh_summary(&mut a, &template.template, &all);
    a.updated_at = now;
    let before = current
        .as_ref()
        .map(|c| json!({ "value": c.value, "note": c.note, "revision": c.revision, "carried_over": c.carried_over }));
    let payload = json!({
        "question_id": answer.question_id,
        "before": before,
        "after": { "value": answer.value, "note": answer.note, "revision": answer.revision, "carried_over": false },
    });
    // The answer and the assessment's row are written with the event that records them.
    let writes = vec![db::assessments::answer_write(a.id, &answer)?, db::assessments::progress_write(&a)];
    let kind = if answer.value.is_some() { "answer.set" } else { "answer.cleared" };
    Ok(AnswerPlan::Write(Box::new(AnswerWrite { answer, kind, payload, writes, resumed_from, after: (a, all) })))
}

/// Confirms an answer carried over from an earlier cycle, keeping its value.
pub async fn confirm_answer(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    question_id: &str,
    expected_revision: Option<i64>,
) -> Result<Answer, AppError> {
    let tx = events::begin(&state.db, &Stream::Assessment(id)).await?;
    let Access { assessment: mut a, .. } = access(&*tx, actor, id, Action::Answer).await?;
    writable_for_answers(&a)?;
    let Some(current) = db::assessments::get_answer(&*tx, id, question_id).await? else {
        return Err(AppError::invalid("questionId", "this question has no answer to confirm"));
    };
    if expected_revision.is_some_and(|e| e != current.revision) {
        return Err(AppError::StaleRevision { current: current.to_json() });
    }
    if !current.carried_over {
        return Ok(current);
    }
    let now = tx.now(&state.clock);
    let answer = Answer {
        revision: current.revision + 1,
        carried_over: false,
        updated_by: actor.user_id.to_string(),
        updated_at: now,
        ..current.clone()
    };
    resume_if_needed(state, &tx, actor, &mut a).await?;
    a.updated_at = now;
    let writes = vec![db::assessments::answer_write(id, &answer)?, db::assessments::progress_write(&a)];
    events::append_with(
        &tx,
        &state.clock,
        &Stream::Assessment(id),
        "answer.confirmed",
        actor.event_actor(),
        json!({ "question_id": question_id, "revision": answer.revision, "value": answer.value }),
        writes,
    )
    .await?;
    tx.commit().await?;
    Ok(answer)
}

pub async fn answers(state: &AppState, actor: &Actor, id: AssessmentId) -> Result<Vec<Answer>, AppError> {
    assessment(state, actor, id).await?;
    db::assessments::answers(&state.db.conn, id).await
}

// ---------------------------------------------------------------------------------------------
// Comments

pub async fn add_comment(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    question_id: &str,
    body: &str,
    parent: Option<CommentId>,
) -> Result<Comment, AppError> {
    let body = parse_body(body)?;
    let tx = events::begin(&state.db, &Stream::Assessment(id)).await?;
    let access = access(&*tx, actor, id, Action::Comment).await?;
    ensure_not_locked(&access.assessment)?;
    let template = load_template(state, &*tx, actor.agency_id, access.assessment.template_id).await?;
    if template.template.question(question_id).is_none() {
        return Err(AppError::invalid("questionId", format!("\"{question_id}\" is not a question of this assessment")));
    }
    if let Some(parent) = parent {
        match db::assessments::get_comment(&*tx, parent).await? {
            Some(p) if p.assessment_id == id && p.question_id == question_id => {}
            _ => return Err(AppError::invalid("parentId", "no such comment on this question")),
        }
    }
    let author = db::org::get_user(&*tx, actor.user_id).await?.ok_or(AppError::NotFound("user"))?;
    let comment = Comment {
        id: CommentId::new(),
        assessment_id: id,
        question_id: question_id.to_owned(),
        parent_id: parent,
        author_id: actor.user_id.to_string(),
        author_name: author.display_name,
        body,
        version: 1,
        created_at: tx.now(&state.clock),
        edited_at: None,
        resolved: false,
        resolved_by: None,
        resolved_at: None,
    };
    db::assessments::insert_comment(&*tx, &comment).await?;
    events::append(
        &tx,
        &state.clock,
        &Stream::Assessment(id),
        "comment.added",
        actor.event_actor(),
        json!({
            "comment_id": comment.id.to_string(),
            "question_id": question_id,
            "parent_id": parent.map(|p| p.to_string()),
            "author_name": comment.author_name,
            "body": comment.body,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(comment)
}

fn parse_body(body: &str) -> Result<String, AppError> {
    let body = body.trim();
    if body.is_empty() {
        return Err(AppError::invalid("body", "must not be empty"));
    }
    if body.chars().count() > MAX_COMMENT_CHARS {
        return Err(AppError::invalid("body", format!("must be at most {MAX_COMMENT_CHARS} characters")));
    }
    Ok(body.to_owned())
}

async fn load_comment(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    id: CommentId,
) -> Result<(Comment, Access), AppError> {
    let comment = db::assessments::get_comment(conn, id).await?.ok_or(AppError::NotFound("comment"))?;
    let access = access(conn, actor, comment.assessment_id, Action::ViewAssessment)
        .await
        .map_err(|e| if matches!(e, AppError::NotFound(_)) { AppError::NotFound("comment") } else { e })?;
    Ok((comment, access))
}

/// Edits a comment's text; only its author may, and earlier versions are kept.
pub async fn edit_comment(state: &AppState, actor: &Actor, id: CommentId, body: &str) -> Result<Comment, AppError> {
    let body = parse_body(body)?;
    let assessment_id =
        db::assessments::get_comment(&state.db.conn, id).await?.ok_or(AppError::NotFound("comment"))?.assessment_id;
    let tx = events::begin(&state.db, &Stream::Assessment(assessment_id)).await?;
    let (before, access) = load_comment(&*tx, actor, id).await?;
    policy::authorize(actor, Action::Comment, access.resource())?;
    if before.author_id != actor.user_id.to_string() {
        return Err(AppError::forbidden("only a comment's author may edit it"));
    }
    ensure_not_locked(&access.assessment)?;
    if before.body == body {
        return Ok(before);
    }
    let after = Comment { body, version: before.version + 1, edited_at: Some(tx.now(&state.clock)), ..before.clone() };
    db::assessments::update_comment(&*tx, &after, true).await?;
    events::append(
        &tx,
        &state.clock,
        &Stream::Assessment(assessment_id),
        "comment.edited",
        actor.event_actor(),
        json!({
            "comment_id": id.to_string(),
            "before": { "body": before.body, "version": before.version },
            "after": { "body": after.body, "version": after.version },
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Resolves a comment thread or reopens it.
pub async fn set_comment_resolved(
    state: &AppState,
    actor: &Actor,
    id: CommentId,
    resolved: bool,
) -> Result<Comment, AppError> {
    let assessment_id =
        db::assessments::get_comment(&state.db.conn, id).await?.ok_or(AppError::NotFound("comment"))?.assessment_id;
    let tx = events::begin(&state.db, &Stream::Assessment(assessment_id)).await?;
    let (before, access) = load_comment(&*tx, actor, id).await?;
    policy::authorize(actor, Action::Comment, access.resource())?;
    ensure_not_locked(&access.assessment)?;
    if before.resolved == resolved {
        return Ok(before);
    }
    let now = tx.now(&state.clock);
    let after = Comment {
        resolved,
        resolved_by: resolved.then(|| actor.user_id.to_string()),
        resolved_at: resolved.then_some(now),
        ..before.clone()
    };
    db::assessments::update_comment(&*tx, &after, false).await?;
    events::append(
        &tx,
        &state.clock,
        &Stream::Assessment(assessment_id),
        if resolved { "comment.resolved" } else { "comment.reopened" },
        actor.event_actor(),
        json!({ "comment_id": id.to_string() }),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn comments(state: &AppState, actor: &Actor, id: AssessmentId) -> Result<Vec<Comment>, AppError> {
    assessment(state, actor, id).await?;
    db::assessments::comments(&state.db.conn, id).await
}

pub async fn comment_versions(state: &AppState, actor: &Actor, id: CommentId) -> Result<Vec<CommentVersion>, AppError> {
    load_comment(&state.db.conn, actor, id).await?;
    db::assessments::comment_versions(&state.db.conn, id).await
}

// ---------------------------------------------------------------------------------------------
// Workflow

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// In progress (or returned) → submitted for review. Every required question shown must be
    /// answered.
    Submit,
    /// Submitted → approved, recording the approver and the head of the event log.
    Approve,
    /// Submitted → returned, with a reason.
    Return,
    /// Approved or archived → in progress, clearing the approval.
    Reopen,
    /// Any other status → archived.
    Archive,
}

impl Transition {
    fn action(self) -> Action {
        match self {
            Transition::Submit => Action::Submit,
            Transition::Approve | Transition::Return => Action::Review,
            Transition::Reopen | Transition::Archive => Action::ManageAssessment,
        }
    }

    fn event(self) -> &'static str {
        match self {
            Transition::Submit => "assessment.submitted",
            Transition::Approve => "assessment.approved",
            Transition::Return => "assessment.returned",
            Transition::Reopen => "assessment.reopened",
            Transition::Archive => "assessment.archived",
        }
    }
}

pub async fn transition(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    transition: Transition,
    reason: Option<&str>,
) -> Result<Assessment, AppError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
    if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return Err(AppError::invalid("reason", format!("must be at most {MAX_REASON_CHARS} characters")));
    }
    let stream = Stream::Assessment(id);
    let tx = events::begin(&state.db, &stream).await?;
    let Access { assessment: before, .. } = access(&*tx, actor, id, transition.action()).await?;
    let mut after = before.clone();
    let now = tx.now(&state.clock);
    let refuse = |what: &str| {
        Err(AppError::Conflict(format!(
            "an assessment that is {} cannot be {what}",
            before.status.as_str().replace('_', " ")
        )))
    };
    let mut payload = json!({ "before": { "status": before.status.as_str() } });
    match transition {
        Transition::Submit => {
            if !matches!(before.status, Status::InProgress | Status::Returned | Status::Draft) {
                return refuse("submitted");
            }
            let template = load_template(state, &*tx, before.agency_id, before.template_id).await?;
            let all = db::assessments::answers(&*tx, id).await?;
            refresh_summary(&mut after, &template.template, &all);
            let missing = after.required_total - after.required_answered;
            if missing > 0 {
                return Err(AppError::invalid(
                    "answers",
                    format!("{missing} required question(s) shown are not answered yet"),
                ));
            }
            after.status = Status::Submitted;
            after.return_reason = None;
        }
        Transition::Approve => {
            if before.status != Status::Submitted {
                return refuse("approved");
            }
            let (seq, hash) = db::events::head(&*tx, &stream.key())
                .await?
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("assessment {id} has no event stream")))?;
            after.status = Status::Approved;
            after.approval = Some(Approval { by: actor.user_id, at: now, seq, hash: hash.clone() });
            payload["approved_head"] = json!({ "seq": seq, "hash": hash });
        }
        Transition::Return => {
            if before.status != Status::Submitted {
                return refuse("returned");
            }
            let Some(reason) = &reason else {
                return Err(AppError::invalid("reason", "a returned assessment needs a reason"));
            };
            after.status = Status::Returned;
            after.return_reason = Some(reason.clone());
        }
        Transition::Reopen => {
            if !before.status.is_locked() {
                return refuse("reopened");
            }
            after.status = Status::InProgress;
            after.approval = None;
            if let Some(a) = &before.approval {
                payload["cleared_approval"] = json!({ "by": a.by.to_string(), "seq": a.seq, "hash": a.hash });
            }
        }
        Transition::Archive => {
            if before.status == Status::Archived {
                return refuse("archived");
            }
            after.status = Status::Archived;
        }
    }
    after.updated_at = now;
    payload["after"] = json!({ "status": after.status.as_str() });
    if let Some(reason) = &reason {
        payload["reason"] = json!(reason);
    }
    db::assessments::update_assessment(&*tx, &after).await?;
    events::append(&tx, &state.clock, &stream, transition.event(), actor.event_actor(), payload).await?;
    tx.commit().await?;
    Ok(after)
}

// ---------------------------------------------------------------------------------------------
// Next cycle

/// Starts a new assessment from an earlier one, on the latest version of its template. Answers
/// to questions that still exist, and whose values still fit them, are carried over and marked
/// so until someone confirms or changes them.
pub async fn start_next_cycle(
    state: &AppState,
    actor: &Actor,
    previous: AssessmentId,
    title: Option<&str>,
    due_date: Option<NaiveDate>,
) -> Result<Assessment, AppError> {
    let prev = access(&state.db.conn, actor, previous, Action::ManageAssessment).await?;
    let old_template = load_template(state, &state.db.conn, actor.agency_id, prev.assessment.template_id).await?;
    let latest = db::assessments::list_templates(&state.db.conn, actor.agency_id)
        .await?
        .into_iter()
        .filter(|t| t.template.key == old_template.template.key && t.agency_id == old_template.agency_id)
        .max_by_key(|t| t.template.version)
        .map_or(old_template, Arc::new);
    let title = match title {
        Some(t) => parse_name("title", t, MAX_TITLE_CHARS)?,
        None => prev.assessment.title.clone(),
    };
    let old_answers = db::assessments::answers(&state.db.conn, previous).await?;
    let members = db::assessments::members(&state.db.conn, previous).await?;
    let id = AssessmentId::new();
    let tx = events::begin(&state.db, &Stream::Assessment(id)).await?;
    let now = tx.now(&state.clock);
    let mut carried = Vec::new();
    for old in old_answers {
        let (Some(q), Some(v)) = (latest.template.question(&old.question_id), &old.value) else { continue };
        if let Ok(value) = values::check(q, latest.template.risk.as_ref(), v) {
            carried.push(Answer {
                question_id: old.question_id,
                value: Some(value),
                note: old.note,
                revision: 1,
                carried_over: true,
                updated_by: actor.user_id.to_string(),
                updated_at: now,
            });
        }
    }
    let a = fresh(
        actor,
        now,
        Fresh {
            id,
            unit_id: prev.assessment.unit_id,
            template: &latest,
            title,
            subject: prev.assessment.subject.clone(),
            due_date,
            status: Status::Draft,
            previous_id: Some(previous),
        },
        &carried,
    );
    insert_new(state, &tx, actor.event_actor(), &a, &latest, &members, None).await?;
    for answer in &carried {
        db::assessments::upsert_answer(&*tx, id, answer).await?;
        events::append(
            &tx,
            &state.clock,
            &Stream::Assessment(id),
            "answer.carried_over",
            actor.event_actor(),
            json!({
                "question_id": answer.question_id,
                "from_assessment": previous.to_string(),
                "after": { "value": answer.value, "note": answer.note, "revision": 1, "carried_over": true },
            }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(a)
}

// ---------------------------------------------------------------------------------------------
// Lists and dashboards

/// The assessments the actor may see, optionally only those in one unit's subtree.
pub async fn visible_assessments(
    state: &AppState,
    actor: &Actor,
    unit: Option<UnitId>,
) -> Result<Vec<Assessment>, AppError> {
    policy::authorize(actor, Action::ViewAgency, Resource::agency(actor.agency_id))?;
    let units = db::org::list_units(&state.db.conn, actor.agency_id).await?;
    let scope: Vec<UnitId> = match unit {
        Some(u) if units.iter().any(|x| x.id == u) => agencies::subtree(&units, u),
        Some(_) => return Err(AppError::NotFound("unit")),
        None => units.iter().map(|u| u.id).collect(),
    };
    let managed: Vec<UnitId> = if actor.is_admin {
        scope.clone()
    } else {
        actor
            .unit_roles
            .iter()
            .filter(|(_, r)| *r == agencies::UnitRole::Manager)
            .flat_map(|(u, _)| agencies::subtree(&units, *u))
            .filter(|u| scope.contains(u))
            .collect()
    };
    let mut out = db::assessments::assessments_in_units(&state.db.conn, &managed).await?;
    let memberships: Vec<AssessmentId> = db::assessments::memberships(&state.db.conn, actor.user_id)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !out.iter().any(|a| a.id == *id))
        .collect();
    let extra = db::assessments::get_assessments(&state.db.conn, &memberships).await?;
    out.extend(extra.into_iter().filter(|a| a.agency_id == actor.agency_id && scope.contains(&a.unit_id)));
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The sections assigned to the actor, with their assessments.
pub async fn my_assignments(state: &AppState, actor: &Actor) -> Result<Vec<(Assessment, String)>, AppError> {
    policy::authorize(actor, Action::ViewAgency, Resource::agency(actor.agency_id))?;
    let assignments = db::assessments::assignments_of_user(&state.db.conn, actor.user_id).await?;
    let ids: Vec<AssessmentId> = assignments.iter().map(|a| a.assessment_id).collect();
    let assessments = db::assessments::get_assessments(&state.db.conn, &ids).await?;
    Ok(assignments
        .into_iter()
        .filter_map(|s| assessments.iter().find(|a| a.id == s.assessment_id).map(|a| (a.clone(), s.section_id)))
        .filter(|(a, _)| a.agency_id == actor.agency_id)
        .collect())
}

/// One unit's line on the dashboard, over its whole subtree.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitSummary {
    pub unit: agencies::Unit,
    pub depth: usize,
    pub by_status: Vec<(Status, i32)>,
    pub required_total: i64,
    pub required_answered: i64,
    pub overdue: Vec<AssessmentId>,
    pub highest_residual: Option<String>,
}

/// The dashboard of a unit: the unit and each unit below it, each summarizing its own subtree.
/// One query for the units and one for the assessments, however large the agency.
pub async fn unit_dashboard(state: &AppState, actor: &Actor, unit: UnitId) -> Result<Vec<UnitSummary>, AppError> {
    let units = db::org::list_units(&state.db.conn, actor.agency_id).await?;
    if !units.iter().any(|u| u.id == unit) {
        return Err(AppError::NotFound("unit"));
    }
    let ancestry = agencies::ancestry(&units, unit);
    policy::authorize(actor, Action::ManageAssessment, Resource::in_unit(actor.agency_id, &ancestry, None))?;
    let tree = agencies::subtree(&units, unit);
    let all = db::assessments::assessments_in_units(&state.db.conn, &tree).await?;
    let today = state.clock.now().date_naive();
    let mut out = Vec::new();
    for u in &tree {
        let below = agencies::subtree(&units, *u);
        let mine: Vec<&Assessment> = all.iter().filter(|a| below.contains(&a.unit_id)).collect();
        let highest = mine
            .iter()
            .filter(|a| a.status != Status::Archived)
            .filter_map(|a| Some((a.highest_residual_rank?, a.highest_residual.clone()?)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, id)| id);
        out.push(UnitSummary {
            unit: units.iter().find(|x| x.id == *u).cloned().expect("the subtree holds only listed units"),
            depth: agencies::ancestry(&units, *u).len() - ancestry.len(),
            by_status: Status::ALL
                .iter()
                .map(|s| (*s, i32::try_from(mine.iter().filter(|a| a.status == *s).count()).unwrap_or(i32::MAX)))
                .collect(),
            required_total: mine
                .iter()
                .filter(|a| a.status != Status::Archived)
                .map(|a| i64::from(a.required_total))
                .sum(),
            required_answered: mine
                .iter()
                .filter(|a| a.status != Status::Archived)
                .map(|a| i64::from(a.required_answered))
                .sum(),
            overdue: mine.iter().filter(|a| a.is_overdue(today)).map(|a| a.id).collect(),
            highest_residual: highest,
        });
    }
    Ok(out)
}

/// Everything computed from an assessment's answers: progress, scores, the risk register.
pub struct Evaluation {
    pub template: Arc<StoredTemplate>,
    pub answers: Vec<Answer>,
    pub progress: scoring::Progress,
    pub risk: Option<scoring::RiskRegister>,
}

pub async fn evaluate(state: &AppState, actor: &Actor, id: AssessmentId) -> Result<Evaluation, AppError> {
    let access = assessment(state, actor, id).await?;
    let template = load_template(state, &state.db.conn, actor.agency_id, access.assessment.template_id).await?;
    let answers = db::assessments::answers(&state.db.conn, id).await?;
    Ok(evaluation(template, answers))
}

pub fn evaluation(template: Arc<StoredTemplate>, answers: Vec<Answer>) -> Evaluation {
    let values: scoring::Values<'_> =
        answers.iter().filter_map(|a| a.value.as_ref().map(|v| (a.question_id.as_str(), v))).collect();
    let progress = scoring::progress(&template.template, &values);
    let risk = scoring::risk_register(&template.template, &values);
    Evaluation { template, answers, progress, risk }
}

/// The template of an assessment the actor may see.
pub async fn template_of(state: &AppState, actor: &Actor, a: &Assessment) -> Result<Arc<StoredTemplate>, AppError> {
    load_template(state, &state.db.conn, actor.agency_id, a.template_id).await
}

pub async fn members(state: &AppState, actor: &Actor, id: AssessmentId) -> Result<Vec<Member>, AppError> {
    assessment(state, actor, id).await?;
    db::assessments::members(&state.db.conn, id).await
}

pub async fn assignments(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
) -> Result<Vec<SectionAssignment>, AppError> {
    assessment(state, actor, id).await?;
    db::assessments::assignments(&state.db.conn, id).await
}

/// A page of an assessment's event stream, for its reviewers, the unit's managers and
/// administrators.
pub async fn stream_events(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    after: i64,
    first: u64,
) -> Result<Vec<events::Event>, AppError> {
    access(&state.db.conn, actor, id, Action::ReadAssessmentLog).await?;
    events::page(&state.db.conn, &Stream::Assessment(id), after, first).await
}

/// Checks that the actor may read an assessment's log: its reviewers, the managers of its unit,
/// administrators.
pub async fn log_access(state: &AppState, actor: &Actor, id: AssessmentId) -> Result<Access, AppError> {
    access(&state.db.conn, actor, id, Action::ReadAssessmentLog).await
}

/// Checks an assessment's whole chain, for those who may read its log.
pub async fn verify_log(state: &AppState, actor: &Actor, id: AssessmentId) -> Result<events::Verification, AppError> {
    access(&state.db.conn, actor, id, Action::ReadAssessmentLog).await?;
    events::verify_stream(&state.db.conn, &Stream::Assessment(id).key()).await
}
