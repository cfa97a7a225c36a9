//! Work queues and the DLQ end to end over GraphQL, on both profiles: the delivery contract
//! (claim, ack, nack, extend, reject; unknown, lapsed and settled deliveries), dead-lettering
//! with its consequences (task FAILED, reservations released, an escalation, the live
//! `dlqMessageAdded` event), and the DLQ API (filters, resolve, retry, redrive, purge, stats).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, Profile, WsClient, error_code};
use serde_json::{Value, json};

both_profiles!(
    delivery_contract,
    dead_letters_and_their_consequences,
    dlq_operations
);

/// `default` with the default rules; `fast` for tests: 3 deliveries of 1 s, no backoff.
const QUEUES: &str = r#"[{"name":"default"},{"name":"fast","maxDeliver":3,"ackWaitSeconds":1,"backoffSeconds":[0]}]"#;

const TASK: &str = "mutation($t: String!) { createTask(input: { title: $t }) { id } }";
const ENQUEUE: &str = "mutation($task: ID!, $q: String!, $p: String, $r: String!) { enqueueTask(input: { taskId: $task, queue: $q, payload: $p, requestId: $r }) { queue sequence taskId } }";
const CLAIM: &str = "mutation($q: String!, $max: Int, $wait: Int) { claimTaskMessages(queue: $q, max: $max, waitMs: $wait) { deliveryId queue sequence taskId attempt payload ackDeadline } }";
const ACK: &str = "mutation($d: String!) { ackTaskMessage(deliveryId: $d) { deliveryId } }";
const NACK: &str = "mutation($d: String!, $e: String!, $delay: Int) { nackTaskMessage(deliveryId: $d, error: $e, delaySeconds: $delay) { deliveryId attempt } }";
const REJECT: &str = "mutation($d: String!, $r: String!) { rejectTaskMessage(deliveryId: $d, reason: $r) { deliveryId } }";
const EXTEND: &str =
    "mutation($d: String!) { extendTaskMessage(deliveryId: $d) { deliveryId ackDeadline } }";
const DLQ: &str = "query($f: DlqFilterInput, $first: Int, $after: String) { dlqMessages(filter: $f, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id queue subject stream streamSequence taskId payload reason attempts errors { attempt error } lastError firstDeliveredAt lastDeliveredAt deadAt status note redriveId } } } }";

async fn env(profile: Profile, name: &str) -> Option<Env> {
    Env::with(profile, name, |c| c.queues = QUEUES.parse().unwrap()).await
}

