//! Checking an answer's value against its question's type. Values are JSON:
//!
//! - single choice, scale: the chosen id, as a string;
//! - multiple choice: a list of distinct option ids;
//! - yes / no: `yes`, `no`, `unknown` or `not_applicable`;
//! - text: a string; number: a number; date: `YYYY-MM-DD`;
//! - risk: `{ "inherent": { "likelihood": 1-5, "impact": 1-5 }, "mitigations": "…",
//!   "residual": { "likelihood": 1-5, "impact": 1-5 } }`, where `mitigations` and `residual` may
//!   be left out until known.

use serde_json::{Map, Value, json};

use crate::templates::{Question, QuestionKind, RiskModel, YES_NO_VALUES};

/// Longest free text accepted, whatever the template says.
pub const MAX_TEXT_CHARS: usize = 20_000;

/// Returns the normalized value, or why it does not fit the question.
pub fn check(question: &Question, risk: Option<&RiskModel>, value: &Value) -> Result<Value, String> {
    let choice_ids = || question.kind.choices().iter().map(|c| c.id.as_str()).collect::<Vec<_>>();
    match &question.kind {
        QuestionKind::SingleChoice { .. } | QuestionKind::Scale { .. } => {
            let id = value.as_str().ok_or("expected the id of one choice, as a string")?;
            if choice_ids().contains(&id) {
                Ok(json!(id))
            } else {
                Err(format!("\"{id}\" is not one of {}", choice_ids().join(", ")))
            }
        }
        QuestionKind::MultipleChoice { min_selected, max_selected, .. } => {
            let items = value.as_array().ok_or("expected a list of choice ids")?;
            let mut ids: Vec<&str> = Vec::new();
            for item in items {
                let id = item.as_str().ok_or("expected a list of choice ids")?;
                if !choice_ids().contains(&id) {
                    return Err(format!("\"{id}\" is not one of {}", choice_ids().join(", ")));
                }
                if ids.contains(&id) {
                    return Err(format!("\"{id}\" is chosen twice"));
                }
                ids.push(id);
            }
            let n = u32::try_from(ids.len()).unwrap_or(u32::MAX);
            if let Some(min) = min_selected.filter(|m| n < *m) {
                return Err(format!("choose at least {min}"));
            }
            if let Some(max) = max_selected.filter(|m| n > *m) {
                return Err(format!("choose at most {max}"));
            }
            // Keep the template's order, so equal selections compare equal.
            let ordered: Vec<&str> = choice_ids().into_iter().filter(|c| ids.contains(c)).collect();
            Ok(json!(ordered))
        }
        QuestionKind::YesNo => {
            let v = value.as_str().ok_or("expected yes, no, unknown or not_applicable")?;
            if YES_NO_VALUES.contains(&v) {
                Ok(json!(v))
            } else {
                Err("expected yes, no, unknown or not_applicable".into())
            }
        }
        QuestionKind::Text { max_length } => {
            let s = value.as_str().ok_or("expected text")?;
            let limit =
                max_length.map_or(MAX_TEXT_CHARS, |m| usize::try_from(m).unwrap_or(MAX_TEXT_CHARS).min(MAX_TEXT_CHARS));
            let n = s.chars().count();
            if n > limit {
                return Err(format!("at most {limit} characters, got {n}"));
            }
            Ok(json!(s))
        }
        QuestionKind::Number { min, max } => {
            let n = value.as_f64().filter(|f| f.is_finite()).ok_or("expected a number")?;
            if let Some(lo) = min.filter(|lo| n < *lo) {
                return Err(format!("must be at least {lo}"));
            }
            if let Some(hi) = max.filter(|hi| n > *hi) {
                return Err(format!("must be at most {hi}"));
            }
            Ok(value.clone())
        }
        QuestionKind::Date => {
            let s = value.as_str().ok_or("expected a date as YYYY-MM-DD")?;
            let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
            if date.is_none_or(|d| d.format("%Y-%m-%d").to_string() != s) {
                return Err(format!("\"{s}\" is not a date as YYYY-MM-DD"));
            }
            Ok(json!(s))
        }
        QuestionKind::Risk => check_risk(risk.ok_or("the template has no risk scales")?, value),
    }
}

fn check_risk(risk: &RiskModel, value: &Value) -> Result<Value, String> {
    let obj = value.as_object().ok_or("expected { inherent, mitigations, residual }")?;
    if let Some(key) = obj.keys().find(|k| !["inherent", "mitigations", "residual"].contains(&k.as_str())) {
        return Err(format!("unknown field \"{key}\""));
    }
    let mut out = Map::new();
    let rating = |name: &str| -> Result<Option<Value>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(r)) => {
                let mut rated = Map::new();
                for (axis, scale) in [("likelihood", &risk.likelihood), ("impact", &risk.impact)] {
                    let v =
                        r.get(axis).and_then(Value::as_i64).ok_or(format!("{name}.{axis}: expected a whole number"))?;
                    if !scale.iter().any(|s| i64::from(s.value) == v) {
                        return Err(format!("{name}.{axis}: must be between 1 and {}", scale.len()));
                    }
                    rated.insert(axis.to_owned(), json!(v));
                }
                if let Some(k) = r.keys().find(|k| *k != "likelihood" && *k != "impact") {
                    return Err(format!("{name}: unknown field \"{k}\""));
                }
                Ok(Some(Value::Object(rated)))
            }
            Some(_) => Err(format!("{name}: expected {{ likelihood, impact }}")),
        }
    };
    let inherent = rating("inherent")?.ok_or("inherent: the inherent risk must be rated")?;
    out.insert("inherent".into(), inherent);
    match obj.get("mitigations") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT_CHARS => {
            out.insert("mitigations".into(), json!(s));
        }
        Some(Value::String(_)) => return Err(format!("mitigations: at most {MAX_TEXT_CHARS} characters")),
        Some(_) => return Err("mitigations: expected text".into()),
    }
    if let Some(residual) = rating("residual")? {
        out.insert("residual".into(), residual);
    }
    Ok(Value::Object(out))
}

/// Whether a stored value counts as a complete answer: text must not be blank, a multiple choice
/// must select something, and a risk item needs both its inherent and residual ratings.
pub fn is_complete(question: &Question, value: Option<&Value>) -> bool {
    let Some(value) = value else { return false };
    match &question.kind {
        QuestionKind::Text { .. } => value.as_str().is_some_and(|s| !s.trim().is_empty()),
        QuestionKind::MultipleChoice { .. } => value.as_array().is_some_and(|a| !a.is_empty()),
        QuestionKind::Risk => value.get("inherent").is_some() && value.get("residual").is_some(),
        _ => !value.is_null(),
    }
}
