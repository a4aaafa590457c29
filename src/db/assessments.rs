//! Queries of templates, assessments, members, section assignments, answers and comments.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, Set,
};

use super::entities::{answer, assessment, assessment_member, comment, comment_version, section_assignment, template};
use super::{Write, stmt};
use crate::assessments::{
    Answer, Approval, Assessment, AssessmentRole, Comment, CommentVersion, Member, SectionAssignment, Status,
    StoredTemplate,
};
use crate::error::AppError;
use crate::ids::{AgencyId, AssessmentId, CommentId, TemplateId, UnitId, UserId};

/// The scope of built-in templates, which every agency may use.
const BUILTIN: &str = "builtin";

fn corrupt(what: &str) -> AppError {
    AppError::internal(anyhow::anyhow!("a stored {what} row is not valid"))
}

fn template_from(m: template::Model) -> Result<StoredTemplate, AppError> {
    Ok(StoredTemplate {
        id: TemplateId::parse(&m.id).map_err(|_| corrupt("template"))?,
        agency_id: if m.scope == BUILTIN {
            None
        } else {
            Some(AgencyId::parse(&m.scope).map_err(|_| corrupt("template"))?)
        },
        template: serde_json::from_str(&m.document).map_err(|_| corrupt("template"))?,
        created_at: m.created_at,
    })
}

pub async fn insert_template(conn: &impl ConnectionTrait, t: &StoredTemplate) -> Result<(), AppError> {
    template::ActiveModel {
        id: Set(t.id.to_string()),
        scope: Set(t.agency_id.map_or_else(|| BUILTIN.to_owned(), |a| a.to_string())),
        key: Set(t.template.key.clone()),
        version: Set(t.template.version),
        title: Set(t.template.title.clone()),
        kind: Set(t.template.kind.as_str().to_owned()),
        document: Set(serde_json::to_string(&t.template).map_err(AppError::internal)?),
        created_at: Set(t.created_at),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn get_template(conn: &impl ConnectionTrait, id: TemplateId) -> Result<Option<StoredTemplate>, AppError> {
    template::Entity::find_by_id(id.to_string()).one(conn).await?.map(template_from).transpose()
}

/// Parsed templates by id. A stored template never changes, so a parsed copy stays current on
/// every server; without it each answer would read and parse its template's whole document
/// (about 50 KB for the readiness questionnaire), which costs more than the write itself.
/// Bounded by the number of templates in the database.
#[derive(Clone, Default)]
pub struct TemplateCache(Arc<RwLock<HashMap<TemplateId, Arc<StoredTemplate>>>>);

impl TemplateCache {
    pub async fn get(
        &self,
        conn: &impl ConnectionTrait,
        id: TemplateId,
    ) -> Result<Option<Arc<StoredTemplate>>, AppError> {
        if let Some(t) = self.0.read().unwrap_or_else(PoisonError::into_inner).get(&id) {
            return Ok(Some(t.clone()));
        }
        let Some(t) = get_template(conn, id).await? else { return Ok(None) };
        let t = Arc::new(t);
        self.0.write().unwrap_or_else(PoisonError::into_inner).insert(id, t.clone());
        Ok(Some(t))
    }
}

/// A template with this key and version, built in or of the agency.
pub async fn find_template(
    conn: &impl ConnectionTrait,
    agency: Option<AgencyId>,
    key: &str,
    version: i32,
) -> Result<Option<StoredTemplate>, AppError> {
    let mut scopes = vec![BUILTIN.to_owned()];
    scopes.extend(agency.map(|a| a.to_string()));
    template::Entity::find()
        .filter(template::Column::Scope.is_in(scopes))
        .filter(template::Column::Key.eq(key))
        .filter(template::Column::Version.eq(version))
        .one(conn)
        .await?
        .map(template_from)
        .transpose()
}

/// Built-in templates and the agency's own, by key then version.
pub async fn list_templates(conn: &impl ConnectionTrait, agency: AgencyId) -> Result<Vec<StoredTemplate>, AppError> {
    let rows = template::Entity::find()
        .filter(template::Column::Scope.is_in([BUILTIN.to_owned(), agency.to_string()]))
        .order_by_asc(template::Column::Key)
        .order_by_asc(template::Column::Version)
        .all(conn)
        .await?;
    rows.into_iter().map(template_from).collect()
}

fn assessment_from(m: assessment::Model) -> Result<Assessment, AppError> {
    let bad = |_| corrupt("assessment");
    let approval = match (m.approved_by, m.approved_at, m.approved_seq, m.approved_hash) {
        (Some(by), Some(at), Some(seq), Some(hash)) => {
            Some(Approval { by: UserId::parse(&by).map_err(bad)?, at, seq, hash })
        }
        _ => None,
    };
    Ok(Assessment {
        id: AssessmentId::parse(&m.id).map_err(bad)?,
        agency_id: AgencyId::parse(&m.agency_id).map_err(bad)?,
        unit_id: UnitId::parse(&m.unit_id).map_err(bad)?,
        template_id: TemplateId::parse(&m.template_id).map_err(bad)?,
        title: m.title,
        subject: m.subject,
        due_date: m
            .due_date
            .as_deref()
            .map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d"))
            .transpose()
            .map_err(|_| corrupt("assessment"))?,
        status: Status::parse(&m.status).map_err(bad)?,
        previous_id: m.previous_id.as_deref().map(AssessmentId::parse).transpose().map_err(bad)?,
        created_by: UserId::parse(&m.created_by).map_err(bad)?,
        created_at: m.created_at,
        updated_at: m.updated_at,
        approval,
        return_reason: m.return_reason,
        required_total: m.required_total,
        required_answered: m.required_answered,
        highest_residual: m.highest_residual,
        highest_residual_rank: m.highest_residual_rank,
    })
}

fn assessment_model(a: &Assessment) -> assessment::ActiveModel {
    assessment::ActiveModel {
        id: Set(a.id.to_string()),
        agency_id: Set(a.agency_id.to_string()),
        unit_id: Set(a.unit_id.to_string()),
        template_id: Set(a.template_id.to_string()),
        title: Set(a.title.clone()),
        subject: Set(a.subject.clone()),
        due_date: Set(a.due_date.map(|d| d.format("%Y-%m-%d").to_string())),
        status: Set(a.status.as_str().to_owned()),
        previous_id: Set(a.previous_id.map(|p| p.to_string())),
        created_by: Set(a.created_by.to_string()),
        created_at: Set(a.created_at),
        updated_at: Set(a.updated_at),
        approved_by: Set(a.approval.as_ref().map(|x| x.by.to_string())),
        approved_at: Set(a.approval.as_ref().map(|x| x.at)),
        approved_seq: Set(a.approval.as_ref().map(|x| x.seq)),
        approved_hash: Set(a.approval.as_ref().map(|x| x.hash.clone())),
        return_reason: Set(a.return_reason.clone()),
        required_total: Set(a.required_total),
        required_answered: Set(a.required_answered),
        highest_residual: Set(a.highest_residual.clone()),
        highest_residual_rank: Set(a.highest_residual_rank),
    }
}

pub async fn insert_assessment(conn: &impl ConnectionTrait, a: &Assessment) -> Result<(), AppError> {
    assessment_model(a).insert(conn).await?;
    Ok(())
}

/// Writes every column of the assessment.
pub async fn update_assessment(conn: &impl ConnectionTrait, a: &Assessment) -> Result<(), AppError> {
    assessment_model(a).update(conn).await?;
    Ok(())
}

pub async fn get_assessment(conn: &impl ConnectionTrait, id: AssessmentId) -> Result<Option<Assessment>, AppError> {
    assessment::Entity::find_by_id(id.to_string()).one(conn).await?.map(assessment_from).transpose()
}

pub async fn get_assessments(conn: &impl ConnectionTrait, ids: &[AssessmentId]) -> Result<Vec<Assessment>, AppError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let rows = assessment::Entity::find().filter(assessment::Column::Id.is_in(ids)).all(conn).await?;
    rows.into_iter().map(assessment_from).collect()
}

/// The assessments of the given units, newest first. One query, however many units.
pub async fn assessments_in_units(conn: &impl ConnectionTrait, units: &[UnitId]) -> Result<Vec<Assessment>, AppError> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = units.iter().map(|u| u.to_string()).collect();
    let rows = assessment::Entity::find()
        .filter(assessment::Column::UnitId.is_in(ids))
        .order_by_desc(assessment::Column::CreatedAt)
        .order_by_asc(assessment::Column::Id)
        .all(conn)
        .await?;
    rows.into_iter().map(assessment_from).collect()
}