async fn task(s: &common::TestServer, title: &str) -> String {
    s.ok(TASK, json!({ "t": title })).await["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn claim(s: &common::TestServer, queue: &str, max: i32, wait: i32) -> Vec<Value> {
    s.ok(CLAIM, json!({ "q": queue, "max": max, "wait": wait }))
        .await["claimTaskMessages"]
        .as_array()
        .unwrap()
        .clone()
}

fn id_of(delivery: &Value) -> String {
    delivery["deliveryId"].as_str().unwrap().to_owned()
}

async fn delivery_contract(profile: Profile, name: &str) {
    let Some(env) = env(profile, name).await else {
        return;
    };
    let s = &env.server;
    let t = task(s, "queued").await;

    // Enqueue is idempotent per requestId; the same key with another input is refused.
    let vars = json!({ "task": t, "q": "default", "p": "{\"step\":1}", "r": "enq-1" });
    let first = s.ok(ENQUEUE, vars.clone()).await["enqueueTask"].clone();
    assert_eq!(first["queue"], "default");
    let again = s.ok(ENQUEUE, vars).await["enqueueTask"].clone();
    assert_eq!(again, first);
    let reused = s
        .gql(
            ENQUEUE,
            json!({ "task": t, "q": "default", "p": "other", "r": "enq-1" }),
        )
        .await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED", "{reused}");

    // Bad input is coded and stores nothing.
    for (vars, field) in [
        (json!({ "task": t, "q": "nope", "r": "b1" }), "queue"),
        (
            json!({ "task": t, "q": "default", "p": "x".repeat(64 * 1024 + 1), "r": "b2" }),
            "payload",
        ),
        (json!({ "task": t, "q": "default", "r": "" }), "requestId"),
    ] {
        let res = s.gql(ENQUEUE, vars).await;
        assert_eq!(error_code(&res), "BAD_USER_INPUT", "{res}");
        assert_eq!(res["errors"][0]["extensions"]["field"], field, "{res}");
    }
    let unknown_queue = s
        .gql(ENQUEUE, json!({ "task": t, "q": "nope", "r": "b1" }))
        .await;
    assert!(
        unknown_queue["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("configured: default, fast"),
        "{unknown_queue}"
    );
    let missing = s
        .gql(
            ENQUEUE,
            json!({ "task": "01a214a0-d3e9-720f-a444-8e7b40e5ec5b", "q": "default", "r": "b3" }),
        )
        .await;
    assert_eq!(error_code(&missing), "NOT_FOUND");
    for (max, wait, field) in [
        (0, 0, "max"),
        (101, 0, "max"),
        (1, -1, "waitMs"),
        (1, 30_001, "waitMs"),
    ] {
        let res = s
            .gql(CLAIM, json!({ "q": "default", "max": max, "wait": wait }))
            .await;
        assert_eq!(error_code(&res), "BAD_USER_INPUT", "{res}");
        assert_eq!(res["errors"][0]["extensions"]["field"], field);
    }

    // One message was stored: one delivery, with its payload.
    let got = claim(s, "default", 10, 0).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let d = &got[0];
    assert_eq!(d["taskId"], t.as_str());
    assert_eq!(d["attempt"], 1);
    assert_eq!(d["payload"], "{\"step\":1}");
    assert_eq!(d["sequence"], first["sequence"]);
    assert!(claim(s, "default", 10, 0).await.is_empty(), "claimed twice");

    // Extend pushes the deadline out; a negative delay is refused and changes nothing.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let extended = s.ok(EXTEND, json!({ "d": id_of(d) })).await["extendTaskMessage"].clone();
    assert!(
        extended["ackDeadline"].as_str().unwrap() > d["ackDeadline"].as_str().unwrap(),
        "{extended} vs {d}"
    );
    let negative = s
        .gql(NACK, json!({ "d": id_of(d), "e": "x", "delay": -1 }))
        .await;
    assert_eq!(error_code(&negative), "BAD_USER_INPUT");
    assert_eq!(negative["errors"][0]["extensions"]["field"], "delaySeconds");

    // Nack with no delay: back at once, as attempt 2; the old delivery is no longer live.
    s.ok(
        NACK,
        json!({ "d": id_of(d), "e": "provider timeout", "delay": 0 }),
    )
    .await;
    let settled = s.gql(ACK, json!({ "d": id_of(d) })).await;
    assert_eq!(error_code(&settled), "DELIVERY_SETTLED", "{settled}");
    let second = claim(s, "default", 1, 2_000).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["attempt"], 2);
    let old = s.gql(EXTEND, json!({ "d": id_of(d) })).await;
    assert_eq!(error_code(&old), "DELIVERY_EXPIRED", "{old}");

    // Ack once; a second ack is refused and changes nothing.
    s.ok(ACK, json!({ "d": id_of(&second[0]) })).await;
    let twice = s.gql(ACK, json!({ "d": id_of(&second[0]) })).await;
    assert_eq!(error_code(&twice), "DELIVERY_SETTLED", "{twice}");
    for unknown in [
        "garbage".to_owned(),
        "999999.1.00000000000000000000000000000000".to_owned(),
        format!(
            "{}.2.00000000000000000000000000000000",
            second[0]["sequence"]
        ),
    ] {
        let res = s.gql(ACK, json!({ "d": unknown })).await;
        assert_eq!(error_code(&res), "NOT_FOUND", "{unknown}: {res}");
    }

    // A delivery that lapses: DELIVERY_EXPIRED, and the message comes back after ack_wait.
    let t2 = task(s, "slow").await;
    s.ok(ENQUEUE, json!({ "task": t2, "q": "fast", "r": "enq-fast" }))
        .await;
    let lapsing = claim(s, "fast", 1, 0).await;
    assert_eq!(lapsing.len(), 1);
    let back = claim(s, "fast", 1, 3_000).await;
    assert_eq!(back.len(), 1, "the lapsed message did not come back");
    assert_eq!(back[0]["attempt"], 2);
    let late = s.gql(ACK, json!({ "d": id_of(&lapsing[0]) })).await;
    assert_eq!(error_code(&late), "DELIVERY_EXPIRED", "{late}");
    s.ok(ACK, json!({ "d": id_of(&back[0]) })).await;

    // A waiting claim returns as soon as a message arrives.
    let waiter = {
        let client = s.client.clone();
        let url = s.url("/graphql");
        let token = s.token.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let res: Value = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "query": CLAIM, "variables": { "q": "default", "max": 5, "wait": 10_000 } }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), res)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.ok(
        ENQUEUE,
        json!({ "task": t, "q": "default", "r": "enq-wake" }),
    )
    .await;
    let (waited, res) = waiter.await.unwrap();
    assert_eq!(
        res["data"]["claimTaskMessages"].as_array().unwrap().len(),
        1,
        "{res}"
    );
    assert!(waited < Duration::from_secs(5), "claim waited {waited:?}");
    env.finish().await;
}

