//! Governance of self-learning agents through the API, on both profiles: rules (seeded,
//! validated, audited), the daily limit and the cooldown enforced in the write path with
//! `nextAllowedAt`, idempotent proposals, gap-free prompt versions and governed rollbacks,
//! four eyes, the approval race for the last slot, expiry, and the two subscriptions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Env, Profile, TestServer, error_code};
use serde_json::{Value, json};

const CONFIGURE: &str = "mutation($i: ConfigureGovernanceRuleInput!) { configureGovernanceRule(input: $i) { agentRole maxUpdatesPerDay cooldownHours requireApproval approvalExpiryHours version } }";
const PROPOSE: &str = "mutation($role: String!, $text: String!, $r: String!, $task: ID, $agent: ID) { proposeLearningUpdate(input: { agentRole: $role, promptUpdate: $text, rationale: \"learned from review\", requestId: $r, taskId: $task, agentId: $agent }) { id status kind promptVersion appliedAt expiresAt proposedBy } }";
const APPROVE: &str = "mutation($id: ID!) { approveLearningUpdate(id: $id, note: \"looks right\") { id status promptVersion decidedBy } }";
const REJECT: &str = "mutation($id: ID!) { rejectLearningUpdate(id: $id, reason: \"too broad\") { id status decisionNote } }";
const UPDATE: &str = "query($id: ID!) { learningUpdate(id: $id) { id status } }";
const STATUS: &str = "query($role: String!) { governanceStatus(agentRole: $role) { agentRole status updatesInWindow remainingUpdates pendingApprovals cooldownEndsAt nextAllowedAt currentVersion } }";
const VERSIONS: &str = "query($role: String!) { promptVersions(agentRole: $role) { totalCount edges { cursor node { version text proposedBy approvedBy rollbackOf } } } currentPrompt(agentRole: $role) { version text } }";
const ROLLBACK: &str = "mutation($role: String!, $v: Int!) { rollbackPrompt(agentRole: $role, version: $v, reason: \"v2 made reviews worse\") { id status kind promptVersion rollbackTo } }";

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

async fn configure(s: &TestServer, input: Value) -> Value {
    s.ok(CONFIGURE, json!({ "i": input })).await["configureGovernanceRule"].clone()
}

async fn propose_as(s: &TestServer, token: &str, role: &str, text: &str, r: &str) -> Value {
    s.gql_as(
        Some(token),
        PROPOSE,
        json!({ "role": role, "text": text, "r": r }),
    )
    .await
}

async fn user(s: &TestServer, name: &str, role: &str) -> String {
    s.ok(
        "mutation($u: String!, $r: Role!) { createUser(input: { username: $u, password: \"a long password\", role: $r }) { id } }",
        json!({ "u": name, "r": role }),
    )
    .await;
    s.login(name, "a long password").await
}