pub async fn members(conn: &impl ConnectionTrait, id: AssessmentId) -> Result<Vec<Member>, AppError> {
    let rows = assessment_member::Entity::find()
        .filter(assessment_member::Column::AssessmentId.eq(id.to_string()))
        .order_by_asc(assessment_member::Column::UserId)
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|m| {
            Ok(Member {
                user_id: UserId::parse(&m.user_id).map_err(|_| corrupt("member"))?,
                role: AssessmentRole::parse(&m.role).map_err(|_| corrupt("member"))?,
            })
        })
        .collect()
}

/// The assessments a user holds a role on, with that role.
pub async fn memberships(
    conn: &impl ConnectionTrait,
    user: UserId,
) -> Result<Vec<(AssessmentId, AssessmentRole)>, AppError> {
    let rows = assessment_member::Entity::find()
        .filter(assessment_member::Column::UserId.eq(user.to_string()))
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|m| {
            Ok((
                AssessmentId::parse(&m.assessment_id).map_err(|_| corrupt("member"))?,
                AssessmentRole::parse(&m.role).map_err(|_| corrupt("member"))?,
            ))
        })
        .collect()
}

/// What an access check needs, in one query: the assessment, the user's role on it, and its
/// unit with the unit's ancestors, nearest first.
pub async fn assessment_access(
    conn: &impl ConnectionTrait,
    id: AssessmentId,
    user: UserId,
) -> Result<Option<(Assessment, Option<AssessmentRole>, Vec<UnitId>)>, AppError> {
    // The depth bound only guards against a cycle, which the unit rules already prevent.
    const SQL: &str = "WITH RECURSIVE chain (unit, parent, depth) AS ( \
        SELECT u.id, u.parent_id, 0 FROM units u JOIN assessments a ON a.unit_id = u.id WHERE a.id = $1 \
        UNION ALL SELECT u.id, u.parent_id, chain.depth + 1 FROM units u JOIN chain ON u.id = chain.parent \
        WHERE chain.depth < 1000) \
        SELECT a.*, m.role AS member_role, chain.unit AS ancestor FROM assessments a \
        LEFT JOIN assessment_members m ON m.assessment_id = a.id AND m.user_id = $2 \
        LEFT JOIN chain ON 1 = 1 WHERE a.id = $3 ORDER BY chain.depth";
    let values = [id.to_string().into(), user.to_string().into(), id.to_string().into()];
    let rows = conn.query_all_raw(stmt(conn.get_database_backend(), SQL, values)).await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let a = assessment_from(assessment::Model::from_query_result(first, "")?)?;
    let role = first.try_get::<Option<String>>("", "member_role")?;
    let role = role.map(|r| AssessmentRole::parse(&r).map_err(|_| corrupt("member"))).transpose()?;
    let mut ancestry = vec![a.unit_id];
    for row in rows.iter().skip(1) {
        let Some(unit) = row.try_get::<Option<String>>("", "ancestor")? else { break };
        let unit = UnitId::parse(&unit).map_err(|_| corrupt("unit"))?;
        if ancestry.contains(&unit) {
            break;
        }
        ancestry.push(unit);
    }
    Ok(Some((a, role, ancestry)))
}

