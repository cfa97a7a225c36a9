//! Budgets end to end over HTTP, on both profiles: every error code, idempotent replays byte
//! for byte, expiry by the sweeper and period resets. Events and tenants are in
//! `budget_events.rs`, the contention proofs on two replicas in `budget_contention.rs`. After
//! each scenario the ledger is replayed against the budget rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, Profile, budgets::*, error_code};
use entity::budget_transaction;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

both_profiles!(
    every_error_has_its_code,
    retries_replay_byte_for_byte,
    sweeper_expires_abandoned_reservations,
    period_reset_keeps_live_reservations,
);

async fn every_error_has_its_code(profile: Profile, name: &str) {
    // The sweeper stays out of the way: expiry here is found by the commit itself.
    let Some(env) = Env::with(profile, name, |c| c.budget_sweep_interval_ms = 3_600_000).await
    else {
        return;
    };
    let s = &env.server;
    let db = &s.state.db;
    let made = s
        .ok(CREATE, json!({ "t": "acme", "p": "bot", "total": 100 }))
        .await["createBudget"]
        .clone();
    assert_eq!(made["available"], 100);
    assert_eq!(made["period"], "NONE");
    assert_eq!(made["alertThresholds"], json!([50, 80, 100]));
    let dup = s
        .gql(CREATE, json!({ "t": "acme", "p": "bot", "total": 5 }))
        .await;
    assert_eq!(error_code(&dup), "CONFLICT", "{dup}");
    let negative = s
        .gql(CREATE, json!({ "t": "acme", "p": "x", "total": -1 }))
        .await;
    assert_eq!(error_code(&negative), "BAD_USER_INPUT");
    assert_eq!(negative["errors"][0]["extensions"]["field"], "total");

    // Validation failures and unknown budgets store nothing.
    let zero = s
        .gql(
            RESERVE,
            json!({ "t": "acme", "p": "bot", "a": 0, "r": "r0" }),
        )
        .await;
    assert_eq!(error_code(&zero), "BAD_USER_INPUT", "{zero}");
    let unknown = s
        .gql(
            RESERVE,
            json!({ "t": "acme", "p": "nope", "a": 1, "r": "r0" }),
        )
        .await;
    assert_eq!(error_code(&unknown), "NOT_FOUND", "{unknown}");
    let r1 = s
        .ok(
            RESERVE,
            json!({ "t": "acme", "p": "bot", "a": 60, "r": "r0", "m": "gpt" }),
        )
        .await["reserveBudget"]
        .clone();
    assert_eq!(r1["status"], "RESERVED");
    assert_eq!(r1["amount"], 60);
    assert_eq!(r1["model"], "gpt");
    let r1_id = r1["id"].as_str().unwrap().to_owned();

    // Over the limit: BUDGET_EXCEEDED with what is left, nothing stored under the key.
    let over = s
        .gql(
            RESERVE,
            json!({ "t": "acme", "p": "bot", "a": 41, "r": "r-over" }),
        )
        .await;
    assert_eq!(error_code(&over), "BUDGET_EXCEEDED", "{over}");
    assert_eq!(over["errors"][0]["extensions"]["available"], 40);
    assert_eq!(over["errors"][0]["extensions"]["requested"], 41);
    let fits = s
        .ok(
            RESERVE,
            json!({ "t": "acme", "p": "bot", "a": 40, "r": "r-over" }),
        )
        .await["reserveBudget"]
        .clone();
    assert_eq!(fits["amount"], 40);
    assert_eq!(triple(&state(s, "acme", "bot").await), (100, 0, 100));

    // The same key with another input.
    let reused = s
        .gql(
            RESERVE,
            json!({ "t": "acme", "p": "bot", "a": 39, "r": "r-over" }),
        )
        .await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED", "{reused}");

    // Commit more than reserved: refused, nothing changes, the key stays free.
    let too_much = s
        .gql(COMMIT, json!({ "id": r1_id, "a": 61, "r": "c1" }))
        .await;
    assert_eq!(error_code(&too_much), "BAD_USER_INPUT", "{too_much}");
    assert_eq!(too_much["errors"][0]["extensions"]["field"], "actualAmount");
    assert_eq!(triple(&state(s, "acme", "bot").await), (100, 0, 100));
    let committed = s
        .ok(COMMIT, json!({ "id": r1_id, "a": 25, "r": "c1" }))
        .await["commitBudget"]
        .clone();
    assert_eq!(committed["status"], "COMMITTED");
    assert_eq!(committed["actualAmount"], 25);
    assert_eq!(triple(&state(s, "acme", "bot").await), (100, 25, 40));
    let again = s
        .gql(COMMIT, json!({ "id": r1_id, "a": 25, "r": "c1-again" }))
        .await;
    assert_eq!(error_code(&again), "ALREADY_COMMITTED", "{again}");
    let release_committed = s.gql(RELEASE, json!({ "id": r1_id, "r": "rel-x" })).await;
    assert_eq!(error_code(&release_committed), "ALREADY_COMMITTED");

    // Release frees all; a second resolution is ALREADY_RELEASED.
    let fits_id = fits["id"].as_str().unwrap();
    let released = s.ok(RELEASE, json!({ "id": fits_id, "r": "rel-1" })).await;
    assert_eq!(released["releaseBudget"]["status"], "RELEASED");
    assert_eq!(triple(&state(s, "acme", "bot").await), (100, 25, 0));
    let twice = s.gql(RELEASE, json!({ "id": fits_id, "r": "rel-2" })).await;
    assert_eq!(error_code(&twice), "ALREADY_RELEASED", "{twice}");
    let commit_released = s
        .gql(COMMIT, json!({ "id": fits_id, "a": 1, "r": "c-x" }))
        .await;
    assert_eq!(error_code(&commit_released), "ALREADY_RELEASED");
    let missing = s
        .gql(
            RELEASE,
            json!({ "id": "01a214a0-d3e9-720f-a444-8e7b40e5ec5b", "r": "rel-3" }),
        )
        .await;
    assert_eq!(error_code(&missing), "NOT_FOUND");

    // Past its TTL before any sweep: the commit expires it and is refused, never applied.
    let short = s
        .ok(
            RESERVE,
            json!({ "t": "acme", "p": "bot", "a": 30, "r": "short", "ttl": 1 }),
        )
        .await["reserveBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(triple(&state(s, "acme", "bot").await), (100, 25, 30));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = s
        .gql(COMMIT, json!({ "id": short, "a": 30, "r": "late" }))
        .await;
    assert_eq!(error_code(&late), "RESERVATION_EXPIRED", "{late}");
    assert_eq!(triple(&state(s, "acme", "bot").await), (100, 25, 0));
    let late_again = s.gql(RELEASE, json!({ "id": short, "r": "late-2" })).await;
    assert_eq!(error_code(&late_again), "RESERVATION_EXPIRED");
    assert_eq!(effects(db, "late").await, 0);

    // A total below used + reserved is refused.
    let budget_id = made["id"].as_str().unwrap();
    let lower = s
        .gql(
            "mutation($id: ID!) { updateBudget(input: { id: $id, total: 10 }) { total } }",
            json!({ "id": budget_id }),
        )
        .await;
    assert_eq!(error_code(&lower), "BAD_USER_INPUT", "{lower}");
    let raised = s
        .ok(
            "mutation($id: ID!) { updateBudget(input: { id: $id, total: 200, period: DAILY }) { total period periodEnd used } }",
            json!({ "id": budget_id }),
        )
        .await;
    assert_eq!(raised["updateBudget"]["total"], 200);
    assert_eq!(raised["updateBudget"]["period"], "DAILY");
    assert_eq!(raised["updateBudget"]["used"], 25);
    assert!(raised["updateBudget"]["periodEnd"].is_string());

    // Every change has its audit row and its ledger row.
    let audit = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT action FROM audit_log WHERE action LIKE 'budget.%'",
        ))
        .await
        .unwrap();
    let actions: Vec<String> = audit
        .iter()
        .map(|r| r.try_get::<String>("", "action").unwrap())
        .collect();
    for a in [
        "budget.create",
        "budget.reserve",
        "budget.commit",
        "budget.release",
        "budget.expire",
        "budget.update",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "no {a} audit row: {actions:?}"
        );
    }
    let ledger = s
        .ok(
            "query($id: ID!) { budgetTransactions(budgetId: $id, first: 100) { totalCount edges { node { kind deltaUsed deltaReserved version requestId at } } } }",
            json!({ "id": budget_id }),
        )
        .await;
    let kinds: Vec<&str> = ledger["budgetTransactions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "CONFIGURE",
            "RESERVE",
            "RESERVE",
            "COMMIT",
            "RELEASE",
            "RESERVE",
            "EXPIRE",
            "CONFIGURE"
        ]
    );
    // `since` keeps the rows written from then on (a chart's range), and counts them.
    let edges = ledger["budgetTransactions"]["edges"].as_array().unwrap();
    let since = edges[4]["node"]["at"].as_str().unwrap();
    let at = |e: &Value| {
        chrono::DateTime::parse_from_rfc3339(e["node"]["at"].as_str().unwrap()).unwrap()
    };
    let cut = chrono::DateTime::parse_from_rfc3339(since).unwrap();
    let expected: Vec<i64> = edges
        .iter()
        .filter(|e| at(e) >= cut)
        .map(|e| e["node"]["version"].as_i64().unwrap())
        .collect();
    let recent = s
        .ok(
            "query($id: ID!, $since: DateTime!) { budgetTransactions(budgetId: $id, since: $since) { totalCount edges { node { version } } } }",
            json!({ "id": budget_id, "since": since }),
        )
        .await;
    let versions: Vec<i64> = recent["budgetTransactions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, expected);
    assert!(
        expected.len() >= 4 && expected.len() < edges.len(),
        "{expected:?}"
    );
    assert_eq!(recent["budgetTransactions"]["totalCount"], expected.len());
    assert_ledger_replays(db).await;
    env.finish().await;
}

