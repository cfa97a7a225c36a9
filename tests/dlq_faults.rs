//! The zero-loss checker, on the services profile with real processes: thousands of
//! messages, workers through GraphQL and native NATS, a replica killed with SIGKILL and
//! restarted, `nats-server` restarted (SIGTERM: see `PrivateNats::stop_gracefully` for why not
//! SIGKILL), the database refusing dead letters for a few seconds. `dlq_recovery.rs` has the
//! advisories raised with no replica running and the redrive surviving its replica.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, AckKind};
use common::{
    PrivateNats, ReplicaEnv, Shared,
    queues::{CLAIM, Cluster, ENQUEUE, dead_letters, key_of, spawn_replica},
    services_or_skip,
};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;

/// Three queues, each with 3 deliveries of 2 s and no backoff, so faults resolve quickly.
const QUEUES: &str = r#"[{"name":"alpha","maxDeliver":3,"ackWaitSeconds":2,"backoffSeconds":[0]},{"name":"beta","maxDeliver":3,"ackWaitSeconds":2,"backoffSeconds":[0]},{"name":"gamma","maxDeliver":3,"ackWaitSeconds":2,"backoffSeconds":[0]}]"#;
const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

/// What workers do with message `key` on delivery `attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Ack,
    Nack,
    Crash,
    Reject,
}

fn fate(key: u64, attempt: i64) -> Act {
    match key % 10 {
        5 if attempt == 1 => Act::Nack,
        6 if attempt == 1 => Act::Crash,
        7 => Act::Reject,
        8 => Act::Nack,
        9 => Act::Crash,
        _ => Act::Ack,
    }
}

/// What the workers observed.
#[derive(Default)]
struct Ledger {
    /// Highest delivery number seen per message.
    seen: HashMap<u64, i64>,
    /// Acks the server confirmed.
    acked: HashSet<u64>,
    /// Acks sent whose answer was lost (a replica died under them).
    maybe: HashSet<u64>,
    deliveries: u64,
    /// Claims and fetches that failed on the way back (a replica killed, NATS restarting):
    /// the server may have delivered up to 10 messages on each that no worker saw.
    lost_claims: u64,
}

type Shared2 = Arc<Mutex<Ledger>>;

fn observe(ledger: &Shared2, key: u64, attempt: i64) {
    let mut l = ledger.lock().unwrap();
    l.deliveries += 1;
    let seen = l.seen.entry(key).or_insert(0);
    *seen = (*seen).max(attempt);
}

