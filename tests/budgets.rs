//! Budgets end to end over HTTP and WebSocket, on both profiles: every error code, idempotent
//! replays byte for byte, expiry by the sweeper, period resets, threshold events, tenant
//! isolation and live `budgetChanged`. On PostgreSQL with two replicas: the contention proof
//! (random reserve / commit / release / abandon with retries) and its kill -9 variant with a
//! real `aurum` process. After each scenario the ledger is replayed against the budget rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aurum::idempotency::lock_key;
use common::{
    Env, Profile, Replica, ReplicaEnv, Shared, TestServer, WsClient, error_code, services_or_skip,
};
use entity::{budget, budget_reservation, budget_transaction};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use serde_json::{Value, json};

both_profiles!(
    every_error_has_its_code,
    retries_replay_byte_for_byte,
    sweeper_expires_abandoned_reservations,
    period_reset_keeps_live_reservations,
    thresholds_fire_once_per_period,
    tenants_see_and_spend_only_their_budgets,
    budget_changed_is_live,
);

const CREATE: &str = "mutation($t: String!, $p: String!, $total: Int!, $period: BudgetPeriod, $th: [Int!]) { createBudget(input: { tenantId: $t, projectId: $p, total: $total, period: $period, alertThresholds: $th }) { id tenantId projectId total used reserved available period alertThresholds version } }";
const RESERVE: &str = "mutation($t: String!, $p: String!, $a: Int!, $r: String!, $ttl: Int, $m: String) { reserveBudget(input: { tenantId: $t, projectId: $p, amount: $a, requestId: $r, ttlSeconds: $ttl, model: $m }) { id budgetId amount actualAmount status expiresAt model requestId createdAt resolvedAt } }";
const COMMIT: &str = "mutation($id: ID!, $a: Int!, $r: String!) { commitBudget(input: { reservationId: $id, actualAmount: $a, requestId: $r }) { id amount actualAmount status resolvedAt } }";
const RELEASE: &str = "mutation($id: ID!, $r: String!) { releaseBudget(input: { reservationId: $id, requestId: $r }) { id amount status resolvedAt } }";
const STATE: &str = "query($t: String!, $p: String!) { budgetState(tenantId: $t, projectId: $p) { budgetId total used reserved available } }";

