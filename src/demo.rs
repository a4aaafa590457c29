//! Sample data for trying Attest out (`attest serve --demo`): on an empty database, an agency
//! with a unit tree, one person per role and assessments in every state, all made through the
//! domain functions so that every change is in the event log like any other.

use anyhow::{Context, bail};
use chrono::{Duration, NaiveDate};
use serde_json::{Value, json};

use crate::agencies::{self, NewUser, UnitRole};
use crate::assessments::{self, AssessmentRole, Member, NewAssessment, SetAnswer, Transition};
use crate::auth::password::Password;
use crate::auth::{self, Actor, ClientAddress};
use crate::error::{AppError, LogDisplay};
use crate::ids::UnitId;
use crate::state::AppState;
use crate::templates::{Question, QuestionKind, TemplateKind};

/// Someone the demo created, with the password to sign in with.
pub struct DemoUser {
    pub role: &'static str,
    pub email: String,
    pub display_name: String,
    pub password: Password,
}

/// What the demo created.
pub struct Demo {
    pub agency: String,
    pub users: Vec<DemoUser>,
    pub assessments: usize,
}

fn domain(err: AppError) -> anyhow::Error {
    anyhow::anyhow!("{}", LogDisplay(&err))
}

/// Fills an empty database with a sample agency. Refuses a database that holds any agency, so
/// that it can never mix sample data into real records.
pub async fn seed(state: &AppState) -> anyhow::Result<Demo> {
    if crate::db::org::count_agencies(&state.db.conn).await.map_err(domain)? > 0 {
        bail!("the database is not empty: --demo only fills a new, empty database (use a fresh --database-url)");
    }
    let agency_name = "Demo Police Service";
    let admin_password = Password::generate();
    let (agency, admin_user) =
        agencies::create_agency(state, agency_name, "admin@demo.example.org", &admin_password, false)
            .await
            .map_err(domain)?;
    let admin = sign_in(state, &admin_user.email, &admin_password).await?;

    // The unit tree.
    let hq = agencies::create_unit(state, &admin, "Headquarters", None).await.map_err(domain)?;
    let cid =
        agencies::create_unit(state, &admin, "Criminal Investigation Department", Some(hq.id)).await.map_err(domain)?;
    let forensics =
        agencies::create_unit(state, &admin, "Digital Forensics Unit", Some(cid.id)).await.map_err(domain)?;
    let cyber = agencies::create_unit(state, &admin, "Cybercrime Unit", Some(cid.id)).await.map_err(domain)?;
    let ops = agencies::create_unit(state, &admin, "Operations", Some(hq.id)).await.map_err(domain)?;
    let traffic = agencies::create_unit(state, &admin, "Roads Policing", Some(ops.id)).await.map_err(domain)?;

    // One person per role.
    let mut users = vec![DemoUser {
        role: "administrator",
        email: admin_user.email.clone(),
        display_name: admin_user.display_name.clone(),
        password: admin_password,
    }];
    let people: [(&str, &str, &str, UnitId, UnitRole); 4] = [
        ("manager", "manager@demo.example.org", "Morgan Manager", hq.id, UnitRole::Manager),
        ("editor", "officer@demo.example.org", "Olivia Officer", cid.id, UnitRole::Member),
        ("reviewer", "reviewer@demo.example.org", "Ravi Reviewer", cid.id, UnitRole::Member),
        ("viewer", "viewer@demo.example.org", "Vera Viewer", ops.id, UnitRole::Member),
    ];
    let mut actors = Vec::new();
    for (role, email, name, unit, unit_role) in people {
        let password = Password::generate();
        let new = NewUser { email, display_name: name, password: password.expose(), is_admin: false };
        let user = agencies::insert_user(state, agency.id, admin.event_actor(), new, false).await.map_err(domain)?;
        agencies::grant_role(state, &admin, user.id, unit, unit_role).await.map_err(domain)?;
        actors.push(sign_in(state, email, &password).await?);
        users.push(DemoUser { role, email: email.into(), display_name: name.into(), password });
    }
    let [manager, editor, reviewer, viewer] = <[Actor; 4]>::try_from(actors).expect("four people were created");

    let templates = assessments::templates(state, &manager).await.map_err(domain)?;
    let readiness = templates
        .iter()
        .find(|t| t.template.kind == TemplateKind::Readiness)
        .context("the built-in readiness template is installed")?;
    let risk = templates
        .iter()
        .find(|t| t.template.kind == TemplateKind::Risk)
        .context("the built-in risk template is installed")?;
    let members = vec![
        Member { user_id: editor.user_id, role: AssessmentRole::Editor },
        Member { user_id: reviewer.user_id, role: AssessmentRole::Reviewer },
        Member { user_id: viewer.user_id, role: AssessmentRole::Viewer },
    ];
    let today = state.clock.now().date_naive();
    let create =
        |unit: UnitId, template: &assessments::StoredTemplate, title: &str, subject: &str, due: Option<NaiveDate>| {
            NewAssessment {
                unit_id: unit,
                template_id: template.id,
                title: title.into(),
                subject: subject.into(),
                due_date: due,
                members: members.clone(),
            }
        };

    // A draft nobody has started.
    assessments::create_assessment(
        state,
        &manager,
        create(traffic.id, readiness, "AI readiness 2027: Roads Policing", "", Some(today + Duration::days(90))),
    )
    .await
    .map_err(domain)?;

    // In progress, about a third answered, and overdue.
    let partial = assessments::create_assessment(
        state,
        &manager,
        create(cyber.id, readiness, "AI readiness 2026: Cybercrime Unit", "", Some(today - Duration::days(3))),
    )
    .await
    .map_err(domain)?;
    answer_all(state, &editor, partial.id, &readiness.template.sections, Some(3)).await?;

    // A risk assessment with every risk rated, due soon.
    let anpr = assessments::create_assessment(
        state,
        &manager,
        create(
            traffic.id,
            risk,
            "Risk assessment: number-plate recognition",
            "Automated number-plate recognition cameras on arterial roads",
            Some(today + Duration::days(10)),
        ),
    )
    .await
    .map_err(domain)?;
    answer_all(state, &editor, anpr.id, &risk.template.sections, None).await?;

    // Submitted for review.
    let submitted = assessments::create_assessment(
        state,
        &manager,
        create(
            forensics.id,
            risk,
            "Risk assessment: evidence triage model",
            "Machine-learning triage of seized phone images",
            Some(today + Duration::days(20)),
        ),
    )
    .await
    .map_err(domain)?;
    answer_all(state, &editor, submitted.id, &risk.template.sections, None).await?;
    assessments::transition(state, &editor, submitted.id, Transition::Submit, None).await.map_err(domain)?;

    // Approved.
    let approved = assessments::create_assessment(
        state,
        &manager,
        create(forensics.id, readiness, "AI readiness 2026: Digital Forensics Unit", "", None),
    )
    .await
    .map_err(domain)?;
    answer_all(state, &editor, approved.id, &readiness.template.sections, None).await?;
    assessments::transition(state, &editor, approved.id, Transition::Submit, None).await.map_err(domain)?;
    assessments::transition(state, &reviewer, approved.id, Transition::Approve, None).await.map_err(domain)?;

    // The sessions opened to act as each person are not handed to anyone: end them.
    for actor in [&manager, &editor, &reviewer, &viewer, &admin] {
        auth::logout(state, actor).await.map_err(domain)?;
    }
    Ok(Demo { agency: agency.name, users, assessments: 5 })
}

