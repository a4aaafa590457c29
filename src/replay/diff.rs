//! What changed between two states of an assessment, field by field and question by question.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Snapshot;
use crate::assessments::{Answer, Assessment, Comment};

#[derive(Clone, Debug, PartialEq)]
pub struct DiffEntry {
    /// The question the change is about; `None` for the assessment itself.
    pub question_id: Option<String>,
    /// `title`, `subject`, `due_date`, `status`, `return_reason`, `value`, `note`, `comment`,
    /// `member` or `assignment`.
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

fn entry(question: Option<&str>, field: &str, before: Option<Value>, after: Option<Value>) -> Option<DiffEntry> {
    (before != after).then(|| DiffEntry {
        question_id: question.map(str::to_owned),
        field: field.to_owned(),
        before,
        after,
    })
}

fn details(a: &Assessment) -> [(&'static str, Option<Value>); 5] {
    [
        ("title", Some(json!(a.title))),
        ("subject", Some(json!(a.subject))),
        ("due_date", a.due_date.map(|d| json!(d.to_string()))),
        ("status", Some(json!(a.status.as_str()))),
        ("return_reason", a.return_reason.as_ref().map(|r| json!(r))),
    ]
}

fn comment_view(c: &Comment) -> Value {
    json!({ "id": c.id.to_string(), "author": c.author_name, "body": c.body, "resolved": c.resolved })
}

/// The differences from `before` to `after`: assessment details first, then questions in id
/// order (value, note, comments), then people.
pub fn diff_snapshots(before: &Snapshot, after: &Snapshot) -> Vec<DiffEntry> {
    let mut out: Vec<DiffEntry> = details(&before.assessment)
        .into_iter()
        .zip(details(&after.assessment))
        .filter_map(|((field, b), (_, a))| entry(None, field, b, a))
        .collect();

    let answers = |s: &Snapshot| -> BTreeMap<String, Answer> {
        s.answers.iter().map(|a| (a.question_id.clone(), a.clone())).collect()
    };
    let (old, new) = (answers(before), answers(after));
    let mut questions: Vec<&String> = old.keys().chain(new.keys()).collect();
    questions.extend(before.comments.iter().chain(&after.comments).map(|c| &c.question_id));
    questions.sort();
    questions.dedup();
    for q in questions {
        let (b, a) = (old.get(q), new.get(q));
        out.extend(entry(Some(q), "value", b.and_then(|x| x.value.clone()), a.and_then(|x| x.value.clone())));
        out.extend(entry(
            Some(q),
            "note",
            b.and_then(|x| x.note.clone()).map(Value::from),
            a.and_then(|x| x.note.clone()).map(Value::from),
        ));
        let on = |s: &'_ Snapshot| -> BTreeMap<String, Value> {
            s.comments.iter().filter(|c| &c.question_id == q).map(|c| (c.id.to_string(), comment_view(c))).collect()
        };
        let (cb, ca) = (on(before), on(after));
        let mut ids: Vec<&String> = cb.keys().chain(ca.keys()).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            out.extend(entry(Some(q), "comment", cb.get(id).cloned(), ca.get(id).cloned()));
        }
    }

    let members = |s: &Snapshot| -> BTreeMap<String, Value> {
        s.members.iter().map(|m| (m.user_id.to_string(), json!(m.role.as_str()))).collect()
    };
    let (mb, ma) = (members(before), members(after));
    let mut users: Vec<&String> = mb.keys().chain(ma.keys()).collect();
    users.sort();
    users.dedup();
    for user in users {
        let view = |role: Option<&Value>| role.map(|r| json!({ "user_id": user, "role": r }));
        out.extend(entry(None, "member", view(mb.get(user)), view(ma.get(user))));
    }

    let assigned = |s: &Snapshot| -> Vec<Value> {
        s.assignments.iter().map(|x| json!({ "section_id": x.section_id, "user_id": x.user_id.to_string() })).collect()
    };
    let (ab, aa) = (assigned(before), assigned(after));
    for x in ab.iter().filter(|x| !aa.contains(x)) {
        out.extend(entry(None, "assignment", Some(x.clone()), None));
    }
    for x in aa.iter().filter(|x| !ab.contains(x)) {
        out.extend(entry(None, "assignment", None, Some(x.clone())));
    }
    out
}