/// POSTs one operation and returns the raw response body.
async fn post_raw(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
    variables: &Value,
) -> Result<String, reqwest::Error> {
    let mut req = client.post(format!("{base}/graphql"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.json(&json!({ "query": query, "variables": variables }))
        .timeout(Duration::from_secs(20))
        .send()
        .await?
        .text()
        .await
}

async fn create(s: &TestServer, tenant: &str, project: &str, total: i64) -> String {
    s.ok(CREATE, json!({ "t": tenant, "p": project, "total": total }))
        .await["createBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn state(s: &TestServer, tenant: &str, project: &str) -> Value {
    s.ok(STATE, json!({ "t": tenant, "p": project })).await["budgetState"].clone()
}

fn triple(v: &Value) -> (i64, i64, i64) {
    (
        v["total"].as_i64().unwrap(),
        v["used"].as_i64().unwrap(),
        v["reserved"].as_i64().unwrap(),
    )
}

/// Replays the ledger of every budget: versions form one chain from 1, each row's deltas
/// lead from the previous row's state to its own, the last row equals the budget row, and
/// `reserved` equals the sum of live reservations. Returns the budgets.
async fn assert_ledger_replays(db: &DatabaseConnection) -> Vec<budget::Model> {
    let budgets = budget::Entity::find().all(db).await.unwrap();
    for b in &budgets {
        let rows = budget_transaction::Entity::find()
            .filter(budget_transaction::Column::BudgetId.eq(b.id))
            .order_by_asc(budget_transaction::Column::Version)
            .all(db)
            .await
            .unwrap();
        let (mut total, mut used, mut reserved) = (0i64, 0i64, 0i64);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(
                row.version,
                i as i64 + 1,
                "ledger of {} forks or skips",
                b.id
            );
            total += row.delta_total;
            used += row.delta_used;
            reserved += row.delta_reserved;
            assert_eq!(
                (total, used, reserved),
                (row.total_after, row.used_after, row.reserved_after),
                "ledger row {} of {} does not follow from its deltas",
                row.version,
                b.id
            );
            assert!(reserved >= 0 && used >= 0 && used + reserved <= total);
        }
        assert_eq!(
            (total, used, reserved, rows.len() as i64),
            (b.total, b.used, b.reserved, b.version),
            "ledger of {} does not replay to its row",
            b.id
        );
        let live: i64 = budget_reservation::Entity::find()
            .filter(budget_reservation::Column::BudgetId.eq(b.id))
            .filter(budget_reservation::Column::Status.eq("reserved"))
            .all(db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.amount)
            .sum();
        assert_eq!(
            b.reserved, live,
            "reserved of {} is not Σ live reservations",
            b.id
        );
    }
    // Each client request id had at most one effect.
    let keyed = budget_transaction::Entity::find()
        .filter(budget_transaction::Column::RequestId.is_not_null())
        .all(db)
        .await
        .unwrap();
    let mut per_key: HashMap<(String, String), usize> = HashMap::new();
    for row in keyed {
        *per_key
            .entry((
                row.caller.unwrap_or_default(),
                row.request_id.unwrap_or_default(),
            ))
            .or_default() += 1;
    }
    let doubled: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "request ids with two effects: {doubled:?}"
    );
    budgets
}

/// Ledger rows of one client request id.
async fn effects(db: &DatabaseConnection, request_id: &str) -> usize {
    budget_transaction::Entity::find()
        .filter(budget_transaction::Column::RequestId.eq(request_id))
        .all(db)
        .await
        .unwrap()
        .len()
}

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

/// Moves the end of a budget's period window into the past.
async fn end_period(db: &DatabaseConnection, budget_id: &str) {
    let past = aurum::clock::now() - chrono::Duration::seconds(1);
    budget::Entity::update_many()
        .col_expr(budget::Column::PeriodEnd, Expr::value(Some(past)))
        .filter(budget::Column::Id.eq(uuid::Uuid::parse_str(budget_id).unwrap()))
        .exec(db)
        .await
        .unwrap();
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

/// Reserves and commits `amount` on (acme, `project`).
async fn spend(s: &TestServer, project: &str, amount: i64, key: &str) {
    let r = s
        .ok(
            RESERVE,
            json!({ "t": "acme", "p": project, "a": amount, "r": format!("r-{key}") }),
        )
        .await;
    let id = r["reserveBudget"]["id"].as_str().unwrap().to_owned();
    s.ok(
        COMMIT,
        json!({ "id": id, "a": amount, "r": format!("c-{key}") }),
    )
    .await;
}

async fn thresholds_fire_once_per_period(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| c.budget_sweep_interval_ms = 100).await else {
        return;
    };
    let s = &env.server;
    let id = s
        .ok(
            CREATE,
            json!({ "t": "acme", "p": "alerts", "total": 100, "period": "MONTHLY" }),
        )
        .await["createBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe(
        "t",
        "subscription { budgetThresholdReached(tenantId: \"acme\", projectId: \"alerts\") { threshold state { used total } } }",
        json!({}),
    )
    .await;
    ws.subscribe(
        "c",
        "subscription { budgetChanged(tenantId: \"acme\", projectId: \"alerts\") { kind } }",
        json!({}),
    )
    .await;
    // Wait until the feeds run: release tiny reservations until one is delivered.
    for i in 0.. {
        let r = s
            .ok(
                RESERVE,
                json!({ "t": "acme", "p": "alerts", "a": 1, "r": format!("probe-{i}") }),
            )
            .await;
        let rid = r["reserveBudget"]["id"].as_str().unwrap().to_owned();
        s.ok(RELEASE, json!({ "id": rid, "r": format!("probe-rel-{i}") }))
            .await;
        if tokio::time::timeout(
            Duration::from_millis(200),
            ws.next_data("c", Duration::from_secs(5)),
        )
        .await
        .is_ok()
        {
            break;
        }
        assert!(i < 50, "budgetChanged delivered nothing");
    }
    spend(s, "alerts", 55, "1").await; // 55 %: crosses 50
    spend(s, "alerts", 10, "2").await; // 65 %: nothing
    spend(s, "alerts", 20, "3").await; // 85 %: crosses 80
    spend(s, "alerts", 15, "4").await; // 100 %: crosses 100
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let msg = ws.next_json().await.expect("socket open");
        if msg["id"] == "t" && msg["type"] == "next" {
            seen.push(
                msg["payload"]["data"]["budgetThresholdReached"]["threshold"]
                    .as_i64()
                    .unwrap(),
            );
        }
    }
    assert_eq!(seen, [50, 80, 100]);
    let sent = s
        .ok(
            "query($id: ID!) { budget(id: $id) { alertsSent } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(sent["budget"]["alertsSent"], json!([50, 80, 100]));

    // The sweeper starts the next window; the thresholds fire again there, once.
    end_period(&s.state.db, &id).await;
    // Reads show the new window at once; the sweeper's own reset is its ledger row.
    let budget_id = uuid::Uuid::parse_str(&id).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resets = sea_orm::PaginatorTrait::count(
            budget_transaction::Entity::find()
                .filter(budget_transaction::Column::BudgetId.eq(budget_id))
                .filter(budget_transaction::Column::Kind.eq("reset")),
            &s.state.db,
        )
        .await
        .unwrap();
        if resets == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweeper did not reset the period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state(s, "acme", "alerts").await["used"], 0);
    spend(s, "alerts", 60, "5").await;
    spend(s, "alerts", 1, "6").await;
    let mut again = Vec::new();
    let quiet = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let msg = ws.next_json().await.expect("socket open");
            if msg["id"] == "t" && msg["type"] == "next" {
                again.push(
                    msg["payload"]["data"]["budgetThresholdReached"]["threshold"]
                        .as_i64()
                        .unwrap(),
                );
            }
        }
    })
    .await;
    assert!(quiet.is_err());
    assert_eq!(again, [50]);
    assert_ledger_replays(&s.state.db).await;
    env.finish().await;
}

