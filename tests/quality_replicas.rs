//! Peer review on two real replicas sharing PostgreSQL and NATS: the twelve voters of a
//! panel each vote on both replicas at once (24 concurrent votes, quorum 1 so only the last
//! vote completes it). Each voter counts once (12 succeed, 12 are `CONFLICT`), the review
//! passes, one audit entry completes it, and a subscriber on each replica sees exactly one
//! `COMPLETED` among the twelve events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{WsClient, queues::load_cluster};
use futures::future::join_all;
use serde_json::{Value, json};

const VOTE: &str = "mutation($r: ID!, $a: ID!) { castReviewVote(input: { reviewId: $r, agentId: $a, decision: APPROVE, reasoning: \"fine\", confidence: 1 }) { status } }";
const SEATS: usize = 12;

fn code(res: &Value) -> String {
    res["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("OK")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_voter_counts_once_across_two_replicas() {
    let test = "each_voter_counts_once_across_two_replicas";
    let Some(urls) = common::services_or_skip(test).await else {
        return;
    };
    let shared = common::Shared::services(&urls).await;
    let (replicas, c) = load_cluster(&shared, &urls).await;

    let register = |name: String, role: &'static str| {
        let c = c.clone();
        async move {
            c.ok(
                0,
                "mutation($n: String!, $r: String!) { registerAgent(input: { name: $n, role: $r }) { id } }",
                json!({ "n": name, "r": role }),
            )
            .await["registerAgent"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let author = register("author".into(), "developer").await;
    let mut voters = Vec::new();
    for i in 0..SEATS {
        voters.push(register(format!("voter-{i:02}"), "critic").await);
    }
    let task = c
        .ok(
            0,
            "mutation { createTask(input: { title: \"contested\" }) { id } }",
            json!({}),
        )
        .await["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.ok(
        0,
        "mutation($t: ID!, $a: ID!) { assignTask(taskId: $t, agentId: $a) { id } }",
        json!({ "t": task, "a": author }),
    )
    .await;
    let mv = "mutation($t: ID!, $s: TaskState!) { updateTaskState(id: $t, state: $s) { state } }";
    c.ok(0, mv, json!({ "t": task, "s": "IN_PROGRESS" })).await;
    for gate in ["code_quality", "has_documentation", "performance_ok"] {
        c.ok(
            1,
            "mutation($t: ID!, $g: String!) { reportGateResult(input: { taskId: $t, gate: $g, passed: true }) { gate } }",
            json!({ "t": task, "g": gate }),
        )
        .await;
    }
    c.ok(0, mv, json!({ "t": task, "s": "REVIEWING" })).await;
    let review = c
        .ok(
            0,
            "mutation($t: ID!, $who: [ID!]) { startPeerReview(input: { taskId: $t, quorum: 1, reviewers: $who, requestId: \"r\" }) { id totalWeight } }",
            json!({ "t": task, "who": voters }),
        )
        .await["startPeerReview"]
        .clone();
    assert_eq!(review["totalWeight"], SEATS as f64);
    let id = review["id"].as_str().unwrap().to_owned();

    // A subscriber on each replica.
    let mut sockets = Vec::new();
    for r in &replicas {
        let url = format!("{}/graphql", r.base.replacen("http", "ws", 1));
        let mut ws = WsClient::connect(&url, "graphql-transport-ws", Some(&c.token)).await;
        ws.subscribe(
            "review",
            "subscription($id: ID!) { peerReviewChanged(reviewId: $id) { kind review { status } } }",
            json!({ "id": id }),
        )
        .await;
        sockets.push(ws);
    }
    // Let both subscriptions go live before the votes.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every voter on both replicas at once.
    let answers = join_all((0..SEATS * 2).map(|i| {
        let c = c.clone();
        let vars = json!({ "r": id, "a": voters[i / 2] });
        async move { c.call(i, VOTE, vars).await.unwrap() }
    }))
    .await;
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for a in &answers {
        *codes.entry(code(a)).or_default() += 1;
    }
    assert_eq!(
        codes,
        BTreeMap::from([("CONFLICT".to_owned(), SEATS), ("OK".to_owned(), SEATS)]),
        "{answers:?}"
    );
    for pair in answers.chunks(2) {
        let ok = pair.iter().filter(|a| code(a) == "OK").count();
        assert_eq!(ok, 1, "each voter counts once: {pair:?}");
    }
    let passed = answers
        .iter()
        .filter(|a| a["data"]["castReviewVote"]["status"] == "PASSED")
        .count();
    assert_eq!(passed, 1, "only the last vote completes the review");
    let now = c
        .ok(
            1,
            "query($id: ID!) { peerReview(id: $id) { status score voters { decision } } }",
            json!({ "id": id }),
        )
        .await["peerReview"]
        .clone();
    assert_eq!(
        (now["status"].as_str(), now["score"].as_f64()),
        (Some("PASSED"), Some(1.0))
    );
    assert_eq!(
        c.ok(
            0,
            "{ auditLog(filter: { action: \"review.complete\" }) { totalCount } }",
            json!({})
        )
        .await["auditLog"]["totalCount"],
        1
    );

    // Each replica's subscriber: twelve events, exactly one of them COMPLETED.
    for ws in &mut sockets {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..SEATS {
            let e = ws.next_data("review", Duration::from_secs(15)).await;
            *kinds
                .entry(
                    e["data"]["peerReviewChanged"]["kind"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
                .or_default() += 1;
        }
        assert_eq!(
            kinds,
            BTreeMap::from([("COMPLETED".to_owned(), 1), ("VOTED".to_owned(), SEATS - 1)])
        );
        let extra = tokio::time::timeout(
            Duration::from_millis(1500),
            ws.next_data("review", Duration::from_secs(10)),
        )
        .await;
        assert!(extra.is_err(), "no event after the completion: {extra:?}");
    }
    drop(replicas);
    shared.cleanup().await;
}