/// What the last answer write of a user to an assessment in this process left behind, as its
/// next write would read it (`for_answer`), so that the next write need not read it again. A
/// guess, never trusted alone: a write from it appends only at the place after its head, which
/// the log refuses if anything changed the assessment since (every change moves its stream's
/// head), and an entry kept before an agency's units or roles changed is not used (`generation`,
/// see `Db::org_generation`). Bounded in entries and in bytes: the oldest entries leave first, and
/// an entry larger than 1 MiB (answers may hold long texts) is not kept.
pub struct AnswerStates {
    inner: std::sync::Mutex<KeptStates>,
}

#[derive(Default)]
struct KeptStates {
    /// Each entry with its generation and its size in bytes (about).
    map: HashMap<(AssessmentId, UserId), (u64, usize, ForAnswer)>,
    order: std::collections::VecDeque<(AssessmentId, UserId)>,
    /// The sizes of all entries.
    bytes: usize,
}

/// Entries kept at most: an entry holds one assessment's answers.
const ANSWER_STATES: usize = 256;
/// Bytes kept at most (about), and the largest entry kept: answers may hold long texts.
const ANSWER_STATES_BYTES: usize = 16 << 20;
const ANSWER_STATE_BYTES: usize = 1 << 20;

/// About how many bytes an answer holds: its texts and its value's.
fn answer_size(a: &Answer) -> usize {
    fn value_size(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => s.len() + 8,
            serde_json::Value::Array(items) => items.iter().map(value_size).sum::<usize>() + 8,
            serde_json::Value::Object(fields) => fields.iter().map(|(k, v)| k.len() + value_size(v)).sum::<usize>() + 8,
            _ => 8,
        }
    }
    std::mem::size_of::<Answer>()
        + a.question_id.len()
        + a.updated_by.len()
        + a.note.as_ref().map_or(0, String::len)
        + a.value.as_ref().map_or(0, value_size)
}

impl Default for AnswerStates {
    fn default() -> Self {
        AnswerStates { inner: std::sync::Mutex::new(KeptStates::default()) }
    }
}

impl AnswerStates {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeptStates> {
        // Every critical section is one map or queue operation: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the entry of the user on the assessment, if it was kept at `generation`.
    pub fn take(&self, id: AssessmentId, user: UserId, generation: u64) -> Option<ForAnswer> {
        let mut kept = self.lock();
        let (kept_at, size, state) = kept.map.remove(&(id, user))?;
        kept.bytes -= size;
        kept.order.retain(|k| *k != (id, user));
        (kept_at == generation).then_some(state)
    }

