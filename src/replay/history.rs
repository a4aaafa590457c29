//! The timeline of an assessment: one readable entry per event, with who, when, before and after.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::agencies::User;
use crate::events::Event;

#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    /// A user id, or `system`.
    pub actor: String,
    /// The actor's current display name, when the actor is a user of the agency.
    pub actor_name: Option<String>,
    /// The question the change is about, if any.
    pub question_id: Option<String>,
    pub summary: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Entries for `events` (in sequence order), only those about `question` when given.
pub fn history_entries(events: &[Event], users: &[User], question: Option<&str>) -> Vec<HistoryEntry> {
    let names: HashMap<String, &str> = users.iter().map(|u| (u.id.to_string(), u.display_name.as_str())).collect();
    let name = |id: &str| names.get(id).map_or_else(|| id.to_owned(), |n| (*n).to_owned());
    // Comment events after the first name only the comment: remember which question each is on.
    let mut comment_questions: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        let p = &e.payload;
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        if matches!(e.kind.as_str(), "comment.added" | "comment.imported") {
            let id = if e.kind == "comment.added" { s("comment_id") } else { s("id") };
            comment_questions.insert(id, s("question_id"));
        }
        let question_id = match p.get("question_id").and_then(Value::as_str) {
            Some(q) => Some(q.to_owned()),
            None => p.get("comment_id").and_then(Value::as_str).and_then(|c| comment_questions.get(c).cloned()),
        };
        if question.is_some_and(|q| question_id.as_deref() != Some(q)) {
            continue;
        }
        let before = p.get("before").filter(|v| !v.is_null()).cloned();
        let after = p.get("after").filter(|v| !v.is_null()).cloned();
        let status = |v: &Option<Value>| {
            v.as_ref().and_then(|v| v.get("status")).and_then(Value::as_str).unwrap_or_default().replace('_', " ")
        };
        let q = question_id.clone().unwrap_or_default();
        let (summary, before, after) = match e.kind.as_str() {
            "assessment.created" => (
                format!("created the assessment \"{}\"", s("title")),
                None,
                Some(json!({ "title": p.get("title"), "subject": p.get("subject"), "due_date": p.get("due_date") })),
            ),
            "assessment.details_changed" => ("changed the title, subject or due date".to_owned(), before, after),
            "assessment.status_changed" => {
                (format!("moved the assessment from {} to {}", status(&before), status(&after)), before, after)
            }
            "assessment.submitted" => ("submitted the assessment for review".to_owned(), before, after),
            "assessment.approved" => ("approved the assessment".to_owned(), before, after),
            "assessment.returned" => (format!("returned the assessment: {}", s("reason")), before, after),
            "assessment.reopened" => ("reopened the assessment".to_owned(), before, after),
            "assessment.archived" => ("archived the assessment".to_owned(), before, after),
            "member.changed" => {
                let who = name(&s("user_id"));
                let role = after.as_ref().and_then(|a| a.get("role")).and_then(Value::as_str);
                let summary = match role {
                    Some(role) => format!("made {who} {role}"),
                    None => format!("removed {who} from the assessment"),
                };
                (summary, before, after)
            }
            "section.assigned" => {
                (format!("assigned section {} to {}", s("section_id"), name(&s("user_id"))), None, None)
            }
            "section.unassigned" => {
                (format!("took section {} from {}", s("section_id"), name(&s("user_id"))), None, None)
            }
            "answer.set" => (format!("answered {q}"), before, after),
            "answer.cleared" => (format!("cleared the answer to {q}"), before, after),
            "answer.confirmed" => (
                format!("confirmed the carried-over answer to {q}"),
                None,
                Some(json!({ "value": p.get("value"), "revision": p.get("revision") })),
            ),
            "answer.carried_over" => (format!("carried over the answer to {q} from the previous cycle"), None, after),
            "answer.imported" => (format!("imported the answer to {q}"), None, Some(p.clone())),
            "comment.added" => (format!("commented on {q}"), None, Some(json!({ "body": p.get("body") }))),
            "comment.edited" => (format!("edited a comment on {q}"), before, after),
            "comment.resolved" => (format!("resolved a comment on {q}"), None, None),
            "comment.reopened" => (format!("reopened a comment on {q}"), None, None),
            "comment.imported" => (format!("imported a comment on {q}"), None, Some(json!({ "body": p.get("body") }))),
            other => (other.replace(['.', '_'], " "), before, after),
        };
        out.push(HistoryEntry {
            seq: e.seq,
            at: e.at.clone(),
            kind: e.kind.clone(),
            actor: e.actor.clone(),
            actor_name: names.get(&e.actor).map(|n| (*n).to_owned()),
            question_id,
            summary,
            before,
            after,
        });
    }
    out
}
