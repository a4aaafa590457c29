//! Assessments end to end: co-edited answers with conflicts, comments, the review workflow and
//! its lock, progress and scores, next cycles, exports, and who may do what.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{TestApp, code};

const RISK: &str = "ai-system-risk";
const READINESS: &str = "ai-readiness";

struct World {
    manager: String,
    editor: String,
    editor2: String,
    reviewer: String,
    viewer: String,
    outsider: String,
    editor_id: String,
    unit: String,
    other_unit: String,
    other_manager: String,
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin().await;
    let directorate = app.create_unit(&admin, "Directorate", None).await;
    let unit = app.create_unit(&admin, "Intelligence", Some(&directorate)).await;
    let other_unit = app.create_unit(&admin, "Traffic", None).await;
    let (manager_id, manager) = app.create_user(&admin, "manager@agency.test", false).await;
    let (other_manager_id, other_manager) = app.create_user(&admin, "traffic.manager@agency.test", false).await;
    let (editor_id, editor) = app.create_user(&admin, "editor@agency.test", false).await;
    let (_, editor2) = app.create_user(&admin, "editor2@agency.test", false).await;
    let (_, reviewer) = app.create_user(&admin, "reviewer@agency.test", false).await;
    let (_, viewer) = app.create_user(&admin, "viewer@agency.test", false).await;
    let (_, outsider) = app.create_user(&admin, "outsider@agency.test", false).await;
    app.grant(&admin, &manager_id, &directorate, "MANAGER").await;
    app.grant(&admin, &other_manager_id, &other_unit, "MANAGER").await;
    World { manager, editor, editor2, reviewer, viewer, outsider, editor_id, unit, other_unit, other_manager }
}

async fn template_id(app: &TestApp, token: &str, key: &str) -> String {
    let data = app.ok(Some(token), "{ templates { id key version } }", json!({})).await;
    data["templates"].as_array().unwrap().iter().find(|t| t["key"] == key).expect("built-in template")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn user_id(app: &TestApp, token: &str) -> String {
    app.ok(Some(token), "{ me { id } }", json!({})).await["me"]["id"].as_str().unwrap().to_owned()
}

/// Creates an assessment in the world's unit, as its manager, with the usual people on it.
async fn create(app: &TestApp, w: &World, key: &str) -> String {
    let template = template_id(app, &w.manager, key).await;
    let mut members = Vec::new();
    for (token, role) in
        [(&w.editor, "EDITOR"), (&w.editor2, "EDITOR"), (&w.reviewer, "REVIEWER"), (&w.viewer, "VIEWER")]
    {
        members.push(json!({ "userId": user_id(app, token).await, "role": role }));
    }
    let data = app
        .ok(
            Some(&w.manager),
            "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id status } }",
            json!({ "i": { "unitId": w.unit, "templateId": template, "title": "Facial recognition pilot",
                           "subject": "Retrospective face search", "dueDate": "2030-06-30", "members": members } }),
        )
        .await;
    assert_eq!(data["createAssessment"]["status"], "DRAFT");
    data["createAssessment"]["id"].as_str().unwrap().to_owned()
}

const SET: &str = "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { questionId value revision carriedOver } }";

async fn set(app: &TestApp, token: &str, id: &str, question: &str, value: Value, expected: Option<i64>) -> Value {
    let mut input = json!({ "assessmentId": id, "questionId": question, "value": value });
    if let Some(e) = expected {
        input["expectedRevision"] = json!(e);
    }
    app.graphql(Some(token), SET, json!({ "i": input })).await
}

fn risk(inherent: (i64, i64), residual: Option<(i64, i64)>) -> Value {
    let mut v = json!({ "inherent": { "likelihood": inherent.0, "impact": inherent.1 }, "mitigations": "Human review of every match" });
    if let Some((l, i)) = residual {
        v["residual"] = json!({ "likelihood": l, "impact": i });
    }
    v
}

/// Answers every required question that has no condition with a valid value for its type.
async fn answer_required(app: &TestApp, token: &str, id: &str) {
    let data = app
        .ok(
            Some(token),
            "query($id: ID!) { assessment(id: $id) { template { sections { questions { id type required showIf { questionId } choices { id } } } } } }",
            json!({ "id": id }),
        )
        .await;
    for section in data["assessment"]["template"]["sections"].as_array().unwrap() {
        for q in section["questions"].as_array().unwrap() {
            if q["required"] != true || !q["showIf"].is_null() {
                continue;
            }
            let first = q["choices"][0]["id"].clone();
            let value = match q["type"].as_str().unwrap() {
                "text" => json!("Described in the project file"),
                "single_choice" | "scale" => first,
                "multiple_choice" => json!([first]),
                "yes_no" => json!("no"),
                "number" => json!(1),
                "date" => json!("2026-01-15"),
                "risk" => risk((3, 3), Some((2, 2))),
                other => panic!("unexpected type {other}"),
            };
            let body = set(app, token, id, q["id"].as_str().unwrap(), value, None).await;
            assert!(body.get("errors").is_none(), "{body}");
        }
    }
}

async fn status(app: &TestApp, token: &str, id: &str) -> String {
    let data = app.ok(Some(token), "query($id: ID!) { assessment(id: $id) { status } }", json!({ "id": id })).await;
    data["assessment"]["status"].as_str().unwrap().to_owned()
}

async fn events(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    app.events(token, &format!("assessment:{id}")).await
}

#[tokio::test]
async fn two_clients_writing_the_same_answer_one_wins_and_the_other_sees_the_winners_value() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    let (a, b) = tokio::join!(
        set(&app, &w.editor, &id, "intake-purpose", json!("Find suspects in CCTV stills"), Some(0)),
        set(&app, &w.editor2, &id, "intake-purpose", json!("Identify victims in abuse imagery"), Some(0)),
    );
    let (winner, loser) = if a.get("errors").is_none() { (a, b) } else { (b, a) };
    assert!(winner.get("errors").is_none(), "{winner}");
    assert_eq!(code(&loser), "CONFLICT");
    let current = &loser["errors"][0]["extensions"]["current"];
    assert_eq!(current["value"], winner["data"]["setAnswer"]["value"]);
    assert_eq!(current["revision"], 1);
    assert!(current["updated_by"].is_string() && current["updated_at"].is_string(), "{current}");
    // The loser now chooses its own value, knowingly, on top of the winner's revision.
    let merged = set(&app, &w.editor2, &id, "intake-purpose", json!("Both purposes, merged"), Some(1)).await;
    assert_eq!(merged["data"]["setAnswer"]["revision"], 2, "{merged}");
    let stale = set(&app, &w.editor, &id, "intake-purpose", json!("late"), Some(1)).await;
    assert_eq!(code(&stale), "CONFLICT");
    assert_eq!(stale["errors"][0]["extensions"]["current"]["value"], "Both purposes, merged");
}

