//! The event log under every write: one event per change, a valid hash chain, gap-free sequences
//! under concurrency, and a database that refuses to rewrite history.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, code};

/// Recomputes an event's hash from the rules in docs/event-log.md, independently of the server.
fn expected_hash(e: &Value) -> String {
    let hashed = json!({
        "actor": e["actor"], "at": e["at"], "payload": e["payload"], "prev_hash": e["prevHash"],
        "seq": e["seq"], "stream": e["stream"], "type": e["type"],
    });
    hex::encode(Sha256::digest(serde_jcs::to_vec(&hashed).unwrap()))
}

fn assert_chain(events: &[Value]) {
    let mut prev = "0".repeat(64);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], json!(i + 1), "sequence numbers are gap-free from 1");
        assert_eq!(e["prevHash"], json!(prev), "event {} links to its predecessor", i + 1);
        assert_eq!(e["hash"], json!(expected_hash(e)), "event {} hash", i + 1);
        prev = e["hash"].as_str().unwrap().to_owned();
    }
}

#[tokio::test]
async fn each_change_appends_one_event_with_a_valid_chain() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let stream = app.agency_stream(&admin).await;
    let before = app.events(&admin, &stream).await.len();

    let unit = app.create_unit(&admin, "Cyber Crime Division", None).await;
    app.ok(
        Some(&admin),
        "mutation($id: ID!) { renameUnit(id: $id, name: \"Cybercrime Division\") { id } }",
        json!({ "id": unit }),
    )
    .await;
    let user = app
        .ok(
            Some(&admin),
            "mutation { createUser(input: { email: \"analyst@agency.test\", displayName: \"Analyst\", password: \"initial password 1\" }) { id } }",
            json!({}),
        )
        .await["createUser"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.grant(&admin, &user, &unit, "MEMBER").await;

    let events = app.events(&admin, &stream).await;
    let new: Vec<&Value> = events[before..].iter().collect();
    let types: Vec<&str> = new.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["unit.created", "unit.renamed", "user.created", "role.granted"]);
    assert_eq!(new[1]["payload"]["before"]["name"], "Cyber Crime Division");
    assert_eq!(new[1]["payload"]["after"]["name"], "Cybercrime Division");
    let me = app.ok(Some(&admin), "{ me { id } }", json!({})).await;
    assert!(new.iter().all(|e| e["actor"] == me["me"]["id"]), "the administrator is the actor");
    assert_chain(&events);

    let verified = app
        .ok(
            Some(&admin),
            "query($s: String!) { verifyStream(stream: $s) { ok eventsChecked headHash } }",
            json!({ "s": stream }),
        )
        .await;
    assert_eq!(verified["verifyStream"]["ok"], true);
    assert_eq!(verified["verifyStream"]["eventsChecked"], json!(events.len()));
    assert_eq!(verified["verifyStream"]["headHash"], events.last().unwrap()["hash"]);
}

#[tokio::test]
async fn a_refused_change_appends_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let stream = app.agency_stream(&admin).await;
    let before = app.events(&admin, &stream).await.len();
    let bad = app.graphql(Some(&admin), "mutation { createUnit(name: \"   \") { id } }", json!({})).await;
    assert_eq!(code(&bad), "INVALID_INPUT");
    let dup = app
        .graphql(
            Some(&admin),
            "mutation { createUser(input: { email: \"ADMIN@agency.test\", displayName: \"Again\", password: \"initial password 1\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&dup), "INVALID_INPUT");
    assert_eq!(dup["errors"][0]["extensions"]["field"], "email");
    assert_eq!(app.events(&admin, &stream).await.len(), before);
}

#[tokio::test]
async fn concurrent_writers_get_gap_free_sequences() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let stream = app.agency_stream(&admin).await;
    let writes = (0..24).map(|i| {
        let (app, admin) = (&app, &admin);
        async move { app.create_unit(admin, &format!("Unit {i}"), None).await }
    });
    let ids = futures_util::future::join_all(writes).await;
    assert_eq!(ids.len(), 24);
    let events = app.events(&admin, &stream).await;
    assert_eq!(events.iter().filter(|e| e["type"] == "unit.created").count(), 24);
    assert_chain(&events);
}