    /// Keeps what the user's write to the assessment left, as of `generation`, unless it is too
    /// large to be worth keeping.
    pub fn put(&self, id: AssessmentId, user: UserId, generation: u64, state: ForAnswer) {
        let size = state.answers.iter().map(answer_size).sum::<usize>() + std::mem::size_of::<ForAnswer>();
        let mut kept = self.lock();
        if let Some((_, old, _)) = kept.map.remove(&(id, user)) {
            kept.bytes -= old;
            kept.order.retain(|k| *k != (id, user));
        }
        if size > ANSWER_STATE_BYTES {
            return;
        }
        kept.map.insert((id, user), (generation, size, state));
        kept.order.push_back((id, user));
        kept.bytes += size;
        while kept.order.len() > ANSWER_STATES || kept.bytes > ANSWER_STATES_BYTES {
            let Some(old) = kept.order.pop_front() else { break };
            if let Some((_, size, _)) = kept.map.remove(&old) {
                kept.bytes -= size;
            }
        }
    }
}

/// What a write of an answer starts from, read in one statement.
pub struct ForAnswer {
    /// The stream head (sequence, hash), locked if asked; `None` when the stream has no head yet.
    pub head: Option<(i64, String)>,
    /// Whether the rest was read after the last change to the stream. The statement reads as of
    /// its start, and may have waited for the lock behind a writer that then committed; every
    /// change to an assessment moves its stream's head, so the head as read equal to the head as
    /// locked means nothing was missed. Otherwise the caller reads again, holding the lock.
    pub fresh: bool,
    pub assessment: Assessment,
    pub role: Option<AssessmentRole>,
    /// The assessment's unit and its ancestors, nearest first.
    pub ancestry: Vec<UnitId>,
    /// Every answer of the assessment, by question id.
    pub answers: Vec<Answer>,
}

/// The unit chain of the assessment whose id is the placeholder `$p`.
macro_rules! chain_of_assessment {
    ($p:literal) => {
        concat!(
            "chain (unit, parent, depth) AS ( \
         SELECT u.id, u.parent_id, 0 FROM units u JOIN assessments a ON a.unit_id = u.id WHERE a.id = ",
            $p,
            " UNION ALL SELECT u.id, u.parent_id, chain.depth + 1 FROM units u JOIN chain ON u.id = chain.parent \
         WHERE chain.depth < 1000) "
        )
    };
}

/// SQLite's read for an answer write: the assessment `a` with the member role `m`, the stream's
/// head, the ancestry, and the answers as one JSON array. Parameters: assessment, user, stream,
/// assessment.
macro_rules! sqlite_for_answer {
    () => {
        concat!(
            "WITH RECURSIVE ",
            chain_of_assessment!("$1"),
            "SELECT a.*, m.role AS member_role, h.seq AS head_seq, h.hash AS head_hash, h.seq AS seen_seq, \
             (SELECT string_agg(chain.unit, ',' ORDER BY chain.depth) FROM chain) AS ancestry, \
             (SELECT json_group_array(json_object('q', x.question_id, 'v', x.value, 'n', x.note, 'r', x.revision, \
             'c', json(CASE WHEN x.carried_over THEN 'true' ELSE 'false' END), 'b', x.updated_by, \
             't', x.updated_at) ORDER BY x.question_id) FROM answers x WHERE x.assessment_id = a.id) AS answer_rows \
             FROM assessments a LEFT JOIN assessment_members m ON m.assessment_id = a.id AND m.user_id = $2 \
             LEFT JOIN stream_heads h ON h.stream = $3 WHERE a.id = $4"
        )
    };
}

/// The assessment `a` with the member role `m`, its ancestry and, one per row, its answers `x`:
/// as rows, not as one JSON array, which took PostgreSQL twice as long to build (50 answers).
macro_rules! postgres_for_answer {
    () => {
        "SELECT a.*, m.role AS member_role, \
         (SELECT string_agg(chain.unit, ',' ORDER BY chain.depth) FROM chain) AS ancestry, \
         x.question_id AS aq, x.value AS av, x.note AS an, x.revision AS ar, x.carried_over AS ac, \
         x.updated_by AS ab, x.updated_at AS aat, "
    };
}

/// Reads what `assessment_access` and `answers` read, with the head of `stream`, in one round
/// trip; `None` when the assessment does not exist. With `lock`, the head is locked first: one
/// statement on PostgreSQL (see `ForAnswer::fresh`), two in one request on SQLite, whose head
/// update takes the database's write lock before anything is read. Without it, it is a plain read
/// as of one moment, for a write that checks the head has not moved since.
pub async fn for_answer(
    conn: &impl ConnectionTrait,
    stream: &str,
    id: AssessmentId,
    user: UserId,
    lock: bool,
) -> Result<Option<ForAnswer>, AppError> {
    // On SQLite the locked read first takes the database's write lock, in the same request.
    const SQLITE_LOCKED: &str = concat!("UPDATE stream_heads SET seq = seq WHERE stream = $1; ", sqlite_for_answer!());
    const SQLITE: &str = sqlite_for_answer!();
    const POSTGRES_LOCKED: &str = concat!(
        "WITH RECURSIVE head AS (UPDATE stream_heads SET seq = seq WHERE stream = $1 RETURNING seq, hash), ",
        chain_of_assessment!("$2"),
        postgres_for_answer!(),
        "head.seq AS head_seq, head.hash AS head_hash, (SELECT s.seq FROM stream_heads s WHERE s.stream = $5) AS seen_seq \
         FROM assessments a LEFT JOIN assessment_members m ON m.assessment_id = a.id AND m.user_id = $3 \
         LEFT JOIN head ON true LEFT JOIN answers x ON x.assessment_id = a.id WHERE a.id = $4 \
         ORDER BY x.question_id"
    );
    const POSTGRES: &str = concat!(
        "WITH RECURSIVE ",
        chain_of_assessment!("$1"),
        postgres_for_answer!(),
        "h.seq AS head_seq, h.hash AS head_hash, h.seq AS seen_seq \
         FROM assessments a LEFT JOIN assessment_members m ON m.assessment_id = a.id AND m.user_id = $2 \
         LEFT JOIN stream_heads h ON h.stream = $3 LEFT JOIN answers x ON x.assessment_id = a.id WHERE a.id = $4 \
         ORDER BY x.question_id"
    );
    #[derive(serde::Deserialize)]
    struct Row {
        q: String,
        v: Option<String>,
        n: Option<String>,
        r: i64,
        c: bool,
        b: String,
        t: i64,
    }
    let backend = conn.get_database_backend();
    // SQLite's parameters are positional (`stmt` turns `$n` into `?`), hence its own order.
    let (id_text, user_text) = (id.to_string(), user.to_string());
    let (sql, values) = match (backend, lock) {
        (sea_orm::DbBackend::Postgres, true) => (POSTGRES_LOCKED, vec![stream, &id_text, &user_text, &id_text, stream]),
        (sea_orm::DbBackend::Postgres, false) => (POSTGRES, vec![&id_text, &user_text, stream, &id_text]),
        (_, true) => (SQLITE_LOCKED, vec![stream, &id_text, &user_text, stream, &id_text]),
        (_, false) => (SQLITE, vec![&id_text, &user_text, stream, &id_text]),
    };
    let values = values.into_iter().map(|v| sea_orm::Value::from(v.to_owned()));
    // All rows are read, so that SQLite runs both of its statements in one request.
    let rows = conn.query_all_raw(stmt(backend, sql, values)).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let assessment = assessment_from(assessment::Model::from_query_result(row, "")?)?;
    let role = row.try_get::<Option<String>>("", "member_role")?;
    let role = role.map(|r| AssessmentRole::parse(&r).map_err(|_| corrupt("member"))).transpose()?;
    let head = match row.try_get::<Option<i64>>("", "head_seq")? {
        Some(seq) => Some((seq, row.try_get::<String>("", "head_hash")?)),
        None => None,
    };
    let fresh = head.is_some() && head.as_ref().map(|h| h.0) == row.try_get::<Option<i64>>("", "seen_seq")?;
    let mut ancestry = Vec::new();
    for unit in row.try_get::<Option<String>>("", "ancestry")?.unwrap_or_default().split(',').filter(|u| !u.is_empty())
    {
        let unit = UnitId::parse(unit).map_err(|_| corrupt("unit"))?;
        if ancestry.contains(&unit) {
            break;
        }
        ancestry.push(unit);
    }
    if ancestry.first() != Some(&assessment.unit_id) {
        return Err(corrupt("unit"));
    }
    let answer_rows: Vec<Row> = if backend == sea_orm::DbBackend::Postgres {
        // One row per answer; an assessment without answers is one row without.
        let mut answer_rows = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(q) = r.try_get::<Option<String>>("", "aq")? else { continue };
            answer_rows.push(Row {
                q,
                v: r.try_get("", "av")?,
                n: r.try_get("", "an")?,
                r: r.try_get("", "ar")?,
                c: r.try_get("", "ac")?,
                b: r.try_get("", "ab")?,
                t: r.try_get("", "aat")?,
            });
        }
        answer_rows
    } else {
        match row.try_get::<Option<String>>("", "answer_rows")? {
            Some(text) => serde_json::from_str(&text).map_err(|_| corrupt("answer"))?,
            None => Vec::new(),
        }
    };
    let answers = answer_rows
        .into_iter()
        .map(|r| {
            let m = answer::Model {
                assessment_id: id.to_string(),
                question_id: r.q,
                value: r.v,
                note: r.n,
                revision: r.r,
                carried_over: r.c,
                updated_by: r.b,
                updated_at: r.t,
            };
            answer_from(m).map(|(_, a)| a)
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(ForAnswer { head, fresh, assessment, role, ancestry, answers }))
}

/// Every assessment the user is a member of, with the role, by assessment id.
pub async fn memberships_of_user(conn: &impl ConnectionTrait, user: UserId) -> Result<Vec<(String, String)>, AppError> {
    let rows = assessment_member::Entity::find()
        .filter(assessment_member::Column::UserId.eq(user.to_string()))
        .order_by_asc(assessment_member::Column::AssessmentId)
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(|m| (m.assessment_id, m.role)).collect())
}

