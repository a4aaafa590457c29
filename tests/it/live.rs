//! Live collaboration over `/graphql/ws`: event streams that resume without loss while others
//! write, who may subscribe, presence, slow subscribers, unit progress, and several servers on
//! one PostgreSQL database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use rand::Rng;
use serde_json::{Value, json};

use crate::helpers::{TestApp, WAIT, Ws};

const EVENTS: &str = "subscription($id: ID!, $after: Int) {
    assessmentEvents(assessmentId: $id, afterSeq: $after) { stream seq type actor at prevHash hash } }";
const EVENTS_WITH_PAYLOAD: &str = "subscription($id: ID!, $after: Int) {
    assessmentEvents(assessmentId: $id, afterSeq: $after) { seq prevHash hash payload } }";
pub(crate) const PRESENCE: &str =
    "subscription($id: ID!) { presence(assessmentId: $id) { userId displayName questionId typing since } }";
const PROGRESS: &str =
    "subscription($u: ID!) { unitProgress(unitId: $u) { unit { id } depth requiredTotal requiredAnswered } }";
const SET: &str = "mutation($i: SetAnswerInput!) { setAnswer(input: $i) { revision } }";
const TEXT_QUESTION: &str = "rd-leadership-evidence";

/// A unit and a readiness assessment in it, created by the administrator.
pub(crate) async fn assessment(app: &TestApp, admin: &str) -> (String, String) {
    let unit = app.create_unit(admin, "Intelligence", None).await;
    let templates = app.ok(Some(admin), "{ templates { id key } }", json!({})).await;
    let template =
        templates["templates"].as_array().unwrap().iter().find(|t| t["key"] == "ai-readiness").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let data = app
        .ok(
            Some(admin),
            "mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id } }",
            json!({ "i": { "unitId": unit, "templateId": template, "title": "Readiness 2027" } }),
        )
        .await;
    (unit, data["createAssessment"]["id"].as_str().unwrap().to_owned())
}

async fn answer(app: &TestApp, token: &str, id: &str, question: &str, value: Value) {
    let body = app
        .graphql(Some(token), SET, json!({ "i": { "assessmentId": id, "questionId": question, "value": value } }))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}

async fn head(app: &TestApp, admin: &str, id: &str) -> i64 {
    app.events(admin, &format!("assessment:{id}")).await.len() as i64
}

/// Reads events of subscription `sub` until `seq` reaches `until`, checking order and links.
async fn read_until(ws: &mut Ws, sub: &str, mut last: i64, until: i64, prev_hash: &mut Option<String>) -> i64 {
    while last < until {
        let payload = ws.next_of(sub).await;
        let event = &payload["data"]["assessmentEvents"];
        assert!(event.is_object(), "expected an event: {payload}");
        let seq = event["seq"].as_i64().unwrap();
        assert_eq!(seq, last + 1, "events arrive in order without gaps or repeats");
        if let Some(prev) = prev_hash.as_deref() {
            assert_eq!(event["prevHash"], prev, "each event links to the one before");
        }
        *prev_hash = Some(event["hash"].as_str().unwrap().to_owned());
        last = seq;
    }
    last
}

#[tokio::test]
async fn a_subscriber_resuming_at_random_points_gets_every_event_once_in_order_while_eight_writers_race() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;

    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (base, client, token, id) = (app.base.clone(), app.client.clone(), admin.clone(), id.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..12 {
                let input = json!({ "assessmentId": id, "questionId": TEXT_QUESTION, "value": format!("writer {w}, change {i}") });
                let body: Value = client
                    .post(format!("{base}/graphql"))
                    .bearer_auth(&token)
                    .json(&json!({ "query": SET, "variables": { "i": input } }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(body.get("errors").is_none(), "{body}");
            }
        }));
    }
    let watcher_done = done.clone();
    let watcher = async {
        let mut seen = Vec::new();
        let mut last = 0;
        let mut prev_hash = None;
        let mut sessions = 0;
        loop {
            // Resume where the previous connection stopped.
            let mut ws = app.ws(&admin).await;
            sessions += 1;
            ws.subscribe("e", EVENTS, json!({ "id": id, "after": last })).await;
            let finished = watcher_done.load(Ordering::SeqCst);
            let target = if finished { head(&app, &admin, &id).await } else { last + rand::rng().random_range(1..=15) };
            // While writers run, stop early if they finished before the target was written.
            let mut reached = last;
            while reached < target {
                match tokio::time::timeout(std::time::Duration::from_secs(3), ws.next_of("e")).await {
                    Ok(payload) => reached = read_until_one(&payload, reached, &mut prev_hash),
                    Err(_) if !finished && watcher_done.load(Ordering::SeqCst) => break,
                    Err(_) => panic!("no event within 3 s while {target} was expected"),
                }
            }
            seen.extend(last + 1..=reached);
            last = reached;
            ws.close().await;
            if finished {
                return (seen, sessions);
            }
        }
    };
    let writers_finish = async {
        for w in writers {
            w.await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
    };
    let ((seen, sessions), ()) = tokio::join!(watcher, writers_finish);

    let n = head(&app, &admin, &id).await;
    assert!(n >= 96, "every change was logged: {n}");
    assert_eq!(seen, (1..=n).collect::<Vec<_>>(), "exactly seqs 1..{n}, each once");
    assert!(sessions > 2, "the subscriber resumed several times: {sessions}");
}