async fn tenants_see_and_spend_only_their_budgets(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let user = "mutation($u: String!, $t: String) { createUser(input: { username: $u, password: \"a long password\", role: DEVELOPER, tenantId: $t }) { id } }";
    s.ok(user, json!({ "u": "alice", "t": "acme" })).await;
    s.ok(user, json!({ "u": "bob", "t": "globex" })).await;
    let alice = s.login("alice", "a long password").await;
    let bob = s.login("bob", "a long password").await;
    let globex = create(s, "globex", "p", 100).await;
    create(s, "acme", "p", 100).await;

    let bobs = s
        .gql_as(
            Some(&bob),
            RESERVE,
            json!({ "t": "globex", "p": "p", "a": 10, "r": "k" }),
        )
        .await;
    let bobs_reservation = bobs["data"]["reserveBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Alice: not by key, not by id, not in lists, cannot spend, resolve, watch or create.
    for (query, vars) in [
        (STATE, json!({ "t": "globex", "p": "p" })),
        (
            "query($id: ID!) { budget(id: $id) { id } }",
            json!({ "id": globex }),
        ),
        (
            "query($id: ID!) { budgetTransactions(budgetId: $id) { totalCount } }",
            json!({ "id": globex }),
        ),
        (
            RESERVE,
            json!({ "t": "globex", "p": "p", "a": 1, "r": "k" }),
        ),
        (COMMIT, json!({ "id": bobs_reservation, "a": 1, "r": "k2" })),
        (RELEASE, json!({ "id": bobs_reservation, "r": "k3" })),
    ] {
        let res = s.gql_as(Some(&alice), query, vars).await;
        assert_eq!(error_code(&res), "NOT_FOUND", "{query}: {res}");
    }
    let list = s
        .gql_as(
            Some(&alice),
            "{ budgets { totalCount edges { node { tenantId } } } }",
            json!({}),
        )
        .await;
    assert_eq!(list["data"]["budgets"]["totalCount"], 1, "{list}");
    assert_eq!(
        list["data"]["budgets"]["edges"][0]["node"]["tenantId"],
        "acme"
    );
    // Developers spend but do not configure.
    let create_denied = s
        .gql_as(
            Some(&alice),
            CREATE,
            json!({ "t": "acme", "p": "q", "total": 1 }),
        )
        .await;
    assert_eq!(error_code(&create_denied), "FORBIDDEN");
    let mut ws = WsClient::connect(&s.ws_url(), "graphql-transport-ws", Some(&alice)).await;
    ws.subscribe(
        "x",
        "subscription { budgetChanged(tenantId: \"globex\") { kind } }",
        json!({}),
    )
    .await;
    let msg = ws.next_json().await.unwrap();
    let errors = if msg["payload"].is_array() {
        &msg["payload"]
    } else {
        &msg["payload"]["errors"]
    };
    assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{msg}");
    // Her own tenant works, with the same request id Bob used.
    let own = s
        .gql_as(
            Some(&alice),
            RESERVE,
            json!({ "t": "acme", "p": "p", "a": 10, "r": "k" }),
        )
        .await;
    assert_eq!(own["data"]["reserveBudget"]["amount"], 10, "{own}");
    assert_eq!(triple(&state(s, "globex", "p").await), (100, 0, 10));
    // Without a tenant, a feed has every budget its caller may read: all of them for the
    // administrator, her own tenant's for Alice (replayed from the start: none of globex's).
    const ALL: &str = "subscription { budgetChanged(after: \"0\") { kind state { tenantId } } }";
    let mut admin = s.ws("graphql-transport-ws").await;
    admin.subscribe("all", ALL, json!({})).await;
    assert_eq!(
        changes(&mut admin, "all", 4).await,
        [
            "CREATED globex",
            "CREATED acme",
            "RESERVED globex",
            "RESERVED acme"
        ]
    );
    let mut hers = WsClient::connect(&s.ws_url(), "graphql-transport-ws", Some(&alice)).await;
    hers.subscribe("all", ALL, json!({})).await;
    assert_eq!(
        changes(&mut hers, "all", 2).await,
        ["CREATED acme", "RESERVED acme"]
    );
    // A project names a budget only within its tenant.
    hers.subscribe(
        "p",
        "subscription { budgetChanged(projectId: \"p\") { kind } }",
        json!({}),
    )
    .await;
    let msg = hers.next_json().await.unwrap();
    let errors = if msg["payload"].is_array() {
        &msg["payload"]
    } else {
        &msg["payload"]["errors"]
    };
    assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT", "{msg}");
    assert_ledger_replays(&s.state.db).await;
    env.finish().await;
}

/// The next `n` deliveries of `budgetChanged` on operation `id`, as "KIND tenant".
async fn changes(ws: &mut WsClient, id: &str, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let e = ws.next_data(id, Duration::from_secs(10)).await;
        let e = &e["data"]["budgetChanged"];
        seen.push(format!(
            "{} {}",
            e["kind"].as_str().unwrap(),
            e["state"]["tenantId"].as_str().unwrap()
        ));
    }
    seen
}

