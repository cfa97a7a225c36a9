//! Relay object identification: `node(id:)` refetches any object by the id it was given, with
//! the permission and tenant scoping of that object's own query.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, Profile};
use serde_json::{Value, json};

both_profiles!(
    node_refetches_every_type,
    node_respects_permissions_and_tenants
);

const NODE: &str = "query($id: ID!) { node(id: $id) { __typename id \
    ... on Task { title } ... on Budget { projectId } ... on BudgetReservation { amount } \
    ... on User { username } ... on Agent { name } ... on Escalation { reason } } }";

async fn node_as(env: &Env, token: Option<&str>, id: &str) -> Value {
    let res = env.server.gql_as(token, NODE, json!({ "id": id })).await;
    assert!(res.get("errors").is_none(), "{res}");
    res["data"]["node"].clone()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

async fn node_refetches_every_type(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let task = s
        .ok(
            "mutation { createTask(input: { title: \"refetch me\" }) { id } }",
            json!({}),
        )
        .await["createTask"]
        .clone();
    let agent = s
        .ok(
            "mutation { registerAgent(input: { name: \"a1\", role: \"tester\" }) { id } }",
            json!({}),
        )
        .await["registerAgent"]
        .clone();
    let escalation = s
        .ok(
            "mutation($t: ID!) { createEscalation(input: { taskId: $t, reason: \"stuck\" }) { id } }",
            json!({ "t": id_of(&task) }),
        )
        .await["createEscalation"]
        .clone();
    let budget = s
        .ok(
            "mutation { createBudget(input: { tenantId: \"acme\", projectId: \"bot\", total: 100 }) { id } }",
            json!({}),
        )
        .await["createBudget"]
        .clone();
    let reservation = s
        .ok(
            "mutation { reserveBudget(input: { tenantId: \"acme\", projectId: \"bot\", amount: 7, requestId: \"n-1\" }) { id } }",
            json!({}),
        )
        .await["reserveBudget"]
        .clone();
    let me = s.ok("{ me { id } }", json!({})).await["me"].clone();
    let ledger = s
        .ok(
            "query($b: ID!) { budgetTransactions(budgetId: $b) { edges { node { id } } } }",
            json!({ "b": id_of(&budget) }),
        )
        .await["budgetTransactions"]["edges"][0]["node"]
        .clone();

    let entry = s
        .ok(
            "query($t: String!) { auditLog(filter: { resourceId: $t }) { edges { node { id } } } }",
            json!({ "t": id_of(&task) }),
        )
        .await["auditLog"]["edges"][0]["node"]
        .clone();

    // A dead letter (rejected on its first delivery) and a redrive of it.
    s.ok(
        "mutation($t: ID!) { enqueueTask(input: { taskId: $t, queue: \"default\", requestId: \"n-q\" }) { sequence } }",
        json!({ "t": id_of(&task) }),
    )
    .await;
    let delivery = s
        .ok(
            "mutation { claimTaskMessages(queue: \"default\", max: 1, waitMs: 2000) { deliveryId } }",
            json!({}),
        )
        .await["claimTaskMessages"][0]["deliveryId"]
        .clone();
    s.ok(
        "mutation($d: String!) { rejectTaskMessage(deliveryId: $d, reason: \"poison\") { deliveryId } }",
        json!({ "d": delivery }),
    )
    .await;
    let letter = s
        .ok("{ dlqMessages { edges { node { id } } } }", json!({}))
        .await["dlqMessages"]["edges"][0]["node"]
        .clone();
    let redrive = s
        .ok(
            "mutation { redriveDlq(input: { ratePerSecond: 1, requestId: \"n-r\" }) { id } }",
            json!({}),
        )
        .await["redriveDlq"]
        .clone();

    let token = Some(s.token.as_str());
    let cases = [
        (&task, "Task", "title", json!("refetch me")),
        (&agent, "Agent", "name", json!("a1")),
        (&escalation, "Escalation", "reason", json!("stuck")),
        (&budget, "Budget", "projectId", json!("bot")),
        (&reservation, "BudgetReservation", "amount", json!(7)),
        (&me, "User", "username", json!("admin")),
    ];
    for (object, typename, field, value) in cases {
        let node = node_as(&env, token, &id_of(object)).await;
        assert_eq!(node["__typename"], typename, "{node}");
        assert_eq!(node["id"], object["id"], "{node}");
        assert_eq!(node[field], value, "{node}");
    }
    let node = node_as(&env, token, &id_of(&ledger)).await;
    assert_eq!(node["__typename"], "BudgetTransaction", "{node}");
    let node = node_as(&env, token, &id_of(&entry)).await;
    assert_eq!(node["__typename"], "AuditLogEntry", "{node}");
    let node = node_as(&env, token, &id_of(&letter)).await;
    assert_eq!(node["__typename"], "DlqMessage", "{node}");
    let node = node_as(&env, token, &id_of(&redrive)).await;
    assert_eq!(node["__typename"], "DlqRedrive", "{node}");

    // An id nobody holds is null, not an error; a malformed one is the client's error.
    let unknown = node_as(&env, token, "01a214a0-d3e9-720f-a444-8e7b40e5ec5b").await;
    assert_eq!(unknown, Value::Null);
    let bad = s.gql_as(token, NODE, json!({ "id": "not-a-uuid" })).await;
    assert_eq!(common::error_code(&bad), "BAD_USER_INPUT", "{bad}");
    env.finish().await;
}

async fn node_respects_permissions_and_tenants(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let acme = s
        .ok(
            "mutation { createBudget(input: { tenantId: \"acme\", projectId: \"bot\", total: 100 }) { id } }",
            json!({}),
        )
        .await["createBudget"]
        .clone();
    let globex = s
        .ok(
            "mutation { createBudget(input: { tenantId: \"globex\", projectId: \"bot\", total: 100 }) { id } }",
            json!({}),
        )
        .await["createBudget"]
        .clone();
    let admin = s.ok("{ me { id } }", json!({})).await["me"].clone();
    s.ok(
        "mutation { createUser(input: { username: \"acme-dev\", password: \"a long password\", role: DEVELOPER, tenantId: \"acme\" }) { id } }",
        json!({}),
    )
    .await;
    let dev = s.login("acme-dev", "a long password").await;
    let me = s.gql_as(Some(&dev), "{ me { id } }", json!({})).await["data"]["me"].clone();

    // The tenant's own budget is visible, another tenant's is not there at all.
    let own = node_as(&env, Some(&dev), &id_of(&acme)).await;
    assert_eq!(own["__typename"], "Budget", "{own}");
    assert_eq!(
        node_as(&env, Some(&dev), &id_of(&globex)).await,
        Value::Null
    );
    // Users need user.manage, except oneself.
    assert_eq!(node_as(&env, Some(&dev), &id_of(&admin)).await, Value::Null);
    let self_node = node_as(&env, Some(&dev), &id_of(&me)).await;
    assert_eq!(self_node["username"], "acme-dev", "{self_node}");
    // Without credentials: refused.
    let anonymous = s.gql_as(None, NODE, json!({ "id": id_of(&acme) })).await;
    assert_eq!(
        common::error_code(&anonymous),
        "UNAUTHENTICATED",
        "{anonymous}"
    );
    env.finish().await;
}
