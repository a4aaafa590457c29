//! Reading a template document (YAML or JSON) and checking all of it. Every problem is reported
//! with its path, such as `sections[2].questions[4].options: duplicate id "b"`, and any problem
//! rejects the whole document.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::model::*;

/// Every problem found in a document, in document order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateErrors(pub Vec<String>);

/// Parses and validates a template document.
pub fn parse(source: &str) -> Result<Template, TemplateErrors> {
    let value: Value =
        serde_yaml_ng::from_str(source).map_err(|e| TemplateErrors(vec![format!("not valid YAML: {e}")]))?;
    let mut c = Checker::default();
    let template = c.template(&value);
    if c.errors.is_empty() {
        return Ok(template);
    }
    // Whole-document checks run last; a stable sort on the section and question indices of each
    // path puts every problem back in document order.
    let mut errors = c.errors;
    errors.sort_by_key(|e| document_position(e));
    Err(TemplateErrors(errors))
}

#[derive(Default)]
struct Checker {
    errors: Vec<String>,
}

const MAX_TEXT: usize = 10_000;
const MAX_TITLE: usize = 300;

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl Checker {
    fn err(&mut self, path: &str, msg: impl Into<String>) {
        let msg = msg.into();
        self.errors.push(if path.is_empty() { msg } else { format!("{path}: {msg}") });
    }

    fn object<'a>(&mut self, v: &'a Value, path: &str, allowed: &[&str]) -> Option<&'a Map<String, Value>> {
        let Some(obj) = v.as_object() else {
            self.err(path, "expected a mapping");
            return None;
        };
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.err(path, format!("unknown key \"{key}\""));
            }
        }
        Some(obj)
    }

    fn string(&mut self, obj: &Map<String, Value>, path: &str, key: &str, required: bool, max: usize) -> String {
        match obj.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.err(path, format!("missing \"{key}\""));
                }
                String::new()
            }
            Some(Value::String(s)) => {
                let s = s.trim().to_owned();
                if required && s.is_empty() {
                    self.err(&join(path, key), "must not be empty");
                }
                if s.chars().count() > max {
                    self.err(&join(path, key), format!("longer than {max} characters"));
                }
                s
            }
            Some(_) => {
                self.err(&join(path, key), "expected a string");
                String::new()
            }
        }
    }

    fn id(&mut self, obj: &Map<String, Value>, path: &str) -> String {
        let id = match obj.get("id") {
            Some(Value::Number(n)) => n.to_string(),
            _ => self.string(obj, path, "id", true, 80),
        };
        if !id.is_empty() && !is_id(&id) {
            self.err(&join(path, "id"), format!("\"{id}\" must use only a-z, 0-9, - and _"));
        }
        id
    }

    fn number(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<f64> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).or_else(|| {
                self.err(&join(path, key), "expected a finite number");
                None
            }),
            Some(_) => {
                self.err(&join(path, key), "expected a number");
                None
            }
        }
    }

    fn integer(&mut self, obj: &Map<String, Value>, path: &str, key: &str) -> Option<i64> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(_) => {
                self.err(&join(path, key), "expected an integer");
                None
            }
        }
    }

    fn weight(&mut self, obj: &Map<String, Value>, path: &str) -> f64 {
        match self.number(obj, path, "weight") {
            None => 1.0,
            Some(w) if w > 0.0 => w,
            Some(_) => {
                self.err(&join(path, "weight"), "must be greater than 0");
                1.0
            }
        }
    }

    fn list<'a>(&mut self, obj: &'a Map<String, Value>, path: &str, key: &str, required: bool) -> &'a [Value] {
        match obj.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.err(path, format!("missing \"{key}\""));
                }
                &[]
            }
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.err(&join(path, key), "expected a list");
                &[]
            }
        }
    }

    fn names(&mut self, obj: &Map<String, Value>, path: &str, key: &str, allowed: &[&str]) -> Vec<String> {
        let path_key = join(path, key);
        let mut out = Vec::new();
        for (i, v) in self.list(obj, path, key, false).iter().enumerate() {
            match v.as_str() {
                Some(s) if allowed.is_empty() || allowed.contains(&s) => {
                    if out.iter().any(|o: &String| o == s) {
                        self.err(&format!("{path_key}[{i}]"), format!("duplicate \"{s}\""));
                    }
                    out.push(s.to_owned());
                }
                Some(s) if !allowed.is_empty() => self.err(
                    &format!("{path_key}[{i}]"),
                    format!("unknown value \"{s}\"; expected one of {}", allowed.join(", ")),
                ),
                _ => self.err(&format!("{path_key}[{i}]"), "expected a string"),
            }
        }
        out
    }

    fn template(&mut self, v: &Value) -> Template {
        const KEYS: &[&str] =
            &["key", "version", "title", "description", "kind", "principles", "scoring", "risk", "sections"];
        let empty = Map::new();
        let obj = self.object(v, "", KEYS).unwrap_or(&empty);
        let key = self.string(obj, "", "key", true, 80);
        if !key.is_empty() && !is_id(&key) {
            self.err("key", format!("\"{key}\" must use only a-z, 0-9, - and _"));
        }
        let version = match self.integer(obj, "", "version") {
            Some(v) if (1..=i64::from(i32::MAX)).contains(&v) => i32::try_from(v).unwrap_or(1),
            Some(_) => {
                self.err("version", "must be a positive integer");
                1
            }
            None => {
                self.err("", "missing \"version\"");
                1
            }
        };
        let title = self.string(obj, "", "title", true, MAX_TITLE);
        let description = self.string(obj, "", "description", false, MAX_TEXT);
        let kind = match self.string(obj, "", "kind", true, 20).as_str() {
            "readiness" => TemplateKind::Readiness,
            "risk" => TemplateKind::Risk,
            "other" | "" => TemplateKind::Other,
            other => {
                self.err("kind", format!("unknown kind \"{other}\"; expected readiness, risk or other"));
                TemplateKind::Other
            }
        };
        let principles = self.names(obj, "", "principles", &PRINCIPLES);
        let scoring = obj.get("scoring").map(|s| self.scoring(s));
        let risk = obj.get("risk").map(|r| self.risk(r));
        let mut sections = Vec::new();
        let section_values = self.list(obj, "", "sections", true);
        if section_values.is_empty() && obj.contains_key("sections") {
            self.err("sections", "must hold at least one section");
        }
        for (i, s) in section_values.iter().enumerate() {
            sections.push(self.section(s, &format!("sections[{i}]")));
        }
        if kind != TemplateKind::Risk && risk.is_some() {
            self.err("risk", "only a template of kind risk may have a risk block");
        }
        if kind == TemplateKind::Risk && risk.is_none() {
            self.err("", "a risk template needs a \"risk\" block with its scales and matrix");
        }
        let template = Template { key, version, title, description, kind, principles, scoring, risk, sections };
        self.cross_checks(&template);
        template
    }

    fn scoring(&mut self, v: &Value) -> Scoring {
        let empty = Map::new();
        let obj = self.object(v, "scoring", &["levels"]).unwrap_or(&empty);
        let mut levels: Vec<ScoreLevel> = Vec::new();
        for (i, l) in self.list(obj, "scoring", "levels", true).iter().enumerate() {
            let path = format!("scoring.levels[{i}]");
            let Some(o) = self.object(l, &path, &["id", "label", "min"]) else { continue };
            let id = self.id(o, &path);
            let label = self.string(o, &path, "label", true, MAX_TITLE);
            let min = self.number(o, &path, "min").unwrap_or_else(|| {
                self.err(&path, "missing \"min\"");
                0.0
            });
            if levels.iter().any(|l| l.id == id) {
                self.err(&path, format!("duplicate id \"{id}\""));
            }
            if levels.last().is_some_and(|prev| prev.min >= min) {
                self.err(&join(&path, "min"), "levels must be in ascending order of min");
            }
            levels.push(ScoreLevel { id, label, min });
        }
        Scoring { levels }
    }

    fn steps(&mut self, obj: &Map<String, Value>, key: &str) -> Vec<ScaleStep> {
        let mut steps = Vec::new();
        let items = self.list(obj, "risk", key, true);
        if items.len() != 5 {
            self.err(&format!("risk.{key}"), format!("must have exactly 5 levels, found {}", items.len()));
        }
        for (i, s) in items.iter().enumerate() {
            let path = format!("risk.{key}[{i}]");
            let Some(o) = self.object(s, &path, &["value", "label", "description"]) else { continue };
            let value = self.integer(o, &path, "value").unwrap_or(0);
            if value != i64::try_from(i + 1).unwrap_or(0) {
                self.err(&join(&path, "value"), format!("must be {}", i + 1));
            }
            let label = self.string(o, &path, "label", true, MAX_TITLE);
            let description = self.string(o, &path, "description", false, MAX_TEXT);
            steps.push(ScaleStep { value: i32::try_from(value).unwrap_or(0), label, description });
        }
        steps
    }

    fn risk(&mut self, v: &Value) -> RiskModel {
        let empty = Map::new();
        let obj = self.object(v, "risk", &["likelihood", "impact", "levels", "matrix"]).unwrap_or(&empty);
        let likelihood = self.steps(obj, "likelihood");
        let impact = self.steps(obj, "impact");
        let mut levels: Vec<RiskLevel> = Vec::new();
        for (i, l) in self.list(obj, "risk", "levels", true).iter().enumerate() {
            let path = format!("risk.levels[{i}]");
            let Some(o) = self.object(l, &path, &["id", "label"]) else { continue };
            let id = self.id(o, &path);
            let label = self.string(o, &path, "label", true, MAX_TITLE);
            if levels.iter().any(|l| l.id == id) {
                self.err(&path, format!("duplicate id \"{id}\""));
            }
            levels.push(RiskLevel { id, label });
        }
        if levels.len() < 2 {
            self.err("risk.levels", "must name at least 2 levels");
        }
        let mut matrix = Vec::new();
        let rows = self.list(obj, "risk", "matrix", true);
        if rows.len() != likelihood.len() {
            self.err("risk.matrix", format!("must have one row per likelihood level ({})", likelihood.len()));
        }
        for (r, row) in rows.iter().enumerate() {
            let path = format!("risk.matrix[{r}]");
            let Some(cells) = row.as_array() else {
                self.err(&path, "expected a list of level ids");
                continue;
            };
            if cells.len() != impact.len() {
                self.err(&path, format!("must have one cell per impact level ({})", impact.len()));
            }
            let mut out = Vec::new();
            for (c, cell) in cells.iter().enumerate() {
                match cell.as_str() {
                    Some(id) if levels.iter().any(|l| l.id == id) => out.push(id.to_owned()),
                    Some(id) => self.err(&format!("{path}[{c}]"), format!("unknown risk level \"{id}\"")),
                    None => self.err(&format!("{path}[{c}]"), "expected a risk level id"),
                }
            }
            matrix.push(out);
        }
        // The matrix must be monotone: a level never falls as likelihood or impact rises.
        let rank = |id: &String| levels.iter().position(|l| &l.id == id);
        for (r, row) in matrix.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                let here = rank(cell);
                let left = c.checked_sub(1).and_then(|p| row.get(p)).and_then(rank);
                let above = r.checked_sub(1).and_then(|p| matrix.get(p)).and_then(|prev| prev.get(c)).and_then(rank);
                if here < left || here < above {
                    self.err(
                        &format!("risk.matrix[{r}][{c}]"),
                        format!("\"{cell}\" is lower than a cell with smaller likelihood or impact"),
                    );
                }
            }
        }
        RiskModel { likelihood, impact, levels, matrix }
    }

    fn section(&mut self, v: &Value, path: &str) -> Section {
        let empty = Map::new();
        let obj = self.object(v, path, &["id", "title", "description", "weight", "questions"]).unwrap_or(&empty);
        let id = self.id(obj, path);
        let title = self.string(obj, path, "title", true, MAX_TITLE);
        let description = self.string(obj, path, "description", false, MAX_TEXT);
        let weight = self.weight(obj, path);
        let mut questions = Vec::new();
        let items = self.list(obj, path, "questions", true);
        if items.is_empty() && obj.contains_key("questions") {
            self.err(&join(path, "questions"), "must hold at least one question");
        }
        for (i, q) in items.iter().enumerate() {
            questions.push(self.question(q, &format!("{path}.questions[{i}]")));
        }
        Section { id, title, description, weight, questions }
    }

    fn choices(&mut self, obj: &Map<String, Value>, path: &str, key: &str, score_required: bool) -> Vec<Choice> {
        let mut out: Vec<Choice> = Vec::new();
        let items = self.list(obj, path, key, true);
        if obj.contains_key(key) && items.len() < 2 {
            self.err(&join(path, key), "must offer at least 2 choices");
        }
        for (i, c) in items.iter().enumerate() {
            let cpath = format!("{}[{i}]", join(path, key));
            let Some(o) = self.object(c, &cpath, &["id", "label", "score"]) else { continue };
            let id = self.id(o, &cpath);
            let label = self.string(o, &cpath, "label", true, MAX_TITLE);
            let score = self.number(o, &cpath, "score");
            if score_required && score.is_none() {
                self.err(&cpath, "missing \"score\"");
            }
            if out.iter().any(|c| c.id == id) {
                self.err(&join(path, key), format!("duplicate id \"{id}\""));
            }
            out.push(Choice { id, label, score });
        }
        out
    }

    fn question(&mut self, v: &Value, path: &str) -> Question {
        const COMMON: &[&str] = &["id", "type", "prompt", "guidance", "required", "weight", "tags", "show_if"];
        const EXTRA: &[&str] = &["options", "levels", "min_selected", "max_selected", "max_length", "min", "max"];
        let all: Vec<&str> = COMMON.iter().chain(EXTRA).copied().collect();
        let empty = Map::new();
        let obj = self.object(v, path, &all).unwrap_or(&empty);
        let id = self.id(obj, path);
        let prompt = self.string(obj, path, "prompt", true, MAX_TEXT);
        let guidance = self.string(obj, path, "guidance", false, MAX_TEXT);
        let required = match obj.get("required") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.err(&join(path, "required"), "expected true or false");
                false
            }
        };
        let weight = self.weight(obj, path);
        let type_name = self.string(obj, path, "type", true, 40);
        let allowed_extra: &[&str] = match type_name.as_str() {
            "single_choice" => &["options"],
            "multiple_choice" => &["options", "min_selected", "max_selected"],
            "scale" => &["levels"],
            "text" => &["max_length"],
            "number" => &["min", "max"],
            _ => &[],
        };
        for key in EXTRA {
            if obj.contains_key(*key) && !allowed_extra.contains(key) && !type_name.is_empty() {
                self.err(path, format!("\"{key}\" does not apply to a {type_name} question"));
            }
        }
        let count = |c: &mut Checker, key: &str| {
            c.integer(obj, path, key).and_then(|n| {
                u32::try_from(n).ok().or_else(|| {
                    c.err(&join(path, key), "must not be negative");
                    None
                })
            })
        };
        let kind = match type_name.as_str() {
            "single_choice" => QuestionKind::SingleChoice { options: self.choices(obj, path, "options", false) },
            "multiple_choice" => {
                let options = self.choices(obj, path, "options", false);
                let min_selected = count(self, "min_selected");
                let max_selected = count(self, "max_selected");
                if let (Some(lo), Some(hi)) = (min_selected, max_selected)
                    && lo > hi
                {
                    self.err(&join(path, "min_selected"), "must not exceed max_selected");
                }
                if max_selected == Some(0) {
                    self.err(&join(path, "max_selected"), "must be at least 1");
                }
                if max_selected.is_some_and(|hi| usize::try_from(hi).unwrap_or(usize::MAX) > options.len()) {
                    self.err(&join(path, "max_selected"), "exceeds the number of options");
                }
                QuestionKind::MultipleChoice { options, min_selected, max_selected }
            }
            "scale" => {
                let levels = self.choices(obj, path, "levels", true);
                if levels.len() > 10 {
                    self.err(&join(path, "levels"), "must have at most 10 levels");
                }
                QuestionKind::Scale { levels }
            }
            "yes_no" => QuestionKind::YesNo,
            "text" => {
                let max_length = count(self, "max_length");
                if max_length == Some(0) {
                    self.err(&join(path, "max_length"), "must be at least 1");
                }
                QuestionKind::Text { max_length }
            }
            "number" => {
                let min = self.number(obj, path, "min");
                let max = self.number(obj, path, "max");
                if let (Some(lo), Some(hi)) = (min, max)
                    && lo > hi
                {
                    self.err(&join(path, "min"), "must not exceed max");
                }
                QuestionKind::Number { min, max }
            }
            "date" => QuestionKind::Date,
            "risk" => QuestionKind::Risk,
            "" => QuestionKind::Text { max_length: None },
            other => {
                self.err(
                    &join(path, "type"),
                    format!("unknown type \"{other}\"; expected single_choice, multiple_choice, scale, yes_no, text, number, date or risk"),
                );
                QuestionKind::Text { max_length: None }
            }
        };
        let tags = match obj.get("tags") {
            None | Some(Value::Null) => Tags::default(),
            Some(t) => {
                let tpath = join(path, "tags");
                match self.object(t, &tpath, &["principles", "lifecycle", "instrumental"]) {
                    Some(o) => Tags {
                        principles: self.names(o, &tpath, "principles", &PRINCIPLES),
                        lifecycle: self.names(o, &tpath, "lifecycle", &LIFECYCLE_STAGES),
                        instrumental: self.names(o, &tpath, "instrumental", &INSTRUMENTAL),
                    },
                    None => Tags::default(),
                }
            }
        };
        let show_if = obj.get("show_if").and_then(|c| {
            let cpath = join(path, "show_if");
            let o = self.object(c, &cpath, &["question", "equals", "in"])?;
            let question = self.string(o, &cpath, "question", true, 80);
            let values = match (o.get("equals"), o.get("in")) {
                (Some(Value::String(v)), None) => vec![v.clone()],
                (Some(Value::Bool(b)), None) => vec![if *b { "yes" } else { "no" }.to_owned()],
                (None, Some(_)) => {
                    let values = self.names(o, &cpath, "in", &[]);
                    if values.is_empty() {
                        self.err(&join(&cpath, "in"), "must list at least one value");
                    }
                    values
                }
                _ => {
                    self.err(&cpath, "needs exactly one of \"equals\" (a value) or \"in\" (a list of values)");
                    Vec::new()
                }
            };
            Some(Condition { question, values })
        });
        Question { id, kind, prompt, guidance, required, weight, tags, show_if }
    }

    /// Checks that need the whole document: unique ids, conditions that refer to earlier
    /// questions and to values those questions can take, risk questions with a risk model.
    fn cross_checks(&mut self, t: &Template) {
        let mut section_ids = HashSet::new();
        let mut seen: HashMap<&str, (&Question, String)> = HashMap::new();
        for (s, section) in t.sections.iter().enumerate() {
            if !section.id.is_empty() && !section_ids.insert(section.id.as_str()) {
                self.err(&format!("sections[{s}].id"), format!("duplicate section id \"{}\"", section.id));
            }
            for (q, question) in section.questions.iter().enumerate() {
                let path = format!("sections[{s}].questions[{q}]");
                if let Some(cond) = &question.show_if {
                    match seen.get(cond.question.as_str()) {
                        None if cond.question == question.id => {
                            self.err(&join(&path, "show_if.question"), "a question cannot depend on itself")
                        }
                        None => self.err(
                            &join(&path, "show_if.question"),
                            format!("\"{}\" is not an earlier question of this template", cond.question),
                        ),
                        Some((other, _)) => {
                            let possible: Vec<&str> = match &other.kind {
                                QuestionKind::YesNo => YES_NO_VALUES.to_vec(),
                                k if !k.choices().is_empty() => k.choices().iter().map(|c| c.id.as_str()).collect(),
                                _ => {
                                    self.err(
                                        &join(&path, "show_if.question"),
                                        "conditions can only refer to choice, scale or yes_no questions",
                                    );
                                    Vec::new()
                                }
                            };
                            for v in &cond.values {
                                if !possible.is_empty() && !possible.contains(&v.as_str()) {
                                    self.err(
                                        &join(&path, "show_if"),
                                        format!("\"{}\" cannot answer \"{}\"", v, cond.question),
                                    );
                                }
                            }
                        }
                    }
                }
                if matches!(question.kind, QuestionKind::Risk) && t.kind != TemplateKind::Risk {
                    self.err(&join(&path, "type"), "risk questions belong only in templates of kind risk");
                } else if matches!(question.kind, QuestionKind::Risk) && t.risk.is_none() {
                    self.err(&join(&path, "type"), "a risk question needs a \"risk\" block in the template");
                }
                if !question.id.is_empty() {
                    if let Some((_, first)) = seen.get(question.id.as_str()) {
                        self.err(
                            &join(&path, "id"),
                            format!("duplicate question id \"{}\" (first at {first})", question.id),
                        );
                    } else {
                        seen.insert(question.id.as_str(), (question, path.clone()));
                    }
                }
            }
        }
    }
}

/// `(section, question)` indices of a problem's path; problems outside the sections come first.
fn document_position(problem: &str) -> (i64, i64) {
    let path = problem.split(": ").next().unwrap_or("");
    let index = |prefix: &str| {
        path.find(prefix)
            .and_then(|at| path[at + prefix.len()..].split(']').next())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(-1)
    };
    (index("sections["), index("questions["))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}