/// Watches `dlqMessageAdded` on a fresh socket.
async fn watch_dlq(s: &common::TestServer) -> WsClient {
    let mut ws = WsClient::connect(&s.ws_url(), "graphql-transport-ws", Some(&s.token)).await;
    ws.subscribe(
        "dlq",
        "subscription { dlqMessageAdded { cursor message { id queue taskId reason attempts lastError } } }",
        json!({}),
    )
    .await;
    // The subscription is live once an unrelated event went by; a short pause is enough
    // for the server to attach it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws
}

async fn dead_letters_and_their_consequences(profile: Profile, name: &str) {
    let Some(env) = env(profile, name).await else {
        return;
    };
    let s = &env.server;
    let mut ws = watch_dlq(s).await;

    // A task in progress with an agent and a live reservation.
    let t = task(s, "doomed").await;
    let agent = s
        .ok(
            "mutation { registerAgent(input: { name: \"w1\", role: \"developer\" }) { id } }",
            json!({}),
        )
        .await["registerAgent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.ok(
        "mutation($t: ID!, $a: ID!) { assignTask(taskId: $t, agentId: $a) { id } }",
        json!({ "t": t, "a": agent }),
    )
    .await;
    s.ok(
        "mutation { createBudget(input: { tenantId: \"acme\", projectId: \"p\", total: 1000 }) { id } }",
        json!({}),
    )
    .await;
    s.ok(
        "mutation($t: ID!) { reserveBudget(input: { tenantId: \"acme\", projectId: \"p\", amount: 300, requestId: \"r1\", taskId: $t }) { id } }",
        json!({ "t": t }),
    )
    .await;

    // Three failed deliveries on `fast` exhaust it.
    s.ok(
        ENQUEUE,
        json!({ "task": t, "q": "fast", "p": "work", "r": "e1" }),
    )
    .await;
    for attempt in 1..=3 {
        let got = claim(s, "fast", 1, 3_000).await;
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0]["attempt"], attempt);
        s.ok(
            NACK,
            json!({ "d": id_of(&got[0]), "e": format!("boom {attempt}") }),
        )
        .await;
    }
    assert!(
        claim(s, "fast", 1, 500).await.is_empty(),
        "an exhausted message came back"
    );

    let event = ws.next_data("dlq", Duration::from_secs(10)).await;
    let added = &event["data"]["dlqMessageAdded"]["message"];
    assert_eq!(added["taskId"], t.as_str(), "{event}");
    assert_eq!(added["reason"], "MAX_DELIVERIES");
    assert_eq!(added["attempts"], 3);
    assert_eq!(added["lastError"], "boom 3");

    let list = s.ok(DLQ, json!({ "f": { "taskId": t } })).await["dlqMessages"].clone();
    assert_eq!(list["totalCount"], 1);
    let row = &list["edges"][0]["node"];
    assert_eq!(row["payload"], "work");
    assert_eq!(row["queue"], "fast");
    assert_eq!(row["status"], "OPEN");
    // Where the message was: the database queue, or the JetStream task stream.
    match profile {
        Profile::Embedded => assert_eq!(row["stream"], "database"),
        Profile::Services => {
            assert!(row["stream"].as_str().unwrap().ends_with("_TASKS"), "{row}");
            assert!(
                row["subject"].as_str().unwrap().ends_with(".tasks.fast"),
                "{row}"
            );
        }
    }
    assert_eq!(
        row["errors"],
        json!([
            { "attempt": 1, "error": "boom 1" },
            { "attempt": 2, "error": "boom 2" },
            { "attempt": 3, "error": "boom 3" }
        ])
    );
    assert!(row["firstDeliveredAt"].as_str().unwrap() <= row["lastDeliveredAt"].as_str().unwrap());

    // Its consequences, committed with it.
    let state = s
        .ok(
            "query($t: ID!) { task(id: $t) { state assignee { id } escalations { reason severity status } } budgetState(tenantId: \"acme\", projectId: \"p\") { reserved used } }",
            json!({ "t": t }),
        )
        .await;
    assert_eq!(state["task"]["state"], "FAILED", "{state}");
    assert!(
        state["task"]["assignee"].is_null() || state["task"]["assignee"]["id"] == agent.as_str()
    );
    let escalation = &state["task"]["escalations"][0];
    assert_eq!(escalation["status"], "OPEN");
    assert_eq!(escalation["severity"], "HIGH");
    assert!(
        escalation["reason"].as_str().unwrap().contains("boom 3"),
        "{escalation}"
    );
    assert_eq!(state["budgetState"]["reserved"], 0, "{state}");
    let agent_now = s
        .ok(
            "query($a: ID!) { agent(id: $a) { status currentTask { id } } }",
            json!({ "a": agent }),
        )
        .await;
    assert_eq!(agent_now["agent"]["status"], "IDLE", "{agent_now}");
    let audit = s
        .ok(
            "{ auditLog(filter: { action: \"dlq.capture\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditLog"]["totalCount"], 1);

    // Rejected as poison: straight to the DLQ on its first delivery.
    let t2 = task(s, "poison").await;
    s.ok(ENQUEUE, json!({ "task": t2, "q": "default", "r": "e2" }))
        .await;
    let got = claim(s, "default", 1, 2_000).await;
    s.ok(
        REJECT,
        json!({ "d": id_of(&got[0]), "r": "unparseable payload" }),
    )
    .await;
    let again = s
        .gql(REJECT, json!({ "d": id_of(&got[0]), "r": "x" }))
        .await;
    assert_eq!(error_code(&again), "DELIVERY_SETTLED");
    let event = ws.next_data("dlq", Duration::from_secs(10)).await;
    assert_eq!(
        event["data"]["dlqMessageAdded"]["message"]["reason"],
        "REJECTED"
    );
    assert_eq!(event["data"]["dlqMessageAdded"]["message"]["attempts"], 1);

    // A worker that crashes on every delivery: the last lapse is dead-lettered by the reaper.
    let t3 = task(s, "crashy").await;
    s.ok(ENQUEUE, json!({ "task": t3, "q": "fast", "r": "e3" }))
        .await;
    for attempt in 1..=3 {
        let got = claim(s, "fast", 1, 4_000).await;
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0]["attempt"], attempt);
    }
    let event = ws.next_data("dlq", Duration::from_secs(10)).await;
    let added = &event["data"]["dlqMessageAdded"]["message"];
    assert_eq!(added["taskId"], t3.as_str());
    assert_eq!(added["attempts"], 3);
    assert!(
        added["lastError"].as_str().unwrap().contains("timed out"),
        "{added}"
    );

    // The gauges an autoscaler reads: open dead letters per queue.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let m = s.metrics().await;
        let fast = common::metric_value(&m, "aurum_dlq_depth{queue=\"fast\"}");
        let default = common::metric_value(&m, "aurum_dlq_depth{queue=\"default\"}");
        let pending = common::metric_value(&m, "aurum_queue_pending{queue=\"fast\"}");
        if (fast, default, pending) == (2.0, 1.0, 0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gauges: fast {fast}, default {default}, pending {pending}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.finish().await;
}