async fn rules_limits_and_versions(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let admin = s.token.clone();

    // The prototype's seeded rules.
    let rules = s
        .ok(
            "{ governanceRules { agentRole maxUpdatesPerDay cooldownHours requireApproval } }",
            json!({}),
        )
        .await["governanceRules"]
        .clone();
    let seeded: Vec<(String, i64, f64, bool)> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["agentRole"].as_str().unwrap().to_owned(),
                r["maxUpdatesPerDay"].as_i64().unwrap(),
                r["cooldownHours"].as_f64().unwrap(),
                r["requireApproval"].as_bool().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("architect", 2, 12.0, true),
        ("developer", 5, 2.0, false),
        ("reviewer", 3, 4.0, false),
        ("security", 1, 24.0, true),
        ("tester", 5, 2.0, false),
    ] {
        let e = (expected.0.to_owned(), expected.1, expected.2, expected.3);
        assert!(seeded.contains(&e), "{e:?} in {seeded:?}");
    }
    // A role nobody configured has the prototype's default.
    let poet = s.ok(STATUS, json!({ "role": "poet" })).await["governanceStatus"][0].clone();
    assert_eq!(poet["status"], "CAN_AUTO_UPDATE", "{poet}");
    assert_eq!(poet["remainingUpdates"], 5);

    // Bad values are refused, naming the field, and change nothing.
    for (input, field) in [
        (
            json!({ "agentRole": "writer", "maxUpdatesPerDay": -1 }),
            "maxUpdatesPerDay",
        ),
        (
            json!({ "agentRole": "writer", "maxUpdatesPerDay": 1_000_000 }),
            "maxUpdatesPerDay",
        ),
        (
            json!({ "agentRole": "writer", "cooldownHours": -0.5 }),
            "cooldownHours",
        ),
        (
            json!({ "agentRole": "writer", "cooldownHours": 1e9 }),
            "cooldownHours",
        ),
        (
            json!({ "agentRole": "writer", "approvalExpiryHours": 0 }),
            "approvalExpiryHours",
        ),
        (json!({ "agentRole": "Writer Role" }), "agentRole"),
    ] {
        let res = s.gql(CONFIGURE, json!({ "i": input })).await;
        assert_eq!(error_code(&res), "BAD_USER_INPUT", "{input}: {res}");
        assert_eq!(res["errors"][0]["extensions"]["field"], field, "{res}");
    }
    let rules = s.ok("{ governanceRules { agentRole } }", json!({})).await;
    assert!(!rules.to_string().contains("writer"), "{rules}");
    // Rules are the fleet's: a tenant's operator may not change them.
    s.ok(
        "mutation { createUser(input: { username: \"acme-ops\", password: \"a long password\", role: OPERATOR, tenantId: \"acme\" }) { id } }",
        json!({}),
    )
    .await;
    let tenant_ops = s.login("acme-ops", "a long password").await;
    let res = s
        .gql_as(
            Some(&tenant_ops),
            CONFIGURE,
            json!({ "i": { "agentRole": "writer", "maxUpdatesPerDay": 50 } }),
        )
        .await;
    assert_eq!(error_code(&res), "FORBIDDEN", "{res}");

    // Two a day, no cooldown, no approval.
    let rule = configure(
        s,
        json!({ "agentRole": "writer", "maxUpdatesPerDay": 2, "cooldownHours": 0 }),
    )
    .await;
    assert_eq!(rule["maxUpdatesPerDay"], 2);
    assert_eq!(rule["requireApproval"], false);
    let audit = s
        .ok(
            "{ auditLog(filter: { action: \"governance.configure\", resourceId: \"writer\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditLog"]["totalCount"], 1, "{audit}");

    let first = propose_as(s, &admin, "writer", "Write short answers.", "w-1").await;
    let first = first["data"]["proposeLearningUpdate"].clone();
    assert_eq!(first["status"], "APPLIED", "{first}");
    assert_eq!(first["promptVersion"], 1);
    // A replay answers the first result; the same key with another input is refused.
    let replay = propose_as(s, &admin, "writer", "Write short answers.", "w-1").await;
    assert_eq!(replay["data"]["proposeLearningUpdate"], first, "{replay}");
    let reused = propose_as(s, &admin, "writer", "Something else.", "w-1").await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED", "{reused}");
    let second = propose_as(s, &admin, "writer", "Write shorter answers.", "w-2").await;
    assert_eq!(
        second["data"]["proposeLearningUpdate"]["promptVersion"], 2,
        "{second}"
    );
    // The third in 24 hours is refused until the first leaves the window.
    let third = propose_as(s, &admin, "writer", "Write the shortest answers.", "w-3").await;
    assert_eq!(error_code(&third), "LEARNING_DAILY_LIMIT", "{third}");
    assert_eq!(
        at(&third["errors"][0]["extensions"]["nextAllowedAt"]),
        at(&first["appliedAt"]) + chrono::Duration::hours(24),
        "{third}"
    );
    let status = s.ok(STATUS, json!({ "role": "writer" })).await["governanceStatus"][0].clone();
    assert_eq!(status["status"], "DAILY_LIMIT_REACHED", "{status}");
    assert_eq!(status["updatesInWindow"], 2);
    assert_eq!(status["remainingUpdates"], 0);
    assert_eq!(status["currentVersion"], 2);
    let versions = s.ok(VERSIONS, json!({ "role": "writer" })).await;
    assert_eq!(versions["currentPrompt"]["text"], "Write shorter answers.");
    let numbers: Vec<i64> = versions["promptVersions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![2, 1]);
    assert_eq!(versions["promptVersions"]["totalCount"], 2);

    // The cooldown: one hour after each update.
    configure(
        s,
        json!({ "agentRole": "editor", "maxUpdatesPerDay": 10, "cooldownHours": 1 }),
    )
    .await;
    let e1 = propose_as(s, &admin, "editor", "Prefer active voice.", "e-1").await;
    let e1 = e1["data"]["proposeLearningUpdate"].clone();
    assert_eq!(e1["status"], "APPLIED", "{e1}");
    let cooling = propose_as(s, &admin, "editor", "Prefer the passive voice.", "e-2").await;
    assert_eq!(error_code(&cooling), "LEARNING_COOLDOWN", "{cooling}");
    assert_eq!(
        at(&cooling["errors"][0]["extensions"]["nextAllowedAt"]),
        at(&e1["appliedAt"]) + chrono::Duration::hours(1)
    );
    let status = s.ok(STATUS, json!({ "role": "editor" })).await["governanceStatus"][0].clone();
    assert_eq!(status["status"], "COOLDOWN_ACTIVE", "{status}");
    // A refusal stored nothing: once the rule allows it, the same key goes through.
    configure(s, json!({ "agentRole": "editor", "cooldownHours": 0 })).await;
    let e2 = propose_as(s, &admin, "editor", "Prefer the passive voice.", "e-2").await;
    assert_eq!(
        e2["data"]["proposeLearningUpdate"]["promptVersion"], 2,
        "{e2}"
    );

    // A rollback is a new version with the old text, governed and audited.
    let back = s.ok(ROLLBACK, json!({ "role": "editor", "v": 1 })).await["rollbackPrompt"].clone();
    assert_eq!(back["kind"], "ROLLBACK");
    assert_eq!(back["status"], "APPLIED");
    assert_eq!(back["promptVersion"], 3);
    assert_eq!(back["rollbackTo"], 1);
    let versions = s.ok(VERSIONS, json!({ "role": "editor" })).await;
    assert_eq!(versions["currentPrompt"]["text"], "Prefer active voice.");
    assert_eq!(
        versions["promptVersions"]["edges"][0]["node"]["rollbackOf"],
        1
    );
    let missing = s.gql(ROLLBACK, json!({ "role": "editor", "v": 9 })).await;
    assert_eq!(error_code(&missing), "NOT_FOUND", "{missing}");
    configure(s, json!({ "agentRole": "editor", "maxUpdatesPerDay": 3 })).await;
    let limited = s.gql(ROLLBACK, json!({ "role": "editor", "v": 2 })).await;
    assert_eq!(error_code(&limited), "LEARNING_DAILY_LIMIT", "{limited}");
    let audit = s
        .ok(
            "{ auditLog(filter: { action: \"learning.rollback\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditLog"]["totalCount"], 1, "{audit}");

    // References: an agent of another role is refused; a cited task is kept.
    let agent = s
        .ok(
            "mutation { registerAgent(input: { name: \"critic-1\", role: \"critic\" }) { id } }",
            json!({}),
        )
        .await["registerAgent"]["id"]
        .clone();
    let wrong = s
        .gql(
            PROPOSE,
            json!({ "role": "writer", "text": "x", "r": "w-agent", "agent": agent }),
        )
        .await;
    assert_eq!(error_code(&wrong), "BAD_USER_INPUT", "{wrong}");
    assert_eq!(wrong["errors"][0]["extensions"]["field"], "agentId");
    let task = s
        .ok(
            "mutation { createTask(input: { title: \"review\" }) { id } }",
            json!({}),
        )
        .await["createTask"]["id"]
        .clone();
    let cited = s
        .ok(
            PROPOSE,
            json!({ "role": "critic", "text": "Cite lines.", "r": "c-1", "task": task, "agent": agent }),
        )
        .await;
    assert_eq!(cited["proposeLearningUpdate"]["status"], "APPLIED");
    let by_task = s
        .ok(
            "query($t: ID!) { learningUpdates(filter: { taskId: $t }) { totalCount edges { node { agentId taskId } } } }",
            json!({ "t": task }),
        )
        .await;
    assert_eq!(by_task["learningUpdates"]["totalCount"], 1, "{by_task}");

    // Prometheus counts what happened, refusals by cause.
    let m = s.metrics().await;
    for (event, at_least) in [
        ("applied", 6.0),
        ("refused_daily_limit", 2.0),
        ("refused_cooldown", 1.0),
    ] {
        let name = format!("aurum_learning_updates_total{{event=\"{event}\"}}");
        assert!(common::metric_value(&m, &name) >= at_least, "{name}");
    }
    env.finish().await;
}