async fn sign_in(state: &AppState, email: &str, password: &Password) -> anyhow::Result<Actor> {
    let outcome = auth::login(state, email, password.expose(), &ClientAddress("demo".into())).await.map_err(domain)?;
    auth::authenticate(state, outcome.token.expose()).await.map_err(domain)
}

/// Answers the questions shown, in document order; with `every`, only one question in so many.
async fn answer_all(
    state: &AppState,
    editor: &Actor,
    id: crate::ids::AssessmentId,
    sections: &[crate::templates::Section],
    every: Option<usize>,
) -> anyhow::Result<()> {
    let mut given: Vec<(String, Value)> = Vec::new();
    for (n, question) in sections.iter().flat_map(|s| &s.questions).enumerate() {
        if let Some(cond) = &question.show_if {
            let shown = given.iter().any(|(q, v)| {
                *q == cond.question
                    && match v {
                        Value::String(s) => cond.values.contains(s),
                        Value::Array(items) => {
                            items.iter().any(|i| i.as_str().is_some_and(|s| cond.values.contains(&s.to_owned())))
                        }
                        _ => false,
                    }
            });
            if !shown {
                continue;
            }
        }
        if every.is_some_and(|k| n % k != 0) {
            continue;
        }
        let value = sample_value(question, n);
        let note = (n % 5 == 0).then(|| "Checked with the data protection officer.".to_owned());
        let input = SetAnswer {
            assessment_id: id,
            question_id: question.id.clone(),
            value: Some(value.clone()),
            note,
            expected_revision: Some(0),
        };
        assessments::set_answer(state, editor, input).await.map_err(domain)?;
        given.push((question.id.clone(), value));
    }
    Ok(())
}

/// A plausible answer for a question, varied by its position.
fn sample_value(question: &Question, n: usize) -> Value {
    match &question.kind {
        QuestionKind::SingleChoice { options } => json!(options[n % options.len()].id),
        QuestionKind::Scale { levels } => json!(levels[(levels.len() / 2 + n % 2).min(levels.len() - 1)].id),
        QuestionKind::MultipleChoice { options, .. } => json!([options[0].id]),
        QuestionKind::YesNo => json!(if n % 4 == 3 { "no" } else { "yes" }),
        QuestionKind::Text { .. } => {
            json!("Documented in the unit's procedures; reviewed every year by the ethics board and the legal service.")
        }
        QuestionKind::Number { min, max } => json!(min.unwrap_or(1.0).max(1.0).min(max.unwrap_or(f64::MAX))),
        QuestionKind::Date => json!("2026-03-01"),
        QuestionKind::Risk => {
            let likelihood = 2 + (n % 3) as i64;
            let impact = 2 + (n % 4) as i64;
            json!({
                "inherent": { "likelihood": likelihood, "impact": impact },
                "mitigations": "Human review of every match before action; access logged and audited monthly.",
                "residual": { "likelihood": (likelihood - 1).max(1), "impact": (impact - 1).max(1) },
            })
        }
    }
}