#[tokio::test]
async fn racing_writes_without_a_revision_each_take_the_next_revision_and_none_is_lost() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    // The first answer moves the draft to in progress; the race is among plain answer writes.
    set(&app, &w.editor, &id, "intake-purpose", json!("first"), None).await;
    let texts: Vec<String> = (0..12).map(|i| format!("purpose {i}")).collect();
    let others = ["intake-decisions-supported", "intake-data", "intake-people-affected", "intake-legal-basis"];
    let same = texts.iter().enumerate().map(|(i, text)| {
        let token = if i % 2 == 0 { &w.editor } else { &w.editor2 };
        set(&app, token, &id, "intake-purpose", json!(text), None)
    });
    let distinct = others.iter().map(|q| set(&app, &w.editor2, &id, q, json!("answered in the race"), None));
    let (same, distinct) = tokio::join!(join_all(same), join_all(distinct));
    let mut revisions: Vec<i64> = same
        .iter()
        .map(|body| {
            assert!(body.get("errors").is_none(), "{body}");
            body["data"]["setAnswer"]["revision"].as_i64().unwrap()
        })
        .collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (2..=13).collect::<Vec<_>>(), "every write took its own next revision");
    for body in &distinct {
        assert_eq!(body["data"]["setAnswer"]["revision"], 1, "{body}");
    }
    // The stored answer is the last write's, and each event's before is the previous one's after.
    let last = same.iter().find(|b| b["data"]["setAnswer"]["revision"] == 13).unwrap();
    let data = app
        .ok(
            Some(&w.editor),
            "query($id: ID!) { assessment(id: $id) { answers { questionId value revision } progress { answered } } }",
            json!({ "id": id }),
        )
        .await;
    let stored = data["assessment"]["answers"].as_array().unwrap();
    let purpose = stored.iter().find(|a| a["questionId"] == "intake-purpose").unwrap();
    assert_eq!((&purpose["value"], &purpose["revision"]), (&last["data"]["setAnswer"]["value"], &json!(13)));
    assert_eq!(data["assessment"]["progress"]["answered"], 1 + others.len(), "the summary counts every answer");
    let chain: Vec<(Value, Value)> = events(&app, &w.manager, &id)
        .await
        .iter()
        .filter(|e| e["type"] == "answer.set" && e["payload"]["question_id"] == "intake-purpose")
        .map(|e| (e["payload"]["before"]["revision"].clone(), e["payload"]["after"]["revision"].clone()))
        .collect();
    let expected: Vec<(Value, Value)> =
        (1..=13).map(|r| (if r == 1 { Value::Null } else { json!(r - 1) }, json!(r))).collect();
    assert_eq!(chain, expected, "one event per write, in revision order");
    let report = attest::replay::rebuild(&app.state.db, true).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
}

