//! The web application in a real browser: headless Chromium driven over the DevTools protocol
//! against the real server. Without Chromium these tests say so and pass, unless `CI` is set.
//! With `ATTEST_SCREENSHOTS=1` they save the main screens under `docs/screenshots/`.

mod cdp;

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{NEW_PASSWORD, TestApp, TestDb, test_config};
use cdp::{Browser, Page};

/// One Chromium at a time: the machines that run the tests have few cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const EVIDENCE: &str = "rd-leadership-evidence";
const EVIDENCE_INPUT: &str = "#q-rd-leadership-evidence-input";
const VISION: &str = "rd-leadership-vision";

/// Chromium, or `None` (and a note) when this machine has none; on CI its absence is a failure.
async fn launch() -> Option<Browser> {
    match cdp::chromium() {
        Some(binary) => Some(Browser::launch(&binary).await),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but no Chromium was found: install the Debian package chromium or set ATTEST_CHROMIUM")
        }
        None => {
            eprintln!("browser tests skipped: no Chromium found (install the Debian package chromium)");
            None
        }
    }
}

struct World {
    assessment: String,
    unit: String,
    editor: String,
    editor2: String,
    manager: String,
}

const EDITOR: &str = "editor@agency.test";
const EDITOR2: &str = "editor2@agency.test";
const MANAGER: &str = "manager@agency.test";

