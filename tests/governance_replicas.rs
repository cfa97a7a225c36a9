//! Governance on two real replicas sharing PostgreSQL and NATS: 40 concurrent proposals for a
//! role limited to 5 a day apply exactly 5 (versions 1–5, no gap) and refuse 35 with
//! `LEARNING_DAILY_LIMIT`; two approvals racing for a role's last slot from different
//! replicas: one applies, the other is refused and stays pending.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::queues::{Cluster, load_cluster};
use futures::future::join_all;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};

const CONFIGURE: &str = "mutation($i: ConfigureGovernanceRuleInput!) { configureGovernanceRule(input: $i) { version } }";
const PROPOSE: &str = "mutation($role: String!, $text: String!, $r: String!) { proposeLearningUpdate(input: { agentRole: $role, promptUpdate: $text, rationale: \"load\", requestId: $r }) { id status promptVersion } }";
const APPROVE: &str =
    "mutation($id: ID!) { approveLearningUpdate(id: $id) { status promptVersion } }";

fn code(res: &Value) -> String {
    res["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("OK")
        .to_owned()
}

/// A second client: an operator who did not propose (four eyes).
async fn operator(c: &Cluster, base: &str) -> Cluster {
    c.ok(
        0,
        "mutation { createUser(input: { username: \"approver\", password: \"a long password\", role: OPERATOR }) { id } }",
        json!({}),
    )
    .await;
    let http = reqwest::Client::new();
    let res: Value = http
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": "mutation { login(username: \"approver\", password: \"a long password\") { token } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut other = c.clone();
    other.token = res["data"]["login"]["token"].as_str().unwrap().to_owned();
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_two_replicas() {
    let test = "limits_hold_across_two_replicas";
    let Some(urls) = common::services_or_skip(test).await else {
        return;
    };
    let shared = common::Shared::services(&urls).await;
    let (replicas, c) = load_cluster(&shared, &urls).await;

    // 40 proposals at once, alternating replicas, for a role allowed 5 a day.
    c.ok(
        0,
        CONFIGURE,
        json!({ "i": { "agentRole": "swarm", "maxUpdatesPerDay": 5, "cooldownHours": 0, "requireApproval": false } }),
    )
    .await;
    let answers = join_all((0..40).map(|i| {
        let c = c.clone();
        async move {
            c.call(
                i,
                PROPOSE,
                json!({ "role": "swarm", "text": format!("prompt {i}"), "r": format!("p-{i}") }),
            )
            .await
            .unwrap()
        }
    }))
    .await;
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut versions = Vec::new();
    for a in &answers {
        *codes.entry(code(a)).or_default() += 1;
        if let Some(v) = a["data"]["proposeLearningUpdate"]["promptVersion"].as_i64() {
            assert_eq!(
                a["data"]["proposeLearningUpdate"]["status"], "APPLIED",
                "{a}"
            );
            versions.push(v);
        }
    }
    assert_eq!(
        codes,
        BTreeMap::from([
            ("LEARNING_DAILY_LIMIT".to_owned(), 35),
            ("OK".to_owned(), 5)
        ]),
        "{answers:?}"
    );
    versions.sort_unstable();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    // The database agrees: five versions, five applied updates, nothing else stored.
    let db = Database::connect(shared.db_url.as_str()).await.unwrap();
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM prompt_versions WHERE agent_role = 'swarm'").await,
        5
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM learning_updates WHERE agent_role = 'swarm'").await,
        5
    );
    assert_eq!(
        count("SELECT CAST(MAX(version) - MIN(version) + 1 AS BIGINT) FROM prompt_versions WHERE agent_role = 'swarm'").await,
        5
    );
    // A replay on the other replica answers the first result and adds nothing.
    let i = answers.iter().position(|a| code(a) == "OK").unwrap();
    let replay = c
        .ok(
            i + 1,
            PROPOSE,
            json!({ "role": "swarm", "text": format!("prompt {i}"), "r": format!("p-{i}") }),
        )
        .await;
    assert_eq!(replay, answers[i]["data"]);
    assert_eq!(
        count("SELECT COUNT(*) FROM learning_updates WHERE agent_role = 'swarm'").await,
        5
    );

    // Two approvals for the last slot, one on each replica.
    c.ok(
        0,
        CONFIGURE,
        json!({ "i": { "agentRole": "council", "maxUpdatesPerDay": 1, "cooldownHours": 0, "requireApproval": true } }),
    )
    .await;
    let mut pending = Vec::new();
    for i in 0..2 {
        let p = c
            .ok(
                i,
                PROPOSE,
                json!({ "role": "council", "text": format!("rule {i}"), "r": format!("c-{i}") }),
            )
            .await;
        assert_eq!(p["proposeLearningUpdate"]["status"], "PENDING_APPROVAL");
        pending.push(p["proposeLearningUpdate"]["id"].clone());
    }
    let base = c.bases.read().unwrap()[0].clone();
    let approver = operator(&c, &base).await;
    let (a, b) = tokio::join!(
        approver.call(0, APPROVE, json!({ "id": pending[0] })),
        approver.call(1, APPROVE, json!({ "id": pending[1] })),
    );
    let mut outcomes = vec![code(&a.unwrap()), code(&b.unwrap())];
    outcomes.sort();
    assert_eq!(outcomes, vec!["LEARNING_DAILY_LIMIT", "OK"]);
    assert_eq!(
        count("SELECT COUNT(*) FROM learning_updates WHERE agent_role = 'council' AND status = 'PENDING_APPROVAL'").await,
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM prompt_versions WHERE agent_role = 'council'").await,
        1
    );
    drop(replicas);
    shared.cleanup().await;
}