pub async fn member_role(
    conn: &impl ConnectionTrait,
    id: AssessmentId,
    user: UserId,
) -> Result<Option<AssessmentRole>, AppError> {
    let row = assessment_member::Entity::find_by_id((id.to_string(), user.to_string())).one(conn).await?;
    row.map(|m| AssessmentRole::parse(&m.role).map_err(|_| corrupt("member"))).transpose()
}

pub async fn upsert_member(conn: &impl ConnectionTrait, id: AssessmentId, m: &Member) -> Result<(), AppError> {
    assessment_member::Entity::insert(assessment_member::ActiveModel {
        assessment_id: Set(id.to_string()),
        user_id: Set(m.user_id.to_string()),
        role: Set(m.role.as_str().to_owned()),
    })
    .on_conflict(
        OnConflict::columns([assessment_member::Column::AssessmentId, assessment_member::Column::UserId])
            .update_column(assessment_member::Column::Role)
            .to_owned(),
    )
    .exec(conn)
    .await?;
    Ok(())
}

pub async fn delete_member(conn: &impl ConnectionTrait, id: AssessmentId, user: UserId) -> Result<(), AppError> {
    assessment_member::Entity::delete_by_id((id.to_string(), user.to_string())).exec(conn).await?;
    Ok(())
}