#[tokio::test]
async fn the_database_refuses_to_update_or_delete_events() {
    let app = TestApp::spawn().await;
    let conn = &app.state.db.conn;
    for sql in ["UPDATE events SET payload = '{}' WHERE seq = 1", "DELETE FROM events WHERE seq = 1"] {
        let err = conn.execute_unprepared(sql).await.expect_err("the events table is append-only");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    if app.db.is_postgres() {
        let err = conn.execute_unprepared("TRUNCATE events").await.expect_err("TRUNCATE is refused too");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    let admin = app.admin().await;
    let stream = app.agency_stream(&admin).await;
    assert_chain(&app.events(&admin, &stream).await);
}

#[tokio::test]
async fn verification_finds_a_payload_changed_behind_the_servers_back() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let stream = app.agency_stream(&admin).await;
    app.create_unit(&admin, "Forensics", None).await;
    let conn = &app.state.db.conn;
    let drop = if app.db.is_postgres() {
        "DROP TRIGGER events_refuse_update ON events"
    } else {
        "DROP TRIGGER events_refuse_update"
    };
    conn.execute_unprepared(drop).await.unwrap();
    conn.execute_unprepared(&format!(
        "UPDATE events SET payload = replace(payload, 'Forensics', 'Nothing') WHERE stream = '{stream}' AND type = 'unit.created'"
    ))
    .await
    .unwrap();
    let verified = app
        .ok(
            Some(&admin),
            "query($s: String!) { verifyStream(stream: $s) { ok problemSeq problem } }",
            json!({ "s": stream }),
        )
        .await;
    assert_eq!(verified["verifyStream"]["ok"], false);
    assert!(verified["verifyStream"]["problem"].as_str().unwrap().contains("hash"));
}

#[tokio::test]
async fn events_page_through_a_stream_with_cursors() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let stream = app.agency_stream(&admin).await;
    for i in 0..5 {
        app.create_unit(&admin, &format!("U{i}"), None).await;
    }
    let total = app.events(&admin, &stream).await.len();
    let q = "query($s: String!, $a: String) { events(stream: $s, after: $a, first: 2) { pageInfo { hasNextPage endCursor } nodes { seq } } }";
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let page = app.ok(Some(&admin), q, json!({ "s": stream, "a": after })).await;
        let nodes = page["events"]["nodes"].as_array().unwrap();
        assert!(nodes.len() <= 2);
        seen.extend(nodes.iter().map(|n| n["seq"].as_i64().unwrap()));
        if !page["events"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["events"]["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, (1..=i64::try_from(total).unwrap()).collect::<Vec<_>>());
}

fn event(seq: i64, prev_hash: &str, hash: &str) -> attest::events::Event {
    event_in("t-alone", seq, prev_hash, hash)
}

fn event_in(stream: &str, seq: i64, prev_hash: &str, hash: &str) -> attest::events::Event {
    attest::events::Event {
        position: 0,
        stream: stream.into(),
        seq,
        kind: "test".into(),
        actor: "system".into(),
        at: "2026-12-01T00:00:00.000000Z".into(),
        payload: json!({ "seq": seq }),
        prev_hash: prev_hash.into(),
        hash: hash.into(),
    }
}

#[tokio::test]
async fn writes_that_arrive_together_commit_together_and_a_refused_one_fails_alone() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let streams: Vec<String> = (0..8).map(|i| format!("t-w{i}")).collect();
    let tx = db.begin_write().await.unwrap();
    let (_, genesis) = attest::db::events::lock_head(&*tx, "t-alone").await.unwrap();
    for s in &streams {
        attest::db::events::lock_head(&*tx, s).await.unwrap();
    }
    tx.commit().await.unwrap();

    // On SQLite another writer holds the turn while the rest arrive, so they are gathered into
    // one request; two of them race for place 1 of the same stream.
    let holder = db.begin_write().await.unwrap();
    attest::db::events::lock_head(&*holder, "t-holder").await.unwrap();
    let mut writers = Vec::new();
    let mut write = |e: attest::events::Event, head: String| {
        let db = db.clone();
        writers
            .push(tokio::spawn(async move { attest::db::events::insert_alone(&db, e, vec![new_head(&head)]).await }));
    };
    for (i, s) in streams.iter().enumerate() {
        write(event_in(s, 1, &genesis, &format!("h{i}")), format!("t-new{i}"));
    }
    write(event(1, &genesis, "race-a"), "t-race-a".into());
    write(event(1, &genesis, "race-b"), "t-race-b".into());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    holder.commit().await.unwrap();

    let mut results = Vec::new();
    for w in writers {
        results.push(w.await.unwrap().unwrap());
    }
    let (own, race) = results.split_at(streams.len());
    let mut positions: Vec<i64> =
        own.iter().map(|e| e.as_ref().expect("a write to its own stream stands").position).collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), streams.len(), "each event has a place of its own in the log");
    let winners: Vec<&str> = race.iter().flatten().map(|e| e.hash.as_str()).collect();
    assert_eq!(winners.len(), 1, "one of the two racing writes takes place 1, the other is refused");
    let (winner, loser) = if winners[0] == "race-a" { ("t-race-a", "t-race-b") } else { ("t-race-b", "t-race-a") };

    for (i, s) in streams.iter().enumerate() {
        assert_eq!(attest::db::events::head(&db.conn, s).await.unwrap(), Some((1, format!("h{i}"))));
        assert!(attest::db::events::head(&db.conn, &format!("t-new{i}")).await.unwrap().is_some());
    }
    assert_eq!(attest::db::events::head(&db.conn, "t-alone").await.unwrap(), Some((1, winners[0].to_owned())));
    assert!(attest::db::events::head(&db.conn, winner).await.unwrap().is_some());
    assert!(attest::db::events::head(&db.conn, loser).await.unwrap().is_none(), "nothing of the refused write stays");
    assert!(attest::db::events::head(&db.conn, "t-holder").await.unwrap().is_some());
}

