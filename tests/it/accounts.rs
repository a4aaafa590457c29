//! Signing in, sessions, passwords and login throttling.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, NEW_PASSWORD, TestApp, code};

#[tokio::test]
async fn first_start_creates_the_administrator_who_can_sign_in() {
    let app = TestApp::spawn().await;
    let body = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(body["data"]["login"]["user"]["email"], ADMIN_EMAIL);
    assert_eq!(body["data"]["login"]["user"]["mustChangePassword"], false);
    let token = body["data"]["login"]["token"].as_str().unwrap();
    let me = app.ok(Some(token), "{ me { email isAdmin } agency { name } }", json!({})).await;
    assert_eq!(me["me"]["isAdmin"], true);
    assert_eq!(me["agency"]["name"], "North Police");
}

#[tokio::test]
async fn a_generated_administrator_password_must_be_changed_before_anything_else() {
    let app = TestApp::spawn_with(|c| c.admin_password = None).await;
    // The generated password is only printed; reset it through the operator path to know it.
    let (user, _) = attest::db::org::get_user_by_email(&app.state.db.conn, ADMIN_EMAIL).await.unwrap().unwrap();
    assert!(user.must_change_password, "a generated password must be changed at first login");
    attest::agencies::set_password(&app.state, attest::events::EventActor::System, &user, "temporary password 1", true)
        .await
        .unwrap();
    let token = app.token(ADMIN_EMAIL, "temporary password 1").await;
    let refused = app.graphql(Some(&token), "mutation { createUnit(name: \"HQ\") { id } }", json!({})).await;
    assert_eq!(code(&refused), "FORBIDDEN");
    let short = app
        .graphql(
            Some(&token),
            "mutation { changePassword(currentPassword: \"temporary password 1\", newPassword: \"short\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&short), "INVALID_INPUT");
    assert_eq!(short["errors"][0]["extensions"]["field"], "newPassword");
    app.ok(
        Some(&token),
        "mutation($n: String!) { changePassword(currentPassword: \"temporary password 1\", newPassword: $n) { mustChangePassword } }",
        json!({ "n": NEW_PASSWORD }),
    )
    .await;
    app.ok(Some(&token), "mutation { createUnit(name: \"HQ\") { id } }", json!({})).await;
}

#[tokio::test]
async fn wrong_password_and_unknown_account_get_the_same_answer_and_are_logged() {
    let app = TestApp::spawn().await;
    let wrong = app.login(ADMIN_EMAIL, "not the password!").await;
    let unknown = app.login("nobody@agency.test", "not the password!").await;
    assert_eq!(code(&wrong), "UNAUTHENTICATED");
    assert_eq!(wrong["errors"][0]["message"], unknown["errors"][0]["message"]);
    assert!(wrong["data"].is_null());

    let admin = app.admin().await;
    let stream = app.agency_stream(&admin).await;
    let events = app.events(&admin, &stream).await;
    let failed: Vec<_> = events.iter().filter(|e| e["type"] == "login.failed").collect();
    assert_eq!(failed.len(), 1, "the failure for a known account is in its agency's stream");
    assert_eq!(failed[0]["payload"]["reason"], "wrong_password");
    assert!(!failed[0]["payload"].to_string().contains("not the password"), "a tried password is never stored");
    let system = attest::events::page(&app.state.db.conn, &attest::events::Stream::System, 0, 10).await.unwrap();
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].payload["reason"], "unknown_account");
}

#[tokio::test]
async fn repeated_failures_lock_the_account_for_a_while_only() {
    let app = TestApp::spawn_with(|c| {
        c.login_max_failures = 3;
        c.login_lockout_secs = 600;
    })
    .await;
    for _ in 0..2 {
        assert_eq!(code(&app.login(ADMIN_EMAIL, "wrong password 123").await), "UNAUTHENTICATED");
    }
    let third = app.login(ADMIN_EMAIL, "wrong password 123").await;
    assert_eq!(code(&third), "RATE_LIMITED");
    // Even the right password is refused while the lock holds.
    let locked = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(code(&locked), "RATE_LIMITED");
    assert!(locked["errors"][0]["extensions"]["retryAfterSeconds"].as_u64().unwrap() > 0);

    app.clock.advance(Duration::from_secs(601));
    let admin = app.admin().await;
    let stream = app.agency_stream(&admin).await;
    let events = app.events(&admin, &stream).await;
    let locks: Vec<_> = events.iter().filter(|e| e["type"] == "login.locked").collect();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0]["payload"]["scope"], "account");
}

#[tokio::test]
async fn failures_from_one_address_across_accounts_are_throttled() {
    let app = TestApp::spawn_with(|c| {
        c.login_max_failures = 100;
        c.login_max_failures_per_address = 4;
    })
    .await;
    for i in 0..3 {
        let body = app.login(&format!("guess{i}@agency.test"), "some password 1").await;
        assert_eq!(code(&body), "UNAUTHENTICATED");
    }
    assert_eq!(code(&app.login("guess9@agency.test", "some password 1").await), "RATE_LIMITED");
    assert_eq!(code(&app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await), "RATE_LIMITED");
}