#[tokio::test]
async fn writing_without_a_revision_overwrites_and_clearing_is_a_write_too() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    set(&app, &w.editor, &id, "intake-vendor", json!("yes"), None).await;
    let over = set(&app, &w.editor2, &id, "intake-vendor", json!("no"), None).await;
    assert_eq!(over["data"]["setAnswer"]["revision"], 2);
    let cleared = set(&app, &w.editor, &id, "intake-vendor", Value::Null, Some(2)).await;
    assert_eq!(cleared["data"]["setAnswer"]["value"], Value::Null, "{cleared}");
    assert_eq!(cleared["data"]["setAnswer"]["revision"], 3);
    let types: Vec<String> =
        events(&app, &w.manager, &id).await.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        types,
        ["assessment.created", "assessment.status_changed", "answer.set", "answer.set", "answer.cleared"],
        "the first answer moves the draft to in progress first"
    );
    assert_eq!(status(&app, &w.editor, &id).await, "IN_PROGRESS");
}

#[tokio::test]
async fn an_invalid_value_is_refused_naming_the_question_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    for (question, value) in [
        ("intake-lifecycle-stage", json!("not-a-stage")),
        ("intake-vendor", json!(true)),
        ("rk-privacy", risk((6, 1), None)),
        ("rk-privacy", json!({ "residual": { "likelihood": 1, "impact": 1 } })),
        ("no-such-question", json!("x")),
    ] {
        let body = set(&app, &w.editor, &id, question, value, None).await;
        assert_eq!(code(&body), "INVALID_INPUT", "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(question), "{message}");
    }
    let before = events(&app, &w.manager, &id).await.len();
    assert_eq!(before, 1, "only the creation is in the log");
}

