//! Exports of an assessment (complete JSON, importable into another Attest for archiving; CSV
//! with one row per question) and the import of such a JSON export.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{
    Access, Answer, Assessment, Comment, CommentVersion, Fresh, Member, Status, StoredTemplate, assessment, evaluation,
    fresh, insert_new, load_template, publish_template, rfc3339, scoring, values,
};
use crate::auth::Actor;
use crate::db;
use crate::error::AppError;
use crate::events::{self, Stream};
use crate::ids::{AssessmentId, CommentId, UnitId};
use crate::policy::{self, Action, Resource};
use crate::state::AppState;
use crate::templates::{self, QuestionKind};

pub const FORMAT: &str = "attest.assessment/1";

/// The complete assessment as one JSON document: details, template, people, answers, comments
/// with their versions, and every event of its stream.
pub async fn export_json(state: &AppState, actor: &Actor, id: AssessmentId) -> Result<Value, AppError> {
    let Access { assessment: a, .. } = assessment(state, actor, id).await?;
    let conn = &state.db.conn;
    let template = load_template(state, conn, actor.agency_id, a.template_id).await?;
    let users = db::org::list_users(conn, a.agency_id).await?;
    let email = |id: &str| users.iter().find(|u| u.id.to_string() == id).map(|u| u.email.clone());
    let members = db::assessments::members(conn, id).await?;
    let assignments = db::assessments::assignments(conn, id).await?;
    let answers = db::assessments::answers(conn, id).await?;
    let mut comments = Vec::new();
    // Parents first, so that an import can link every reply; creation order otherwise.
    for c in super::parents_first(&db::assessments::comments(conn, id).await?) {
        let versions = db::assessments::comment_versions(conn, c.id).await?;
        comments.push(c.to_json(&versions));
    }
    let mut log = Vec::new();
    let stream = Stream::Assessment(id);
    let mut after = 0;
    loop {
        let page = events::page(conn, &stream, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        log.extend(page.into_iter().map(|e| {
            json!({ "stream": e.stream, "seq": e.seq, "type": e.kind, "actor": e.actor, "at": e.at,
                    "payload": e.payload, "prev_hash": e.prev_hash, "hash": e.hash })
        }));
    }
    Ok(json!({
        "format": FORMAT,
        "exported_at": rfc3339(state.clock.now_micros()),
        "assessment": {
            "id": a.id.to_string(),
            "unit_id": a.unit_id.to_string(),
            "title": a.title,
            "subject": a.subject,
            "due_date": a.due_date.map(|d| d.to_string()),
            "status": a.status.as_str(),
            "previous_id": a.previous_id.map(|p| p.to_string()),
            "created_by": a.created_by.to_string(),
            "created_at": rfc3339(a.created_at),
            "updated_at": rfc3339(a.updated_at),
            "approval": a.approval.as_ref().map(|x| json!({ "by": x.by.to_string(), "by_email": email(&x.by.to_string()), "at": rfc3339(x.at), "seq": x.seq, "hash": x.hash })),
            "return_reason": a.return_reason,
        },
        "template": template.template,
        "members": members.iter().map(|m| json!({ "user_id": m.user_id.to_string(), "email": email(&m.user_id.to_string()), "role": m.role.as_str() })).collect::<Vec<_>>(),
        "assignments": assignments.iter().map(|s| json!({ "section_id": s.section_id, "user_id": s.user_id.to_string(), "email": email(&s.user_id.to_string()) })).collect::<Vec<_>>(),
        "answers": answers.iter().map(Answer::to_json).collect::<Vec<_>>(),
        "comments": comments,
        "events": log,
    }))
}

/// One row per question: where it is, what it asks, whether it is shown, and its answer.
pub async fn export_csv(state: &AppState, actor: &Actor, id: AssessmentId) -> Result<String, AppError> {
    let Access { assessment: a, .. } = assessment(state, actor, id).await?;
    let template = load_template(state, &state.db.conn, actor.agency_id, a.template_id).await?;
    let answers = db::assessments::answers(&state.db.conn, id).await?;
    let users = db::org::list_users(&state.db.conn, a.agency_id).await?;
    let ev = evaluation(template, answers);
    let values: scoring::Values<'_> =
        ev.answers.iter().filter_map(|x| x.value.as_ref().map(|v| (x.question_id.as_str(), v))).collect();
    let shown = scoring::visible(&ev.template.template, &values);
    let mut out = String::new();
    let header = [
        "section_id",
        "section",
        "question_id",
        "prompt",
        "type",
        "required",
        "shown",
        "answer",
        "score",
        "note",
        "revision",
        "carried_over",
        "updated_by",
        "updated_at",
    ];
    push_row(&mut out, header.iter().map(|s| (*s).to_owned()));
    for (section, q) in ev.template.template.questions() {
        let answer = ev.answers.iter().find(|x| x.question_id == q.id);
        let value = answer.and_then(|x| x.value.as_ref());
        let who = answer.map(|x| {
            users
                .iter()
                .find(|u| u.id.to_string() == x.updated_by)
                .map_or_else(|| x.updated_by.clone(), |u| u.email.clone())
        });
        push_row(
            &mut out,
            [
                section.id.clone(),
                section.title.clone(),
                q.id.clone(),
                q.prompt.clone(),
                q.kind.name().to_owned(),
                q.required.to_string(),
                shown.contains(q.id.as_str()).to_string(),
                value.map(|v| render(&ev.template, q, v)).unwrap_or_default(),
                value.and_then(|v| scoring::question_score(q, v)).map(|s| s.to_string()).unwrap_or_default(),
                answer.and_then(|x| x.note.clone()).unwrap_or_default(),
                answer.map(|x| x.revision.to_string()).unwrap_or_default(),
                answer.map(|x| x.carried_over.to_string()).unwrap_or_default(),
                who.unwrap_or_default(),
                answer.map(|x| rfc3339(x.updated_at)).unwrap_or_default(),
            ],
        );
    }
    Ok(out)
}

/// A readable form of an answer: labels rather than ids, ratings with their levels.
fn render(t: &StoredTemplate, q: &templates::Question, v: &Value) -> String {
    let label =
        |id: &str| q.kind.choices().iter().find(|c| c.id == id).map_or_else(|| id.to_owned(), |c| c.label.clone());
    match &q.kind {
        QuestionKind::SingleChoice { .. } | QuestionKind::Scale { .. } => v.as_str().map(label).unwrap_or_default(),
        QuestionKind::MultipleChoice { .. } => v
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(label).collect::<Vec<_>>().join("; "))
            .unwrap_or_default(),
        QuestionKind::Risk => {
            let rating = |name: &str| {
                let r = v.get(name)?;
                let (l, i) = (r.get("likelihood")?.as_i64()?, r.get("impact")?.as_i64()?);
                let level = t.template.risk.as_ref()?.level(i32::try_from(l).ok()?, i32::try_from(i).ok()?)?;
                Some(format!("{name} {l}x{i} ({})", level.label))
            };
            let mut parts: Vec<String> = ["inherent", "residual"].iter().filter_map(|n| rating(n)).collect();
            if let Some(m) = v.get("mitigations").and_then(Value::as_str) {
                parts.push(format!("mitigations: {m}"));
            }
            parts.join("; ")
        }
        _ => match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

/// Appends one CSV row (RFC 4180). A cell that a spreadsheet would run as a formula is
/// prefixed with an apostrophe.
fn push_row(out: &mut String, cells: impl IntoIterator<Item = String>) {
    let row: Vec<String> = cells
        .into_iter()
        .map(|cell| {
            let cell = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell };
            if cell.contains([',', '"', '\n', '\r']) { format!("\"{}\"", cell.replace('"', "\"\"")) } else { cell }
        })
        .collect();
    out.push_str(&row.join(","));
    out.push_str("\r\n");
}

fn field<'a>(v: &'a Value, path: &str) -> Result<&'a Value, AppError> {
    path.split('.')
        .try_fold(v, |v, key| v.get(key))
        .ok_or_else(|| AppError::invalid("document", format!("missing {path}")))
}