/// The next `governanceStatusChanged` of subscription `status` that is not the rule's own
/// change (the relay may deliver the configuration's event after the subscription started).
async fn status_change(ws: &mut common::WsClient) -> Value {
    loop {
        let next = ws.next_data("status", Duration::from_secs(5)).await;
        let change = next["data"]["governanceStatusChanged"].clone();
        if change["kind"] != "RULE_CHANGED" {
            return change;
        }
    }
}

async fn four_eyes_approval_and_expiry(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| c.learning_expiry_interval_ms = 100).await else {
        return;
    };
    let s = &env.server;
    let alice = user(s, "alice", "OPERATOR").await;
    let bob = user(s, "bob", "OPERATOR").await;
    configure(
        s,
        json!({ "agentRole": "auditor", "maxUpdatesPerDay": 1, "cooldownHours": 0, "requireApproval": true }),
    )
    .await;
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe(
        "status",
        "subscription { governanceStatusChanged(agentRole: \"auditor\") { kind status { status pendingApprovals updatesInWindow currentVersion } } }",
        json!({}),
    )
    .await;
    // Its own socket: `next_data` skips other subscriptions' messages.
    let mut ws_updates = s.ws("graphql-transport-ws").await;
    ws_updates.subscribe(
        "updates",
        "subscription { learningUpdateChanged(agentRole: \"auditor\") { kind update { id status proposedBy } } }",
        json!({}),
    )
    .await;

    let a1 = propose_as(s, &alice, "auditor", "Check every log line.", "a-1").await;
    let a1 = a1["data"]["proposeLearningUpdate"].clone();
    assert_eq!(a1["status"], "PENDING_APPROVAL", "{a1}");
    let expires = at(&a1["expiresAt"]) - Utc::now();
    assert!(
        expires > chrono::Duration::hours(71) && expires <= chrono::Duration::hours(72),
        "{a1}"
    );
    let a2 = propose_as(s, &alice, "auditor", "Check every metric.", "a-2").await;
    let a2 = a2["data"]["proposeLearningUpdate"].clone();
    assert_eq!(a2["status"], "PENDING_APPROVAL", "{a2}");

    let first = status_change(&mut ws).await;
    let change = &first;
    assert_eq!(change["kind"], "PROPOSED", "{first}");
    assert_eq!(change["status"]["status"], "REQUIRES_APPROVAL");
    assert_eq!(change["status"]["pendingApprovals"], 1);
    let proposed = ws_updates
        .next_data("updates", Duration::from_secs(5))
        .await;
    assert_eq!(
        proposed["data"]["learningUpdateChanged"]["update"]["id"],
        a1["id"]
    );
    assert_eq!(
        proposed["data"]["learningUpdateChanged"]["update"]["proposedBy"],
        "user:alice"
    );

    // The proposer cannot approve; neither can an API key.
    let own = s
        .gql_as(Some(&alice), APPROVE, json!({ "id": a1["id"] }))
        .await;
    assert_eq!(error_code(&own), "FOUR_EYES_REQUIRED", "{own}");
    let key = s
        .ok(
            "mutation { createApiKey(input: { name: \"bot\", role: OPERATOR }) { secret } }",
            json!({}),
        )
        .await["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_key = s
        .gql_as(Some(&key), APPROVE, json!({ "id": a1["id"] }))
        .await;
    assert_eq!(error_code(&by_key), "FOUR_EYES_REQUIRED", "{by_key}");

    // Two approvals race for the one slot: one wins, the other gets the limit.
    let (r1, r2) = tokio::join!(
        s.gql_as(Some(&bob), APPROVE, json!({ "id": a1["id"] })),
        s.gql_as(Some(&bob), APPROVE, json!({ "id": a2["id"] })),
    );
    let (won, lost, loser) = if r1.get("errors").is_none() {
        (r1, r2, &a2)
    } else {
        (r2, r1, &a1)
    };
    assert_eq!(
        won["data"]["approveLearningUpdate"]["status"], "APPLIED",
        "{won}"
    );
    assert_eq!(won["data"]["approveLearningUpdate"]["promptVersion"], 1);
    assert_eq!(
        won["data"]["approveLearningUpdate"]["decidedBy"],
        "user:bob"
    );
    assert_eq!(error_code(&lost), "LEARNING_DAILY_LIMIT", "{lost}");
    let still = s.ok(UPDATE, json!({ "id": loser["id"] })).await;
    assert_eq!(still["learningUpdate"]["status"], "PENDING_APPROVAL");
    let rejected = s
        .gql_as(Some(&bob), REJECT, json!({ "id": loser["id"] }))
        .await;
    assert_eq!(
        rejected["data"]["rejectLearningUpdate"]["status"], "REJECTED",
        "{rejected}"
    );
    let again = s
        .gql_as(Some(&bob), APPROVE, json!({ "id": loser["id"] }))
        .await;
    assert_eq!(error_code(&again), "CONFLICT", "{again}");

    // The status moved with every change: proposed twice, applied, rejected.
    let mut kinds = vec![change["kind"].clone()];
    let mut last = Value::Null;
    for _ in 0..3 {
        let next = status_change(&mut ws).await;
        kinds.push(next["kind"].clone());
        last = next["status"].clone();
    }
    assert_eq!(kinds, vec!["PROPOSED", "PROPOSED", "APPLIED", "REJECTED"]);
    assert_eq!(last["status"], "DAILY_LIMIT_REACHED", "{last}");
    assert_eq!(last["pendingApprovals"], 0);
    assert_eq!(last["updatesInWindow"], 1);
    assert_eq!(last["currentVersion"], 1);
    let v = s.ok(VERSIONS, json!({ "role": "auditor" })).await;
    assert_eq!(
        v["promptVersions"]["edges"][0]["node"]["approvedBy"],
        "user:bob"
    );

    // A proposal nobody approves in time expires (the sweep) and cannot be approved.
    configure(
        s,
        json!({ "agentRole": "scribe", "requireApproval": true, "approvalExpiryHours": 0.0003 }),
    )
    .await;
    let p = propose_as(s, &alice, "scribe", "Summarise first.", "s-1").await;
    let p = p["data"]["proposeLearningUpdate"].clone();
    let started = std::time::Instant::now();
    loop {
        let u = s.ok(UPDATE, json!({ "id": p["id"] })).await;
        if u["learningUpdate"]["status"] == "EXPIRED" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{u}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = s
        .gql_as(Some(&bob), APPROVE, json!({ "id": p["id"] }))
        .await;
    assert_eq!(error_code(&late), "CONFLICT", "{late}");
    let expiry = s
        .ok(
            "{ auditLog(filter: { action: \"learning.expire\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(expiry["auditLog"]["totalCount"], 1, "{expiry}");
    env.finish().await;
}

both_profiles!(rules_limits_and_versions, four_eyes_approval_and_expiry);