fn assignment_from(m: section_assignment::Model) -> Result<SectionAssignment, AppError> {
    Ok(SectionAssignment {
        assessment_id: AssessmentId::parse(&m.assessment_id).map_err(|_| corrupt("assignment"))?,
        section_id: m.section_id,
        user_id: UserId::parse(&m.user_id).map_err(|_| corrupt("assignment"))?,
    })
}

pub async fn assignments(conn: &impl ConnectionTrait, id: AssessmentId) -> Result<Vec<SectionAssignment>, AppError> {
    let rows = section_assignment::Entity::find()
        .filter(section_assignment::Column::AssessmentId.eq(id.to_string()))
        .all(conn)
        .await?;
    rows.into_iter().map(assignment_from).collect()
}

pub async fn assignments_of_user(
    conn: &impl ConnectionTrait,
    user: UserId,
) -> Result<Vec<SectionAssignment>, AppError> {
    let rows = section_assignment::Entity::find()
        .filter(section_assignment::Column::UserId.eq(user.to_string()))
        .all(conn)
        .await?;
    rows.into_iter().map(assignment_from).collect()
}

pub async fn set_assignment(
    conn: &impl ConnectionTrait,
    a: &SectionAssignment,
    assigned: bool,
) -> Result<bool, AppError> {
    let key = (a.assessment_id.to_string(), a.section_id.clone(), a.user_id.to_string());
    let exists = section_assignment::Entity::find_by_id(key.clone()).one(conn).await?.is_some();
    match (exists, assigned) {
        (false, true) => {
            section_assignment::ActiveModel { assessment_id: Set(key.0), section_id: Set(key.1), user_id: Set(key.2) }
                .insert(conn)
                .await?;
            Ok(true)
        }
        (true, false) => {
            section_assignment::Entity::delete_by_id(key).exec(conn).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn answer_from(m: answer::Model) -> Result<(AssessmentId, Answer), AppError> {
    let value = m.value.as_deref().map(serde_json::from_str).transpose().map_err(|_| corrupt("answer"))?;
    Ok((
        AssessmentId::parse(&m.assessment_id).map_err(|_| corrupt("answer"))?,
        Answer {
            question_id: m.question_id,
            value,
            note: m.note,
            revision: m.revision,
            carried_over: m.carried_over,
            updated_by: m.updated_by,
            updated_at: m.updated_at,
        },
    ))
}

pub async fn answers(conn: &impl ConnectionTrait, id: AssessmentId) -> Result<Vec<Answer>, AppError> {
    Ok(answers_of(conn, &[id]).await?.into_iter().map(|(_, a)| a).collect())
}

/// The answers of several assessments in one query.
pub async fn answers_of(
    conn: &impl ConnectionTrait,
    ids: &[AssessmentId],
) -> Result<Vec<(AssessmentId, Answer)>, AppError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let rows = answer::Entity::find()
        .filter(answer::Column::AssessmentId.is_in(ids))
        .order_by_asc(answer::Column::AssessmentId)
        .order_by_asc(answer::Column::QuestionId)
        .all(conn)
        .await?;
    rows.into_iter().map(answer_from).collect()
}

pub async fn get_answer(
    conn: &impl ConnectionTrait,
    id: AssessmentId,
    question: &str,
) -> Result<Option<Answer>, AppError> {
    let row = answer::Entity::find_by_id((id.to_string(), question.to_owned())).one(conn).await?;
    Ok(row.map(answer_from).transpose()?.map(|(_, a)| a))
}

pub async fn upsert_answer(conn: &impl ConnectionTrait, id: AssessmentId, a: &Answer) -> Result<(), AppError> {
    answer_write(id, a)?.run(conn).await?;
    Ok(())
}

/// Inserts or replaces an answer, as a write to send with the event that records it.
pub fn answer_write(id: AssessmentId, a: &Answer) -> Result<Write, AppError> {
    let value = a.value.as_ref().map(serde_jcs::to_string).transpose().map_err(AppError::internal)?;
    Ok(Write {
        sql: "INSERT INTO answers (assessment_id, question_id, value, note, revision, carried_over, updated_by, updated_at) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
              ON CONFLICT (assessment_id, question_id) DO UPDATE SET value = excluded.value, note = excluded.note, \
              revision = excluded.revision, carried_over = excluded.carried_over, updated_by = excluded.updated_by, \
              updated_at = excluded.updated_at",
        values: vec![
            id.to_string().into(),
            a.question_id.clone().into(),
            value.into(),
            a.note.clone().into(),
            a.revision.into(),
            a.carried_over.into(),
            a.updated_by.clone().into(),
            a.updated_at.into(),
        ],
    })
}

/// Stores what answering changes in an assessment's row: its status, time and progress summary.
pub fn progress_write(a: &Assessment) -> Write {
    Write {
        sql: "UPDATE assessments SET status = $1, updated_at = $2, required_total = $3, required_answered = $4, \
              highest_residual = $5, highest_residual_rank = $6 WHERE id = $7",
        values: vec![
            a.status.as_str().into(),
            a.updated_at.into(),
            a.required_total.into(),
            a.required_answered.into(),
            a.highest_residual.clone().into(),
            a.highest_residual_rank.into(),
            a.id.to_string().into(),
        ],
    }
}

fn comment_from(m: comment::Model) -> Result<Comment, AppError> {
    let bad = |_| corrupt("comment");
    Ok(Comment {
        id: CommentId::parse(&m.id).map_err(bad)?,
        assessment_id: AssessmentId::parse(&m.assessment_id).map_err(bad)?,
        question_id: m.question_id,
        parent_id: m.parent_id.as_deref().map(CommentId::parse).transpose().map_err(bad)?,
        author_id: m.author_id,
        author_name: m.author_name,
        body: m.body,
        version: m.version,
        created_at: m.created_at,
        edited_at: m.edited_at,
        resolved: m.resolved,
        resolved_by: m.resolved_by,
        resolved_at: m.resolved_at,
    })
}

fn comment_model(c: &Comment) -> comment::ActiveModel {
    comment::ActiveModel {
        id: Set(c.id.to_string()),
        assessment_id: Set(c.assessment_id.to_string()),
        question_id: Set(c.question_id.clone()),
        parent_id: Set(c.parent_id.map(|p| p.to_string())),
        author_id: Set(c.author_id.clone()),
        author_name: Set(c.author_name.clone()),
        body: Set(c.body.clone()),
        version: Set(c.version),
        created_at: Set(c.created_at),
        edited_at: Set(c.edited_at),
        resolved: Set(c.resolved),
        resolved_by: Set(c.resolved_by.clone()),
        resolved_at: Set(c.resolved_at),
    }
}

pub async fn insert_comment(conn: &impl ConnectionTrait, c: &Comment) -> Result<(), AppError> {
    comment_model(c).insert(conn).await?;
    add_comment_version(conn, c).await
}

/// Writes a changed comment; when its body changed, the new version is kept beside the earlier.
pub async fn update_comment(conn: &impl ConnectionTrait, c: &Comment, body_changed: bool) -> Result<(), AppError> {
    comment_model(c).update(conn).await?;
    if body_changed {
        add_comment_version(conn, c).await?;
    }
    Ok(())
}

async fn add_comment_version(conn: &impl ConnectionTrait, c: &Comment) -> Result<(), AppError> {
    comment_version::ActiveModel {
        comment_id: Set(c.id.to_string()),
        version: Set(c.version),
        body: Set(c.body.clone()),
        written_at: Set(c.edited_at.unwrap_or(c.created_at)),
    }
    .insert(conn)
    .await?;
    Ok(())
}

pub async fn get_comment(conn: &impl ConnectionTrait, id: CommentId) -> Result<Option<Comment>, AppError> {
    comment::Entity::find_by_id(id.to_string()).one(conn).await?.map(comment_from).transpose()
}

pub async fn comments(conn: &impl ConnectionTrait, id: AssessmentId) -> Result<Vec<Comment>, AppError> {
    let rows = comment::Entity::find()
        .filter(comment::Column::AssessmentId.eq(id.to_string()))
        .order_by_asc(comment::Column::CreatedAt)
        .order_by_asc(comment::Column::Id)
        .all(conn)
        .await?;
    rows.into_iter().map(comment_from).collect()
}

pub async fn comment_versions(conn: &impl ConnectionTrait, id: CommentId) -> Result<Vec<CommentVersion>, AppError> {
    let rows = comment_version::Entity::find()
        .filter(comment_version::Column::CommentId.eq(id.to_string()))
        .order_by_asc(comment_version::Column::Version)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|m| CommentVersion { comment_id: id, version: m.version, body: m.body, written_at: m.written_at })
        .collect())
}

