//! The typed form of a template. It serializes to JSON with the same keys as the YAML files, so a
//! stored template is itself a valid template document.

use serde::{Deserialize, Serialize};

pub const PRINCIPLES: [&str; 5] =
    ["lawfulness", "minimization_of_harm", "human_autonomy", "fairness", "good_governance"];

pub const LIFECYCLE_STAGES: [&str; 5] =
    ["decision_to_use", "design_and_development", "procurement", "deployment", "monitoring_and_evaluation"];

/// The instrumental principles a question may be tagged with.
pub const INSTRUMENTAL: [&str; 17] = [
    "legitimacy",
    "necessity",
    "proportionality",
    "human_and_environmental_wellbeing",
    "robustness_and_safety",
    "accuracy",
    "efficiency",
    "human_agency",
    "human_control_and_oversight",
    "privacy",
    "transparency_and_explainability",
    "equality_and_non_discrimination",
    "diversity_and_accessibility",
    "protection_of_vulnerable_groups",
    "contestability_and_redress",
    "accountability",
    "traceability_and_auditability",
];

/// The values a yes / no question takes.
pub const YES_NO_VALUES: [&str; 4] = ["yes", "no", "unknown", "not_applicable"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub key: String,
    pub version: i32,
    pub title: String,
    pub description: String,
    pub kind: TemplateKind,
    #[serde(default)]
    pub principles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring: Option<Scoring>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskModel>,
    pub sections: Vec<Section>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    Readiness,
    Risk,
    Other,
}

impl TemplateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Readiness => "readiness",
            TemplateKind::Risk => "risk",
            TemplateKind::Other => "other",
        }
    }
}

/// Thresholds that name score levels, in ascending order of `min`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scoring {
    pub levels: Vec<ScoreLevel>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreLevel {
    pub id: String,
    pub label: String,
    pub min: f64,
}

/// Likelihood and impact scales and the matrix that maps them to a named risk level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskModel {
    pub likelihood: Vec<ScaleStep>,
    pub impact: Vec<ScaleStep>,
    /// From lowest to highest.
    pub levels: Vec<RiskLevel>,
    /// `matrix[likelihood - 1][impact - 1]` is a level id.
    pub matrix: Vec<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleStep {
    pub value: i32,
    pub label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskLevel {
    pub id: String,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "one")]
    pub weight: f64,
    pub questions: Vec<Question>,
}

fn one() -> f64 {
    1.0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    #[serde(flatten)]
    pub kind: QuestionKind,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub guidance: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default = "one")]
    pub weight: f64,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_if: Option<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tags {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instrumental: Vec<String>,
}

/// Shown only when another question's answer is one of `values` (a choice id, a yes / no value).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub question: String,
    #[serde(rename = "in")]
    pub values: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QuestionKind {
    SingleChoice {
        options: Vec<Choice>,
    },
    MultipleChoice {
        options: Vec<Choice>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_selected: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_selected: Option<u32>,
    },
    Scale {
        levels: Vec<Choice>,
    },
    YesNo,
    Text {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_length: Option<u32>,
    },
    Number {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    Date,
    Risk,
}

impl QuestionKind {
    pub fn name(&self) -> &'static str {
        match self {
            QuestionKind::SingleChoice { .. } => "single_choice",
            QuestionKind::MultipleChoice { .. } => "multiple_choice",
            QuestionKind::Scale { .. } => "scale",
            QuestionKind::YesNo => "yes_no",
            QuestionKind::Text { .. } => "text",
            QuestionKind::Number { .. } => "number",
            QuestionKind::Date => "date",
            QuestionKind::Risk => "risk",
        }
    }

    /// The choices of a choice or scale question.
    pub fn choices(&self) -> &[Choice] {
        match self {
            QuestionKind::SingleChoice { options } | QuestionKind::MultipleChoice { options, .. } => options,
            QuestionKind::Scale { levels } => levels,
            _ => &[],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub id: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

impl Template {
    pub fn questions(&self) -> impl Iterator<Item = (&Section, &Question)> {
        self.sections.iter().flat_map(|s| s.questions.iter().map(move |q| (s, q)))
    }

    pub fn question(&self, id: &str) -> Option<&Question> {
        self.questions().map(|(_, q)| q).find(|q| q.id == id)
    }

    /// The named level of a score, if the template declares levels.
    pub fn score_level(&self, score: f64) -> Option<&ScoreLevel> {
        self.scoring.as_ref()?.levels.iter().rev().find(|l| score >= l.min)
    }
}

impl RiskModel {
    /// The level for a likelihood and an impact, both counted from 1.
    pub fn level(&self, likelihood: i32, impact: i32) -> Option<&RiskLevel> {
        let row = self.matrix.get(usize::try_from(likelihood - 1).ok()?)?;
        let id = row.get(usize::try_from(impact - 1).ok()?)?;
        self.levels.iter().find(|l| &l.id == id)
    }

    /// The rank of a level, 0 for the lowest.
    pub fn rank(&self, level_id: &str) -> Option<usize> {
        self.levels.iter().position(|l| l.id == level_id)
    }
}
