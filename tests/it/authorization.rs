//! Every query and mutation of the foundation, tried by every kind of caller: administrators,
//! managers, members, users without a role, another agency's administrator and nobody.

use serde_json::{Value, json};

use crate::helpers::{TestApp, code};

struct World {
    admin: String,
    manager: String,
    member: String,
    plain: String,
    other_admin: String,
    directorate: String,
    team: String,
    member_id: String,
    target_id: String,
    stream: String,
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin().await;
    let directorate = app.create_unit(&admin, "Directorate", None).await;
    let team = app.create_unit(&admin, "Team", Some(&directorate)).await;
    let (manager_id, manager) = app.create_user(&admin, "manager@agency.test", false).await;
    let (member_id, member) = app.create_user(&admin, "member@agency.test", false).await;
    let (_, plain) = app.create_user(&admin, "plain@agency.test", false).await;
    let (target_id, _) = app.create_user(&admin, "target@agency.test", false).await;
    app.grant(&admin, &manager_id, &directorate, "MANAGER").await;
    app.grant(&admin, &member_id, &team, "MEMBER").await;
    // A second agency, created the way an operator would.
    let password = attest::auth::password::Password::parse("p", "other agency password").unwrap();
    attest::agencies::create_agency(&app.state, "South Police", "chief@south.test", &password, false).await.unwrap();
    let other_admin = app.token("chief@south.test", "other agency password").await;
    let stream = app.agency_stream(&admin).await;
    World { admin, manager, member, plain, other_admin, directorate, team, member_id, target_id, stream }
}

/// What a caller should get: success, or an error code.
const OK: &str = "ok";

struct Case {
    name: &'static str,
    query: &'static str,
    /// Expected outcome for admin, manager, member, plain user, other agency's admin.
    expect: [&'static str; 5],
}

const CASES: &[Case] = &[
    Case { name: "agency", query: "{ agency { id name } }", expect: [OK, OK, OK, OK, OK] },
    Case { name: "units", query: "{ units { nodes { id } } }", expect: [OK, OK, OK, OK, OK] },
    Case {
        name: "unit",
        query: "query($team: ID!) { unit(id: $team) { name } }",
        expect: [OK, OK, OK, OK, "NOT_FOUND"],
    },
    Case {
        name: "unit roles",
        query: "query($team: ID!) { unit(id: $team) { roles { role } } }",
        expect: [OK, OK, "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "user",
        query: "query($member: ID!) { user(id: $member) { email roles { role } } }",
        expect: [OK, OK, OK, "FORBIDDEN", "NOT_FOUND"],
    },
    Case { name: "users", query: "{ users { nodes { id } } }", expect: [OK, OK, "FORBIDDEN", "FORBIDDEN", OK] },
    Case {
        name: "events",
        query: "query($stream: String!) { events(stream: $stream) { nodes { seq } } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "verifyStream",
        query: "query($stream: String!) { verifyStream(stream: $stream) { ok } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "createUnit",
        query: "mutation($dir: ID!) { createUnit(name: \"New\", parentId: $dir) { id } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "INVALID_INPUT"],
    },
    Case {
        name: "renameUnit",
        query: "mutation($team: ID!, $n: String!) { renameUnit(id: $team, name: $n) { id } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "moveUnit",
        query: "mutation($team: ID!) { moveUnit(id: $team, parentId: null) { id } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "createUser",
        query: "mutation($email: String!) { createUser(input: { email: $email, displayName: \"N\", password: \"initial password 1\" }) { id } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", OK],
    },
    Case {
        name: "renameUser",
        query: "mutation($target: ID!, $n: String!) { renameUser(id: $target, displayName: $n) { id } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "setAdministrator",
        query: "mutation($target: ID!) { setAdministrator(id: $target, isAdmin: false) { id } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "setUserDisabled",
        query: "mutation($target: ID!) { setUserDisabled(id: $target, disabled: false) { id } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "resetPassword",
        query: "mutation($target: ID!) { resetPassword(id: $target, password: \"a reset password\") { id } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "grantRole",
        query: "mutation($target: ID!, $team: ID!) { grantRole(userId: $target, unitId: $team, role: MEMBER) { role } }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
    Case {
        name: "revokeRole",
        query: "mutation($target: ID!, $team: ID!) { revokeRole(userId: $target, unitId: $team) }",
        expect: [OK, "FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND"],
    },
];

#[tokio::test]
async fn every_operation_is_refused_across_agencies_and_to_insufficient_roles() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let callers = [
        ("admin", &w.admin),
        ("manager", &w.manager),
        ("member", &w.member),
        ("plain", &w.plain),
        ("other agency", &w.other_admin),
    ];
    let mut failures = Vec::new();
    for case in CASES {
        for (i, (who, token)) in callers.iter().enumerate() {
            let vars = json!({
                "team": w.team, "dir": w.directorate, "member": w.member_id, "target": w.target_id,
                "stream": w.stream, "n": format!("name by {who}"), "email": format!("{}-{i}@agency.test", case.name.to_lowercase()),
            });
            let body = app.graphql(Some(token), case.query, only_used(case.query, vars)).await;
            let got = if body.get("errors").is_none() { OK.to_owned() } else { code(&body).to_owned() };
            if got != case.expect[i] {
                failures.push(format!("{} by {who}: expected {}, got {body}", case.name, case.expect[i]));
            }
            if got != OK {
                assert!(
                    body["data"].is_null() || body["data"].as_object().is_some_and(|d| d.values().all(Value::is_null)),
                    "{body}"
                );
            }
        }
        let anonymous = app
            .graphql(
                None,
                case.query,
                only_used(
                    case.query,
                    json!({
                        "team": w.team, "dir": w.directorate, "member": w.member_id, "target": w.target_id,
                        "stream": w.stream, "n": "anonymous", "email": "anon@agency.test",
                    }),
                ),
            )
            .await;
        assert_eq!(code(&anonymous), "UNAUTHENTICATED", "{} without a session", case.name);
    }
    assert!(failures.is_empty(), "authorization mismatches:\n{}", failures.join("\n"));
}

/// Keeps only the variables a query declares, as a strict GraphQL client would send them.
fn only_used(query: &str, vars: Value) -> Value {
    let obj = vars.as_object().expect("variables object");
    Value::Object(
        obj.iter().filter(|(k, _)| query.contains(&format!("${k}:"))).map(|(k, v)| (k.clone(), v.clone())).collect(),
    )
}

#[tokio::test]
async fn lists_never_include_another_agencys_data() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let theirs = app.ok(Some(&w.other_admin), "{ users { nodes { email } } units { nodes { id } } }", json!({})).await;
    let emails: Vec<&str> =
        theirs["users"]["nodes"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["chief@south.test"]);
    assert!(theirs["units"]["nodes"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_manager_sees_only_the_users_of_the_managed_subtree() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let elsewhere = app.create_unit(&w.admin, "Elsewhere", None).await;
    let (outsider, _) = app.create_user(&w.admin, "outsider@agency.test", false).await;
    app.grant(&w.admin, &outsider, &elsewhere, "MEMBER").await;
    let seen = app.ok(Some(&w.manager), "{ users { nodes { email } } }", json!({})).await;
    let mut emails: Vec<&str> =
        seen["users"]["nodes"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    emails.sort();
    assert_eq!(emails, ["manager@agency.test", "member@agency.test"]);
    let refused =
        app.graphql(Some(&w.manager), "query($id: ID!) { user(id: $id) { email } }", json!({ "id": outsider })).await;
    assert_eq!(code(&refused), "FORBIDDEN");
}