async fn retries_replay_byte_for_byte(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let base = s.url("");
    create(s, "acme", "bot", 1_000).await;
    let vars = json!({ "t": "acme", "p": "bot", "a": 10, "r": "same-key", "m": "m1" });
    let first = post_raw(&s.client, &base, Some(&s.token), RESERVE, &vars)
        .await
        .unwrap();
    assert!(first.contains("\"status\":\"RESERVED\""), "{first}");
    let id = serde_json::from_str::<Value>(&first).unwrap()["data"]["reserveBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let retry = post_raw(&s.client, &base, Some(&s.token), RESERVE, &vars)
        .await
        .unwrap();
    assert_eq!(
        first, retry,
        "a retry must replay the first answer byte for byte"
    );
    assert_eq!(triple(&state(s, "acme", "bot").await), (1_000, 0, 10));

    // The commit, retried after the reservation changed, still answers as the first time.
    let commit_vars = json!({ "id": id, "a": 7, "r": "commit-key" });
    let c1 = post_raw(&s.client, &base, Some(&s.token), COMMIT, &commit_vars)
        .await
        .unwrap();
    let c2 = post_raw(&s.client, &base, Some(&s.token), COMMIT, &commit_vars)
        .await
        .unwrap();
    assert_eq!(c1, c2);
    assert_eq!(triple(&state(s, "acme", "bot").await), (1_000, 7, 0));
    // The reserve replay still shows the reservation as it was reserved.
    let retry = post_raw(&s.client, &base, Some(&s.token), RESERVE, &vars)
        .await
        .unwrap();
    assert_eq!(first, retry);
    // A different operation under a used key is a reuse too.
    let cross = s.gql(RELEASE, json!({ "id": id, "r": "commit-key" })).await;
    assert_eq!(error_code(&cross), "IDEMPOTENCY_KEY_REUSED", "{cross}");
    assert_eq!(effects(&s.state.db, "same-key").await, 1);
    assert_eq!(effects(&s.state.db, "commit-key").await, 1);

    // Many copies of one call at once: one effect, and every answer that is not
    // "in progress" is the same bytes.
    let vars = json!({ "t": "acme", "p": "bot", "a": 5, "r": "burst" });
    let calls = (0..8).map(|_| {
        let client = s.client.clone();
        let base = base.clone();
        let token = s.token.clone();
        let vars = vars.clone();
        tokio::spawn(async move {
            post_raw(&client, &base, Some(&token), RESERVE, &vars)
                .await
                .unwrap()
        })
    });
    let mut bodies = Vec::new();
    for c in calls {
        bodies.push(c.await.unwrap());
    }
    let mut done: Vec<&String> = Vec::new();
    for b in &bodies {
        let v: Value = serde_json::from_str(b).unwrap();
        if v.get("errors").is_some() {
            assert_eq!(error_code(&v), "IDEMPOTENCY_IN_PROGRESS", "{b}");
        } else {
            done.push(b);
        }
    }
    assert!(!done.is_empty());
    assert!(done.iter().all(|b| *b == done[0]), "{bodies:?}");
    let settled = post_raw(&s.client, &base, Some(&s.token), RESERVE, &vars)
        .await
        .unwrap();
    assert_eq!(&settled, done[0]);
    assert_eq!(effects(&s.state.db, "burst").await, 1);
    assert_eq!(triple(&state(s, "acme", "bot").await), (1_000, 7, 5));

    // Keys are per caller: another user may use the same request id.
    s.ok(
        "mutation { createUser(input: { username: \"dev\", password: \"a long password\", role: DEVELOPER }) { id } }",
        json!({}),
    )
    .await;
    let dev = s.login("dev", "a long password").await;
    let theirs = s
        .gql_as(
            Some(&dev),
            RESERVE,
            json!({ "t": "acme", "p": "bot", "a": 10, "r": "same-key", "m": "m1" }),
        )
        .await;
    assert!(theirs.get("errors").is_none(), "{theirs}");
    assert_ne!(theirs["data"]["reserveBudget"]["id"], json!(id));
    assert_ledger_replays(&s.state.db).await;
    env.finish().await;
}

async fn sweeper_expires_abandoned_reservations(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| c.budget_sweep_interval_ms = 100).await else {
        return;
    };
    let s = &env.server;
    create(s, "acme", "bot", 100).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = s
            .ok(
                RESERVE,
                json!({ "t": "acme", "p": "bot", "a": 10, "r": format!("a{i}"), "ttl": 3 }),
            )
            .await;
        ids.push(r["reserveBudget"]["id"].as_str().unwrap().to_owned());
    }
    let kept = s
        .ok(
            RESERVE,
            json!({ "t": "acme", "p": "bot", "a": 5, "r": "kept" }),
        )
        .await;
    assert_eq!(triple(&state(s, "acme", "bot").await), (100, 0, 35));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = triple(&state(s, "acme", "bot").await);
        if st == (100, 0, 5) {
            break;
        }
        assert!(Instant::now() < deadline, "not expired in time: {st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        let r = s
            .gql(COMMIT, json!({ "id": id, "a": 1, "r": format!("c-{id}") }))
            .await;
        assert_eq!(error_code(&r), "RESERVATION_EXPIRED", "{r}");
    }
    let listed = s
        .ok(
            "query($id: ID!) { budgetReservations(budgetId: $id, status: EXPIRED) { totalCount } }",
            json!({ "id": kept["reserveBudget"]["budgetId"] }),
        )
        .await;
    assert_eq!(listed["budgetReservations"]["totalCount"], 3);
    let budgets = assert_ledger_replays(&s.state.db).await;
    let expiries = budget_transaction::Entity::find()
        .filter(budget_transaction::Column::Kind.eq("expire"))
        .all(&s.state.db)
        .await
        .unwrap();
    assert_eq!(expiries.len(), 3);
    assert_eq!(budgets[0].reserved, 5);
    env.finish().await;
}