async fn budget_changed_is_live(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    create(s, "acme", "live", 1_000).await;
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe(
        "w",
        "subscription { budgetChanged(tenantId: \"acme\", projectId: \"live\") { kind reservationId state { total used reserved available } } }",
        json!({}),
    )
    .await;
    // Probes until the subscription delivers; an event may belong to an earlier probe whose
    // delivery took longer than the wait, and the budget's own CREATED event may still be on
    // its way when the subscription starts (both through NATS in the services profile).
    let mut probes = Vec::new();
    'probing: for i in 0..50 {
        let r = s
            .ok(
                RESERVE,
                json!({ "t": "acme", "p": "live", "a": 1, "r": format!("w{i}") }),
            )
            .await;
        probes.push(r["reserveBudget"]["id"].clone());
        while let Ok(event) = tokio::time::timeout(
            Duration::from_millis(200),
            ws.next_data("w", Duration::from_secs(5)),
        )
        .await
        {
            let e = &event["data"]["budgetChanged"];
            if e["kind"] == "CREATED" {
                continue;
            }
            assert_eq!(e["kind"], "RESERVED", "{e}");
            assert!(probes.contains(&e["reservationId"]), "{e}");
            break 'probing;
        }
        assert!(i < 49, "no budgetChanged event");
    }
    let r = s
        .ok(
            RESERVE,
            json!({ "t": "acme", "p": "live", "a": 100, "r": "main" }),
        )
        .await;
    let reservation = r["reserveBudget"]["id"].as_str().unwrap().to_owned();
    s.ok(COMMIT, json!({ "id": reservation, "a": 60, "r": "wc" }))
        .await;
    // Skip events of earlier probes still in flight.
    loop {
        let e = ws.next_data("w", Duration::from_secs(5)).await;
        let e = &e["data"]["budgetChanged"];
        if e["kind"] == "COMMITTED" {
            assert_eq!(e["reservationId"], json!(reservation));
            assert_eq!(e["state"]["used"], 60);
            let (t, u, r) = triple(&e["state"]);
            assert_eq!(e["state"]["available"], t - u - r);
            break;
        }
    }
    env.finish().await;
}