/// Every kept version of every comment of an assessment, by comment id then version.
pub async fn assessment_comment_versions(
    conn: &impl ConnectionTrait,
    id: AssessmentId,
) -> Result<Vec<CommentVersion>, AppError> {
    let ids: Vec<String> = comments(conn, id).await?.into_iter().map(|c| c.id.to_string()).collect();
    let rows = comment_version::Entity::find()
        .filter(comment_version::Column::CommentId.is_in(ids))
        .order_by_asc(comment_version::Column::CommentId)
        .order_by_asc(comment_version::Column::Version)
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|m| {
            Ok(CommentVersion {
                comment_id: CommentId::parse(&m.comment_id).map_err(|_| corrupt("comment version"))?,
                version: m.version,
                body: m.body,
                written_at: m.written_at,
            })
        })
        .collect()
}

/// The ids of every assessment row, of every agency.
pub async fn all_assessment_ids(conn: &impl ConnectionTrait) -> Result<Vec<AssessmentId>, AppError> {
    let rows = assessment::Entity::find().order_by_asc(assessment::Column::Id).all(conn).await?;
    rows.iter().map(|m| AssessmentId::parse(&m.id).map_err(|_| corrupt("assessment"))).collect()
}

/// Everything the current-state tables hold about one assessment.
pub struct AssessmentRows<'a> {
    pub assessment: &'a Assessment,
    pub members: &'a [Member],
    pub assignments: &'a [SectionAssignment],
    pub answers: &'a [Answer],
    /// Parents before their replies.
    pub comments: &'a [Comment],
    pub versions: &'a [CommentVersion],
}