#[tokio::test]
async fn an_idle_session_expires() {
    let app = TestApp::spawn_with(|c| c.session_idle_secs = 600).await;
    let token = app.admin().await;
    app.clock.advance(Duration::from_secs(300));
    app.ok(Some(&token), "{ me { id } }", json!({})).await;
    app.clock.advance(Duration::from_secs(500));
    // The request five minutes in restarted the idle timer: 500 s have passed since.
    app.ok(Some(&token), "{ me { id } }", json!({})).await;
    app.clock.advance(Duration::from_secs(601));
    let expired = app.graphql(Some(&token), "{ me { id } }", json!({})).await;
    assert_eq!(code(&expired), "UNAUTHENTICATED");
    assert_eq!(expired["errors"][0]["message"], "session has expired");
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_limit_however_active() {
    let app = TestApp::spawn_with(|c| {
        c.session_idle_secs = 3600;
        c.session_max_secs = 7200;
    })
    .await;
    let token = app.admin().await;
    for _ in 0..4 {
        app.clock.advance(Duration::from_secs(1700));
        app.ok(Some(&token), "{ me { id } }", json!({})).await;
    }
    app.clock.advance(Duration::from_secs(1700));
    assert_eq!(code(&app.graphql(Some(&token), "{ me { id } }", json!({})).await), "UNAUTHENTICATED");
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_the_cookie() {
    let app = TestApp::spawn().await;
    let token = app.admin().await;
    let resp = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&token)
        .json(&json!({ "query": "mutation { logout }" }))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("attest_session=;") && cookie.contains("Max-Age=0"), "{cookie}");
    assert_eq!(code(&app.graphql(Some(&token), "{ me { id } }", json!({})).await), "UNAUTHENTICATED");
}

#[tokio::test]
async fn login_sets_an_http_only_strict_cookie_that_authenticates() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
                       "variables": { "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD } }))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let me: serde_json::Value = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("cookie", pair)
        .json(&json!({ "query": "{ me { email } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["me"]["email"], ADMIN_EMAIL);
}

#[tokio::test]
async fn changing_a_password_ends_the_accounts_other_sessions() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, current) = app.create_user(&admin, "officer@agency.test", false).await;
    let other = app.token("officer@agency.test", NEW_PASSWORD).await;
    // Used just before: a session read a moment ago is not trusted after the change.
    app.ok(Some(&other), "{ me { id } }", json!({})).await;
    app.ok(
        Some(&current),
        "mutation($c: String!) { changePassword(currentPassword: $c, newPassword: \"yet another passphrase\") { id } }",
        json!({ "c": NEW_PASSWORD }),
    )
    .await;
    app.ok(Some(&current), "{ me { id } }", json!({})).await;
    assert_eq!(code(&app.graphql(Some(&other), "{ me { id } }", json!({})).await), "UNAUTHENTICATED");
    assert_eq!(code(&app.login("officer@agency.test", NEW_PASSWORD).await), "UNAUTHENTICATED");
    app.token("officer@agency.test", "yet another passphrase").await;
}

#[tokio::test]
async fn a_disabled_account_loses_its_sessions_and_cannot_sign_in() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (id, token) = app.create_user(&admin, "leaver@agency.test", false).await;
    app.ok(Some(&token), "{ me { id } }", json!({})).await;
    app.ok(
        Some(&admin),
        "mutation($id: ID!) { setUserDisabled(id: $id, disabled: true) { disabled } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(code(&app.graphql(Some(&token), "{ me { id } }", json!({})).await), "UNAUTHENTICATED");
    assert_eq!(code(&app.login("leaver@agency.test", NEW_PASSWORD).await), "UNAUTHENTICATED");
    app.ok(
        Some(&admin),
        "mutation($id: ID!) { setUserDisabled(id: $id, disabled: false) { disabled } }",
        json!({ "id": id }),
    )
    .await;
    app.token("leaver@agency.test", NEW_PASSWORD).await;
}

#[tokio::test]
async fn passwords_shorter_than_twelve_characters_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let body = app
        .graphql(
            Some(&admin),
            "mutation { createUser(input: { email: \"x@agency.test\", displayName: \"X\", password: \"elevenchars\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "INVALID_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "password");
}

#[tokio::test]
async fn stored_passwords_are_argon2id_at_owasp_minimum() {
    let app = TestApp::spawn().await;
    let (_, hash) = attest::db::org::get_user_by_email(&app.state.db.conn, ADMIN_EMAIL).await.unwrap().unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(!hash.contains(ADMIN_PASSWORD));
}

#[tokio::test]
async fn a_revoked_role_stops_working_at_the_very_next_request() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let unit = app.ok(Some(&admin), "mutation { createUnit(name: \"Traffic\") { id } }", json!({})).await;
    let unit = unit["createUnit"]["id"].as_str().unwrap().to_owned();
    let (id, token) = app.create_user(&admin, "manager@agency.test", false).await;
    let grant = "mutation($u: ID!, $n: ID!) { grantRole(userId: $u, unitId: $n, role: MANAGER) { role } }";
    app.ok(Some(&admin), grant, json!({ "u": id, "n": unit })).await;
    let dashboard = "query($n: ID!) { unitDashboard(unitId: $n) { depth } }";
    // Read twice in a row: the second request may reuse the session read by the first.
    for _ in 0..2 {
        let rows = app.ok(Some(&token), dashboard, json!({ "n": unit })).await;
        assert_eq!(rows["unitDashboard"][0]["depth"], 0);
    }
    app.ok(
        Some(&admin),
        "mutation($u: ID!, $n: ID!) { revokeRole(userId: $u, unitId: $n) }",
        json!({ "u": id, "n": unit }),
    )
    .await;
    assert_eq!(code(&app.graphql(Some(&token), dashboard, json!({ "n": unit })).await), "FORBIDDEN");
}