/// On PostgreSQL, a call whose key is held by a running call answers at once with
/// IDEMPOTENCY_IN_PROGRESS, and succeeds once the first is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_key_answers_in_progress() {
    let Some(env) = Env::new(Profile::Services, "in_flight_key_answers_in_progress").await else {
        return;
    };
    let s = &env.server;
    create(s, "acme", "bot", 100).await;
    let me = s.ok("{ me { id } }", json!({})).await["me"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another connection plays the first call: it holds the key's lock in an open transaction.
    let other = sea_orm::Database::connect(&env.shared.db_url)
        .await
        .unwrap();
    let txn = sea_orm::TransactionTrait::begin(&other).await.unwrap();
    txn.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({})",
        lock_key(&format!("user:{me}"), "held")
    ))
    .await
    .unwrap();
    let vars = json!({ "t": "acme", "p": "bot", "a": 5, "r": "held" });
    let started = Instant::now();
    let busy = s.gql(RESERVE, vars.clone()).await;
    assert_eq!(error_code(&busy), "IDEMPOTENCY_IN_PROGRESS", "{busy}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it must not wait"
    );
    assert_eq!(triple(&state(s, "acme", "bot").await), (100, 0, 0));
    txn.rollback().await.unwrap();
    let ok = s.ok(RESERVE, vars).await;
    assert_eq!(ok["reserveBudget"]["amount"], 5);
    other.close().await.ok();
    env.finish().await;
}

// ---- the contention proof ------------------------------------------------------------------

/// Where a client sends its requests: a fixed server, or one that may move (restart).
#[derive(Clone)]
struct Target(Arc<Mutex<String>>);

impl Target {
    fn new(base: String) -> Self {
        Self(Arc::new(Mutex::new(base)))
    }
    fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }
    fn set(&self, base: String) {
        *self.0.lock().unwrap() = base;
    }
}

