//! Replay: an assessment as it was at any point of its log, the timeline of its changes, the
//! difference between two points, and the rebuild of every current-state table from the log.
//! Everything here is computed by folding events (`fold`), never read from the current tables.

mod diff;
mod fold;
mod history;
mod rebuild;

pub use diff::{DiffEntry, diff_snapshots};
pub use fold::{Fold, FoldError, Snapshot, micros};
pub use history::{HistoryEntry, history_entries};
pub use rebuild::{RebuildReport, rebuild};

use sea_orm::ConnectionTrait;

use crate::assessments::{self, StoredTemplate};
use crate::auth::Actor;
use crate::db;
use crate::error::AppError;
use crate::events::{self, Event, Stream};
use crate::ids::AssessmentId;
use crate::state::AppState;

/// How many events are read from the database at a time.
const PAGE: u64 = 2000;

/// A point in an assessment's history.
#[derive(Clone, Copy, Debug)]
pub enum Point {
    /// Just after the event with this sequence number.
    Seq(i64),
    /// Just after the last event at or before this time (microseconds).
    Time(i64),
    /// After the last event.
    Head,
}

/// Reads every event of a stream in order, a page at a time, handing each to `visit`.
async fn scan(
    conn: &impl ConnectionTrait,
    stream: &Stream,
    mut visit: impl FnMut(&Event) -> Result<bool, AppError>,
) -> Result<(), AppError> {
    let mut after = 0;
    loop {
        let page = events::page(conn, stream, after, PAGE).await?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.seq;
        for event in &page {
            if !visit(event)? {
                return Ok(());
            }
        }
    }
}

fn broken(stream: &Stream, e: FoldError) -> AppError {
    AppError::internal(anyhow::anyhow!("the log of {} cannot be replayed: {e}", stream.key()))
}

/// Folds an assessment's stream up to `point`. The second value is the stream's last sequence.
async fn fold_until(conn: &impl ConnectionTrait, id: AssessmentId, point: Point) -> Result<(Fold, i64), AppError> {
    let stream = Stream::Assessment(id);
    let mut fold = Fold::new(&stream.key());
    let mut last = 0;
    let mut error = None;
    scan(conn, &stream, |e| {
        last = e.seq;
        let include = match point {
            Point::Seq(n) => e.seq <= n,
            Point::Time(t) => fold::micros(&e.at).is_ok_and(|at| at <= t),
            Point::Head => true,
        };
        if include && error.is_none() {
            error = fold.apply(e).err();
        }
        Ok(true)
    })
    .await?;
    if let Some(e) = error {
        return Err(broken(&stream, e));
    }
    Ok((fold, last))
}

async fn template(conn: &impl ConnectionTrait, fold: &Fold) -> Result<StoredTemplate, AppError> {
    let id = fold.template_id().ok_or_else(|| AppError::internal(anyhow::anyhow!("no creation event folded")))?;
    db::assessments::get_template(conn, id)
        .await?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("template {id} of a logged assessment is missing")))
}

/// Folds an assessment's whole stream, checking every hash on the way: the operator's and the
/// benchmark's entry point, with no authorization. `None` for a stream without a creation event.
pub async fn fold_assessment(conn: &impl ConnectionTrait, id: AssessmentId) -> Result<Option<Snapshot>, AppError> {
    let (fold, _) = fold_until(conn, id, Point::Head).await?;
    if fold.template_id().is_none() {
        return Ok(None);
    }
    let template = template(conn, &fold).await?;
    Ok(fold.snapshot(&template.template))
}

/// The assessment as it was at `point`, with its template, for those who may see it.
pub async fn assessment_at(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    point: Point,
) -> Result<(Snapshot, StoredTemplate), AppError> {
    assessments::assessment(state, actor, id).await?;
    let conn = &state.db.conn;
    let (fold, last) = fold_until(conn, id, point).await?;
    match point {
        Point::Seq(n) if n < 1 || n > last => {
            return Err(AppError::invalid("seq", format!("must be between 1 and {last}, the last event")));
        }
        Point::Time(_) if fold.seq() == 0 => {
            return Err(AppError::invalid("at", "the assessment did not exist yet at that time"));
        }
        _ => {}
    }
    let template = template(conn, &fold).await?;
    let snapshot = fold
        .snapshot(&template.template)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("assessment {id} has no creation event")))?;
    Ok((snapshot, template))
}

/// The timeline of an assessment's changes, optionally only those about one question.
pub async fn history(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    question: Option<&str>,
) -> Result<Vec<HistoryEntry>, AppError> {
    let access = assessments::assessment(state, actor, id).await?;
    let conn = &state.db.conn;
    let stream = Stream::Assessment(id);
    let mut events = Vec::new();
    let mut fold = Fold::new(&stream.key());
    let mut error = None;
    scan(conn, &stream, |e| {
        if error.is_none() {
            error = fold.apply(e).err();
        }
        events.push(e.clone());
        Ok(true)
    })
    .await?;
    if let Some(e) = error {
        return Err(broken(&stream, e));
    }
    let users = db::org::list_users(conn, access.assessment.agency_id).await?;
    Ok(history_entries(&events, &users, question))
}

/// What changed between two points, question by question.
pub async fn diff(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    from: i64,
    to: i64,
) -> Result<Vec<DiffEntry>, AppError> {
    assessments::assessment(state, actor, id).await?;
    if from > to {
        return Err(AppError::invalid("fromSeq", "must not be after toSeq"));
    }
    let conn = &state.db.conn;
    let stream = Stream::Assessment(id);
    let (mut fold, last) = fold_until(conn, id, Point::Seq(from)).await?;
    for (field, n) in [("fromSeq", from), ("toSeq", to)] {
        if n < 1 || n > last {
            return Err(AppError::invalid(field, format!("must be between 1 and {last}, the last event")));
        }
    }
    let template = template(conn, &fold).await?;
    let before = fold.snapshot(&template.template);
    let mut error = None;
    let mut after_seq = from;
    while after_seq < to {
        let page = events::page(conn, &stream, after_seq, PAGE).await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for e in page.iter().filter(|e| e.seq <= to) {
            if error.is_none() {
                error = fold.apply(e).err();
            }
        }
    }
    if let Some(e) = error {
        return Err(broken(&stream, e));
    }
    let after = fold.snapshot(&template.template);
    match (before, after) {
        (Some(before), Some(after)) => Ok(diff_snapshots(&before, &after)),
        _ => Err(AppError::internal(anyhow::anyhow!("assessment {id} has no creation event"))),
    }
}

/// Which events of an assessment's log to list.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    pub actor: Option<String>,
    pub types: Vec<String>,
    /// RFC 3339 times, microseconds, UTC: the format events are stored in, so that text order is
    /// time order.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A page of an assessment's events matching `filter`, for those who may read its log.
pub async fn log(
    state: &AppState,
    actor: &Actor,
    id: AssessmentId,
    filter: &LogFilter,
    after: i64,
    first: u64,
) -> Result<Vec<Event>, AppError> {
    assessments::log_access(state, actor, id).await?;
    db::events::filtered_page(&state.db.conn, &Stream::Assessment(id).key(), after, first, filter).await
}
