//! Presence across several servers on one PostgreSQL database: people connected to different
//! servers see each other join, move and leave, and a server that goes silent takes its people
//! with it after the presence timeout. The merge of other servers' lists runs on both backends.

use attest::ids::{AssessmentId, UserId};
use attest::live::presence::{Entry, ServerId};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::{NEW_PASSWORD, TestApp, WAIT, Ws};
use crate::live::{PRESENCE, assessment};
const MOVE: &str =
    "mutation($id: ID!, $q: String, $t: Boolean) { setPresence(assessmentId: $id, questionId: $q, typing: $t) }";
const SKIPPED: &str = "skipped: several servers share a database only on PostgreSQL (set ATTEST_TEST_DATABASE_URL)";

/// (display name, question, typing) of each person in a presence list, in its order.
fn people(payload: &Value) -> Vec<(String, Value, bool)> {
    let list = payload["data"]["presence"].as_array().unwrap_or_else(|| panic!("a presence list: {payload}"));
    list.iter()
        .map(|e| (e["displayName"].as_str().unwrap().to_owned(), e["questionId"].clone(), e["typing"] == true))
        .collect()
}

/// Reads presence lists until one satisfies `done`, and returns it. Changes in quick succession
/// may arrive as one list, so intermediate lists are skipped. The server's pings keep a socket
/// busy, so the whole wait has a limit of its own.
async fn until(ws: &mut Ws, done: impl Fn(&[(String, Value, bool)]) -> bool) -> Vec<(String, Value, bool)> {
    let wait = async {
        loop {
            let list = next_list(ws, "p").await;
            if done(&list) {
                return list;
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("the expected presence list in time")
}

/// The next presence list of subscription `id`.
async fn next_list(ws: &mut Ws, id: &str) -> Vec<(String, Value, bool)> {
    people(&tokio::time::timeout(WAIT, ws.next_of(id)).await.expect("a presence list in time"))
}

fn sorted(mut list: Vec<(String, Value, bool)>) -> Vec<(String, Value, bool)> {
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

fn entry(name: &str) -> Entry {
    Entry {
        user_id: UserId::new(),
        display_name: name.to_owned(),
        question_id: None,
        typing: false,
        since: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn other_servers_lists_join_the_room_in_server_order_and_go_when_their_server_falls_silent() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, id) = assessment(&app, &admin).await;
    let room = AssessmentId::parse(&id).unwrap();
    let presence = app.state.live.presence();
    let timeout = app.state.live.settings().presence_timeout;

    let mut ws = app.ws(&admin).await;
    ws.subscribe("p", PRESENCE, json!({ "id": id })).await;
    let me = next_list(&mut ws, "p").await;
    assert_eq!(me.len(), 1);
    let me = me[0].clone();

    // Two other servers, one ordered before this one and one after.
    let (low, high) = (ServerId(Uuid::nil()), ServerId(Uuid::max()));
    let start = Instant::now();
    presence.receive(low, room, vec![entry("Ada"), entry("Ben")], start);
    presence.receive(high, room, vec![entry("Cem")], start);
    let all = until(&mut ws, |l| l.len() == 4).await;
    let names: Vec<&str> = all.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["Ada", "Ben", me.0.as_str(), "Cem"], "grouped by server, in arrival order within one");

    // A server's own list coming back is ignored.
    presence.receive(presence.server(), room, vec![entry("Echo")], start);
    // The same lists again (a heartbeat) tell subscribers nothing; the next list they get is the
    // one where the high server's list was refreshed later and the low one went stale.
    presence.receive(low, room, vec![entry("Ada"), entry("Ben")], start);
    presence.receive(high, room, vec![entry("Cem")], start + timeout / 2);
    presence.expire(start + timeout);
    let after = next_list(&mut ws, "p").await;
    let names: Vec<&str> = after.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, [me.0.as_str(), "Cem"], "the silent server's people left");

    // An empty list: everyone on that server left.
    presence.receive(high, room, Vec::new(), start + timeout);
    assert_eq!(next_list(&mut ws, "p").await, vec![me.clone()]);
    assert_eq!(presence.snapshot(room).len(), 1);

    // A room nobody here looks at keeps the others' lists for whoever joins it.
    let (_, other) = assessment(&app, &admin).await;
    presence.receive(low, AssessmentId::parse(&other).unwrap(), vec![entry("Dee")], Instant::now());
    ws.subscribe("q", PRESENCE, json!({ "id": other })).await;
    let joined = next_list(&mut ws, "q").await;
    assert_eq!(joined.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["Dee", me.0.as_str()]);
}

#[tokio::test]
async fn people_on_two_servers_see_each_other_join_move_and_leave() {
    let a = TestApp::spawn().await;
    if !a.db.is_postgres() {
        eprintln!("{SKIPPED}");
        return;
    }
    let b = a.spawn_beside(|_| {}).await;
    let admin = a.admin().await;
    let (_, id) = assessment(&a, &admin).await;
    a.create_user(&admin, "colleague@agency.test", true).await;
    let colleague = b.token("colleague@agency.test", NEW_PASSWORD).await;

    let mut mine = a.ws(&admin).await;
    mine.subscribe("p", PRESENCE, json!({ "id": id })).await;
    let me = next_list(&mut mine, "p").await;
    assert_eq!(me.len(), 1);
    let my_name = me[0].0.clone();
    let colleague_joined = (String::from("colleague@agency.test"), Value::Null, false);

    let mut theirs = b.ws(&colleague).await;
    theirs.subscribe("p", PRESENCE, json!({ "id": id })).await;
    let seen_by_them = until(&mut theirs, |l| l.len() == 2).await;
    let seen_by_me = until(&mut mine, |l| l.len() == 2).await;
    assert_eq!(seen_by_me, seen_by_them, "both servers show the same list in the same order");
    assert_eq!(sorted(seen_by_me), sorted(vec![(my_name.clone(), Value::Null, false), colleague_joined.clone()]));

    // The colleague's move reaches server A by HTTP, while their subscription is on server B.
    let set = a.ok(Some(&colleague), MOVE, json!({ "id": id, "q": "rd-leadership-evidence", "t": true })).await;
    assert_eq!(set["setPresence"], true, "the colleague is present, through the other server");
    let moved = (String::from("colleague@agency.test"), json!("rd-leadership-evidence"), true);
    until(&mut mine, |l| l.contains(&moved)).await;
    until(&mut theirs, |l| l.contains(&moved)).await;

    // And mine, through my own server, reaches them.
    a.ok(Some(&admin), MOVE, json!({ "id": id, "q": "rd-governance", "t": false })).await;
    let mine_moved = (my_name.clone(), json!("rd-governance"), false);
    let seen = until(&mut theirs, |l| l.contains(&mine_moved)).await;
    assert!(seen.contains(&moved), "{seen:?}");

    theirs.close().await;
    let left = until(&mut mine, |l| l.len() == 1).await;
    assert_eq!(left, vec![mine_moved], "the colleague left with their connection");

    // With no presence subscription anywhere, there is nothing to move.
    let set = b.ok(Some(&colleague), MOVE, json!({ "id": id })).await;
    assert_eq!(set["setPresence"], false);
}

#[tokio::test]
async fn the_people_of_a_server_that_stops_publishing_leave_after_the_presence_timeout() {
    let a = TestApp::spawn_with(|c| {
        c.presence_timeout_ms = Some(1500);
        c.presence_heartbeat_ms = 300;
    })
    .await;
    if !a.db.is_postgres() {
        eprintln!("{SKIPPED}");
        return;
    }
    let admin = a.admin().await;
    let (_, id) = assessment(&a, &admin).await;
    let mut ws = a.ws(&admin).await;
    ws.subscribe("p", PRESENCE, json!({ "id": id })).await;
    assert_eq!(next_list(&mut ws, "p").await.len(), 1);

    // A server that publishes its room once, then crashes: nothing more comes from it.
    let room = json!({
        "k": "room", "s": Uuid::new_v4(), "a": id, "g": 1, "i": 0, "n": 1,
        "e": [{ "u": Uuid::new_v4(), "d": "Ghost", "q": "rd-governance", "t": true, "at": 1_800_000_000_000_i64 }],
    });
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify('attest_presence', $1)",
        [room.to_string().into()],
    );
    let ghost = (String::from("Ghost"), json!("rd-governance"), true);
    // The server starts listening in the background: the room is published again until it is
    // heard, as a server's heartbeat would, and never after that.
    let deadline = Instant::now() + WAIT;
    loop {
        a.state.db.conn.execute_raw(statement.clone()).await.expect("notify");
        let heard = tokio::time::timeout(std::time::Duration::from_millis(300), async {
            loop {
                if next_list(&mut ws, "p").await.contains(&ghost) {
                    break;
                }
            }
        })
        .await;
        if heard.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the other server's room was never heard");
    }
    let after = until(&mut ws, |l| !l.contains(&ghost)).await;
    assert_eq!(after.len(), 1, "only I am left: {after:?}");
}

#[tokio::test]
async fn a_server_that_stops_cleanly_takes_its_people_with_it_without_waiting_for_the_timeout() {
    // The timeout is far beyond the wait for a message: only the stopping server's word helps.
    let a = TestApp::spawn_with(|c| c.presence_timeout_ms = Some(3_600_000)).await;
    if !a.db.is_postgres() {
        eprintln!("{SKIPPED}");
        return;
    }
    let b = a.spawn_beside(|_| {}).await;
    let admin = a.admin().await;
    let (_, id) = assessment(&a, &admin).await;
    let admin_b = b.admin().await;

    let mut mine = a.ws(&admin).await;
    mine.subscribe("p", PRESENCE, json!({ "id": id })).await;
    let mut theirs = b.ws(&admin_b).await;
    theirs.subscribe("p", PRESENCE, json!({ "id": id })).await;
    // The same person on two servers is there twice, as with two connections to one server.
    until(&mut mine, |l| l.len() == 2).await;

    drop(b);
    let left = until(&mut mine, |l| l.len() == 1).await;
    assert_eq!(left.len(), 1);
    drop(theirs);
}

#[tokio::test]
async fn a_burst_of_typing_toggles_is_published_as_a_few_lists_ending_with_the_latest() {
    let a = TestApp::spawn().await;
    if !a.db.is_postgres() {
        eprintln!("{SKIPPED}");
        return;
    }
    let admin = a.admin().await;
    let (_, id) = assessment(&a, &admin).await;
    let server = a.state.live.presence().server().0.to_string();
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect(a.db.url.expose()).await.expect("connect");
    listener.listen("attest_presence").await.expect("listen");

    let mut ws = a.ws(&admin).await;
    ws.subscribe("p", PRESENCE, json!({ "id": id })).await;
    next_list(&mut ws, "p").await;
    let toggles = 20;
    for i in 0..toggles {
        a.ok(Some(&admin), MOVE, json!({ "id": id, "q": "rd-governance", "t": i % 2 == 0 })).await;
    }
    a.ok(Some(&admin), MOVE, json!({ "id": id, "q": "rd-leadership-evidence", "t": false })).await;
    // The list with the last move is the last one published.
    let mut lists = 0;
    loop {
        let n = tokio::time::timeout(WAIT, listener.recv()).await.expect("in time").expect("a notification");
        let message: Value = serde_json::from_str(n.payload()).expect("JSON");
        if message["k"] != "room" || message["s"] != server.as_str() {
            continue;
        }
        lists += 1;
        let e = &message["e"][0];
        if e["q"] == "rd-leadership-evidence" {
            break;
        }
    }
    assert!(lists < toggles, "{} changes were published as {lists} lists", toggles + 1);
}