async fn world(app: &TestApp) -> World {
    let admin = app.admin().await;
    let unit = app.create_unit(&admin, "Intelligence", None).await;
    let (manager_id, manager) = app.create_user(&admin, MANAGER, false).await;
    let (editor_id, editor) = app.create_user(&admin, EDITOR, false).await;
    let (editor2_id, editor2) = app.create_user(&admin, EDITOR2, false).await;
    app.grant(&admin, &manager_id, &unit, "MANAGER").await;
    app.grant(&admin, &editor_id, &unit, "MEMBER").await;
    app.grant(&admin, &editor2_id, &unit, "MEMBER").await;
    let templates = app.ok(Some(&manager), "{ templates { id key } }", json!({})).await;
    let template = templates["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .find(|t| t["key"] == "ai-readiness")
        .expect("readiness template")["id"]
        .clone();
    let created = app
        .ok(
            Some(&manager),
            "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id } }",
            json!({ "i": { "unitId": unit, "templateId": template, "title": "Facial recognition readiness",
                "subject": "Retrospective facial recognition", "dueDate": "2030-01-31",
                "members": [{ "userId": editor_id, "role": "EDITOR" }, { "userId": editor2_id, "role": "EDITOR" }] } }),
        )
        .await;
    let assessment = created["createAssessment"]["id"].as_str().expect("assessment id").to_owned();
    World { assessment, unit, editor, editor2, manager }
}

async fn set_answer(app: &TestApp, token: &str, assessment: &str, question: &str, value: Value) -> Value {
    app.ok(
        Some(token),
        "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { value revision } }",
        json!({ "i": { "assessmentId": assessment, "questionId": question, "value": value } }),
    )
    .await["setAnswer"]
        .clone()
}

async fn answer(app: &TestApp, token: &str, assessment: &str, question: &str) -> Value {
    app.ok(
        Some(token),
        "query($id: ID!, $q: String!) { assessment(id: $id) { answer(questionId: $q) { value note revision } } }",
        json!({ "id": assessment, "q": question }),
    )
    .await["assessment"]["answer"]
        .clone()
}

/// Signs in through the form and waits for the home screen.
async fn sign_in(page: &Page, base: &str, email: &str, password: &str) {
    page.goto(&format!("{base}/")).await;
    page.wait_for("the sign-in form", "document.querySelector('#email')").await;
    page.fill("#email", email).await;
    page.fill("#password", password).await;
    page.eval("document.querySelector('form').requestSubmit()").await;
    page.wait_for("the home screen", "document.querySelector('h1')?.textContent.startsWith('Welcome')").await;
}

async fn open_assessment(page: &Page, base: &str, id: &str) {
    page.goto(&format!("{base}/#/assessments/{id}")).await;
    page.wait_for("the editor", &format!("document.querySelector({EVIDENCE_INPUT:?})")).await;
}

#[tokio::test]
async fn signing_in_with_a_new_password_leads_to_my_assessments() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = launch().await else { return };
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    // A person whose password an administrator set must choose their own first.
    let admin = app.admin().await;
    app.ok(
        Some(&admin),
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        json!({ "i": { "email": "new@agency.test", "displayName": "New Colleague", "password": "initial password 1" } }),
    )
    .await;

    let page = browser.page(1280, 800).await;
    page.goto(&format!("{}/", app.base)).await;
    page.wait_for("the sign-in form", "document.querySelector('#email')").await;
    page.screenshot("sign-in").await;

    page.fill("#email", "new@agency.test").await;
    page.fill("#password", "not the password").await;
    page.eval("document.querySelector('form').requestSubmit()").await;
    page.wait_for("the refusal", "!document.querySelector('#signin-error').hidden").await;
    assert!(page.text("#signin-error").await.contains("not right"));

    page.fill("#password", "initial password 1").await;
    page.eval("document.querySelector('form').requestSubmit()").await;
    page.wait_for("the password change", "document.querySelector('#new-password')").await;
    page.fill("#current-password", "initial password 1").await;
    page.fill("#new-password", "my very own passphrase").await;
    page.fill("#new-password-again", "my very own passphrase").await;
    page.eval("document.querySelector('form').requestSubmit()").await;
    page.wait_for("the home screen", "document.querySelector('h1')?.textContent.includes('New Colleague')").await;
    let me = app.login("new@agency.test", "my very own passphrase").await;
    assert_eq!(me["data"]["login"]["user"]["mustChangePassword"], json!(false));

    // A manager sees the assessment of their unit on the home screen, and opens it.
    let manager = browser.page(1280, 800).await;
    sign_in(&manager, &app.base, MANAGER, NEW_PASSWORD).await;
    manager
        .wait_for("the assessment in the list", "document.body.innerText.includes('Facial recognition readiness')")
        .await;
    manager.click(&format!("a[href='#/assessments/{}']", w.assessment)).await;
    manager.wait_for("the editor", &format!("document.querySelector({EVIDENCE_INPUT:?})")).await;

    // The page's websocket is signed in by the session cookie alone, as live updates need.
    let ack = manager
        .eval(
            "new Promise((resolve) => {
                const ws = new WebSocket(`ws://${location.host}/graphql/ws`, 'graphql-transport-ws');
                ws.onopen = () => ws.send(JSON.stringify({ type: 'connection_init', payload: {} }));
                ws.onmessage = (e) => { resolve(JSON.parse(e.data).type); ws.close(); };
                ws.onclose = (e) => resolve(`closed ${e.code}`);
                setTimeout(() => resolve('no answer'), 10000);
            })",
        )
        .await;
    assert_eq!(ack, json!("connection_ack"));

    // The manager assigns a section to an editor, who then finds it among their assignments.
    manager.eval("(() => { const d = document.querySelector('.people-card'); d.open = true; d.dispatchEvent(new Event('toggle')); })()").await;
    manager.wait_for("the assignment table", "document.querySelector('.people input[type=checkbox]')").await;
    manager.click(&format!(".people input[aria-label='Leadership and strategy: {EDITOR}']")).await;
    let deadline = tokio::time::Instant::now() + cdp::WAIT;
    loop {
        let mine = app.ok(Some(&w.editor), "{ myAssignments { sectionId } }", json!({})).await;
        if mine["myAssignments"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let people = manager.eval("document.querySelector('.people').innerText").await;
            let label =
                manager.eval("document.querySelector('.people input[type=checkbox]').getAttribute('aria-label')").await;
            panic!("the section was never assigned: {label} {people}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Its history page checks the record's hash chain.
    manager.click(&format!("a[href='#/assessments/{}/history']", w.assessment)).await;
    manager.wait_for("the verification badge", "document.querySelector('.verify-ok')").await;
    assert!(manager.text(".verify-ok").await.contains("verified"));

    // A new assessment from the home screen, renamed afterwards in its details.
    manager.goto(&format!("{}/#/", app.base)).await;
    manager.wait_for("the home screen", "document.querySelector('h1')?.textContent.startsWith('Welcome')").await;
    manager
        .eval("[...document.querySelectorAll('button')].find((b) => b.textContent === 'New assessment').click()")
        .await;
    manager.wait_for("the new assessment form", "document.querySelector('#na-title')").await;
    manager.fill("#na-title", "Speech-to-text for interviews").await;
    manager.click("#na-self").await;
    manager.eval("document.querySelector('#new-assessment').requestSubmit()").await;
    manager
        .wait_for("the new assessment", "document.querySelector('h1')?.textContent === 'Speech-to-text for interviews'")
        .await;
    manager.eval("document.querySelector('#details-title').closest('details').open = true").await;
    manager.fill("#details-title", "Speech-to-text for witness interviews").await;
    manager.eval("document.querySelector('.details-form').requestSubmit()").await;
    manager
        .wait_for(
            "the new title",
            "document.querySelector('h1')?.textContent === 'Speech-to-text for witness interviews'",
        )
        .await;
}

#[tokio::test]
async fn an_answer_typed_in_one_browser_appears_in_the_other_and_presence_shows_both() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = launch().await else { return };
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let a = browser.page(1280, 900).await;
    let b = browser.page(1280, 900).await;
    sign_in(&a, &app.base, EDITOR, NEW_PASSWORD).await;
    sign_in(&b, &app.base, EDITOR2, NEW_PASSWORD).await;
    open_assessment(&a, &app.base, &w.assessment).await;
    open_assessment(&b, &app.base, &w.assessment).await;

    // Each person is on a question.
    b.focus(EVIDENCE_INPUT).await;
    a.focus(EVIDENCE_INPUT).await;
    b.wait_for(
        "both people in the presence list",
        &format!(
            "(document.querySelector('.presence-list')?.textContent || '').includes({EDITOR:?}) && document.querySelector('.presence-list').textContent.includes({EDITOR2:?})"
        ),
    )
    .await;

    a.fill(EVIDENCE_INPUT, "Strategy approved by the command board in March").await;
    b.wait_for(
        "the answer typed in the other browser",
        &format!(
            "document.querySelector({EVIDENCE_INPUT:?}).value === 'Strategy approved by the command board in March'"
        ),
    )
    .await;
    b.wait_for(
        "the other editor's avatar on the question",
        &format!("document.querySelector('#question-{EVIDENCE} .avatars .avatar')"),
    )
    .await;
    b.screenshot("editor-live").await;
    let saved = answer(&app, &w.editor2, &w.assessment, EVIDENCE).await;
    assert_eq!(saved["value"], json!("Strategy approved by the command board in March"));
}

#[tokio::test]
async fn a_conflicting_save_brings_up_the_dialog_and_the_chosen_value_wins() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = launch().await else { return };
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let page = browser.page(1280, 900).await;
    sign_in(&page, &app.base, EDITOR2, NEW_PASSWORD).await;
    open_assessment(&page, &app.base, &w.assessment).await;

    // Typing starts a save that waits for a pause; someone else's write lands meanwhile. The pause
    // is lengthened so that the other write lands first even on a loaded machine.
    page.eval("document.documentElement.dataset.saveDelayMs = '3000'").await;
    page.fill(EVIDENCE_INPUT, "Mine: the strategy was approved in 2025").await;
    set_answer(&app, &w.editor, &w.assessment, EVIDENCE, json!("Theirs: approved in 2024")).await;

    page.wait_for("the conflict dialog", "document.querySelector('dialog.conflict-dialog[open]')").await;
    assert!(page.text(".conflict-theirs").await.contains("Theirs: approved in 2024"));
    assert!(page.text(".conflict-mine").await.contains("Mine: the strategy was approved in 2025"));
    page.screenshot("conflict").await;

    page.click("[data-choice='mine']").await;
    let deadline = tokio::time::Instant::now() + cdp::WAIT;
    loop {
        let now = answer(&app, &w.editor, &w.assessment, EVIDENCE).await;
        if now["value"] == json!("Mine: the strategy was approved in 2025") {
            assert_eq!(now["revision"], json!(2), "kept mine on top of their revision");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "my answer was never saved: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    page.wait_for("the dialog to close", "!document.querySelector('dialog.conflict-dialog')").await;

    // Again, and this time the two are merged by hand.
    page.fill(EVIDENCE_INPUT, "Mine again").await;
    set_answer(&app, &w.editor, &w.assessment, EVIDENCE, json!("Theirs again")).await;
    page.wait_for("the conflict dialog", "document.querySelector('dialog.conflict-dialog[open]')").await;
    page.click("[data-choice='merge']").await;
    page.fill("#merge-rd-leadership-evidence-input", "Both: theirs again and mine again").await;
    page.click("[data-choice='save-merge']").await;
    let deadline = tokio::time::Instant::now() + cdp::WAIT;
    loop {
        let now = answer(&app, &w.editor, &w.assessment, EVIDENCE).await;
        if now["value"] == json!("Both: theirs again and mine again") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the merged answer was never saved: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = page.eval(&format!("document.querySelector({EVIDENCE_INPUT:?}).value")).await;
    assert_eq!(shown, json!("Both: theirs again and mine again"));
}

#[tokio::test]
async fn comments_are_threaded_and_resolved_in_the_editor() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = launch().await else { return };
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let page = browser.page(1280, 900).await;
    sign_in(&page, &app.base, EDITOR, NEW_PASSWORD).await;
    open_assessment(&page, &app.base, &w.assessment).await;
    let question = format!("#question-{EVIDENCE}");
    page.eval(&format!("document.querySelector('{question} .comments details').open = true")).await;
    page.fill(&format!("{question} .comment-form textarea"), "Which board approved it?").await;
    page.eval(&format!("document.querySelector('{question} .comment-form').requestSubmit()")).await;
    page.wait_for(
        "the comment",
        &format!("document.querySelector('{question} .comment-body')?.textContent === 'Which board approved it?'"),
    )
    .await;

    page.eval(&format!("[...document.querySelectorAll('{question} .comment-actions button')].find((b) => b.textContent === 'Reply').click()")).await;
    page.wait_for("the reply form", &format!("document.querySelector('{question} li.comment .comment-form textarea')"))
        .await;
    page.fill(&format!("{question} li.comment .comment-form textarea"), "The command board, in March.").await;
    page.eval(&format!("document.querySelector('{question} li.comment .comment-form').requestSubmit()")).await;
    page.wait_for("the reply in the thread", &format!("document.querySelector('{question} .replies .comment-body')?.textContent === 'The command board, in March.'")).await;

    page.eval(&format!("[...document.querySelectorAll('{question} .comment-actions button')].find((b) => b.textContent === 'Resolve').click()")).await;
    page.wait_for("the thread resolved", &format!("document.querySelector('{question} li.comment.resolved')")).await;
    let comments = app
        .ok(
            Some(&w.editor2),
            "query($id: ID!) { assessment(id: $id) { comments { body parentId resolved } } }",
            json!({ "id": w.assessment }),
        )
        .await;
    let list = comments["assessment"]["comments"].as_array().expect("comments").clone();
    assert_eq!(list.len(), 2);
    // The test's clock stands still, so both have the same time: find them by their place.
    let root = list.iter().find(|c| c["parentId"].is_null()).expect("the first comment");
    let reply = list.iter().find(|c| c["parentId"].is_string()).expect("the reply under it");
    assert_eq!(root["resolved"], json!(true), "{list:?}");
    assert_eq!(reply["body"], json!("The command board, in March."));
}

#[tokio::test]
async fn the_history_slider_shows_an_earlier_state() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = launch().await else { return };
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    set_answer(&app, &w.editor, &w.assessment, EVIDENCE, json!("First version")).await;
    set_answer(&app, &w.editor, &w.assessment, EVIDENCE, json!("Second version")).await;
    let history = app
        .ok(
            Some(&w.manager),
            "query($id: ID!, $q: String) { assessmentHistory(id: $id, questionId: $q) { seq after } }",
            json!({ "id": w.assessment, "q": EVIDENCE }),
        )
        .await;
    let first = history["assessmentHistory"]
        .as_array()
        .expect("history")
        .iter()
        .find(|e| e["after"]["value"] == json!("First version") || e["after"] == json!("First version"))
        .expect("the first answer in the history")["seq"]
        .as_i64()
        .expect("seq");

    let page = browser.page(1280, 900).await;
    sign_in(&page, &app.base, MANAGER, NEW_PASSWORD).await;
    page.goto(&format!("{}/#/assessments/{}/history", app.base, w.assessment)).await;
    let shown = format!("document.querySelector('.snapshot dd[data-question=\"{EVIDENCE}\"]')?.textContent");
    page.wait_for("the latest state", &format!("{shown} === 'Second version'")).await;
    page.wait_for("the verification badge", "document.querySelector('.verify-ok')").await;
    page.eval(&format!(
        "(() => {{ const s = document.querySelector('#history-seq'); s.value = '{first}'; s.dispatchEvent(new Event('input', {{ bubbles: true }})); }})()"
    ))
    .await;
    page.wait_for("the earlier state", &format!("{shown} === 'First version'")).await;
    page.screenshot("history").await;
}

#[tokio::test]
async fn a_managers_dashboard_updates_when_an_answer_lands() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = launch().await else { return };
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let page = browser.page(1280, 800).await;
    sign_in(&page, &app.base, MANAGER, NEW_PASSWORD).await;
    page.goto(&format!("{}/#/dashboard/{}", app.base, w.unit)).await;
    let completion = format!("document.querySelector('tr[data-unit=\"{}\"] .completion')?.textContent", w.unit);
    page.wait_for("the unit's completion", &format!("({completion} || '').startsWith('0 of')")).await;
    // The subscription is sent once the connection is acknowledged; give the server a moment to
    // register it before the answer lands.
    page.wait_for("the live connection", "document.documentElement.dataset.live === 'open'").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    set_answer(&app, &w.editor, &w.assessment, VISION, json!("3")).await;
    page.wait_for("the completion to move", &format!("({completion} || '').startsWith('1 of')")).await;
}