/// Deletes the rows of an assessment and everything that hangs from it.
pub async fn delete_assessment_rows(conn: &impl ConnectionTrait, id: AssessmentId) -> Result<(), AppError> {
    let id = id.to_string();
    for sql in [
        "DELETE FROM comment_versions WHERE comment_id IN (SELECT id FROM comments WHERE assessment_id = $1)",
        "DELETE FROM comments WHERE assessment_id = $1",
        "DELETE FROM answers WHERE assessment_id = $1",
        "DELETE FROM section_assignments WHERE assessment_id = $1",
        "DELETE FROM assessment_members WHERE assessment_id = $1",
    ] {
        super::exec(conn, sql, [id.clone().into()]).await?;
    }
    Ok(())
}

/// Replaces everything stored about an assessment with `rows`.
pub async fn replace_assessment_rows(conn: &impl ConnectionTrait, rows: &AssessmentRows<'_>) -> Result<(), AppError> {
    let id = rows.assessment.id;
    delete_assessment_rows(conn, id).await?;
    if get_assessment(conn, id).await?.is_some() {
        update_assessment(conn, rows.assessment).await?;
    } else {
        insert_assessment(conn, rows.assessment).await?;
    }
    for m in rows.members {
        upsert_member(conn, id, m).await?;
    }
    for a in rows.assignments {
        set_assignment(conn, a, true).await?;
    }
    for a in rows.answers {
        upsert_answer(conn, id, a).await?;
    }
    for c in rows.comments {
        comment_model(c).insert(conn).await?;
    }
    for v in rows.versions {
        comment_version::ActiveModel {
            comment_id: Set(v.comment_id.to_string()),
            version: Set(v.version),
            body: Set(v.body.clone()),
            written_at: Set(v.written_at),
        }
        .insert(conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(note_bytes: usize) -> ForAnswer {
        let assessment = Assessment {
            id: AssessmentId::new(),
            agency_id: AgencyId::new(),
            unit_id: UnitId::new(),
            template_id: TemplateId::new(),
            title: "t".into(),
            subject: "s".into(),
            due_date: None,
            status: Status::InProgress,
            previous_id: None,
            created_by: UserId::new(),
            created_at: 0,
            updated_at: 0,
            approval: None,
            return_reason: None,
            required_total: 1,
            required_answered: 1,
            highest_residual: None,
            highest_residual_rank: None,
        };
        let answer = Answer {
            question_id: "q".into(),
            value: Some(serde_json::json!("v")),
            note: Some("n".repeat(note_bytes)),
            revision: 1,
            carried_over: false,
            updated_by: "u".into(),
            updated_at: 0,
        };
        ForAnswer {
            head: Some((1, "h".into())),
            fresh: true,
            assessment,
            role: None,
            ancestry: Vec::new(),
            answers: vec![answer],
        }
    }

    #[test]
    fn kept_answer_states_are_bounded_in_bytes_and_a_state_too_large_is_not_kept() {
        let states = AnswerStates::default();
        let user = UserId::new();
        let ids: Vec<AssessmentId> = (0..20).map(|_| AssessmentId::new()).collect();
        // 20 states of about 1,000,000 bytes each: the oldest leave to stay within 16 MiB.
        for id in &ids {
            states.put(*id, user, 7, state(1_000_000));
        }
        assert!(states.lock().bytes <= ANSWER_STATES_BYTES);
        assert!(states.take(ids[0], user, 7).is_none(), "the oldest left");
        assert!(states.take(ids[19], user, 7).is_some(), "the newest stayed");
        // Kept at another generation: not used.
        assert!(states.take(ids[18], user, 8).is_none());
        let large = AssessmentId::new();
        states.put(large, user, 7, state(2_000_000));
        assert!(states.take(large, user, 7).is_none(), "a state over 1 MiB is not kept");
        let (count, bytes) = {
            let kept = states.lock();
            (kept.map.len(), kept.map.values().map(|(_, size, _)| size).sum::<usize>())
        };
        assert_eq!(states.lock().bytes, bytes, "the running total matches the entries");
        assert_eq!(states.lock().order.len(), count);
    }
}