/// A worker claiming through GraphQL on replica `i` until `stop`.
async fn graphql_worker(cluster: Cluster, i: usize, ledger: Shared2, stop: Arc<RwLock<bool>>) {
    let mut n = 0usize;
    while !*stop.read().unwrap() {
        let queue = NAMES[(i + n) % NAMES.len()];
        n += 1;
        let res = cluster
            .call(i, CLAIM, json!({ "q": queue, "max": 10, "wait": 300 }))
            .await;
        let list = res
            .ok()
            .and_then(|r| r["data"]["claimTaskMessages"].as_array().cloned());
        let Some(list) = list else {
            ledger.lock().unwrap().lost_claims += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for d in list {
            let key = key_of(d["payload"].as_str().unwrap()).unwrap();
            let attempt = d["attempt"].as_i64().unwrap();
            observe(&ledger, key, attempt);
            let id = d["deliveryId"].as_str().unwrap();
            let (query, vars) = match fate(key, attempt) {
                Act::Crash => continue,
                Act::Ack => (
                    "mutation($d: String!) { ackTaskMessage(deliveryId: $d) { deliveryId } }",
                    json!({ "d": id }),
                ),
                Act::Nack => (
                    "mutation($d: String!) { nackTaskMessage(deliveryId: $d, error: \"worker error\") { deliveryId } }",
                    json!({ "d": id }),
                ),
                Act::Reject => (
                    "mutation($d: String!) { rejectTaskMessage(deliveryId: $d, reason: \"poison\") { deliveryId } }",
                    json!({ "d": id }),
                ),
            };
            let answer = cluster.call(i, query, vars).await;
            if fate(key, attempt) == Act::Ack {
                let mut l = ledger.lock().unwrap();
                match answer {
                    Ok(v) if v.get("errors").is_none() => {
                        l.acked.insert(key);
                    }
                    // A delivery no longer live: this ack did nothing, the message comes back.
                    Ok(v)
                        if ["DELIVERY_EXPIRED", "DELIVERY_SETTLED", "NOT_FOUND"]
                            .contains(&common::error_code(&v).as_str()) => {}
                    // No answer, or NATS unavailable while the ack was out: the server may
                    // have taken it (its confirmation lost), so the message may not come back.
                    _ => {
                        l.maybe.insert(key);
                    }
                }
            }
        }
    }
}

/// A worker speaking NATS, pulling from the same consumers, until `stop`.
async fn native_worker(
    url: String,
    stream: String,
    w: usize,
    ledger: Shared2,
    stop: Arc<RwLock<bool>>,
) {
    let client = loop {
        match async_nats::connect(&url).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let js = jetstream::new(client);
    let mut n = 0usize;
    while !*stop.read().unwrap() {
        let queue = NAMES[(w + n) % NAMES.len()];
        n += 1;
        let consumer: Result<jetstream::consumer::PullConsumer, _> =
            js.get_consumer_from_stream(queue, &stream).await;
        let Ok(consumer) = consumer else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let batch = consumer
            .batch()
            .max_messages(10)
            .expires(Duration::from_millis(300))
            .messages()
            .await;
        let Ok(mut batch) = batch else {
            ledger.lock().unwrap().lost_claims += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(message) = batch.next().await {
            let Ok(message) = message else {
                ledger.lock().unwrap().lost_claims += 1;
                break;
            };
            let Ok(info) = message.info() else { continue };
            let attempt = info.delivered;
            let key = key_of(std::str::from_utf8(&message.payload).unwrap()).unwrap();
            observe(&ledger, key, attempt);
            match fate(key, attempt) {
                Act::Crash => {}
                Act::Ack => {
                    let done = message.double_ack().await;
                    let mut l = ledger.lock().unwrap();
                    if done.is_ok() {
                        l.acked.insert(key);
                    } else {
                        l.maybe.insert(key);
                    }
                }
                Act::Nack => {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
                Act::Reject => {
                    let _ = message.ack_with(AckKind::Term).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_loss_under_crashes_and_restarts() {
    let name = "zero_loss_under_crashes_and_restarts";
    let Some(urls) = services_or_skip(name).await else {
        return;
    };
    let mut nats = PrivateNats::new();
    assert!(nats.start().await, "a private nats-server");
    let shared = Shared::services(&urls).await;
    let mut env = ReplicaEnv::of(&shared, Some(&urls));
    env.nats = Some((nats.url(), shared.nats_prefix.clone()));
    env.set("AURUM_QUEUES", QUEUES);
    let mut envs = Vec::new();
    for id in ["a", "b"] {
        let mut e = env.clone();
        e.set("AURUM_REPLICA_ID", id);
        envs.push(e);
    }
    let mut a = spawn_replica(envs[0].clone()).await.unwrap();
    let b = spawn_replica(envs[1].clone()).await.unwrap();
    let cluster = Cluster::new(vec![a.base.clone(), b.base.clone()]).await;
    let db = Database::connect(&shared.db_url).await.unwrap();
    let stream = format!("{}_TASKS", shared.nats_prefix.to_uppercase());

    let mut tasks = Vec::new();
    for i in 0..20 {
        let t = cluster
            .ok(
                i,
                "mutation($t: String!) { createTask(input: { title: $t }) { id } }",
                json!({ "t": format!("z{i}") }),
            )
            .await;
        tasks.push(t["createTask"]["id"].as_str().unwrap().to_owned());
    }

    let ledger: Shared2 = Arc::default();
    let stop = Arc::new(RwLock::new(false));
    let mut workers = Vec::new();
    for i in 0..4 {
        workers.push(tokio::spawn(graphql_worker(
            cluster.clone(),
            i,
            Arc::clone(&ledger),
            Arc::clone(&stop),
        )));
    }
    for w in 0..2 {
        workers.push(tokio::spawn(native_worker(
            nats.url(),
            stream.clone(),
            w,
            Arc::clone(&ledger),
            Arc::clone(&stop),
        )));
    }

    // Producers: 2,100 messages at about 100 a second, each retried until it is stored.
    const TOTAL: u64 = 2_100;
    let recorded = Arc::new(Mutex::new(HashSet::new()));
    let mut producers = Vec::new();
    for p in 0..3u64 {
        let cluster = cluster.clone();
        let tasks = tasks.clone();
        let recorded = Arc::clone(&recorded);
        producers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(30));
            for key in (p..TOTAL).step_by(3) {
                tick.tick().await;
                let k = usize::try_from(key).unwrap();
                let vars = json!({ "task": tasks[k % tasks.len()], "q": NAMES[k % 3], "p": format!("m-{key}"), "r": format!("m-{key}") });
                cluster.ok(k, ENQUEUE, vars).await;
                recorded.lock().unwrap().insert(key);
            }
        }));
    }

    // The faults, while messages flow and die.
    let started = Instant::now();
    let at = |s: u64| {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            started + Duration::from_secs(s),
        ))
    };
    at(3).await;
    a.kill9();
    cluster.bases.write().unwrap()[0] = b.base.clone();
    at(6).await;
    a = spawn_replica(envs[0].clone()).await.unwrap();
    cluster.bases.write().unwrap()[0] = a.base.clone();
    println!("replica a killed at 3 s, back at {:?}", started.elapsed());
    at(9).await;
    nats.stop_gracefully().await;
    at(12).await;
    assert!(nats.start().await, "nats-server restarted");
    println!("nats-server down from 9 s to {:?}", started.elapsed());
    at(15).await;
    let refuse = "CREATE OR REPLACE FUNCTION aurum_test_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'writes refused by the test'; END $$ LANGUAGE plpgsql; \
                  CREATE TRIGGER aurum_test_refuse BEFORE INSERT ON dlq_messages FOR EACH ROW EXECUTE FUNCTION aurum_test_refuse();";
    db.execute_unprepared(refuse).await.unwrap();
    let before_refusal = dead_letters(&db).await.len();
    at(19).await;
    let during_refusal = dead_letters(&db).await.len();
    db.execute_unprepared("DROP TRIGGER aurum_test_refuse ON dlq_messages;")
        .await
        .unwrap();
    println!("dead letters refused from 15 s to {:?}", started.elapsed());
    assert_eq!(
        during_refusal, before_refusal,
        "a dead letter was written while writes were refused"
    );

    for p in producers {
        p.await.unwrap();
    }
    let recorded: HashSet<u64> = recorded.lock().unwrap().clone();
    assert_eq!(recorded.len() as u64, TOTAL);

    // Quiescence: every recorded message acked or dead-lettered.
    println!("all enqueued at {:?}", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_report = Instant::now();
    loop {
        let dead = dead_letters(&db).await;
        let unresolved: Vec<u64> = {
            let l = ledger.lock().unwrap();
            recorded
                .iter()
                .filter(|k| !l.acked.contains(k) && !l.maybe.contains(k) && !dead.contains_key(k))
                .copied()
                .collect()
        };
        if unresolved.is_empty() {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) || Instant::now() >= deadline {
            last_report = Instant::now();
            println!(
                "{} unresolved at {:?}: {:?}",
                unresolved.len(),
                started.elapsed(),
                &unresolved[..unresolved.len().min(10)]
            );
            let seen: Vec<Option<i64>> = {
                let l = ledger.lock().unwrap();
                unresolved
                    .iter()
                    .take(10)
                    .map(|k| l.seen.get(k).copied())
                    .collect()
            };
            println!("  deliveries seen: {seen:?}");
            if let Ok(client) = async_nats::connect(nats.url()).await {
                let js = jetstream::new(client);
                for queue in NAMES {
                    if let Ok(mut c) = js
                        .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
                            queue, &stream,
                        )
                        .await
                        && let Ok(info) = c.info().await
                    {
                        println!(
                            "  {queue}: pending {}, out with workers {}, redelivered {}",
                            info.num_pending, info.num_ack_pending, info.num_redelivered
                        );
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} messages neither acked nor dead-lettered 60 s after the last enqueue",
            unresolved.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Anything still in flight settles (a lost ack's message would come back by now).
    tokio::time::sleep(Duration::from_secs(5)).await;
    *stop.write().unwrap() = true;
    for w in workers {
        w.await.unwrap();
    }

    let dead = dead_letters(&db).await;
    // The workers are done: the ledger is final.
    let l = Arc::try_unwrap(ledger)
        .ok()
        .expect("no worker holds the ledger")
        .into_inner()
        .unwrap();
    let mut both = Vec::new();
    let mut missing = Vec::new();
    let mut twice = Vec::new();
    // DLQ attempts are the server's deliveries; workers see all of them except those lost on
    // the way back when a claim failed (at most 10 per failed claim).
    let mut attempts_off = Vec::new();
    let mut fewer = Vec::new();
    for key in &recorded {
        let acked = l.acked.contains(key) || l.maybe.contains(key);
        match (acked, dead.get(key)) {
            (true, Some(_)) => both.push(*key),
            (false, None) => missing.push(*key),
            (_, Some((attempts, rows))) => {
                if *rows != 1 {
                    twice.push(*key);
                }
                let seen = l.seen.get(key).copied().unwrap_or(0);
                if *attempts < seen {
                    fewer.push((*key, *attempts, seen));
                } else if *attempts > seen {
                    attempts_off.push((*key, *attempts, seen));
                }
            }
            (true, None) => {}
        }
    }
    let acked = recorded
        .iter()
        .filter(|k| l.acked.contains(k) || l.maybe.contains(k))
        .count();
    println!(
        "zero-loss checker: {} enqueued, {} deliveries seen ({} claims lost on the way back), {} acked ({} of them with a lost answer), {} dead-lettered; in both: {}, missing: {}, dead-lettered twice: {}, attempts above the deliveries seen: {}, below: {}",
        recorded.len(),
        l.deliveries,
        l.lost_claims,
        acked,
        l.maybe.difference(&l.acked).count(),
        dead.len(),
        both.len(),
        missing.len(),
        twice.len(),
        attempts_off.len(),
        fewer.len()
    );
    assert!(both.is_empty(), "acked and dead-lettered: {both:?}");
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(twice.is_empty(), "dead-lettered twice: {twice:?}");
    assert!(
        fewer.is_empty(),
        "DLQ attempts below the deliveries workers saw: {fewer:?}"
    );
    assert!(
        attempts_off.len() as u64 <= 10 * l.lost_claims,
        "DLQ attempts above the deliveries seen, more than lost claims explain: {attempts_off:?}"
    );
    assert!(
        dead.len() as u64 >= TOTAL * 3 / 10,
        "too few dead letters: {}",
        dead.len()
    );
    drop(a);
    drop(b);
    shared.cleanup().await;
}
