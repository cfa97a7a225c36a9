//! The DLQ recovering from what happens while nobody watches, on the services profile with
//! real processes: advisories raised while no replica runs reach the DLQ when one starts, and
//! a redrive survives the death of the replica running it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, AckKind};
use common::{
    ReplicaEnv, Shared,
    queues::{CLAIM, Cluster, ENQUEUE, dead_letters, key_of, spawn_replica},
    services_or_skip,
};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::json;

/// Three deliveries of 2 s, no backoff.
const QUEUES: &str = r#"[{"name":"alpha","maxDeliver":3,"ackWaitSeconds":2,"backoffSeconds":[0]}]"#;

/// An async-nats handle on the test's task stream, on `url`.
async fn jetstream_on(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisories_raised_while_no_replica_runs_reach_the_dlq() {
    let name = "advisories_raised_while_no_replica_runs_reach_the_dlq";
    let Some(urls) = services_or_skip(name).await else {
        return;
    };
    let shared = Shared::services(&urls).await;
    let mut env = ReplicaEnv::of(&shared, Some(&urls));
    env.set("AURUM_QUEUES", QUEUES);
    let replica = spawn_replica(env.clone()).await.unwrap();
    let cluster = Cluster::new(vec![replica.base.clone()]).await;
    let task = cluster
        .ok(
            0,
            "mutation { createTask(input: { title: \"offline\" }) { id } }",
            json!({}),
        )
        .await["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for key in 0..5 {
        cluster
            .ok(0, ENQUEUE, json!({ "task": task, "q": "alpha", "p": format!("m-{key}"), "r": format!("off-{key}") }))
            .await;
    }
    drop(replica); // every replica is down from here
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A NATS worker fails four messages on every delivery and terminates the fifth.
    let js = jetstream_on(&urls.nats).await;
    let stream = format!("{}_TASKS", shared.nats_prefix.to_uppercase());
    let consumer: jetstream::consumer::PullConsumer =
        js.get_consumer_from_stream("alpha", &stream).await.unwrap();
    let mut deliveries: HashMap<u64, i64> = HashMap::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let mut batch = consumer
            .batch()
            .max_messages(10)
            .expires(Duration::from_millis(300))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = batch.next().await {
            let key = key_of(std::str::from_utf8(&m.payload).unwrap()).unwrap();
            deliveries.insert(key, m.info().unwrap().delivered);
            let kind = if key == 4 {
                AckKind::Term
            } else {
                AckKind::Nak(None)
            };
            m.ack_with(kind).await.unwrap();
        }
        if deliveries.values().filter(|d| **d == 3).count() == 4 && deliveries.contains_key(&4) {
            // One more pull, so the server notices the exhausted ones and says so.
            let _ = consumer
                .fetch()
                .max_messages(1)
                .messages()
                .await
                .unwrap()
                .next()
                .await;
            break;
        }
    }
    assert_eq!(
        deliveries.values().filter(|d| **d == 3).count(),
        4,
        "{deliveries:?}"
    );
    let db = Database::connect(&shared.db_url).await.unwrap();
    assert!(
        dead_letters(&db).await.is_empty(),
        "recorded with no replica running"
    );

    // One replica starts: the captured advisories bring every message to the DLQ.
    let replica = spawn_replica(env).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = dead_letters(&db).await;
        if dead.len() == 5 || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead.len(), 5, "{dead:?}");
    for key in 0..4 {
        assert_eq!(dead[&key], (3, 1), "message {key}");
    }
    assert_eq!(dead[&4], (1, 1));
    let reasons = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT reason FROM dlq_messages ORDER BY payload",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get::<String>("", "reason").unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        reasons,
        [
            "MAX_DELIVERIES",
            "MAX_DELIVERIES",
            "MAX_DELIVERIES",
            "MAX_DELIVERIES",
            "REJECTED"
        ]
    );
    // Removed from the work stream once recorded.
    let mut info = js.get_stream(&stream).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while info.info().await.unwrap().state.messages != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(info.info().await.unwrap().state.messages, 0);
    drop(replica);
    shared.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_survives_the_death_of_its_replica() {
    let name = "a_redrive_survives_the_death_of_its_replica";
    let Some(urls) = services_or_skip(name).await else {
        return;
    };
    let shared = Shared::services(&urls).await;
    let mut env = ReplicaEnv::of(&shared, Some(&urls));
    // Deliveries long enough to reject 100 claimed messages one by one on a busy machine.
    env.set(
        "AURUM_QUEUES",
        r#"[{"name":"beta","maxDeliver":3,"ackWaitSeconds":60,"backoffSeconds":[0]}]"#,
    );
    let mut replicas = HashMap::new();
    for id in ["a", "b"] {
        let mut e = env.clone();
        e.set("AURUM_REPLICA_ID", id);
        replicas.insert(id, spawn_replica(e).await.unwrap());
    }
    let cluster = Cluster::new(vec![replicas["a"].base.clone(), replicas["b"].base.clone()]).await;
    let task = cluster
        .ok(
            0,
            "mutation { createTask(input: { title: \"redrive\" }) { id } }",
            json!({}),
        )
        .await["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // 500 dead letters: enqueued, then rejected as poison.
    const N: u64 = 500;
    for key in 0..N {
        let k = usize::try_from(key).unwrap();
        cluster
            .ok(k, ENQUEUE, json!({ "task": task, "q": "beta", "p": format!("m-{key}"), "r": format!("rd-{key}") }))
            .await;
    }
    let mut rejected = 0;
    while rejected < N {
        let got = cluster
            .ok(0, CLAIM, json!({ "q": "beta", "max": 100, "wait": 1000 }))
            .await;
        for d in got["claimTaskMessages"].as_array().unwrap() {
            cluster
                .ok(0, "mutation($d: String!) { rejectTaskMessage(deliveryId: $d, reason: \"poison\") { deliveryId } }", json!({ "d": d["deliveryId"] }))
                .await;
            rejected += 1;
        }
    }
    let db = Database::connect(&shared.db_url).await.unwrap();
    assert_eq!(dead_letters(&db).await.len() as u64, N);

    let job = cluster
        .ok(0, "mutation { redriveDlq(input: { filter: { queue: \"beta\" }, ratePerSecond: 100, requestId: \"redrive-500\" }) { id total status } }", json!({}))
        .await["redriveDlq"]
        .clone();
    assert_eq!(job["total"], N);
    let job_id = job["id"].as_str().unwrap().to_owned();
    const JOB: &str = "query($id: ID!) { dlqRedrive(id: $id) { status moved total owner } }";
    // Mid-redrive, the replica running it dies.
    let owner = loop {
        let j = cluster.ok(0, JOB, json!({ "id": job_id })).await["dlqRedrive"].clone();
        if j["moved"].as_i64().unwrap() >= 100
            && let Some(owner) = j["owner"].as_str()
        {
            break owner.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut victim = replicas.remove(owner.as_str()).unwrap();
    victim.kill9();
    let survivor = replicas.values().next().unwrap().base.clone();
    *cluster.bases.write().unwrap() = vec![survivor];
    let moved_at_kill =
        cluster.ok(0, JOB, json!({ "id": job_id })).await["dlqRedrive"]["moved"].clone();
    println!("killed replica {owner} with {moved_at_kill} of {N} moved");

    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let j = cluster.ok(0, JOB, json!({ "id": job_id })).await["dlqRedrive"].clone();
        if j["status"] == "COMPLETED" || Instant::now() > deadline {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["moved"], N, "{done}");
    assert_ne!(
        done["owner"],
        owner.as_str(),
        "another replica took it over"
    );

    // Every message is back on its queue exactly once.
    let mut back: HashMap<u64, u32> = HashMap::new();
    loop {
        let got = cluster
            .ok(0, CLAIM, json!({ "q": "beta", "max": 100, "wait": 1500 }))
            .await;
        let list = got["claimTaskMessages"].as_array().unwrap().clone();
        if list.is_empty() {
            break;
        }
        for d in list {
            *back
                .entry(key_of(d["payload"].as_str().unwrap()).unwrap())
                .or_default() += 1;
            cluster
                .ok(
                    0,
                    "mutation($d: String!) { ackTaskMessage(deliveryId: $d) { deliveryId } }",
                    json!({ "d": d["deliveryId"] }),
                )
                .await;
        }
    }
    assert_eq!(back.len() as u64, N, "messages back on the queue");
    assert!(back.values().all(|n| *n == 1), "a message came back twice");
    let open = cluster
        .ok(
            0,
            "{ dlqMessages(filter: { resolved: false }) { totalCount } }",
            json!({}),
        )
        .await["dlqMessages"]["totalCount"]
        .clone();
    assert_eq!(open, 0);
    drop(replicas);
    shared.cleanup().await;
}