async fn period_reset_keeps_live_reservations(profile: Profile, name: &str) {
    // Resets on touch here; the sweeper's resets are covered by the thresholds scenario.
    let Some(env) = Env::with(profile, name, |c| c.budget_sweep_interval_ms = 3_600_000).await
    else {
        return;
    };
    let s = &env.server;
    let id = s
        .ok(
            CREATE,
            json!({ "t": "acme", "p": "daily", "total": 100, "period": "DAILY" }),
        )
        .await["createBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = s
        .ok(
            RESERVE,
            json!({ "t": "acme", "p": "daily", "a": 50, "r": "a" }),
        )
        .await["reserveBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.ok(COMMIT, json!({ "id": a, "a": 50, "r": "ca" })).await;
    let live = s
        .ok(
            RESERVE,
            json!({ "t": "acme", "p": "daily", "a": 40, "r": "live" }),
        )
        .await["reserveBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Full for this window.
    let full = s
        .gql(
            RESERVE,
            json!({ "t": "acme", "p": "daily", "a": 20, "r": "b" }),
        )
        .await;
    assert_eq!(error_code(&full), "BUDGET_EXCEEDED");
    assert_eq!(full["errors"][0]["extensions"]["available"], 10);

    end_period(&s.state.db, &id).await;
    // Before anything resets the row, reads already show the new window.
    assert_eq!(triple(&state(s, "acme", "daily").await), (100, 0, 40));
    let shown = s
        .ok(
            "query($id: ID!) { budget(id: $id) { used periodEnd } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(shown["budget"]["used"], 0, "{shown}");
    let shown_end = shown["budget"]["periodEnd"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(shown_end).unwrap() > chrono::Utc::now());
    // The next touch starts the new window: used back to 0, the live reservation stays.
    let b = s
        .ok(
            RESERVE,
            json!({ "t": "acme", "p": "daily", "a": 20, "r": "b" }),
        )
        .await;
    assert_eq!(b["reserveBudget"]["amount"], 20);
    assert_eq!(triple(&state(s, "acme", "daily").await), (100, 0, 60));
    // The reservation from the old window commits into the new one.
    s.ok(COMMIT, json!({ "id": live, "a": 30, "r": "clive" }))
        .await;
    assert_eq!(triple(&state(s, "acme", "daily").await), (100, 30, 20));
    let period = s
        .ok(
            "query($id: ID!) { budget(id: $id) { periodStart periodEnd } }",
            json!({ "id": id }),
        )
        .await;
    let end = period["budget"]["periodEnd"].as_str().unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(end).unwrap();
    assert!(
        end > chrono::Utc::now(),
        "the new window ends in the future"
    );
    let resets = budget_transaction::Entity::find()
        .filter(budget_transaction::Column::Kind.eq("reset"))
        .all(&s.state.db)
        .await
        .unwrap();
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0].delta_used, -50);
    assert_ledger_replays(&s.state.db).await;
    env.finish().await;
}