#[tokio::test]
async fn the_workflow_moves_only_as_each_role_allows_and_approval_locks_the_state_approved() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    let act = |token: &str, mutation: &str| {
        let q = format!("mutation($id: ID!) {{ {mutation} {{ status }} }}");
        let token = token.to_owned();
        let id = id.clone();
        let app = &app;
        async move { app.graphql(Some(&token), &q, json!({ "id": id })).await }
    };
    let early = act(&w.editor, "submitAssessment(id: $id)").await;
    assert_eq!(code(&early), "INVALID_INPUT", "required questions are missing: {early}");
    assert_eq!(code(&set(&app, &w.viewer, &id, "intake-purpose", json!("x"), None).await), "FORBIDDEN");
    assert_eq!(code(&set(&app, &w.reviewer, &id, "intake-purpose", json!("x"), None).await), "FORBIDDEN");
    answer_required(&app, &w.editor, &id).await;
    assert_eq!(code(&act(&w.reviewer, "approveAssessment(id: $id)").await), "CONFLICT", "not submitted yet");
    assert_eq!(code(&act(&w.viewer, "submitAssessment(id: $id)").await), "FORBIDDEN");
    let submitted = act(&w.editor, "submitAssessment(id: $id)").await;
    assert_eq!(submitted["data"]["submitAssessment"]["status"], "SUBMITTED", "{submitted}");
    assert_eq!(code(&set(&app, &w.editor, &id, "intake-purpose", json!("x"), None).await), "CONFLICT");
    assert_eq!(code(&act(&w.editor, "approveAssessment(id: $id)").await), "FORBIDDEN");
    let no_reason = app
        .graphql(
            Some(&w.reviewer),
            "mutation($id: ID!) { returnAssessment(id: $id, reason: \"  \") { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&no_reason), "INVALID_INPUT");
    let returned = app
        .ok(
            Some(&w.reviewer),
            "mutation($id: ID!) { returnAssessment(id: $id, reason: \"Residual privacy risk is not argued\") { status returnReason } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(returned["returnAssessment"]["status"], "RETURNED");
    assert_eq!(returned["returnAssessment"]["returnReason"], "Residual privacy risk is not argued");
    set(&app, &w.editor, &id, "rk-privacy", risk((4, 4), Some((2, 3))), None).await;
    assert_eq!(status(&app, &w.editor, &id).await, "IN_PROGRESS");
    act(&w.editor, "submitAssessment(id: $id)").await;

    let approved = app
        .ok(
            Some(&w.reviewer),
            "mutation($id: ID!) { approveAssessment(id: $id) { status approval { approvedBy headSeq headHash } } }",
            json!({ "id": id }),
        )
        .await;
    let approval = &approved["approveAssessment"]["approval"];
    assert_eq!(approved["approveAssessment"]["status"], "APPROVED");
    assert_eq!(approval["approvedBy"], json!(user_id(&app, &w.reviewer).await));
    let log = events(&app, &w.manager, &id).await;
    let approval_event = log.iter().find(|e| e["type"] == "assessment.approved").unwrap();
    let approved_seq = approval_event["seq"].as_i64().unwrap();
    assert_eq!(approval["headSeq"], approved_seq - 1, "the head just before the approval");
    assert_eq!(approval["headHash"], log[usize::try_from(approved_seq - 2).unwrap()]["hash"]);
    assert_eq!(approval_event["prevHash"], approval["headHash"], "the approval is chained right after that state");

    // Locked: every write fails with a clear error until someone entitled reopens it.
    let locked = set(&app, &w.editor, &id, "intake-purpose", json!("x"), None).await;
    assert_eq!(code(&locked), "CONFLICT");
    assert!(locked["errors"][0]["message"].as_str().unwrap().contains("approved"), "{locked}");
    let comment = app
        .graphql(
            Some(&w.reviewer),
            "mutation($i: AddCommentInput!) { addComment(input: $i) { id } }",
            json!({ "i": { "assessmentId": id, "questionId": "rk-privacy", "body": "late remark" } }),
        )
        .await;
    assert_eq!(code(&comment), "CONFLICT");
    assert_eq!(code(&act(&w.reviewer, "reopenAssessment(id: $id)").await), "FORBIDDEN");
    let reopened = app
        .ok(
            Some(&w.manager),
            "mutation($id: ID!) { reopenAssessment(id: $id, reason: \"New camera network\") { status approval { headHash } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(reopened["reopenAssessment"]["status"], "IN_PROGRESS");
    assert!(reopened["reopenAssessment"]["approval"].is_null());
    let log = events(&app, &w.manager, &id).await;
    let reopen = log.last().unwrap();
    assert_eq!(reopen["type"], "assessment.reopened");
    assert_eq!(reopen["payload"]["cleared_approval"]["hash"], approval["headHash"]);
    assert!(set(&app, &w.editor, &id, "intake-purpose", json!("Updated"), None).await.get("errors").is_none());
    let archived = act(&w.manager, "archiveAssessment(id: $id)").await;
    assert_eq!(archived["data"]["archiveAssessment"]["status"], "ARCHIVED");
    assert_eq!(code(&set(&app, &w.editor, &id, "intake-purpose", json!("x"), None).await), "CONFLICT");
}

#[tokio::test]
async fn the_risk_register_rates_each_item_on_the_templates_matrix() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    let matrix = app
        .ok(
            Some(&w.editor),
            "query($id: ID!) { assessment(id: $id) { template { riskModel { matrix } } } }",
            json!({ "id": id }),
        )
        .await["assessment"]["template"]["riskModel"]["matrix"]
        .clone();
    let level = |l: usize, i: usize| matrix[l - 1][i - 1].as_str().unwrap().to_owned();
    set(&app, &w.editor, &id, "rk-legitimacy", risk((5, 5), Some((2, 3))), None).await;
    set(&app, &w.editor, &id, "rk-privacy", risk((4, 4), Some((3, 4))), None).await;
    set(&app, &w.editor, &id, "rk-accuracy", risk((2, 2), None), None).await;
    let data = app
        .ok(
            Some(&w.reviewer),
            "query($id: ID!) { assessment(id: $id) { riskRegister { highestResidual
                items { questionId inherent { level } residual { likelihood impact level } }
                residualCounts { level count } inherentCounts { level count } } } }",
            json!({ "id": id }),
        )
        .await;
    let reg = &data["assessment"]["riskRegister"];
    let item = |q: &str| reg["items"].as_array().unwrap().iter().find(|i| i["questionId"] == q).unwrap().clone();
    assert_eq!(item("rk-legitimacy")["inherent"]["level"], json!(level(5, 5)));
    assert_eq!(item("rk-legitimacy")["residual"]["level"], json!(level(2, 3)));
    assert_eq!(item("rk-privacy")["residual"]["level"], json!(level(3, 4)));
    assert!(item("rk-accuracy")["residual"].is_null());
    assert_eq!(reg["items"].as_array().unwrap().len(), 17, "one item per instrumental principle");
    let residual_total: i64 =
        reg["residualCounts"].as_array().unwrap().iter().map(|c| c["count"].as_i64().unwrap()).sum();
    assert_eq!(residual_total, 2);
    let inherent_total: i64 =
        reg["inherentCounts"].as_array().unwrap().iter().map(|c| c["count"].as_i64().unwrap()).sum();
    assert_eq!(inherent_total, 3);
    let levels = ["low", "medium", "high", "very_high"];
    let rank = |l: &str| levels.iter().position(|x| *x == l).unwrap();
    let expected = if rank(&level(2, 3)) > rank(&level(3, 4)) { level(2, 3) } else { level(3, 4) };
    assert_eq!(reg["highestResidual"], json!(expected));
}

#[tokio::test]
async fn readiness_levels_follow_the_scale_answers() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, READINESS).await;
    let data = app
        .ok(
            Some(&w.editor),
            "query($id: ID!) { assessment(id: $id) { template { scoreLevels { id min }
                sections { id questions { id type choices { id score } } } } } }",
            json!({ "id": id }),
        )
        .await;
    let template = &data["assessment"]["template"];
    let section = &template["sections"][0];
    let scales: Vec<&Value> =
        section["questions"].as_array().unwrap().iter().filter(|q| q["type"] == "scale").collect();
    // Answer every scale question of the first section with its highest level.
    for q in &scales {
        let top = q["choices"].as_array().unwrap().last().unwrap();
        set(&app, &w.editor, &id, q["id"].as_str().unwrap(), top["id"].clone(), None).await;
    }
    let top_score = scales[0]["choices"].as_array().unwrap().last().unwrap()["score"].as_f64().unwrap();
    let expected_level =
        template["scoreLevels"].as_array().unwrap().iter().rfind(|l| l["min"].as_f64().unwrap() <= top_score).unwrap()
            ["id"]
            .clone();
    let progress = app
        .ok(
            Some(&w.editor),
            "query($id: ID!) { assessment(id: $id) { progress { score level sections { sectionId score level answered } } } }",
            json!({ "id": id }),
        )
        .await;
    let p = &progress["assessment"]["progress"];
    assert_eq!(p["sections"][0]["score"].as_f64().unwrap(), top_score);
    assert_eq!(p["sections"][0]["level"], expected_level);
    assert_eq!(p["sections"][0]["answered"], json!(scales.len()));
    assert!(p["sections"][1]["score"].is_null(), "an unanswered section has no score");
    assert_eq!(p["score"].as_f64().unwrap(), top_score, "the only scored section decides the overall score");
}

