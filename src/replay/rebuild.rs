//! Recomputing the current-state tables of assessments from the log, or checking them against it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use sea_orm::ConnectionTrait;

use super::{Fold, Snapshot, scan};
use crate::db::{self, Db};
use crate::error::AppError;
use crate::events::{self, Stream};
use crate::ids::AssessmentId;

/// What a rebuild (or a check) found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RebuildReport {
    pub assessments: u64,
    pub events: u64,
    /// Every difference between the live tables and the state folded from the log, each naming
    /// the assessment and the row. Empty when they agree.
    pub differences: Vec<String>,
    /// Assessments whose rows were rewritten (always 0 for a check).
    pub rewritten: u64,
}

/// Folds every assessment's stream and compares the result with the live tables. Unless `check`,
/// an assessment that differs gets its rows replaced by the folded state, in a transaction that
/// holds its stream locked; an assessment row without any event is deleted.
pub async fn rebuild(db: &Db, check: bool) -> Result<RebuildReport, AppError> {
    let mut report = RebuildReport::default();
    let mut ids: BTreeSet<AssessmentId> = db::assessments::all_assessment_ids(&db.conn).await?.into_iter().collect();
    for stream in db::events::stream_keys(&db.conn, "assessment:").await? {
        if let Stream::Assessment(id) = Stream::parse(&stream)? {
            ids.insert(id);
        }
    }
    for id in ids {
        report.assessments += 1;
        let stream = Stream::Assessment(id);
        // A check reads without locking; a rebuild holds the stream so nobody writes meanwhile.
        let tx = if check { None } else { Some(events::begin(db, &stream).await?) };
        let differences = match &tx {
            Some(tx) => compare(&**tx, id, &mut report).await?,
            None => compare(&db.conn, id, &mut report).await?,
        };
        let Some((differences, folded)) = differences else { continue };
        report.differences.extend(differences);
        if let Some(tx) = tx {
            match &folded {
                Some(s) => {
                    let comments = crate::assessments::parents_first(&s.comments);
                    let rows = db::assessments::AssessmentRows {
                        assessment: &s.assessment,
                        members: &s.members,
                        assignments: &s.assignments,
                        answers: &s.answers,
                        comments: &comments,
                        versions: &s.comment_versions,
                    };
                    db::assessments::replace_assessment_rows(&*tx, &rows).await?;
                }
                None => {
                    db::assessments::delete_assessment_rows(&*tx, id).await?;
                    db::exec(&*tx, "DELETE FROM assessments WHERE id = $1", [id.to_string().into()]).await?;
                }
            }
            tx.commit().await?;
            report.rewritten += 1;
        }
    }
    Ok(report)
}

/// The differences for one assessment and its folded state (`None` without events), or `None`
/// when everything agrees.
async fn compare(
    conn: &impl ConnectionTrait,
    id: AssessmentId,
    report: &mut RebuildReport,
) -> Result<Option<(Vec<String>, Option<Snapshot>)>, AppError> {
    let stream = Stream::Assessment(id);
    let key = stream.key();
    let mut fold = Fold::new(&key);
    let mut error = None;
    scan(conn, &stream, |e| {
        report.events += 1;
        error = fold.apply(e).err();
        Ok(error.is_none())
    })
    .await?;
    if let Some(e) = error {
        // A broken chain cannot be rebuilt from: say so, and leave the rows as they are.
        return Err(AppError::internal(anyhow::anyhow!("the log of {key} cannot be replayed: {e}")));
    }
    let folded = match fold.template_id() {
        Some(template_id) => {
            let template = db::assessments::get_template(conn, template_id)
                .await?
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("template {template_id} of {key} is missing")))?;
            fold.snapshot(&template.template)
        }
        None => None,
    };
    let mut out = Vec::new();
    let live = db::assessments::get_assessment(conn, id).await?;
    match (&live, &folded) {
        (None, None) => return Ok(None),
        (Some(_), None) => out.push(format!("{key}: the assessment row has no events in the log")),
        (None, Some(_)) => out.push(format!("{key}: the assessment row is missing")),
        (Some(live), Some(s)) if *live != s.assessment => {
            out.push(format!("{key}: assessment row differs: live {live:?}, from the log {:?}", s.assessment));
        }
        _ => {}
    }
    let (mut f_members, f_assignments, f_answers, f_comments, f_versions) = match &folded {
        Some(s) => (
            s.members.clone(),
            s.assignments.clone(),
            s.answers.clone(),
            s.comments.clone(),
            s.comment_versions.clone(),
        ),
        None => Default::default(),
    };
    let mut members = db::assessments::members(conn, id).await?;
    members.sort_by_key(|m| m.user_id.to_string());
    f_members.sort_by_key(|m| m.user_id.to_string());
    rows(&mut out, &key, "member", &members, &f_members, |m| m.user_id.to_string());
    let assignments = db::assessments::assignments(conn, id).await?;
    rows(&mut out, &key, "assignment", &assignments, &f_assignments, |a| format!("{}/{}", a.section_id, a.user_id));
    let answers = db::assessments::answers(conn, id).await?;
    rows(&mut out, &key, "answer", &answers, &f_answers, |a| a.question_id.clone());
    let comments = db::assessments::comments(conn, id).await?;
    rows(&mut out, &key, "comment", &comments, &f_comments, |c| c.id.to_string());
    let versions = db::assessments::assessment_comment_versions(conn, id).await?;
    rows(&mut out, &key, "comment version", &versions, &f_versions, |v| format!("{}#{}", v.comment_id, v.version));
    if out.is_empty() { Ok(None) } else { Ok(Some((out, folded))) }
}

/// Describes each row that is missing, extra or different, by key.
fn rows<T: PartialEq + Debug>(
    out: &mut Vec<String>,
    stream: &str,
    what: &str,
    live: &[T],
    folded: &[T],
    key: impl Fn(&T) -> String,
) {
    let live: BTreeMap<String, &T> = live.iter().map(|r| (key(r), r)).collect();
    let folded: BTreeMap<String, &T> = folded.iter().map(|r| (key(r), r)).collect();
    for (k, l) in &live {
        match folded.get(k) {
            None => out.push(format!("{stream}: {what} {k} is in the tables but not in the log")),
            Some(f) if f != l => out.push(format!("{stream}: {what} {k} differs: live {l:?}, from the log {f:?}")),
            _ => {}
        }
    }
    for k in folded.keys().filter(|k| !live.contains_key(*k)) {
        out.push(format!("{stream}: {what} {k} is in the log but missing from the tables"));
    }
}