#[tokio::test]
async fn another_agencys_assessment_is_not_found_and_a_socket_without_a_valid_token_is_closed_with_4401() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;
    let password = attest::auth::password::Password::parse("p", "other agency password").unwrap();
    attest::agencies::create_agency(&app.state, "South Police", "chief@south.test", &password, false).await.unwrap();
    let foreign = app.token("chief@south.test", "other agency password").await;

    let mut ws = app.ws(&foreign).await;
    ws.subscribe("e", EVENTS, json!({ "id": id })).await;
    let payload = ws.next_of("e").await;
    assert_eq!(payload["errors"][0]["extensions"]["code"], "NOT_FOUND", "{payload}");
    assert!(payload["data"].is_null() || payload["data"]["assessmentEvents"].is_null(), "{payload}");
    ws.subscribe("p", PRESENCE, json!({ "id": id })).await;
    let payload = ws.next_of("p").await;
    assert_eq!(payload["errors"][0]["extensions"]["code"], "NOT_FOUND", "{payload}");

    let mut anonymous = app.ws_raw(None).await;
    anonymous.send(json!({ "type": "connection_init", "payload": {} })).await;
    assert_eq!(anonymous.closed().await.0, 4401);

    let mut forged = app.ws_raw(None).await;
    forged.send(json!({ "type": "connection_init", "payload": { "token": "not-a-session" } })).await;
    assert_eq!(forged.closed().await.0, 4401);

    let mut early = app.ws_raw(None).await;
    early.subscribe("e", EVENTS, json!({ "id": id })).await;
    assert_eq!(early.closed().await.0, 4401, "subscribing before connection_init is refused");
}