#[tokio::test]
async fn a_conditional_question_counts_only_while_it_is_shown() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    let shown = || async {
        let d = app
            .ok(Some(&w.editor), "query($id: ID!) { assessment(id: $id) { progress { shown } } }", json!({ "id": id }))
            .await;
        d["assessment"]["progress"]["shown"].as_i64().unwrap()
    };
    let hidden = shown().await;
    set(&app, &w.editor, &id, "intake-vendor", json!("yes"), None).await;
    assert_eq!(shown().await, hidden + 1, "the vendor details appear");
    set(&app, &w.editor, &id, "intake-vendor", json!("no"), None).await;
    assert_eq!(shown().await, hidden);
}

#[tokio::test]
async fn people_see_and_do_only_what_their_role_and_agency_allow() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    let password = attest::auth::password::Password::parse("p", "other agency password").unwrap();
    attest::agencies::create_agency(&app.state, "South Police", "chief@south.test", &password, false).await.unwrap();
    let foreign = app.token("chief@south.test", "other agency password").await;
    let read = "query($id: ID!) { assessment(id: $id) { title } }";
    let comment = "mutation($i: AddCommentInput!) { addComment(input: $i) { id } }";
    let comment_vars =
        json!({ "i": { "assessmentId": id, "questionId": "rk-privacy", "body": "Is consent relevant here?" } });
    let cases: [(&str, &String, &str, &str, &str); 5] = [
        ("other agency", &foreign, "NOT_FOUND", "NOT_FOUND", "NOT_FOUND"),
        ("manager of another unit", &w.other_manager, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN"),
        ("agency user without a role", &w.outsider, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN"),
        ("viewer", &w.viewer, "ok", "FORBIDDEN", "FORBIDDEN"),
        ("reviewer", &w.reviewer, "ok", "FORBIDDEN", "ok"),
    ];
    let outcome = |b: &Value| if b.get("errors").is_none() { "ok".to_owned() } else { code(b).to_owned() };
    for (who, token, can_read, can_answer, can_comment) in cases {
        assert_eq!(outcome(&app.graphql(Some(token), read, json!({ "id": id })).await), can_read, "{who} reads");
        assert_eq!(
            outcome(&set(&app, token, &id, "intake-purpose", json!("x"), None).await),
            can_answer,
            "{who} answers"
        );
        assert_eq!(
            outcome(&app.graphql(Some(token), comment, comment_vars.clone()).await),
            can_comment,
            "{who} comments"
        );
    }
    for token in [&foreign, &w.other_manager, &w.outsider] {
        let list = app.ok(Some(token), "{ assessments { nodes { id } } }", json!({})).await;
        assert!(!list.to_string().contains(&id), "the assessment is not listed for others");
    }
    let listed = app.ok(Some(&w.viewer), "{ assessments { nodes { id myRole } } }", json!({})).await;
    assert_eq!(listed["assessments"]["nodes"][0]["myRole"], "VIEWER");
    let create_elsewhere = app
        .graphql(
            Some(&w.manager),
            "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id } }",
            json!({ "i": { "unitId": w.other_unit, "templateId": template_id(&app, &w.manager, RISK).await, "title": "Not mine" } }),
        )
        .await;
    assert_eq!(code(&create_elsewhere), "FORBIDDEN");
    let history = app
        .graphql(
            Some(&w.editor),
            "query($s: String!) { events(stream: $s) { nodes { seq } } }",
            json!({ "s": format!("assessment:{id}") }),
        )
        .await;
    assert_eq!(code(&history), "FORBIDDEN", "editors do not read the raw log");
}

#[tokio::test]
async fn comments_thread_keep_their_earlier_versions_and_resolve() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    let add = "mutation($i: AddCommentInput!) { addComment(input: $i) { id } }";
    let root = app
        .ok(Some(&w.reviewer), add, json!({ "i": { "assessmentId": id, "questionId": "rk-privacy", "body": "Which retention period applies?" } }))
        .await["addComment"]["id"]
        .clone();
    app.clock.advance(std::time::Duration::from_secs(1));
    app.ok(
        Some(&w.editor),
        add,
        json!({ "i": { "assessmentId": id, "questionId": "rk-privacy", "body": "Thirty days", "parentId": root } }),
    )
    .await;
    let wrong_parent = app
        .graphql(
            Some(&w.editor),
            add,
            json!({ "i": { "assessmentId": id, "questionId": "rk-accuracy", "body": "x", "parentId": root } }),
        )
        .await;
    assert_eq!(code(&wrong_parent), "INVALID_INPUT");
    let edit = "mutation($id: ID!, $b: String!) { editComment(id: $id, body: $b) { version body } }";
    assert_eq!(code(&app.graphql(Some(&w.editor), edit, json!({ "id": root, "b": "hijacked" })).await), "FORBIDDEN");
    app.ok(Some(&w.reviewer), edit, json!({ "id": root, "b": "Which retention period applies to non-matches?" })).await;
    app.ok(
        Some(&w.editor),
        "mutation($id: ID!) { setCommentResolved(id: $id, resolved: true) { resolved } }",
        json!({ "id": root }),
    )
    .await;
    let data = app
        .ok(
            Some(&w.viewer),
            "query($id: ID!) { assessment(id: $id) { comments(questionId: \"rk-privacy\") { id parentId body version resolved versions { version body } } } }",
            json!({ "id": id }),
        )
        .await;
    let comments = data["assessment"]["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[1]["parentId"], root);
    assert_eq!(comments[0]["version"], 2);
    assert_eq!(comments[0]["resolved"], true);
    let versions: Vec<&str> =
        comments[0]["versions"].as_array().unwrap().iter().map(|v| v["body"].as_str().unwrap()).collect();
    assert_eq!(versions, ["Which retention period applies?", "Which retention period applies to non-matches?"]);
    let reopened = app
        .ok(
            Some(&w.reviewer),
            "mutation($id: ID!) { setCommentResolved(id: $id, resolved: false) { resolved } }",
            json!({ "id": root }),
        )
        .await;
    assert_eq!(reopened["setCommentResolved"]["resolved"], false);
}

#[tokio::test]
async fn the_next_cycle_carries_answers_over_until_someone_confirms_or_changes_them() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    set(&app, &w.editor, &id, "intake-purpose", json!("Find suspects"), None).await;
    set(&app, &w.editor, &id, "rk-privacy", risk((4, 4), Some((2, 2))), None).await;
    let next = app
        .ok(
            Some(&w.manager),
            "mutation($id: ID!) { startNextCycle(previousId: $id, title: \"Pilot, year two\", dueDate: \"2031-06-30\") {
                id previousId title status answers { questionId value revision carriedOver } } }",
            json!({ "id": id }),
        )
        .await;
    let n = &next["startNextCycle"];
    assert_eq!(n["previousId"], json!(id));
    assert_eq!(n["status"], "DRAFT");
    let answers = n["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|a| a["carriedOver"] == true));
    let next_id = n["id"].as_str().unwrap().to_owned();
    let confirmed = app
        .ok(
            Some(&w.editor),
            "mutation($id: ID!) { confirmAnswer(assessmentId: $id, questionId: \"intake-purpose\", expectedRevision: 1) { carriedOver revision value } }",
            json!({ "id": next_id }),
        )
        .await;
    assert_eq!(confirmed["confirmAnswer"], json!({ "carriedOver": false, "revision": 2, "value": "Find suspects" }));
    let changed = set(&app, &w.editor, &next_id, "rk-privacy", risk((4, 4), Some((1, 2))), Some(1)).await;
    assert_eq!(changed["data"]["setAnswer"]["carriedOver"], false);
    let old = app
        .ok(Some(&w.editor), "query($id: ID!) { assessment(id: $id) { answers { revision } } }", json!({ "id": id }))
        .await;
    assert!(
        old["assessment"]["answers"].as_array().unwrap().iter().all(|a| a["revision"] == 1),
        "the earlier cycle is untouched"
    );
}

