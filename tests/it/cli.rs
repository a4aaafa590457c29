//! Operators' commands, run as the real binary against a test database.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{TestApp, code};

#[tokio::test]
async fn an_operator_creates_a_user_who_can_then_sign_in() {
    let app = TestApp::spawn().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_attest"))
        .args(["user", "create", "--email", "ops@agency.test", "--display-name", "Ops", "--password-stdin"])
        .env("ATTEST_DATABASE_URL", app.db.url.expose())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run attest");
    child.stdin.take().unwrap().write_all(b"operator chosen password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user ops@agency.test"));
    let body = app.login("ops@agency.test", "operator chosen password").await;
    assert_eq!(body["data"]["login"]["user"]["mustChangePassword"], false, "{body}");

    let short = Command::new(env!("CARGO_BIN_EXE_attest"))
        .args(["user", "set-password", "--email", "ops@agency.test", "--password-stdin"])
        .env("ATTEST_DATABASE_URL", app.db.url.expose())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run attest");
    let mut short = short;
    short.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let out = short.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));
    assert_eq!(code(&app.login("ops@agency.test", "short").await), "UNAUTHENTICATED");
}

#[test]
fn the_schema_command_prints_the_sdl() {
    let out = Command::new(env!("CARGO_BIN_EXE_attest")).arg("schema").output().expect("run attest");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), attest::graphql::sdl());
}