#[tokio::test]
async fn connections_beyond_the_per_user_limit_are_refused_with_a_clear_reason() {
    let app = TestApp::spawn_with(|c| c.ws_max_connections_per_user = 2).await;
    let admin = app.admin().await;
    let first = app.ws(&admin).await;
    let _second = app.ws(&admin).await;
    let mut third = app.ws_raw(None).await;
    third.send(json!({ "type": "connection_init", "payload": { "token": admin } })).await;
    let (code, reason) = third.closed().await;
    assert_eq!(code, 4429);
    assert!(reason.contains("too many connections"), "{reason}");
    first.close().await;
    // The closed connection's slot is free again.
    let mut again = None;
    for _ in 0..50 {
        let mut ws = app.ws_raw(None).await;
        ws.send(json!({ "type": "connection_init", "payload": { "token": admin } })).await;
        match ws.next_or_close().await {
            Ok(ack) if ack["type"] == "connection_ack" => {
                again = Some(ws);
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(again.is_some(), "a slot is given back when a connection closes");
}

fn names(payload: &Value) -> Vec<(String, Value, bool)> {
    let list = payload["data"]["presence"].as_array().unwrap_or_else(|| panic!("a presence list: {payload}"));
    list.iter()
        .map(|e| (e["displayName"].as_str().unwrap().to_owned(), e["questionId"].clone(), e["typing"] == true))
        .collect()
}

#[tokio::test]
async fn presence_shows_who_joins_which_question_they_are_on_and_drops_them_when_they_leave() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;
    app.create_user(&admin, "colleague@agency.test", true).await;
    let colleague = app.token("colleague@agency.test", crate::helpers::NEW_PASSWORD).await;

    let mut mine = app.ws(&admin).await;
    mine.subscribe("p", PRESENCE, json!({ "id": id })).await;
    let me = names(&mine.next_of("p").await);
    assert_eq!(me.len(), 1);
    let my_name = me[0].0.clone();

    let mut theirs = app.ws(&colleague).await;
    theirs.subscribe("p", PRESENCE, json!({ "id": id })).await;
    assert_eq!(names(&theirs.next_of("p").await).len(), 2);
    let both = names(&mine.next_of("p").await);
    assert_eq!(both.len(), 2);
    assert!(both.iter().any(|(n, q, t)| n == "colleague@agency.test" && q.is_null() && !t), "{both:?}");

    let set = app
        .ok(
            Some(&colleague),
            "mutation($id: ID!, $q: String) { setPresence(assessmentId: $id, questionId: $q, typing: true) }",
            json!({ "id": id, "q": TEXT_QUESTION }),
        )
        .await;
    assert_eq!(set["setPresence"], true);
    let moved = names(&mine.next_of("p").await);
    assert!(moved.contains(&("colleague@agency.test".to_owned(), json!(TEXT_QUESTION), true)), "{moved:?}");
    assert!(moved.contains(&(my_name.clone(), Value::Null, false)), "{moved:?}");

    theirs.close().await;
    let left = names(&mine.next_of("p").await);
    assert_eq!(left, vec![(my_name, Value::Null, false)], "the colleague left with the connection");

    // Without a presence subscription, there is nothing to move.
    let set =
        app.ok(Some(&colleague), "mutation($id: ID!) { setPresence(assessmentId: $id) }", json!({ "id": id })).await;
    assert_eq!(set["setPresence"], false);
}

#[tokio::test]
async fn a_connection_that_vanished_leaves_presence_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.ws_idle_timeout_secs = 2;
        c.ws_ping_secs = 1;
    })
    .await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;
    app.create_user(&admin, "ghost@agency.test", true).await;
    let ghost = app.token("ghost@agency.test", crate::helpers::NEW_PASSWORD).await;

    let mut watcher = app.ws(&admin).await;
    watcher.subscribe("p", PRESENCE, json!({ "id": id })).await;
    assert_eq!(names(&watcher.next_of("p").await).len(), 1);

    // The ghost joins, then never reads or answers a ping again, as if its network went away.
    let mut vanishing = app.ws(&ghost).await;
    vanishing.subscribe("p", PRESENCE, json!({ "id": id })).await;
    assert_eq!(names(&watcher.next_of("p").await).len(), 2);

    let after = names(&watcher.next_of("p").await);
    assert_eq!(after.len(), 1, "the ghost is gone: {after:?}");
    assert_ne!(after[0].0, "ghost@agency.test");
    drop(vanishing);
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_with_a_resume_point_while_another_still_receives_everything() {
    let app = TestApp::spawn_with(|c| {
        c.live_buffer = 8;
        c.ws_idle_timeout_secs = 300;
    })
    .await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;
    let start = head(&app, &admin, &id).await;

    // The slow one subscribes, then stops reading; its tiny socket buffer fills quickly.
    let mut slow = app.ws_with(&admin, Some(4096)).await;
    slow.subscribe("e", EVENTS_WITH_PAYLOAD, json!({ "id": id, "after": start })).await;
    let mut fast = app.ws(&admin).await;
    fast.subscribe("e", EVENTS, json!({ "id": id, "after": start })).await;
    let fast_last = Arc::new(AtomicI64::new(start));
    let fast_progress = fast_last.clone();
    let fast_reader = tokio::spawn(async move {
        let mut prev = None;
        loop {
            let payload = fast.next_of("e").await;
            let last = read_until_one(&payload, fast_progress.load(Ordering::SeqCst), &mut prev);
            fast_progress.store(last, Ordering::SeqCst);
        }
    });

    let big = "x".repeat(3_900);
    let mut written: i64 = 0;
    while app.state.live.cut_off_count() == 0 {
        assert!(written < 1000, "the slow subscriber was never cut off");
        // The fast subscriber reads as it should, so it is never more than an event or two behind
        // (each answer appends at least one event), however busy the machine is.
        tokio::time::timeout(WAIT, async {
            while fast_last.load(Ordering::SeqCst) < start + written {
                assert!(!fast_reader.is_finished(), "the fast subscriber stopped");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the fast subscriber keeps up");
        answer(&app, &admin, &id, TEXT_QUESTION, json!(format!("{written} {big}"))).await;
        written += 1;
    }
    for i in 0..3 {
        answer(&app, &admin, &id, TEXT_QUESTION, json!(format!("after {i}"))).await;
    }
    let n = head(&app, &admin, &id).await;

    // The fast subscriber was not held up: it gets everything, and only the slow one was cut off.
    tokio::time::timeout(WAIT, async {
        while fast_last.load(Ordering::SeqCst) < n {
            assert!(!fast_reader.is_finished(), "the fast subscriber stopped");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the fast subscriber receives every event");
    assert_eq!(app.state.live.cut_off_count(), 1);
    fast_reader.abort();

    // The slow one reads what it was sent, then the reason and where to resume.
    let mut last = start;
    let mut prev = None;
    let resume = loop {
        let payload = slow.next_of("e").await;
        if payload["data"]["assessmentEvents"].is_object() {
            last = read_until_one(&payload, last, &mut prev);
            continue;
        }
        let error = &payload["errors"][0];
        assert_eq!(error["extensions"]["code"], "TOO_SLOW", "{payload}");
        assert!(error["message"].as_str().unwrap().contains("afterSeq"), "{payload}");
        break error["extensions"]["resumeAfterSeq"].as_i64().unwrap();
    };
    assert_eq!(resume, last, "it resumes right after the last event it received");
    assert!(last < n, "it was cut off before the end");
    let mut again = app.ws(&admin).await;
    again.subscribe("e", EVENTS, json!({ "id": id, "after": resume })).await;
    assert_eq!(read_until(&mut again, "e", resume, n, &mut prev).await, n, "resuming loses nothing");
}

/// Checks one event payload against the last seq; returns the new last seq.
fn read_until_one(payload: &Value, last: i64, prev: &mut Option<String>) -> i64 {
    let event = &payload["data"]["assessmentEvents"];
    let seq = event["seq"].as_i64().unwrap_or_else(|| panic!("an event: {payload}"));
    assert_eq!(seq, last + 1, "in order, no gap, no repeat");
    if let Some(p) = prev.as_deref() {
        assert_eq!(event["prevHash"], p);
    }
    *prev = Some(event["hash"].as_str().unwrap().to_owned());
    seq
}

#[tokio::test]
async fn unit_progress_is_sent_after_an_answer_lands_and_a_burst_of_answers_yields_few_updates() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (unit, id) = assessment(&app, &admin).await;
    let template = app
        .ok(
            Some(&admin),
            "query($id: ID!) { assessment(id: $id) { template { sections { questions { id type required showIf { questionId } } } } } }",
            json!({ "id": id }),
        )
        .await;
    let scales: Vec<String> = template["assessment"]["template"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["questions"].as_array().unwrap().iter())
        .filter(|q| q["type"] == "scale" && q["required"] == true && q["showIf"].is_null())
        .map(|q| q["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(scales.len() >= 21, "enough required questions: {}", scales.len());

    let mut ws = app.ws(&admin).await;
    ws.subscribe("u", PROGRESS, json!({ "u": unit })).await;
    let first = ws.next_of("u").await;
    assert_eq!(first["data"]["unitProgress"][0]["unit"]["id"], unit.as_str(), "{first}");
    assert_eq!(first["data"]["unitProgress"][0]["requiredAnswered"], 0);

    answer(&app, &admin, &id, &scales[0], json!("2")).await;
    let after_one = ws.next_of("u").await;
    assert_eq!(after_one["data"]["unitProgress"][0]["requiredAnswered"], 1, "{after_one}");

    let burst = &scales[1..21];
    futures_util::future::join_all(burst.iter().map(|q| answer(&app, &admin, &id, q, json!("3")))).await;
    let mut updates = 0;
    loop {
        let p = ws.next_of("u").await;
        updates += 1;
        if p["data"]["unitProgress"][0]["requiredAnswered"] == 21 {
            break;
        }
    }
    assert!(updates < burst.len(), "{} answers were coalesced into {updates} updates", burst.len());
}

#[tokio::test]
async fn a_subscriber_on_one_server_receives_in_order_the_events_written_through_another() {
    let a = TestApp::spawn_with(|c| c.live_poll_ms = 600_000).await;
    if !a.db.is_postgres() {
        eprintln!("skipped: several servers share a database only on PostgreSQL (set ATTEST_TEST_DATABASE_URL)");
        return;
    }
    // The safety poll is far off: only notifications from the other server can deliver in time.
    let b = a.spawn_beside(|c| c.live_poll_ms = 600_000).await;
    let admin_a = a.admin().await;
    let admin_b = b.admin().await;
    let (_, id) = assessment(&b, &admin_b).await;
    let start = head(&a, &admin_a, &id).await;

    let mut ws = a.ws(&admin_a).await;
    ws.subscribe("e", EVENTS, json!({ "id": id, "after": start })).await;
    // No acknowledgement exists for a subscription: one write through A shows it is live.
    answer(&a, &admin_a, &id, TEXT_QUESTION, json!("through A")).await;
    let mut prev = None;
    let mut last = read_until(&mut ws, "e", start, start + 1, &mut prev).await;
    for i in 0..20 {
        answer(&b, &admin_b, &id, TEXT_QUESTION, json!(format!("through B {i}"))).await;
    }
    let n = head(&b, &admin_b, &id).await;
    assert!(n >= start + 21, "every write was logged");
    last = read_until(&mut ws, "e", last, n, &mut prev).await;
    assert_eq!(last, n, "everything written through B arrived at A, in order");
}

/// The same subscription as `EVENTS`, through an alias, a fragment and a variable directive.
const EVENTS_SHAPED: &str = "subscription($id: ID!, $after: Int, $withHash: Boolean!) {
    changed: assessmentEvents(assessmentId: $id, afterSeq: $after) { ...Basics hash @include(if: $withHash) } }
    fragment Basics on Event { n: seq type }";

/// The whole messages of subscription `id` until the event with sequence number `until`.
async fn frames_until(ws: &mut Ws, id: &str, field: &str, seq: &str, until: i64) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let msg = ws.next().await;
        if msg["id"] != id {
            continue;
        }
        assert_eq!(msg["type"], "next", "{msg}");
        let n = msg["payload"]["data"][field][seq].as_i64().unwrap_or_else(|| panic!("an event: {msg}"));
        frames.push(msg);
        if n >= until {
            return frames;
        }
    }
}

fn keys(frame: &Value, field: &str) -> Vec<String> {
    let mut keys: Vec<String> = frame["payload"]["data"][field].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn subscribers_sending_the_same_subscription_get_identical_correct_frames_and_other_selections_their_own() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;
    for i in 0..3 {
        answer(&app, &admin, &id, TEXT_QUESTION, json!(format!("draft {i}"))).await;
    }

    let mut first = app.ws(&admin).await;
    let mut second = app.ws(&admin).await;
    let mut with_payload = app.ws(&admin).await;
    let vars = json!({ "id": id, "after": 0 });
    first.subscribe("e", EVENTS, vars.clone()).await;
    second.subscribe("e", EVENTS, vars.clone()).await;
    with_payload.subscribe("p", EVENTS_WITH_PAYLOAD, vars.clone()).await;
    // The same shaped query twice with and twice without the hash, one connection each.
    let mut shaped = Vec::new();
    for with_hash in [false, true, false, true] {
        let mut ws = app.ws(&admin).await;
        ws.subscribe("s", EVENTS_SHAPED, json!({ "id": id, "after": 0, "withHash": with_hash })).await;
        shaped.push((with_hash, ws));
    }
    // One more event after subscribing, which reaches each subscriber from its catch-up read or
    // from the live tail, whichever comes first.
    answer(&app, &admin, &id, TEXT_QUESTION, json!("final")).await;
    let logged = app.events(&admin, &format!("assessment:{id}")).await;
    let n = logged.len() as i64;

    let a = frames_until(&mut first, "e", "assessmentEvents", "seq", n).await;
    let b = frames_until(&mut second, "e", "assessmentEvents", "seq", n).await;
    assert_eq!(a.len() as i64, n);
    assert_eq!(a, b, "the same subscription gets the same frames, byte for byte in content");
    for (frame, event) in a.iter().zip(&logged) {
        let got = &frame["payload"]["data"]["assessmentEvents"];
        for field in ["stream", "seq", "type", "actor", "at", "prevHash", "hash"] {
            assert_eq!(got[field], event[field], "{field} of {got}");
        }
        assert_eq!(keys(frame, "assessmentEvents"), ["actor", "at", "hash", "prevHash", "seq", "stream", "type"]);
    }

    let p = frames_until(&mut with_payload, "p", "assessmentEvents", "seq", n).await;
    for (frame, event) in p.iter().zip(&logged) {
        assert_eq!(keys(frame, "assessmentEvents"), ["hash", "payload", "prevHash", "seq"]);
        assert_eq!(frame["payload"]["data"]["assessmentEvents"]["payload"], event["payload"]);
    }
    let mut by_variables: Vec<(bool, Vec<Value>)> = Vec::new();
    for (with_hash, ws) in &mut shaped {
        let frames = frames_until(ws, "s", "changed", "n", n).await;
        assert_eq!(frames.len() as i64, n);
        for (frame, event) in frames.iter().zip(&logged) {
            let expected: &[&str] = if *with_hash { &["hash", "n", "type"] } else { &["n", "type"] };
            assert_eq!(keys(frame, "changed"), expected, "variables shape the rendering: {frame}");
            let got = &frame["payload"]["data"]["changed"];
            assert_eq!(got["n"], event["seq"]);
            assert_eq!(got["type"], event["type"]);
            if *with_hash {
                assert_eq!(got["hash"], event["hash"]);
            }
        }
        match by_variables.iter().find(|(h, _)| h == with_hash) {
            Some((_, earlier)) => assert_eq!(earlier, &frames, "the same request, the same frames"),
            None => by_variables.push((*with_hash, frames)),
        }
    }

    // Renderings of this assessment's events are kept now; another agency sending the very same
    // subscription still gets nothing but "not found".
    let password = attest::auth::password::Password::parse("p", "other agency password").unwrap();
    attest::agencies::create_agency(&app.state, "South Police", "chief@south.test", &password, false).await.unwrap();
    let foreign = app.token("chief@south.test", "other agency password").await;
    let mut outsider = app.ws(&foreign).await;
    outsider.subscribe("e", EVENTS, vars).await;
    let payload = outsider.next_of("e").await;
    assert_eq!(payload["errors"][0]["extensions"]["code"], "NOT_FOUND", "{payload}");
    assert!(payload["data"].is_null() || payload["data"]["assessmentEvents"].is_null(), "{payload}");
}

#[tokio::test]
async fn a_message_far_larger_than_the_read_buffer_is_taken_up_to_the_limit_and_one_beyond_ends_the_connection() {
    let app = TestApp::spawn_with(|c| c.ws_max_message_bytes = 64 * 1024).await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;

    // A subscription padded with a comment to 48 KiB, 48 times the server's read buffer.
    let mut ws = app.ws(&admin).await;
    let padded = format!("# {}\n{EVENTS}", "x".repeat(48 * 1024));
    ws.subscribe("e", &padded, json!({ "id": id, "after": 0 })).await;
    let payload = ws.next_of("e").await;
    assert_eq!(payload["data"]["assessmentEvents"]["seq"], 1, "{payload}");

    let oversized = format!("# {}\n{EVENTS}", "x".repeat(80 * 1024));
    ws.subscribe("big", &oversized, json!({ "id": id, "after": 0 })).await;
    // The connection ends without serving it.
    while let Ok(msg) = ws.next_or_close().await {
        assert_ne!(msg["id"], "big", "a message over the limit is not served: {msg}");
    }
}

#[tokio::test]
async fn a_connection_ends_when_its_session_ends_or_the_users_rights_change() {
    let app = TestApp::spawn_with(|c| {
        c.ws_ping_secs = 1;
        c.ws_recheck_secs = 1;
    })
    .await;
    let admin = app.admin().await;
    let (unit, id) = assessment(&app, &admin).await;
    let (manager_id, manager) = app.create_user(&admin, "manager@agency.test", false).await;
    app.grant(&admin, &manager_id, &unit, "MANAGER").await;

    let mut managers = app.ws(&manager).await;
    managers.subscribe("e", EVENTS, json!({ "id": id })).await;
    assert_eq!(managers.next_of("e").await["data"]["assessmentEvents"]["seq"], 1);
    let mut admins = app.ws(&admin).await;
    admins.subscribe("e", EVENTS, json!({ "id": id })).await;
    assert_eq!(admins.next_of("e").await["data"]["assessmentEvents"]["seq"], 1);

    // Several checks pass while nothing changes: both connections still receive what is written.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let value = json!({ "i": { "assessmentId": id, "questionId": TEXT_QUESTION, "value": "Checked" } });
    app.ok(Some(&admin), SET, value).await;
    for ws in [&mut managers, &mut admins] {
        // The first answer also moves the assessment from draft to in progress.
        let first = ws.next_of("e").await;
        assert_eq!(first["data"]["assessmentEvents"]["type"], "assessment.status_changed", "{first}");
        let second = ws.next_of("e").await;
        assert_eq!(second["data"]["assessmentEvents"]["type"], "answer.set", "{second}");
    }

    // The manager's role is revoked: the connection ends, and subscribing again is refused.
    app.ok(
        Some(&admin),
        "mutation($u: ID!, $unit: ID!) { revokeRole(userId: $u, unitId: $unit) }",
        json!({ "u": manager_id, "unit": unit }),
    )
    .await;
    let (code, reason) = managers.closed().await;
    assert_eq!(code, 4403, "{reason}");
    let mut again = app.ws(&manager).await;
    again.subscribe("e", EVENTS, json!({ "id": id })).await;
    let refused = again.next_of("e").await;
    assert!(["NOT_FOUND", "FORBIDDEN"].contains(&refused["errors"][0]["extensions"]["code"].as_str().unwrap_or("")));

    // The administrator's session ends: the connection opened with it is closed with 4401.
    app.ok(Some(&admin), "mutation { logout }", json!({})).await;
    let (code, reason) = admins.closed().await;
    assert_eq!(code, 4401, "{reason}");
}

const TWO_ALIASES: &str = "subscription($id: ID!) {
    a: assessmentEvents(assessmentId: $id) { seq type }
    b: assessmentEvents(assessmentId: $id) { n: seq hash } }";

#[tokio::test]
async fn a_subscription_naming_the_event_stream_twice_gets_each_alias_its_own_selection_on_every_connection() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;
    answer(&app, &admin, &id, TEXT_QUESTION, json!("one")).await;
    // Two connections send the same request, so the second may send what the first rendered.
    let mut connections = Vec::new();
    for _ in 0..2 {
        let mut ws = app.ws(&admin).await;
        ws.subscribe("x", TWO_ALIASES, json!({ "id": id })).await;
        connections.push(ws);
    }
    answer(&app, &admin, &id, TEXT_QUESTION, json!("two")).await;
    let logged = app.events(&admin, &format!("assessment:{id}")).await;
    let n = logged.len();
    for ws in &mut connections {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        while a.len() < n || b.len() < n {
            let msg = ws.next().await;
            assert_eq!((msg["type"].as_str(), msg["id"].as_str()), (Some("next"), Some("x")), "{msg}");
            let data = msg["payload"]["data"].as_object().expect("data").clone();
            assert_eq!(data.len(), 1, "one field per message: {msg}");
            match data.get("a") {
                Some(event) => a.push(event.clone()),
                None => b.push(data["b"].clone()),
            }
        }
        for (i, event) in logged.iter().enumerate() {
            assert_eq!(a[i], json!({ "seq": event["seq"], "type": event["type"] }));
            assert_eq!(b[i], json!({ "n": event["seq"], "hash": event["hash"] }));
        }
    }
}

#[tokio::test]
async fn the_protocol_answers_pings_stops_a_completed_subscription_and_closes_on_broken_rules() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;

    let mut ws = app.ws(&admin).await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await, json!({ "type": "pong" }));
    // A completed subscription sends nothing more; another on the same connection goes on.
    ws.subscribe("stopped", EVENTS, json!({ "id": id, "after": 0 })).await;
    ws.subscribe("kept", EVENTS, json!({ "id": id, "after": 0 })).await;
    answer(&app, &admin, &id, TEXT_QUESTION, json!("one")).await;
    let n = app.events(&admin, &format!("assessment:{id}")).await.len() as i64;
    let mut last = std::collections::HashMap::new();
    while last.len() < 2 || last.values().any(|seq| *seq < n) {
        let msg = ws.next().await;
        let seq = msg["payload"]["data"]["assessmentEvents"]["seq"].as_i64().unwrap_or_else(|| panic!("{msg}"));
        last.insert(msg["id"].as_str().expect("an id").to_owned(), seq);
    }
    ws.send(json!({ "type": "complete", "id": "stopped" })).await;
    answer(&app, &admin, &id, TEXT_QUESTION, json!("two")).await;
    let m = app.events(&admin, &format!("assessment:{id}")).await.len() as i64;
    assert!(m > n);
    for seq in n + 1..=m {
        let msg = ws.next().await;
        assert_eq!(
            (msg["id"].as_str(), &msg["payload"]["data"]["assessmentEvents"]["seq"]),
            (Some("kept"), &json!(seq))
        );
    }
    // The id of a running subscription cannot be used again.
    ws.subscribe("kept", EVENTS, json!({ "id": id, "after": 0 })).await;
    assert_eq!(ws.closed().await, (4409, "subscriber for kept already exists".to_owned()));

    let mut ws = app.ws(&admin).await;
    ws.send(json!({ "type": "connection_init", "payload": { "token": admin } })).await;
    assert_eq!(ws.closed().await.0, 4429);

    let mut ws = app.ws(&admin).await;
    ws.send(json!({ "type": "subscribe", "payload": { "query": "{ me { id } }" } })).await;
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4400);
    assert!(reason.contains("missing field `id`"), "{reason}");

    // Queries run over the socket too, and complete after their one result.
    let mut ws = app.ws(&admin).await;
    ws.subscribe("q", "{ me { displayName } }", json!({})).await;
    let result = ws.next().await;
    assert_eq!((result["type"].as_str(), result["id"].as_str()), (Some("next"), Some("q")), "{result}");
    assert!(result["payload"]["data"]["me"]["displayName"].is_string(), "{result}");
    assert_eq!(ws.next().await, json!({ "type": "complete", "id": "q" }));
}