/// Sends one call until it gets an answer that is not a transport failure or "in progress"
/// (the server may be down or restarting); returns the raw body.
async fn call(
    client: &reqwest::Client,
    target: &Target,
    token: &str,
    query: &str,
    vars: &Value,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        match post_raw(client, &target.get(), Some(token), query, vars).await {
            Ok(body) if !body.contains("IDEMPOTENCY_IN_PROGRESS") => return body,
            Ok(_) | Err(_) => {
                assert!(Instant::now() < deadline, "no answer for {vars}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the clients saw, per (user, request id): `Ok` or the error code of the final answer.
type Outcomes = Arc<Mutex<BTreeMap<(String, String), Result<(), String>>>>;

struct Contention {
    targets: Vec<Target>,
    tokens: Vec<(String, String)>,
    projects: Vec<String>,
    total: i64,
    clients: usize,
    rounds: usize,
}

/// Random reserve / partial commit / release / abandon from `clients` clients spread over
/// the targets and users, 10 % of calls retried with the same key (a third of those with a
/// changed input), while a reader checks every sampled state. Returns the outcomes.
async fn run_contention(c: &Contention, stop_reader: Arc<AtomicBool>) -> (Outcomes, usize) {
    use rand::Rng;
    let outcomes: Outcomes = Arc::default();
    let client = reqwest::Client::new();
    let reader = {
        let client = client.clone();
        let targets = c.targets.clone();
        let token = c.tokens[0].1.clone();
        let projects = c.projects.clone();
        let total = c.total;
        let stop = stop_reader.clone();
        tokio::spawn(async move {
            let mut samples = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for (i, p) in projects.iter().enumerate() {
                    let target = &targets[(samples + i) % targets.len()];
                    let Ok(body) = post_raw(
                        &client,
                        &target.get(),
                        Some(&token),
                        STATE,
                        &json!({ "t": "proof", "p": p }),
                    )
                    .await
                    else {
                        continue; // that server is down right now
                    };
                    let v: Value = serde_json::from_str(&body).unwrap();
                    let st = &v["data"]["budgetState"];
                    if st.is_null() {
                        continue;
                    }
                    let (t, u, r) = triple(st);
                    assert!(r >= 0 && u >= 0, "negative sample {st}");
                    assert!(u + r <= t, "overspent sample {st}");
                    assert_eq!(t, total);
                    assert_eq!(st["available"].as_i64().unwrap(), t - u - r);
                    samples += 1;
                }
            }
            samples
        })
    };
    let mut tasks = Vec::new();
    for n in 0..c.clients {
        let client = client.clone();
        let target = c.targets[n % c.targets.len()].clone();
        let (user, token) = c.tokens[n % c.tokens.len()].clone();
        let projects = c.projects.clone();
        let outcomes = outcomes.clone();
        let rounds = c.rounds;
        tasks.push(tokio::spawn(async move {
            let record = |key: &str, body: &str| {
                let v: Value = serde_json::from_str(body).unwrap();
                let outcome = if v.get("errors").is_some() {
                    Err(error_code(&v))
                } else {
                    Ok(())
                };
                outcomes
                    .lock()
                    .unwrap()
                    .insert((user.clone(), key.to_owned()), outcome);
                v
            };
            // Sends `vars`; sometimes retries it (same bytes back) or reuses its key
            // with a changed input (refused).
            let send = |query: &'static str, vars: Value, changed: Value| {
                let client = client.clone();
                let target = target.clone();
                let token = token.clone();
                async move {
                    let body = call(&client, &target, &token, query, &vars).await;
                    // A refused call stored nothing: a retry could act, so only successes
                    // are retried.
                    if body.contains("\"errors\"") {
                        return body;
                    }
                    let roll: u32 = rand::rng().random_range(0..100);
                    if roll < 7 {
                        let again = call(&client, &target, &token, query, &vars).await;
                        assert_eq!(body, again, "replay differs for {vars}");
                    } else if roll < 10 {
                        let reused = call(&client, &target, &token, query, &changed).await;
                        let v: Value = serde_json::from_str(&reused).unwrap();
                        assert_eq!(error_code(&v), "IDEMPOTENCY_KEY_REUSED", "{reused}");
                    }
                    body
                }
            };
            for round in 0..rounds {
                let (project, amount, action, actual) = {
                    let mut rng = rand::rng();
                    let amount: i64 = rng.random_range(1..=150);
                    (
                        projects[rng.random_range(0..projects.len())].clone(),
                        amount,
                        rng.random_range(0..100u32),
                        rng.random_range(0..=amount),
                    )
                };
                let abandon = action >= 85;
                let key = format!("c{n}-{round}-r");
                let vars = json!({ "t": "proof", "p": project, "a": amount, "r": key, "ttl": if abandon { 1 } else { 60 } });
                let mut changed = vars.clone();
                changed["a"] = json!(amount + 1);
                let body = send(RESERVE, vars, changed).await;
                let v = record(&key, &body);
                let Some(id) = v["data"]["reserveBudget"]["id"].as_str().map(str::to_owned)
                else {
                    assert_eq!(error_code(&v), "BUDGET_EXCEEDED", "{v}");
                    continue;
                };
                if abandon {
                    continue;
                }
                let key = format!("c{n}-{round}-x");
                let body = if action < 50 {
                    let vars = json!({ "id": id, "a": actual, "r": key });
                    let changed = json!({ "id": id, "a": (actual + 1) % (amount + 1), "r": key });
                    send(COMMIT, vars, changed).await
                } else {
                    let vars = json!({ "id": id, "r": key });
                    let changed = json!({ "id": uuid::Uuid::now_v7(), "r": key });
                    send(RELEASE, vars, changed).await
                };
                let v = record(&key, &body);
                assert!(v.get("errors").is_none(), "resolution failed: {v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop_reader.store(true, Ordering::Relaxed);
    let samples = reader.await.unwrap();
    (outcomes, samples)
}

/// Quiescence: waits for every abandoned reservation to expire, then checks the ledger, the
/// sums and exactly one effect per successful request id (none per refused one).
async fn assert_quiescent(
    db: &DatabaseConnection,
    outcomes: &Outcomes,
    users: &[(String, String)],
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live = budget_reservation::Entity::find()
            .filter(budget_reservation::Column::Status.eq("reserved"))
            .all(db)
            .await
            .unwrap();
        if live.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} reservations never expired",
            live.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let budgets = assert_ledger_replays(db).await;
    let reservations = budget_reservation::Entity::find().all(db).await.unwrap();
    for b in &budgets {
        let committed: i64 = reservations
            .iter()
            .filter(|r| r.budget_id == b.id && r.status == budget_reservation::Status::Committed)
            .map(|r| r.actual_amount.unwrap_or(0))
            .sum();
        assert_eq!(
            b.used, committed,
            "used of {} is not Σ committed",
            b.project_id
        );
        assert_eq!(b.reserved, 0);
    }
    // Every reservation resolved exactly once.
    let ledger = budget_transaction::Entity::find().all(db).await.unwrap();
    let mut resolutions: HashMap<uuid::Uuid, usize> = HashMap::new();
    for row in &ledger {
        if let (Some(r), true) = (
            row.reservation_id,
            row.kind != budget_transaction::Kind::Reserve,
        ) {
            *resolutions.entry(r).or_default() += 1;
        }
    }
    for r in &reservations {
        assert_eq!(
            resolutions.get(&r.id),
            Some(&1),
            "reservation {} resolved ≠ once",
            r.id
        );
    }
    // One effect per successful key, none per refused one.
    let scope_of: HashMap<&str, String> = users
        .iter()
        .map(|(name, id)| (name.as_str(), format!("user:{id}")))
        .collect();
    let mut per_key: HashMap<(String, String), usize> = HashMap::new();
    for row in &ledger {
        if let (Some(c), Some(k)) = (&row.caller, &row.request_id) {
            *per_key.entry((c.clone(), k.clone())).or_default() += 1;
        }
    }
    let outcomes = outcomes.lock().unwrap();
    assert!(outcomes.len() > 100, "only {} calls", outcomes.len());
    for ((user, key), outcome) in outcomes.iter() {
        let n = per_key
            .get(&(scope_of[user.as_str()].clone(), key.clone()))
            .copied()
            .unwrap_or(0);
        match outcome {
            Ok(()) => assert_eq!(n, 1, "{user}/{key} succeeded with {n} effects"),
            Err(code) => assert_eq!(n, 0, "{user}/{key} failed ({code}) with {n} effects"),
        }
    }
    let exceeded = outcomes
        .values()
        .filter(|o| matches!(o, Err(c) if c == "BUDGET_EXCEEDED"))
        .count();
    eprintln!(
        "contention: {} keyed calls, {} BUDGET_EXCEEDED, {} reservations, {} ledger rows",
        outcomes.len(),
        exceeded,
        reservations.len(),
        ledger.len()
    );
}

/// Developer users (and their ids) for the contention clients, plus the admin.
async fn contention_users(s: &TestServer) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let mut tokens = vec![("admin".to_owned(), s.token.clone())];
    let me = s.ok("{ me { id } }", json!({})).await["me"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = vec![("admin".to_owned(), me)];
    for i in 0..3 {
        let name = format!("agent{i}");
        let made = s
            .ok(
                "mutation($u: String!) { createUser(input: { username: $u, password: \"a long password\", role: DEVELOPER }) { id } }",
                json!({ "u": name }),
            )
            .await;
        ids.push((
            name.clone(),
            made["createUser"]["id"].as_str().unwrap().to_owned(),
        ));
        tokens.push((name.clone(), s.login(&name, "a long password").await));
    }
    (tokens, ids)
}

const PROJECTS: [&str; 3] = ["alpha", "beta", "gamma"];
const PROOF_TOTAL: i64 = 2_000;

/// Two replicas on one PostgreSQL + NATS, 54 clients, 3 budgets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_overspend() {
    let Some(urls) = services_or_skip("two_replicas_never_overspend").await else {
        return;
    };
    let shared = Shared::services(&urls).await;
    let mut config = shared.config(Some(&urls));
    config.budget_sweep_interval_ms = 200;
    let a = TestServer::start(config.clone()).await;
    let b = TestServer::start(config).await;
    for p in PROJECTS {
        create(&a, "proof", p, PROOF_TOTAL).await;
    }
    let (tokens, ids) = contention_users(&a).await;
    let started = Instant::now();
    let c = Contention {
        targets: vec![Target::new(a.url("")), Target::new(b.url(""))],
        tokens,
        projects: PROJECTS.iter().map(|p| (*p).to_owned()).collect(),
        total: PROOF_TOTAL,
        clients: 54,
        rounds: 12,
    };
    let (outcomes, samples) = run_contention(&c, Arc::default()).await;
    eprintln!(
        "contention run: {:?}, {samples} state samples",
        started.elapsed()
    );
    assert!(samples > 10, "the reader sampled only {samples} states");
    assert_quiescent(&a.state.db, &outcomes, &ids).await;
    a.stop().await;
    b.stop().await;
    shared.cleanup().await;
}

/// The same proof while one replica (a real process) is killed with SIGKILL mid-run and
/// restarted on the same database: retried keys still have exactly one effect, and the
/// reservations abandoned meanwhile come back through expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_keeps_exactly_once() {
    let Some(urls) = services_or_skip("kill_9_mid_run_keeps_exactly_once").await else {
        return;
    };
    let shared = Shared::services(&urls).await;
    let mut config = shared.config(Some(&urls));
    config.budget_sweep_interval_ms = 200;
    let a = TestServer::start(config).await;
    for p in PROJECTS {
        create(&a, "proof", p, PROOF_TOTAL).await;
    }
    let (tokens, ids) = contention_users(&a).await;
    let mut replica_env = ReplicaEnv::of(&shared, Some(&urls));
    replica_env.set("AURUM_BUDGET_SWEEP_INTERVAL_MS", "200");
    let first = {
        let env = replica_env.clone();
        tokio::task::spawn_blocking(move || Replica::spawn(&env))
            .await
            .unwrap()
    };
    let moving = Target::new(first.base.clone());
    let c = Contention {
        targets: vec![Target::new(a.url("")), moving.clone()],
        tokens,
        projects: PROJECTS.iter().map(|p| (*p).to_owned()).collect(),
        total: PROOF_TOTAL,
        clients: 50,
        rounds: 14,
    };
    // Kills the replica once work is flowing through it, then starts a new one on the same
    // database while the clients keep retrying.
    let chaos = {
        let db_url = shared.db_url.clone();
        let moving = moving.clone();
        let mut victim = first;
        tokio::spawn(async move {
            let db = sea_orm::Database::connect(&db_url).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let n = sea_orm::PaginatorTrait::count(budget_transaction::Entity::find(), &db)
                    .await
                    .unwrap();
                if n > 300 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            db.close().await.ok();
            let killed_at = Instant::now();
            victim.kill9();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let restarted = tokio::task::spawn_blocking(move || Replica::spawn(&replica_env))
                .await
                .unwrap();
            moving.set(restarted.base.clone());
            eprintln!("replica killed and back after {:?}", killed_at.elapsed());
            restarted
        })
    };
    let (outcomes, samples) = run_contention(&c, Arc::default()).await;
    let restarted = chaos.await.unwrap();
    eprintln!("kill-restart run: {samples} state samples");
    assert!(samples > 10, "the reader sampled only {samples} states");
    assert_quiescent(&a.state.db, &outcomes, &ids).await;
    drop(restarted);
    a.stop().await;
    shared.cleanup().await;
}
