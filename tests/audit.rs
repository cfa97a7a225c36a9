//! The audit log end to end over HTTP and WebSocket, on both profiles: every filter of
//! `auditLog`, newest-first pages with `totalCount`, the `audit.view` guard, tenant scoping
//! in the list and live, and `auditLogAdded` delivering committed entries (on NATS under
//! `<prefix>.events.audit.<id>.added`, the JetStream stream's subjects).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, Profile, TestServer, WsClient, error_code};
use futures::StreamExt;
use serde_json::{Value, json};

both_profiles!(
    filters_select_entries,
    pages_are_newest_first,
    audit_view_is_required,
    tenants_see_only_their_entries,
    entries_arrive_live_after_commit,
);

const LOG: &str = "query($f: AuditLogFilter, $first: Int, $after: String) { auditLog(filter: $f, first: $first, after: $after) { totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { id actor action resourceType resourceId tenantId requestId details createdAt } } } }";
const CREATE_TASK: &str = "mutation($t: String!) { createTask(input: { title: $t }) { id } }";
const CREATE_USER: &str = "mutation($u: String!, $r: Role!, $t: String) { createUser(input: { username: $u, password: \"a long password\", role: $r, tenantId: $t }) { id } }";
const ADDED: &str = "subscription($f: AuditLogFilter) { auditLogAdded(filter: $f) { cursor entry { id actor action resourceType resourceId tenantId requestId } } }";

/// The `auditLog` connection as `token` sees it (`None`: the first admin).
async fn log_as(s: &TestServer, token: Option<&str>, filter: Value, first: Option<i64>) -> Value {
    let token = token.unwrap_or(&s.token);
    let res = s
        .gql_as(Some(token), LOG, json!({ "f": filter, "first": first }))
        .await;
    assert!(res.get("errors").is_none(), "unexpected errors: {res}");
    res["data"]["auditLog"].clone()
}