/// A write that the event carries: a new stream head named `stream`.
fn new_head(stream: &str) -> attest::db::Write {
    attest::db::Write::new("INSERT INTO stream_heads (stream, seq, hash) VALUES ($1, 0, 'h')", vec![stream.into()])
}

#[tokio::test]
async fn a_write_after_a_head_that_moved_is_refused_with_what_it_carries_and_later_writes_go_on() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let tx = db.begin_write().await.unwrap();
    let (seq, genesis) = attest::db::events::lock_head(&*tx, "t-alone").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(seq, 0);

    // Two writers read the head at 0; the first takes place 1.
    let first = attest::db::events::insert_alone(db, event(1, &genesis, "h1"), vec![new_head("t-first")]).await;
    assert_eq!(first.unwrap().map(|e| e.seq), Some(1));
    let second = attest::db::events::insert_alone(db, event(1, &genesis, "h1b"), vec![new_head("t-refused")]).await;
    assert!(second.unwrap().is_none(), "place 1 is taken");
    // A writer after the head as it now stands goes on, and nothing of the refused one stays.
    let third = attest::db::events::insert_alone(db, event(2, "h1", "h2"), vec![new_head("t-third")]).await;
    assert_eq!(third.unwrap().map(|e| e.seq), Some(2));
    let rows = db
        .conn
        .query_all_raw(sea_orm::Statement::from_string(
            db.backend(),
            "SELECT stream FROM stream_heads WHERE stream LIKE 't-%' ORDER BY stream",
        ))
        .await
        .unwrap();
    let heads: Vec<String> = rows.iter().map(|r| r.try_get("", "stream").unwrap()).collect();
    assert_eq!(heads, ["t-alone", "t-first", "t-third"]);
    assert_eq!(attest::db::events::head(&db.conn, "t-alone").await.unwrap(), Some((2, "h2".to_owned())));
    let events = attest::db::events::page(&db.conn, "t-alone", 0, 10).await.unwrap();
    let hashes: Vec<&str> = events.iter().map(|e| e.hash.as_str()).collect();
    assert_eq!(hashes, ["h1", "h2"]);
}