#[tokio::test]
async fn the_demo_agency_fills_only_an_empty_database_and_its_screens_render() {
    let _one = ONE_BROWSER.lock().await;
    let db = TestDb::new().await;
    let keys = tempfile::tempdir().expect("a directory for the key");
    let mut config = test_config();
    config.key_file = keys.path().join("attest.key");
    let state = attest::bootstrap::start(&db.url, config, attest::clock::Clock::System).await.expect("state");
    let demo = attest::demo::seed(&state).await.expect("the demo fills an empty database");
    let again = attest::demo::seed(&state).await.err().expect("a second seed is refused");
    assert!(again.to_string().contains("not empty"), "{again}");
    assert_eq!(demo.users.len(), 5);
    let Some(browser) = launch().await else { return };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(attest::http::serve(state.clone(), listener, async {
        let _ = stopped.await;
    }));
    let login = |role: &str| {
        let u = demo.users.iter().find(|u| u.role == role).expect("demo user");
        (u.email.clone(), u.password.expose().to_owned())
    };

    // The officer's home, and the risk assessment with its matrices.
    let (email, password) = login("editor");
    let page = browser.page(1280, 900).await;
    sign_in(&page, &base, &email, &password).await;
    page.wait_for("the assessments", "document.body.innerText.includes('number-plate recognition')").await;
    page.screenshot("home").await;
    page.eval(
        "[...document.querySelectorAll('a')].find((a) => a.textContent.includes('number-plate recognition')).click()",
    )
    .await;
    page.wait_for("the risk matrices", "document.querySelector('.risk-matrix.matrix-residual td.has-items')").await;
    page.screenshot("editor-risk").await;
    let hash = page.eval("location.hash").await.as_str().unwrap_or("").to_owned();
    page.goto(&format!("{base}/{hash}/report")).await;
    page.wait_for("the report", "document.querySelector('.report .risk-register')").await;
    page.screenshot("report").await;
    page.call("Emulation.setEmulatedMedia", json!({ "media": "print" })).await;
    assert_eq!(page.eval("getComputedStyle(document.querySelector('.topbar')).display").await, json!("none"));
    page.screenshot("report-print").await;
    page.call("Emulation.setEmulatedMedia", json!({ "media": "" })).await;

    // The editor at a tablet's width.
    let tablet = browser.page(768, 1024).await;
    sign_in(&tablet, &base, &email, &password).await;
    tablet.goto(&format!("{base}/{hash}")).await;
    tablet.wait_for("the editor", "document.querySelector('.question select')").await;
    let width = tablet.eval("document.documentElement.scrollWidth").await;
    assert!(width.as_i64().is_some_and(|w| w <= 768), "no sideways scrolling at 768 px: {width}");
    tablet.screenshot("editor-tablet").await;

    // The manager's dashboard over the whole tree.
    let (email, password) = login("manager");
    let manager = browser.page(1280, 800).await;
    sign_in(&manager, &base, &email, &password).await;
    manager.goto(&format!("{base}/#/dashboard")).await;
    manager.wait_for("the dashboard", "document.querySelectorAll('table.dashboard tbody tr').length >= 6").await;
    manager.screenshot("dashboard").await;

    // An administrator's template import, with every problem listed by its path.
    let (email, password) = login("administrator");
    let admin = browser.page(1280, 900).await;
    sign_in(&admin, &base, &email, &password).await;
    admin.goto(&format!("{base}/#/admin/users")).await;
    admin.wait_for("the users", "document.body.innerText.includes('Olivia Officer')").await;
    admin.screenshot("admin-users").await;
    admin.goto(&format!("{base}/#/admin/units")).await;
    admin.wait_for("the unit tree", "document.querySelectorAll('.tree .unit-name').length === 6").await;
    admin.goto(&format!("{base}/#/admin/roles")).await;
    admin
        .wait_for(
            "the roles",
            "document.body.innerText.includes('Morgan Manager') && document.querySelector('#gr-role')",
        )
        .await;
    admin.goto(&format!("{base}/#/admin/templates")).await;
    admin.wait_for("the import form", "document.querySelector('#tpl-source')").await;
    admin.fill("#tpl-source", "key: broken\nversion: 0\ntitle: ''\nsections: []\n").await;
    admin.click("#tpl-check").await;
    admin.eval("document.querySelector('#tpl-source').form.requestSubmit()").await;
    admin.wait_for("the problems", "document.querySelectorAll('.problems li').length > 0").await;
    admin.screenshot("admin-templates").await;

    let _ = stop.send(());
    let _ = server.await;
}