fn nodes(conn: &Value) -> Vec<Value> {
    conn["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn task(s: &TestServer, token: &str, title: &str) -> String {
    let res = s
        .gql_as(Some(token), CREATE_TASK, json!({ "t": title }))
        .await;
    res["data"]["createTask"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createTask failed: {res}"))
        .to_owned()
}

async fn user(s: &TestServer, name: &str, role: &str, tenant: Option<&str>) -> String {
    s.ok(CREATE_USER, json!({ "u": name, "r": role, "t": tenant }))
        .await;
    s.login(name, "a long password").await
}

async fn filters_select_entries(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let operator = user(s, "olga", "OPERATOR", None).await;
    let first = task(s, &s.token, "one").await;
    task(s, &s.token, "two").await;
    task(s, &operator, "three").await;
    s.ok(
        "mutation($id: ID!) { updateTaskState(id: $id, state: IN_PROGRESS) { id } }",
        json!({ "id": first }),
    )
    .await;
    let agent = s
        .ok(
            "mutation { registerAgent(input: { name: \"coder\", role: \"developer\" }) { id } }",
            json!({}),
        )
        .await["registerAgent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let all = log_as(s, None, json!({}), Some(100)).await;
    let everything = nodes(&all);
    assert_eq!(all["totalCount"], everything.len() as u64);
    // user.create ×1, user.login ×2 (admin at start, olga), task.create ×3, update, register.
    assert_eq!(everything.len(), 8, "{all}");

    // action
    let created = log_as(s, None, json!({ "action": "task.create" }), None).await;
    assert_eq!(created["totalCount"], 3);
    assert!(
        nodes(&created)
            .iter()
            .all(|n| n["action"] == "task.create" && n["resourceType"] == "task")
    );
    // actor
    let by_olga = log_as(s, None, json!({ "actor": "user:olga" }), None).await;
    let actions: Vec<Value> = nodes(&by_olga)
        .iter()
        .map(|n| n["action"].clone())
        .collect();
    assert_eq!(
        actions,
        [json!("task.create"), json!("user.login")],
        "{by_olga}"
    );
    let by_admin = log_as(
        s,
        None,
        json!({ "actor": "user:admin", "action": "task.create" }),
        None,
    )
    .await;
    assert_eq!(by_admin["totalCount"], 2);
    // resourceType
    let agents = log_as(s, None, json!({ "resourceType": "agent" }), None).await;
    assert_eq!(agents["totalCount"], 1);
    let entry = &nodes(&agents)[0];
    assert_eq!(entry["action"], "agent.register");
    assert_eq!(entry["resourceId"], json!(agent));
    assert_eq!(entry["details"]["name"], "coder");
    assert!(entry["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    // resourceId
    let of_first = log_as(s, None, json!({ "resourceId": first }), None).await;
    let actions: Vec<Value> = nodes(&of_first)
        .iter()
        .map(|n| n["action"].clone())
        .collect();
    assert_eq!(actions, [json!("task.update_state"), json!("task.create")]);
    assert_eq!(nodes(&of_first)[0]["details"]["to"], "IN_PROGRESS");
    let none = log_as(
        s,
        None,
        json!({ "resourceId": uuid::Uuid::now_v7().to_string() }),
        None,
    )
    .await;
    assert_eq!(none["totalCount"], 0);
    assert!(nodes(&none).is_empty());

    // from (inclusive) and to (exclusive), against what the full list says.
    let at = |n: &Value| {
        chrono::DateTime::parse_from_rfc3339(n["createdAt"].as_str().unwrap())
            .unwrap()
            .to_utc()
    };
    let pivot = at(&everything[3]);
    let newer = everything.iter().filter(|n| at(n) >= pivot).count();
    let older = everything.iter().filter(|n| at(n) < pivot).count();
    let from = log_as(s, None, json!({ "from": pivot.to_rfc3339() }), Some(100)).await;
    assert_eq!(from["totalCount"], newer as u64);
    assert!(nodes(&from).iter().all(|n| at(n) >= pivot));
    let to = log_as(s, None, json!({ "to": pivot.to_rfc3339() }), Some(100)).await;
    assert_eq!(to["totalCount"], older as u64);
    assert!(nodes(&to).iter().all(|n| at(n) < pivot));
    assert_eq!(newer + older, everything.len());
    let window = log_as(
        s,
        None,
        json!({ "from": at(&everything[everything.len() - 1]).to_rfc3339(), "to": pivot.to_rfc3339(), "action": "task.create" }),
        None,
    )
    .await;
    let expected = everything
        .iter()
        .filter(|n| at(n) < pivot && n["action"] == "task.create")
        .count();
    assert_eq!(window["totalCount"], expected as u64);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    let empty = log_as(s, None, json!({ "from": future.to_rfc3339() }), None).await;
    assert_eq!(empty["totalCount"], 0);
    // `to` before `from` is refused by field.
    let backwards = s
        .gql(
            LOG,
            json!({ "f": { "from": future.to_rfc3339(), "to": pivot.to_rfc3339() } }),
        )
        .await;
    assert_eq!(error_code(&backwards), "BAD_USER_INPUT", "{backwards}");
    assert_eq!(backwards["errors"][0]["extensions"]["field"], "to");
    env.finish().await;
}

async fn pages_are_newest_first(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| c.max_page_size = 4).await else {
        return;
    };
    let s = &env.server;
    let mut tasks = Vec::new();
    for i in 0..7 {
        tasks.push(task(s, &s.token, &format!("task {i}")).await);
    }
    let filter = json!({ "action": "task.create" });
    // Newest first: the last task created is the first entry.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let res = s
            .gql(LOG, json!({ "f": filter, "first": 3, "after": after }))
            .await;
        let conn = res["data"]["auditLog"].clone();
        assert_eq!(conn["totalCount"], 7, "{res}");
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], after.is_some());
        for e in conn["edges"].as_array().unwrap() {
            assert_eq!(e["cursor"], e["node"]["id"]);
            seen.push(e["node"]["resourceId"].as_str().unwrap().to_owned());
        }
        pages += 1;
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = tasks.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // Entries added after a page was read do not shift the next page.
    let p1 = log_as(s, None, filter.clone(), Some(2)).await;
    task(s, &s.token, "late").await;
    let p2 = s
        .gql(
            LOG,
            json!({ "f": filter, "first": 2, "after": p1["pageInfo"]["endCursor"] }),
        )
        .await["data"]["auditLog"]
        .clone();
    let p2_tasks: Vec<Value> = nodes(&p2).iter().map(|n| n["resourceId"].clone()).collect();
    assert_eq!(p2_tasks, [json!(tasks[4]), json!(tasks[3])]);
    assert_eq!(p2["totalCount"], 8);

    // `first` is capped, and bad arguments are refused.
    let capped = log_as(s, None, json!({}), Some(1000)).await;
    assert_eq!(capped["edges"].as_array().unwrap().len(), 4);
    assert_eq!(capped["pageInfo"]["hasNextPage"], true);
    let neg = s.gql(LOG, json!({ "first": -1 })).await;
    assert_eq!(error_code(&neg), "BAD_USER_INPUT");
    let bad = s.gql(LOG, json!({ "after": "garbage" })).await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    env.finish().await;
}

/// The first error of a subscription's answer.
async fn subscription_error(s: &TestServer, token: Option<&str>) -> String {
    let mut ws = WsClient::connect(&s.ws_url(), "graphql-transport-ws", token).await;
    ws.subscribe("a", ADDED, json!({})).await;
    let msg = ws.next_json().await.unwrap();
    let errors = if msg["payload"].is_array() {
        &msg["payload"]
    } else {
        &msg["payload"]["errors"]
    };
    errors[0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn audit_view_is_required(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    for role in ["OBSERVER", "DEVELOPER"] {
        let token = user(s, &role.to_lowercase(), role, None).await;
        let res = s.gql_as(Some(&token), LOG, json!({})).await;
        assert_eq!(error_code(&res), "FORBIDDEN", "{role}: {res}");
        assert!(res["data"].is_null(), "{res}");
        assert_eq!(subscription_error(s, Some(&token)).await, "FORBIDDEN");
    }
    let anonymous = s.gql_as(None, LOG, json!({})).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    // Operators hold audit.view.
    let operator = user(s, "operator", "OPERATOR", None).await;
    let seen = log_as(s, Some(&operator), json!({}), None).await;
    assert!(seen["totalCount"].as_u64().unwrap() >= 3, "{seen}");
    env.finish().await;
}

async fn tenants_see_only_their_entries(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let alice = user(s, "alice", "OPERATOR", Some("acme")).await;
    let bob = user(s, "bob", "OPERATOR", Some("globex")).await;
    let alices = task(s, &alice, "acme work").await;
    let bobs = task(s, &bob, "globex work").await;
    let admins = task(s, &s.token, "untenanted work").await;

    // The list: only acme's entries (her creation by the admin, her login, her task).
    let seen = log_as(s, Some(&alice), json!({}), Some(100)).await;
    let entries = nodes(&seen);
    assert!(entries.iter().all(|n| n["tenantId"] == "acme"), "{seen}");
    assert_eq!(seen["totalCount"], entries.len() as u64);
    let mut actions: Vec<String> = entries
        .iter()
        .map(|n| n["action"].as_str().unwrap().to_owned())
        .collect();
    actions.sort();
    assert_eq!(actions, ["task.create", "user.create", "user.login"]);
    assert_eq!(
        log_as(s, Some(&alice), json!({ "resourceId": alices }), None).await["totalCount"],
        1
    );
    for hidden in [&bobs, &admins] {
        let res = log_as(s, Some(&alice), json!({ "resourceId": hidden }), None).await;
        assert_eq!(res["totalCount"], 0, "{res}");
    }
    // An untenanted admin sees every tenant's entries and the untenanted ones.
    let all = log_as(s, None, json!({ "action": "task.create" }), None).await;
    let mut tenants: Vec<Value> = nodes(&all).iter().map(|n| n["tenantId"].clone()).collect();
    tenants.sort_by_key(Value::to_string);
    assert_eq!(tenants, [json!("acme"), json!("globex"), Value::Null]);

    // Live: Alice is told of acme's entries only. Each round, Bob's change (and the
    // admin's) is published before hers, so it would arrive first if it were delivered.
    let mut ws = WsClient::connect(&s.ws_url(), "graphql-transport-ws", Some(&alice)).await;
    ws.subscribe("mine", ADDED, json!({ "f": { "action": "task.create" } }))
        .await;
    let mut mine = Vec::new();
    for i in 0..50 {
        task(s, &bob, &format!("globex {i}")).await;
        task(s, &s.token, &format!("untenanted {i}")).await;
        mine.push(task(s, &alice, &format!("acme {i}")).await);
        if let Ok(event) = tokio::time::timeout(
            Duration::from_millis(200),
            ws.next_data("mine", Duration::from_secs(5)),
        )
        .await
        {
            let e = &event["data"]["auditLogAdded"]["entry"];
            assert_eq!(e["tenantId"], "acme", "{e}");
            assert!(mine.contains(&e["resourceId"].as_str().unwrap().to_owned()));
            break;
        }
        assert!(i < 49, "auditLogAdded delivered nothing");
    }
    // Drain what earlier rounds still have in flight, then one more round.
    while let Ok(event) = tokio::time::timeout(
        Duration::from_millis(300),
        ws.next_data("mine", Duration::from_secs(5)),
    )
    .await
    {
        assert_eq!(
            event["data"]["auditLogAdded"]["entry"]["tenantId"], "acme",
            "{event}"
        );
    }
    task(s, &bob, "globex last").await;
    task(s, &s.token, "untenanted last").await;
    let last = task(s, &alice, "acme last").await;
    let event = ws.next_data("mine", Duration::from_secs(5)).await;
    let e = &event["data"]["auditLogAdded"]["entry"];
    assert_eq!(e["resourceId"], json!(last), "{e}");
    assert_eq!(e["actor"], "user:alice");
    env.finish().await;
}

async fn entries_arrive_live_after_commit(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    // On NATS the entry travels under `<prefix>.audit.<id>.added`.
    let mut nats = match &env.urls {
        Some(urls) => {
            let client = async_nats::connect(urls.nats.as_str()).await.unwrap();
            let sub = client
                .subscribe(format!("{}.events.audit.*.added", env.shared.nats_prefix))
                .await
                .unwrap();
            client.flush().await.unwrap();
            Some((client, sub))
        }
        None => None,
    };
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe("all", ADDED, json!({})).await;
    ws.subscribe("agents", ADDED, json!({ "f": { "resourceType": "agent" } }))
        .await;
    common::create_until_delivered(s, &mut ws, "all", |i| format!("probe {i}")).await;
    // Drain entries of earlier probes still in flight.
    while tokio::time::timeout(
        Duration::from_millis(300),
        ws.next_data("all", Duration::from_secs(5)),
    )
    .await
    .is_ok()
    {}

    // A refused mutation writes and announces nothing; the next change arrives, with what
    // the list shows for it.
    let refused = s
        .gql(
            "mutation($id: ID!) { updateTaskState(id: $id, state: COMPLETED) { id } }",
            json!({ "id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(error_code(&refused), "NOT_FOUND");
    let id = task(s, &s.token, "watched").await;
    let event = ws.next_data("all", Duration::from_secs(5)).await;
    let e = event["data"]["auditLogAdded"]["entry"].clone();
    assert_eq!(e["action"], "task.create", "{e}");
    assert_eq!(e["resourceType"], "task");
    assert_eq!(e["resourceId"], json!(id));
    assert_eq!(e["actor"], "user:admin");
    assert!(e["tenantId"].is_null());
    let listed = log_as(s, None, json!({ "resourceId": id }), None).await;
    assert_eq!(nodes(&listed)[0]["id"], e["id"]);
    assert_eq!(nodes(&listed)[0]["requestId"], e["requestId"]);

    // A filtered subscription gets only what matches.
    let agent = s
        .ok(
            "mutation { registerAgent(input: { name: \"watched\", role: \"tester\" }) { id } }",
            json!({}),
        )
        .await["registerAgent"]["id"]
        .clone();
    let event = ws.next_data("agents", Duration::from_secs(5)).await;
    assert_eq!(event["data"]["auditLogAdded"]["entry"]["resourceId"], agent);
    assert_eq!(
        event["data"]["auditLogAdded"]["entry"]["action"],
        "agent.register"
    );

    // Budget changes are announced the same way: the creation, then a reservation.
    s.ok(
        "mutation { createBudget(input: { tenantId: \"acme\", projectId: \"live\", total: 10 }) { id } }",
        json!({}),
    )
    .await;
    s.ok(
        "mutation { reserveBudget(input: { tenantId: \"acme\", projectId: \"live\", amount: 3, requestId: \"audit-live-1\" }) { id } }",
        json!({}),
    )
    .await;
    // The "all" subscription also holds the agent's entry from above.
    let mut actions = Vec::new();
    while actions.len() < 2 {
        let event = ws.next_data("all", Duration::from_secs(5)).await;
        let action = event["data"]["auditLogAdded"]["entry"]["action"].clone();
        if action.as_str().is_some_and(|a| a.starts_with("budget.")) {
            actions.push(action);
        }
    }
    assert_eq!(actions, [json!("budget.create"), json!("budget.reserve")]);

    if let Some((_client, sub)) = &mut nats {
        let entry = e["id"].as_str().unwrap();
        let subject = format!("{}.events.audit.{entry}.added", env.shared.nats_prefix);
        let found = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(msg) = sub.next().await {
                if msg.subject.as_str() == subject {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "no NATS message on {subject}");
    }
    drop(nats);
    env.finish().await;
}