fn text(v: &Value, path: &str) -> Result<String, AppError> {
    field(v, path)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| AppError::invalid("document", format!("{path}: expected text")))
}

fn time(v: &Value, path: &str) -> Result<i64, AppError> {
    let s = text(v, path)?;
    chrono::DateTime::parse_from_rfc3339(&s)
        .map(|t| t.timestamp_micros())
        .map_err(|_| AppError::invalid("document", format!("{path}: not an RFC 3339 time")))
}

/// Imports a JSON export as an archived assessment in a unit: the template (published for the
/// agency unless an identical one exists), the answers, the comments with their versions, and the
/// people whose email belongs to the agency. The original history stays in the document; the new
/// stream records the import and each imported answer and comment.
pub async fn import_assessment(
    state: &AppState,
    actor: &Actor,
    unit: UnitId,
    document: &str,
) -> Result<Assessment, AppError> {
    let units = db::org::list_units(&state.db.conn, actor.agency_id).await?;
    if !units.iter().any(|u| u.id == unit) {
        return Err(AppError::NotFound("unit"));
    }
    let ancestry = crate::agencies::ancestry(&units, unit);
    policy::authorize(actor, Action::ManageAssessment, Resource::in_unit(actor.agency_id, &ancestry, None))?;
    let doc: Value =
        serde_json::from_str(document).map_err(|e| AppError::invalid("document", format!("not JSON: {e}")))?;
    if doc.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(AppError::invalid("document", format!("expected an export in format {FORMAT}")));
    }
    let template_source = serde_json::to_string(field(&doc, "template")?).map_err(AppError::internal)?;
    let template = templates::parse(&template_source)
        .map_err(|e| AppError::InvalidDocument { field: "document.template".into(), problems: e.0 })?;
    let users = db::org::list_users(&state.db.conn, actor.agency_id).await?;
    let by_email = |e: Option<&str>| e.and_then(|e| users.iter().find(|u| u.email == e)).map(|u| u.id);

    let mut answers = Vec::new();
    for (i, a) in field(&doc, "answers")?.as_array().into_iter().flatten().enumerate() {
        let path = format!("answers[{i}]");
        let question_id = text(a, "question_id")?;
        let q = template
            .question(&question_id)
            .ok_or_else(|| AppError::invalid("document", format!("{path}: unknown question \"{question_id}\"")))?;
        let value = match a.get("value") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                values::check(q, template.risk.as_ref(), v)
                    .map_err(|r| AppError::invalid("document", format!("{path}: {r}")))?,
            ),
        };
        answers.push(Answer {
            question_id,
            value,
            note: a.get("note").and_then(Value::as_str).map(str::to_owned),
            revision: a.get("revision").and_then(Value::as_i64).unwrap_or(1).max(1),
            carried_over: a.get("carried_over").and_then(Value::as_bool).unwrap_or(false),
            updated_by: text(a, "updated_by")?,
            updated_at: time(a, "updated_at")?,
        });
    }
    let id = AssessmentId::new();
    let mut comment_ids: HashMap<String, CommentId> = HashMap::new();
    let mut comments = Vec::new();
    for (i, c) in field(&doc, "comments")?.as_array().into_iter().flatten().enumerate() {
        let path = format!("comments[{i}]");
        let new_id = CommentId::new();
        comment_ids.insert(text(c, "id")?, new_id);
        let question_id = text(c, "question_id")?;
        if template.question(&question_id).is_none() {
            return Err(AppError::invalid("document", format!("{path}: unknown question \"{question_id}\"")));
        }
        let parent_id =
            match c.get("parent_id").and_then(Value::as_str) {
                Some(p) => Some(*comment_ids.get(p).ok_or_else(|| {
                    AppError::invalid("document", format!("{path}: parent comes later or is missing"))
                })?),
                None => None,
            };
        let versions: Vec<(i32, String, i64)> = c
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| {
                Ok((
                    i32::try_from(v.get("version").and_then(Value::as_i64).unwrap_or(1)).unwrap_or(1),
                    text(v, "body")?,
                    time(v, "written_at")?,
                ))
            })
            .collect::<Result<_, AppError>>()?;
        comments.push((
            Comment {
                id: new_id,
                assessment_id: id,
                question_id,
                parent_id,
                author_id: text(c, "author_id")?,
                author_name: text(c, "author_name")?,
                body: text(c, "body")?,
                version: i32::try_from(c.get("version").and_then(Value::as_i64).unwrap_or(1)).unwrap_or(1),
                created_at: time(c, "created_at")?,
                edited_at: c.get("edited_at").and_then(Value::as_str).map(|_| time(c, "edited_at")).transpose()?,
                resolved: c.get("resolved").and_then(Value::as_bool).unwrap_or(false),
                resolved_by: c.get("resolved_by").and_then(Value::as_str).map(str::to_owned),
                resolved_at: c
                    .get("resolved_at")
                    .and_then(Value::as_str)
                    .map(|_| time(c, "resolved_at"))
                    .transpose()?,
            },
            versions,
        ));
    }
    let members: Vec<Member> = field(&doc, "members")?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let user_id = by_email(m.get("email").and_then(Value::as_str))?;
            let role = super::AssessmentRole::parse(m.get("role")?.as_str()?).ok()?;
            Some(Member { user_id, role })
        })
        .collect();
    let source = field(&doc, "assessment")?;
    let title =
        crate::agencies::parse_name("document.assessment.title", &text(source, "title")?, super::MAX_TITLE_CHARS)?;
    let due_date = source
        .get("due_date")
        .and_then(Value::as_str)
        .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))
        .transpose()
        .map_err(|_| AppError::invalid("document", "assessment.due_date: not a date"))?;

    let stored = publish_template(state, actor.agency_id, actor.event_actor(), template).await?;
    let stream = Stream::Assessment(id);
    let tx = events::begin(&state.db, &stream).await?;
    let now = tx.now(&state.clock);
    let subject = source.get("subject").and_then(Value::as_str).unwrap_or_default().to_owned();
    let fields = Fresh {
        id,
        unit_id: unit,
        template: &stored,
        title,
        subject,
        due_date,
        status: Status::Archived,
        previous_id: None,
    };
    let a = fresh(actor, now, fields, &answers);
    let events_in_doc = field(&doc, "events").ok().and_then(Value::as_array);
    let import = json!({
        "source_assessment_id": source.get("id"),
        "source_status": source.get("status"),
        "source_approval": source.get("approval"),
        "source_head": events_in_doc.and_then(|e| e.last()).map(|e| json!({ "seq": e.get("seq"), "hash": e.get("hash") })),
        "document_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(document.as_bytes())),
    });
    insert_new(state, &tx, actor.event_actor(), &a, &stored, &members, Some(import)).await?;
    for answer in &answers {
        db::assessments::upsert_answer(&*tx, id, answer).await?;
        events::append(&tx, &state.clock, &stream, "answer.imported", actor.event_actor(), answer.to_json()).await?;
    }
    for (comment, versions) in &comments {
        let first = Comment {
            body: versions.first().map_or_else(|| comment.body.clone(), |v| v.1.clone()),
            version: versions.first().map_or(comment.version, |v| v.0),
            edited_at: None,
            ..comment.clone()
        };
        db::assessments::insert_comment(&*tx, &first).await?;
        for (version, body, at) in versions.iter().skip(1) {
            let next = Comment { body: body.clone(), version: *version, edited_at: Some(*at), ..comment.clone() };
            db::assessments::update_comment(&*tx, &next, true).await?;
        }
        db::assessments::update_comment(&*tx, comment, false).await?;
        events::append(
            &tx,
            &state.clock,
            &stream,
            "comment.imported",
            actor.event_actor(),
            comment_payload(comment, versions),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(a)
}

/// The payload of `comment.imported`: the whole comment with the versions exactly as they were
/// stored above (the first written at the comment's creation), so that replay restores them.
fn comment_payload(comment: &Comment, versions: &[(i32, String, i64)]) -> Value {
    let mut kept = vec![CommentVersion {
        comment_id: comment.id,
        version: versions.first().map_or(comment.version, |v| v.0),
        body: versions.first().map_or_else(|| comment.body.clone(), |v| v.1.clone()),
        written_at: comment.created_at,
    }];
    kept.extend(versions.iter().skip(1).map(|(version, body, at)| CommentVersion {
        comment_id: comment.id,
        version: *version,
        body: body.clone(),
        written_at: *at,
    }));
    comment.to_json(&kept)
}