async fn dlq_operations(profile: Profile, name: &str) {
    let Some(env) = env(profile, name).await else {
        return;
    };
    let s = &env.server;
    // Twelve dead letters: rejected on their first delivery.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let t = task(s, &format!("t{i}")).await;
        s.ok(
            ENQUEUE,
            json!({ "task": t, "q": "default", "p": format!("p{i}"), "r": format!("d{i}") }),
        )
        .await;
        tasks.push(t);
    }
    let got = claim(s, "default", 12, 0).await;
    assert_eq!(got.len(), 12);
    for (i, d) in got.iter().enumerate() {
        let reason = if i % 2 == 0 {
            "even poison"
        } else {
            "odd poison"
        };
        s.ok(REJECT, json!({ "d": id_of(d), "r": reason })).await;
    }

    // Filters, count and pages.
    let page = s.ok(DLQ, json!({ "first": 5 })).await["dlqMessages"].clone();
    assert_eq!(page["totalCount"], 12);
    assert_eq!(page["edges"].as_array().unwrap().len(), 5);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let next = s
        .ok(
            DLQ,
            json!({ "first": 10, "after": page["pageInfo"]["endCursor"] }),
        )
        .await["dlqMessages"]
        .clone();
    assert_eq!(next["edges"].as_array().unwrap().len(), 7);
    let odd =
        s.ok(DLQ, json!({ "f": { "errorContains": "odd" } })).await["dlqMessages"]["totalCount"]
            .clone();
    assert_eq!(odd, 6);
    let none =
        s.ok(DLQ, json!({ "f": { "errorContains": "%" } })).await["dlqMessages"]["totalCount"]
            .clone();
    assert_eq!(none, 0, "LIKE wildcards in the filter are literal");
    let bad_range = s
        .gql(
            DLQ,
            json!({ "f": { "from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z" } }),
        )
        .await;
    assert_eq!(error_code(&bad_range), "BAD_USER_INPUT");

    let ids: Vec<String> = page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .collect();

    // Resolve with a note, once.
    const RESOLVE: &str = "mutation($id: ID!, $n: String!) { resolveDlqMessage(id: $id, note: $n) { status note resolvedBy } }";
    let resolved = s
        .ok(RESOLVE, json!({ "id": ids[0], "n": "known bad input" }))
        .await;
    assert_eq!(resolved["resolveDlqMessage"]["status"], "RESOLVED");
    let twice = s.gql(RESOLVE, json!({ "id": ids[0], "n": "again" })).await;
    assert_eq!(error_code(&twice), "CONFLICT");
    let empty = s.gql(RESOLVE, json!({ "id": ids[1], "n": "  " })).await;
    assert_eq!(error_code(&empty), "BAD_USER_INPUT");

    // Retry: back on its queue once (a repeated requestId replays), its task PENDING again.
    const RETRY: &str = "mutation($id: ID!, $r: String!) { retryDlqMessage(id: $id, requestId: $r) { id status taskId } }";
    let retried = s.ok(RETRY, json!({ "id": ids[1], "r": "retry-1" })).await;
    assert_eq!(retried["retryDlqMessage"]["status"], "RETRIED");
    let replay = s.ok(RETRY, json!({ "id": ids[1], "r": "retry-1" })).await;
    assert_eq!(replay, retried);
    let other_key = s.gql(RETRY, json!({ "id": ids[1], "r": "retry-2" })).await;
    assert_eq!(error_code(&other_key), "CONFLICT");
    let retried_task = retried["retryDlqMessage"]["taskId"].as_str().unwrap();
    let state = s
        .ok(
            "query($t: ID!) { task(id: $t) { state } }",
            json!({ "t": retried_task }),
        )
        .await;
    assert_eq!(state["task"]["state"], "PENDING");
    let back = claim(s, "default", 10, 1_000).await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["taskId"], retried_task);
    s.ok(ACK, json!({ "d": id_of(&back[0]) })).await;

    // Stats: open dead letters per queue.
    let stats = s
        .ok(
            "{ dlqStats { queue depth oldestAgeSeconds pending } }",
            json!({}),
        )
        .await;
    let default = stats["dlqStats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["depth"], 10, "{stats}");
    assert_eq!(default["pending"], 0);
    assert!(default["oldestAgeSeconds"].as_f64().unwrap() >= 0.0);

    // Redrive: a filter matching nothing is refused; a dry run counts; a run moves them all.
    const REDRIVE: &str = "mutation($f: DlqFilterInput!, $rate: Int!, $dry: Boolean!, $r: String!) { redriveDlq(input: { filter: $f, ratePerSecond: $rate, dryRun: $dry, requestId: $r }) { id status total moved } }";
    let nothing = s
        .gql(
            REDRIVE,
            json!({ "f": { "queue": "fast" }, "rate": 10, "dry": false, "r": "rv0" }),
        )
        .await;
    assert_eq!(error_code(&nothing), "BAD_USER_INPUT", "{nothing}");
    assert_eq!(nothing["errors"][0]["extensions"]["field"], "filter");
    let bad_rate = s
        .gql(
            REDRIVE,
            json!({ "f": {}, "rate": 0, "dry": false, "r": "rv1" }),
        )
        .await;
    assert_eq!(error_code(&bad_rate), "BAD_USER_INPUT");
    let dry = s
        .ok(
            REDRIVE,
            json!({ "f": { "queue": "default" }, "rate": 10, "dry": true, "r": "rv2" }),
        )
        .await;
    assert_eq!(dry["redriveDlq"]["total"], 10);
    assert_eq!(dry["redriveDlq"]["status"], "COMPLETED");

    let mut ws = WsClient::connect(&s.ws_url(), "graphql-transport-ws", Some(&s.token)).await;
    let started = std::time::Instant::now();
    let job = s
        .ok(
            REDRIVE,
            json!({ "f": { "queue": "default" }, "rate": 20, "dry": false, "r": "rv3" }),
        )
        .await["redriveDlq"]
        .clone();
    assert_eq!(job["status"], "RUNNING");
    assert_eq!(job["total"], 10);
    ws.subscribe(
        "p",
        "subscription($j: ID!) { dlqRedriveProgress(jobId: $j, after: \"0\") { cursor redrive { status moved total } } }",
        json!({ "j": job["id"] }),
    )
    .await;
    let mut last = Value::Null;
    while last["status"] != "COMPLETED" {
        let ev = ws.next_data("p", Duration::from_secs(10)).await;
        last = ev["data"]["dlqRedriveProgress"]["redrive"].clone();
    }
    assert_eq!(last["moved"], 10, "{last}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "10 at 20/s took {:?}",
        started.elapsed()
    );
    let open =
        s.ok(DLQ, json!({ "f": { "resolved": false } })).await["dlqMessages"]["totalCount"].clone();
    assert_eq!(open, 0);
    let back = claim(s, "default", 100, 1_000).await;
    assert_eq!(back.len(), 10, "every redriven letter is on the queue once");

    // Purge: only what died before the cut-off; audited.
    let purged = s
        .ok(
            "mutation($t: DateTime!) { purgeDlq(filter: { queue: \"default\" }, olderThan: $t) }",
            json!({ "t": "2000-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(purged["purgeDlq"], 0);
    let purged = s
        .ok(
            "mutation($t: DateTime!) { purgeDlq(filter: { queue: \"default\" }, olderThan: $t) }",
            json!({ "t": "2100-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(purged["purgeDlq"], 12);
    let audit = s
        .ok(
            "{ auditLog(filter: { action: \"dlq.purge\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditLog"]["totalCount"], 2);
    env.finish().await;
}

/// The JetStream queues are declared by every replica at start-up: a second replica changes
/// nothing, a changed delivery count is applied to the consumer, and a stream JetStream
/// cannot change in place stops start-up with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declaration_is_idempotent_and_refuses_what_it_cannot_change() {
    let name = "queue_declaration_is_idempotent_and_refuses_what_it_cannot_change";
    let Some(urls) = common::services_or_skip(name).await else {
        return;
    };
    let shared = common::Shared::services(&urls).await;
    let js = async_nats::jetstream::new(async_nats::connect(&urls.nats).await.unwrap());
    let stream = format!("{}_TASKS", shared.nats_prefix.to_uppercase());
    let config = |queues: &str| {
        let mut c = shared.config(Some(&urls));
        c.queues = queues.parse().unwrap();
        c
    };
    let max_deliver = || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            js.get_consumer_from_stream("work", &stream).await.unwrap();
        let info = consumer.info().await.unwrap();
        (info.config.max_deliver, info.config.ack_wait)
    };
    let first = common::TestServer::start(config(r#"[{"name":"work","maxDeliver":3}]"#)).await;
    let second = common::TestServer::start(config(r#"[{"name":"work","maxDeliver":3}]"#)).await;
    assert_eq!(max_deliver().await, (3, Duration::from_secs(30)));
    second.stop().await;
    first.stop().await;
    let changed = common::TestServer::start(config(
        r#"[{"name":"work","maxDeliver":4,"ackWaitSeconds":45}]"#,
    ))
    .await;
    assert_eq!(max_deliver().await, (4, Duration::from_secs(45)));
    changed.stop().await;

    // A task stream someone declared as a work queue: JetStream cannot turn it into limits
    // retention, so start-up refuses, naming the stream.
    js.delete_stream(&stream).await.unwrap();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{}.tasks.*", shared.nats_prefix)],
        retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .unwrap();
    let refused = aurum::AppState::build(config("work")).await;
    let message = format!("{:#}", refused.err().expect("start-up refused"));
    assert!(
        message.contains(&stream) && message.contains("cannot change them in place"),
        "{message}"
    );
    shared.cleanup().await;
}