/// An assessment of `app`, and a manager of its unit whose connection to `server` (`app` or a
/// server beside it) is subscribed to its events: the unit, the assessment, the manager's id and
/// the connection.
async fn manager_watching(app: &TestApp, server: &TestApp, admin: &str) -> (String, String, String, Ws) {
    let (unit, id) = assessment(app, admin).await;
    let (manager_id, manager) = app.create_user(admin, "manager@agency.test", false).await;
    app.grant(admin, &manager_id, &unit, "MANAGER").await;
    let mut ws = server.ws(&manager).await;
    ws.subscribe("e", EVENTS, json!({ "id": id })).await;
    assert_eq!(ws.next_of("e").await["data"]["assessmentEvents"]["seq"], 1);
    (unit, id, manager_id, ws)
}

async fn revoke_role(app: &TestApp, admin: &str, user: &str, unit: &str) {
    let revoke = "mutation($u: ID!, $unit: ID!) { revokeRole(userId: $u, unitId: $unit) }";
    app.ok(Some(admin), revoke, json!({ "u": user, "unit": unit })).await;
}

#[tokio::test]
async fn a_revoked_role_or_an_ended_session_closes_open_connections_at_once_not_at_the_next_periodic_check() {
    // The periodic check is an hour away: only the change itself can end these connections.
    let app = TestApp::spawn_with(|c| c.ws_recheck_secs = 3600).await;
    let admin = app.admin().await;
    let (unit, id, manager_id, mut managers) = manager_watching(&app, &app, &admin).await;
    let mut admins = app.ws(&admin).await;
    admins.subscribe("e", EVENTS, json!({ "id": id })).await;
    assert_eq!(admins.next_of("e").await["data"]["assessmentEvents"]["seq"], 1);

    revoke_role(&app, &admin, &manager_id, &unit).await;
    let (code, reason) = managers.closed().await;
    assert_eq!(code, 4403, "{reason}");

    // The administrator's connection went on through that change: its rights did not change.
    answer(&app, &admin, &id, TEXT_QUESTION, json!("still here")).await;
    assert_eq!(admins.next_of("e").await["data"]["assessmentEvents"]["type"], "assessment.status_changed");
    app.ok(Some(&admin), "mutation { logout }", json!({})).await;
    let (code, reason) = admins.closed().await;
    assert_eq!(code, 4401, "{reason}");
}

#[tokio::test]
async fn a_role_revoked_through_one_server_closes_the_users_connection_on_another_at_once() {
    let a = TestApp::spawn_with(|c| c.ws_recheck_secs = 3600).await;
    if !a.db.is_postgres() {
        eprintln!("skipped: several servers share a database only on PostgreSQL (set ATTEST_TEST_DATABASE_URL)");
        return;
    }
    let b = a.spawn_beside(|c| c.ws_recheck_secs = 3600).await;
    let admin = a.admin().await;
    let (unit, _, manager_id, mut on_b) = manager_watching(&a, &b, &admin).await;
    revoke_role(&a, &admin, &manager_id, &unit).await;
    let (code, reason) = on_b.closed().await;
    assert_eq!(code, 4403, "{reason}");
}