#[tokio::test]
async fn the_web_application_is_served_with_a_strict_policy_and_client_routes_get_the_page() {
    let app = TestApp::spawn().await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.base)).send();
    let index = get("/").await.expect("GET /");
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    let csp = index.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self' ws: wss:"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let page = index.text().await.expect("body");
    assert!(page.contains("/js/app.js"));

    // A client-side route gets the page; a missing file does not.
    let route = get("/assessments/123/history").await.expect("client route");
    assert_eq!(route.status(), 200);
    assert_eq!(route.text().await.expect("body"), page);
    assert_eq!(get("/js/missing.js").await.expect("missing file").status(), 404);

    let script = get("/js/app.js").await.expect("script");
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(script.headers()["cache-control"], "no-cache");

    // The API keeps its routes.
    assert_eq!(get("/healthz").await.expect("healthz").text().await.expect("body"), "ok");
    let api = app.graphql(None, "{ __typename }", json!({})).await;
    assert_eq!(api["data"]["__typename"], "Query");
}

#[tokio::test]
async fn with_a_web_directory_files_come_from_disk_and_never_from_outside_it() {
    let dir = tempfile::tempdir().expect("web directory");
    std::fs::write(dir.path().join("index.html"), "<!doctype html><p>from disk</p>").expect("index");
    std::fs::create_dir(dir.path().join("css")).expect("css directory");
    std::fs::write(dir.path().join("css/app.css"), "body { color: black }").expect("stylesheet");
    let web_dir = dir.path().to_owned();
    let app = TestApp::spawn_with(move |c| c.web_dir = Some(web_dir)).await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.base)).send();
    assert!(get("/").await.expect("index").text().await.expect("body").contains("from disk"));
    let css = get("/css/app.css").await.expect("stylesheet");
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(css.text().await.expect("body"), "body { color: black }");
    assert!(get("/dashboard").await.expect("route").text().await.expect("body").contains("from disk"));
    let outside = get("/css/..%2F..%2Fetc%2Fpasswd").await.expect("traversal");
    assert!(!outside.text().await.expect("body").contains("root:"));
}
