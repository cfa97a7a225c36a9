//! Budget events and tenants, on both profiles: threshold alerts once per period, tenant
//! isolation (reads, spending, feeds with and without a tenant) and live `budgetChanged`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, Profile, TestServer, WsClient, budgets::*, error_code};
use entity::budget_transaction;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

both_profiles!(
    thresholds_fire_once_per_period,
    tenants_see_and_spend_only_their_budgets,
    budget_changed_is_live,
);

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

    // Raising the total (61 of 200: 30.5 %) arms 50 again; spending back to it fires it once
    // more. Lowering the total past 80 fires 80 in that change.
    let update = "mutation($id: ID!, $total: Int!) { updateBudget(input: { id: $id, total: $total }) { alertsSent } }";
    let raised = s.ok(update, json!({ "id": id, "total": 200 })).await;
    assert_eq!(raised["updateBudget"]["alertsSent"], json!([]));
    spend(s, "alerts", 40, "7").await; // 101 of 200: crosses 50 again
    let lowered = s.ok(update, json!({ "id": id, "total": 120 })).await; // 84 %
    assert_eq!(lowered["updateBudget"]["alertsSent"], json!([50, 80]));
    let mut rearmed = Vec::new();
    while rearmed.len() < 2 {
        let msg = ws.next_json().await.expect("socket open");
        if msg["id"] == "t" && msg["type"] == "next" {
            let r = &msg["payload"]["data"]["budgetThresholdReached"];
            rearmed.push((
                r["threshold"].as_i64().unwrap(),
                r["state"]["total"].as_i64().unwrap(),
            ));
        }
    }
    assert_eq!(rearmed, [(50, 200), (80, 120)]);
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
