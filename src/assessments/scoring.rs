//! Progress, scores and the risk register, computed from a template and the current answers. Pure
//! functions: the same code serves the live tables and, later, states rebuilt from the log.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::values::is_complete;
use crate::templates::{Question, QuestionKind, Template};

/// Answers by question id (only the values matter here).
pub type Values<'a> = HashMap<&'a str, &'a Value>;

/// The questions currently shown: those without a condition, and those whose condition's
/// question is itself shown and answered with one of the listed values.
pub fn visible<'a>(template: &'a Template, values: &Values<'_>) -> HashSet<&'a str> {
    let mut shown: HashSet<&str> = HashSet::new();
    for (_, q) in template.questions() {
        let ok = match &q.show_if {
            None => true,
            Some(cond) => {
                shown.contains(cond.question.as_str())
                    && values.get(cond.question.as_str()).is_some_and(|v| match v {
                        Value::String(s) => cond.values.contains(s),
                        Value::Array(items) => {
                            items.iter().any(|i| i.as_str().is_some_and(|s| cond.values.iter().any(|c| c == s)))
                        }
                        _ => false,
                    })
            }
        };
        if ok {
            shown.insert(q.id.as_str());
        }
    }
    shown
}

#[derive(Clone, Debug, PartialEq)]
pub struct SectionProgress {
    pub section_id: String,
    pub shown: i32,
    pub answered: i32,
    pub required: i32,
    pub required_answered: i32,
    pub score: Option<f64>,
    pub level: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub sections: Vec<SectionProgress>,
    pub shown: i32,
    pub answered: i32,
    pub required: i32,
    pub required_answered: i32,
    pub score: Option<f64>,
    pub level: Option<String>,
}

/// The score of one answer, where its question declares scores: the chosen option's or level's
/// score, or the mean of the chosen options' scores.
pub fn question_score(q: &Question, value: &Value) -> Option<f64> {
    let score_of = |id: &str| q.kind.choices().iter().find(|c| c.id == id).and_then(|c| c.score);
    match &q.kind {
        QuestionKind::SingleChoice { .. } | QuestionKind::Scale { .. } => score_of(value.as_str()?),
        QuestionKind::MultipleChoice { .. } => {
            let scores: Vec<f64> = value.as_array()?.iter().filter_map(|v| score_of(v.as_str()?)).collect();
            (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
        }
        _ => None,
    }
}

fn weighted_mean(items: &[(f64, f64)]) -> Option<f64> {
    let total: f64 = items.iter().map(|(w, _)| w).sum();
    (total > 0.0).then(|| items.iter().map(|(w, s)| w * s).sum::<f64>() / total)
}

pub fn progress(template: &Template, values: &Values<'_>) -> Progress {
    let shown = visible(template, values);
    let mut sections = Vec::new();
    let mut section_scores = Vec::new();
    for section in &template.sections {
        let mut p = SectionProgress {
            section_id: section.id.clone(),
            shown: 0,
            answered: 0,
            required: 0,
            required_answered: 0,
            score: None,
            level: None,
        };
        let mut scored = Vec::new();
        for q in section.questions.iter().filter(|q| shown.contains(q.id.as_str())) {
            let value = values.get(q.id.as_str()).copied();
            let complete = is_complete(q, value);
            p.shown += 1;
            p.answered += i32::from(complete);
            if q.required {
                p.required += 1;
                p.required_answered += i32::from(complete);
            }
            if let Some(score) = value.and_then(|v| question_score(q, v)) {
                scored.push((q.weight, score));
            }
        }
        p.score = weighted_mean(&scored);
        p.level = p.score.and_then(|s| template.score_level(s)).map(|l| l.id.clone());
        if let Some(score) = p.score {
            section_scores.push((section.weight, score));
        }
        sections.push(p);
    }
    let sum = |f: fn(&SectionProgress) -> i32| sections.iter().map(f).sum();
    let score = weighted_mean(&section_scores);
    Progress {
        shown: sum(|s| s.shown),
        answered: sum(|s| s.answered),
        required: sum(|s| s.required),
        required_answered: sum(|s| s.required_answered),
        level: score.and_then(|s| template.score_level(s)).map(|l| l.id.clone()),
        score,
        sections,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rating {
    pub likelihood: i32,
    pub impact: i32,
    pub level: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RiskItem {
    pub question_id: String,
    pub section_id: String,
    pub inherent: Option<Rating>,
    pub residual: Option<Rating>,
    pub mitigations: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RiskRegister {
    pub items: Vec<RiskItem>,
    /// Number of items at each level, lowest level first, by inherent and by residual rating.
    pub inherent_counts: Vec<(String, i32)>,
    pub residual_counts: Vec<(String, i32)>,
    pub highest_residual: Option<String>,
    pub highest_residual_rank: Option<i32>,
}

pub fn risk_register(template: &Template, values: &Values<'_>) -> Option<RiskRegister> {
    let model = template.risk.as_ref()?;
    let shown = visible(template, values);
    let rate = |v: Option<&Value>| -> Option<Rating> {
        let v = v?;
        let likelihood = i32::try_from(v.get("likelihood")?.as_i64()?).ok()?;
        let impact = i32::try_from(v.get("impact")?.as_i64()?).ok()?;
        let level = model.level(likelihood, impact)?.id.clone();
        Some(Rating { likelihood, impact, level })
    };
    let mut items = Vec::new();
    for (section, q) in template.questions() {
        if !matches!(q.kind, QuestionKind::Risk) || !shown.contains(q.id.as_str()) {
            continue;
        }
        let value = values.get(q.id.as_str()).copied();
        items.push(RiskItem {
            question_id: q.id.clone(),
            section_id: section.id.clone(),
            inherent: rate(value.and_then(|v| v.get("inherent"))),
            residual: rate(value.and_then(|v| v.get("residual"))),
            mitigations: value.and_then(|v| v.get("mitigations")).and_then(Value::as_str).map(str::to_owned),
        });
    }
    let count = |pick: fn(&RiskItem) -> Option<&Rating>| {
        model
            .levels
            .iter()
            .map(|l| {
                let n = items.iter().filter(|i| pick(i).is_some_and(|r| r.level == l.id)).count();
                (l.id.clone(), i32::try_from(n).unwrap_or(i32::MAX))
            })
            .collect::<Vec<_>>()
    };
    let highest = items.iter().filter_map(|i| i.residual.as_ref()).filter_map(|r| model.rank(&r.level)).max();
    Some(RiskRegister {
        inherent_counts: count(|i| i.inherent.as_ref()),
        residual_counts: count(|i| i.residual.as_ref()),
        highest_residual: highest.map(|r| model.levels[r].id.clone()),
        highest_residual_rank: highest.and_then(|r| i32::try_from(r).ok()),
        items,
    })
}