async fn export(app: &TestApp, token: &str, id: &str) -> Value {
    let d =
        app.ok(Some(token), "query($id: ID!) { exportAssessment(id: $id, format: JSON) }", json!({ "id": id })).await;
    serde_json::from_str::<Value>(d["exportAssessment"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_json_export_imports_back_into_an_archived_copy_with_the_same_content() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    set(&app, &w.editor, &id, "intake-purpose", json!("Find suspects, \"quickly\"\nand fairly"), None).await;
    set(&app, &w.editor, &id, "rk-privacy", risk((4, 4), Some((2, 2))), None).await;
    let root = app
        .ok(
            Some(&w.reviewer),
            "mutation($i: AddCommentInput!) { addComment(input: $i) { id } }",
            json!({ "i": { "assessmentId": id, "questionId": "rk-privacy", "body": "first" } }),
        )
        .await["addComment"]["id"]
        .clone();
    app.ok(
        Some(&w.reviewer),
        "mutation($id: ID!) { editComment(id: $id, body: \"second\") { id } }",
        json!({ "id": root }),
    )
    .await;
    let original = export(&app, &w.manager, &id).await;
    assert_eq!(original["events"].as_array().unwrap().len(), events(&app, &w.manager, &id).await.len());
    let imported = app
        .ok(
            Some(&w.manager),
            "mutation($u: ID!, $d: String!) { importAssessment(unitId: $u, document: $d) { id status } }",
            json!({ "u": w.unit, "d": original.to_string() }),
        )
        .await;
    assert_eq!(imported["importAssessment"]["status"], "ARCHIVED");
    let copy = export(&app, &w.manager, imported["importAssessment"]["id"].as_str().unwrap()).await;
    assert_eq!(copy["template"], original["template"]);
    assert_eq!(copy["answers"], original["answers"]);
    for key in ["title", "subject", "due_date"] {
        assert_eq!(copy["assessment"][key], original["assessment"][key], "{key}");
    }
    let strip = |c: &Value| json!({ "body": c["body"], "version": c["version"], "versions": c["versions"], "author_id": c["author_id"] });
    let comments = |doc: &Value| doc["comments"].as_array().unwrap().iter().map(strip).collect::<Vec<_>>();
    assert_eq!(comments(&copy), comments(&original));
    let emails = |doc: &Value| {
        doc["members"].as_array().unwrap().iter().map(|m| (m["email"].clone(), m["role"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(emails(&copy), emails(&original));
    let broken = app
        .graphql(
            Some(&w.manager),
            "mutation($u: ID!, $d: String!) { importAssessment(unitId: $u, document: $d) { id } }",
            json!({ "u": w.unit, "d": "{\"format\": \"something else\"}" }),
        )
        .await;
    assert_eq!(code(&broken), "INVALID_INPUT");
}

#[tokio::test]
async fn the_csv_export_has_one_row_per_question_and_defuses_formulas() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    set(&app, &w.editor, &id, "intake-purpose", json!("=HYPERLINK(\"http://evil\")"), None).await;
    let csv = app
        .ok(Some(&w.viewer), "query($id: ID!) { exportAssessment(id: $id, format: CSV) }", json!({ "id": id }))
        .await["exportAssessment"]
        .as_str()
        .unwrap()
        .to_owned();
    let questions = app
        .ok(
            Some(&w.viewer),
            "query($id: ID!) { assessment(id: $id) { template { sections { questions { id } } } } }",
            json!({ "id": id }),
        )
        .await;
    let total: usize = questions["assessment"]["template"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["questions"].as_array().unwrap().len())
        .sum();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), total + 1, "a header and one row per question");
    assert!(lines[0].starts_with("section_id,section,question_id,prompt"));
    assert!(csv.contains("\"'=HYPERLINK(\"\"http://evil\"\")\""), "{}", lines[1]);
}

#[tokio::test]
async fn the_unit_dashboard_summarizes_each_subtree() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let done = create(&app, &w, RISK).await;
    answer_required(&app, &w.editor, &done).await;
    set(&app, &w.editor, &done, "rk-privacy", risk((5, 5), Some((5, 5))), None).await;
    let late = create(&app, &w, RISK).await;
    app.ok(
        Some(&w.manager),
        "mutation($id: ID!) { updateAssessment(id: $id, dueDate: \"2001-01-01\") { id } }",
        json!({ "id": late }),
    )
    .await;
    let dir =
        app.ok(Some(&w.manager), "query($u: ID!) { unit(id: $u) { parentId } }", json!({ "u": w.unit })).await["unit"]
            ["parentId"]
            .clone();
    let data = app
        .ok(
            Some(&w.manager),
            "query($u: ID!) { unitDashboard(unitId: $u) { unit { id name } depth requiredTotal requiredAnswered completion
                overdue highestResidual byStatus { status count } } }",
            json!({ "u": dir }),
        )
        .await;
    let rows = data["unitDashboard"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "the directorate and its unit");
    assert_eq!(rows[0]["depth"], 0);
    assert_eq!(rows[1]["unit"]["id"], json!(w.unit));
    for row in rows {
        assert_eq!(row["overdue"], json!([late]));
        assert_eq!(row["highestResidual"], "very_high");
        let count =
            |s: &str| row["byStatus"].as_array().unwrap().iter().find(|c| c["status"] == s).unwrap()["count"].clone();
        assert_eq!(count("IN_PROGRESS"), 1);
        assert_eq!(count("DRAFT"), 1);
        let total = row["requiredTotal"].as_i64().unwrap();
        let answered = row["requiredAnswered"].as_i64().unwrap();
        assert_eq!(answered * 2, total, "one of two identical assessments is complete");
        assert!((row["completion"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    }
    let refused = app
        .graphql(Some(&w.editor), "query($u: ID!) { unitDashboard(unitId: $u) { depth } }", json!({ "u": dir }))
        .await;
    assert_eq!(code(&refused), "FORBIDDEN");
}

#[tokio::test]
async fn assigned_sections_are_listed_for_their_editor() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    let assign = "mutation($id: ID!, $s: String!, $u: ID!) { assignSection(assessmentId: $id, sectionId: $s, userId: $u) { assignments { sectionId userId } } }";
    app.ok(Some(&w.manager), assign, json!({ "id": id, "s": "fairness", "u": w.editor_id })).await;
    let reviewer_id = user_id(&app, &w.reviewer).await;
    let not_editor =
        app.graphql(Some(&w.manager), assign, json!({ "id": id, "s": "fairness", "u": reviewer_id })).await;
    assert_eq!(code(&not_editor), "INVALID_INPUT");
    let no_section = app.graphql(Some(&w.manager), assign, json!({ "id": id, "s": "nowhere", "u": w.editor_id })).await;
    assert_eq!(code(&no_section), "INVALID_INPUT");
    let mine = app.ok(Some(&w.editor), "{ myAssignments { sectionId assessment { id title } } }", json!({})).await;
    assert_eq!(
        mine["myAssignments"],
        json!([{ "sectionId": "fairness", "assessment": { "id": id, "title": "Facial recognition pilot" } }])
    );
    let theirs = app.ok(Some(&w.editor2), "{ myAssignments { sectionId } }", json!({})).await;
    assert_eq!(theirs["myAssignments"], json!([]));
}

/// The revision and value of a `setAnswer` that must succeed.
fn written(body: &Value) -> (i64, Value) {
    assert!(body.get("errors").is_none(), "{body}");
    (body["data"]["setAnswer"]["revision"].as_i64().unwrap(), body["data"]["setAnswer"]["value"].clone())
}

#[tokio::test]
async fn a_writer_whose_own_last_write_is_out_of_date_gets_the_latest_state_and_loses_no_change() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    let q = "intake-purpose";
    assert_eq!(written(&set(&app, &w.editor, &id, q, json!("a"), None).await).0, 1);
    assert_eq!(written(&set(&app, &w.editor, &id, q, json!("mine"), None).await).0, 2);
    // Someone else changes the answer after the editor's last write.
    assert_eq!(written(&set(&app, &w.editor2, &id, q, json!("theirs"), None).await).0, 3);
    // From the editor's last write, "mine" would change nothing; but the answer is "theirs" now.
    assert_eq!(written(&set(&app, &w.editor, &id, q, json!("mine"), None).await), (4, json!("mine")));
    // The editor saw the other's next change (revision 5) and builds on it.
    assert_eq!(written(&set(&app, &w.editor2, &id, q, json!("theirs again"), None).await).0, 5);
    assert_eq!(written(&set(&app, &w.editor, &id, q, json!("on top"), Some(5)).await), (6, json!("on top")));
    // A stale expectation is still refused.
    assert_eq!(code(&set(&app, &w.editor, &id, q, json!("late"), Some(5)).await), "CONFLICT");
    // Once removed from the assessment, the editor may write no more, whatever its last write saw.
    app.ok(
        Some(&w.manager),
        "mutation($id: ID!, $u: ID!) { setAssessmentMember(assessmentId: $id, userId: $u, role: null) { members { role } } }",
        json!({ "id": id, "u": w.editor_id }),
    )
    .await;
    assert_eq!(code(&set(&app, &w.editor, &id, q, json!("removed"), None).await), "FORBIDDEN");
    let data = app
        .ok(
            Some(&w.manager),
            "query($id: ID!) { assessment(id: $id) { answers { questionId value revision } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data["assessment"]["answers"], json!([{ "questionId": q, "value": "on top", "revision": 6 }]));
    let report = attest::replay::rebuild(&app.state.db, true).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
}

#[tokio::test]
async fn every_change_to_an_assessment_is_an_event_in_its_own_verified_stream() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let id = create(&app, &w, RISK).await;
    set(&app, &w.editor, &id, "intake-purpose", json!("a"), None).await;
    app.ok(
        Some(&w.manager),
        "mutation($id: ID!) { updateAssessment(id: $id, title: \"Renamed\") { title } }",
        json!({ "id": id }),
    )
    .await;
    app.ok(
        Some(&w.manager),
        "mutation($id: ID!, $u: ID!) { setAssessmentMember(assessmentId: $id, userId: $u, role: null) { members { role } } }",
        json!({ "id": id, "u": w.editor_id }),
    )
    .await;
    assert_eq!(
        code(&set(&app, &w.editor, &id, "intake-purpose", json!("b"), None).await),
        "FORBIDDEN",
        "no longer an editor"
    );
    let log = events(&app, &w.reviewer, &id).await;
    let types: Vec<&str> = log.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "assessment.created",
            "assessment.status_changed",
            "answer.set",
            "assessment.details_changed",
            "member.changed"
        ]
    );
    assert_eq!(log[3]["payload"]["before"]["title"], "Facial recognition pilot");
    assert_eq!(log[4]["payload"]["after"]["role"], Value::Null);
    let verified = app
        .ok(
            Some(&w.reviewer),
            "query($s: String!) { verifyStream(stream: $s) { ok eventsChecked } }",
            json!({ "s": format!("assessment:{id}") }),
        )
        .await;
    assert_eq!(verified["verifyStream"], json!({ "ok": true, "eventsChecked": 5 }));
}
