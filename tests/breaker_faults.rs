//! Circuit breakers on two real replicas (PostgreSQL, NATS, and a Redis of the test's own):
//! one window and one state for both, the half-open probe budget global, a restarted replica
//! agreeing, and a Redis outage under load: each replica falls back to its own window and
//! says so, no request fails, latency holds, and the breakers are shared again once Redis
//! is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    PrivateRedis, ReplicaEnv, WsClient,
    queues::{Cluster, spawn_replica},
};
use serde_json::{Value, json};

const CONFIGURE: &str = "mutation($input: ConfigureCircuitBreakerInput!) { configureCircuitBreaker(input: $input) { name } }";
const ACQUIRE: &str = "mutation($n: String!) { acquireCircuitBreakerPermit(name: $n) { permitted permitId state retryAfterMs } }";
const RECORD: &str = "mutation($p: String!, $o: CallOutcome!) { recordCircuitBreakerOutcome(input: { permitId: $p, outcome: $o, durationMs: 3 }) { counted state } }";
const BREAKER: &str = "query($n: String!) { circuitBreaker(name: $n) { state scope metrics { numberOfCalls probesIssued } } }";

fn prototype(name: &str, wait_ms: i64, probes: i64) -> Value {
    json!({ "input": {
        "name": name, "slidingWindowSize": 5, "minimumNumberOfCalls": 5,
        "failureRateThreshold": 100.0, "waitDurationInOpenStateMs": wait_ms,
        "permittedNumberOfCallsInHalfOpenState": probes, "reason": "test"
    }})
}

/// Acquire on replica `i`, then report `outcome` there: the record's answer.
async fn call(c: &Cluster, i: usize, name: &str, outcome: &str) -> Result<Value, String> {
    let grant = c.call(i, ACQUIRE, json!({ "n": name })).await?;
    if grant.get("errors").is_some() {
        return Err(grant.to_string());
    }
    let g = &grant["data"]["acquireCircuitBreakerPermit"];
    if g["permitted"] != true {
        return Ok(g.clone());
    }
    let res = c
        .call(i, RECORD, json!({ "p": g["permitId"], "o": outcome }))
        .await?;
    if res.get("errors").is_some() {
        return Err(res.to_string());
    }
    Ok(res["data"]["recordCircuitBreakerOutcome"].clone())
}

async fn state_on(c: &Cluster, i: usize, name: &str) -> Value {
    c.ok(i, BREAKER, json!({ "n": name })).await["circuitBreaker"].clone()
}

/// `env` for replica `i` (`AURUM_REPLICA_ID=r<i>`: transitions name who decided them).
fn named(env: &ReplicaEnv, i: usize) -> ReplicaEnv {
    let mut env = env.clone();
    env.set("AURUM_REPLICA_ID", &format!("r{i}"));
    env
}

struct Setup {
    redis: PrivateRedis,
    shared: common::Shared,
    env: ReplicaEnv,
    replicas: Vec<common::Replica>,
    cluster: Cluster,
}

async fn setup(test: &str) -> Option<Setup> {
    let urls = common::services_or_skip(test).await?;
    let Some(redis) = PrivateRedis::start().await else {
        assert!(
            !common::services_required(),
            "could not start a private redis-server"
        );
        common::record_skip(&format!("{test}: no redis-server"));
        return None;
    };
    let shared = common::Shared::services(&urls).await;
    let mut env = ReplicaEnv::of(&shared, Some(&urls));
    env.redis = Some((redis.url.clone(), shared.redis_prefix.clone()));
    // Limits stay on (they use Redis too), sized for a load test from one caller.
    env.set(
        "AURUM_RATE_LIMITS",
        "login=100000/1s,cost=10000000/1s,mutation=100000/1s",
    );
    // One after the other: the first migrates and creates the first admin.
    let mut replicas = Vec::new();
    for i in 0..2 {
        replicas.push(spawn_replica(named(&env, i)).await.unwrap());
    }
    let cluster = Cluster::new(replicas.iter().map(|r| r.base.clone()).collect()).await;
    Some(Setup {
        redis,
        shared,
        env,
        replicas,
        cluster,
    })
}

/// A breaker configured on one replica answers on the other at once. Failures reported on
/// both replicas open one breaker, seen by the other within 200 ms
/// (state and `circuitBreakerChanged`); 50 concurrent acquires over both replicas in
/// `HALF_OPEN` get exactly the permitted probes; a restarted replica agrees on every state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_agree_on_failures_probes_and_restarts() {
    let Some(mut t) = setup("two_replicas_agree_on_failures_probes_and_restarts").await else {
        return;
    };
    let c = t.cluster.clone();
    // A breaker configured on one replica is there on the other at once, before the bus has
    // told it: both configurations and first calls go out together, over and over.
    let names: Vec<String> = (0..20).map(|k| format!("fresh-{k}")).collect();
    let firsts = futures::future::join_all(names.iter().map(|n| {
        let c = c.clone();
        async move {
            c.ok(0, CONFIGURE, prototype(n, 2_000, 3)).await;
            call(&c, 1, n, "SUCCESS").await
        }
    }))
    .await;
    for (n, r) in names.iter().zip(firsts) {
        assert_eq!(
            r.as_ref().map(|v| v["state"].clone()),
            Ok(json!("CLOSED")),
            "{n}: {r:?}"
        );
    }
    c.ok(0, CONFIGURE, prototype("llm", 2_000, 3)).await;
    let ws_url = format!(
        "{}/graphql",
        c.bases.read().unwrap()[1].replace("http://", "ws://")
    );
    let mut ws = WsClient::connect(&ws_url, "graphql-transport-ws", Some(&c.token)).await;
    ws.subscribe(
        "w",
        "subscription { circuitBreakerChanged(name: \"llm\") { kind state replica } }",
        json!({}),
    )
    .await;

    // Four failures spread over both replicas: one window, still closed.
    for i in 0..4 {
        let r = call(&c, i, "llm", "FAILURE").await.unwrap();
        assert_eq!(r["state"], "CLOSED", "{r}");
    }
    assert_eq!(state_on(&c, 1, "llm").await["metrics"]["numberOfCalls"], 4);
    // The fifth, on replica 0, opens it; replica 1 knows at once.
    let r = call(&c, 0, "llm", "FAILURE").await.unwrap();
    assert_eq!(r["state"], "OPEN", "{r}");
    let opened = Instant::now();
    let seen = state_on(&c, 1, "llm").await;
    let state_after = opened.elapsed();
    assert_eq!(seen["state"], "OPEN", "{seen}");
    assert_eq!(seen["scope"], "SHARED", "{seen}");
    let event = loop {
        let e = ws.next_data("w", Duration::from_secs(5)).await;
        let change = e["data"]["circuitBreakerChanged"].clone();
        if change["kind"] == "TRANSITIONED" {
            break change;
        }
    };
    let event_after = opened.elapsed();
    assert_eq!(event["state"], "OPEN", "{event}");
    // Decided on replica 0; replica 1 learnt it from the bus.
    assert_eq!(event["replica"], "r0", "{event}");
    println!("replica 1 saw OPEN: state after {state_after:?}, event after {event_after:?}");
    assert!(
        state_after < Duration::from_millis(200) && event_after < Duration::from_millis(200),
        "replica 1 saw the transition late: state {state_after:?}, event {event_after:?}"
    );
    let refused = c.ok(1, ACQUIRE, json!({ "n": "llm" })).await;
    assert_eq!(refused["acquireCircuitBreakerPermit"]["permitted"], false);

    // After the wait: 50 concurrent acquires over both replicas, exactly 3 probes.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let attempts = (0..50).map(|i| {
        let c = c.clone();
        async move { c.ok(i, ACQUIRE, json!({ "n": "llm" })).await }
    });
    let grants = futures::future::join_all(attempts).await;
    let permitted: Vec<&Value> = grants
        .iter()
        .map(|g| &g["acquireCircuitBreakerPermit"])
        .filter(|g| g["permitted"] == true)
        .collect();
    assert_eq!(permitted.len(), 3, "probes across the fleet: {grants:?}");
    for g in &grants {
        assert_eq!(
            g["acquireCircuitBreakerPermit"]["state"], "HALF_OPEN",
            "{g}"
        );
    }
    // The probes come back (on either replica): closed everywhere.
    for (i, g) in permitted.iter().enumerate() {
        let res = c
            .ok(i, RECORD, json!({ "p": g["permitId"], "o": "SUCCESS" }))
            .await;
        assert_eq!(res["recordCircuitBreakerOutcome"]["counted"], true, "{res}");
    }
    for i in 0..2 {
        assert_eq!(state_on(&c, i, "llm").await["state"], "CLOSED");
    }
    // HALF_OPEN then CLOSED, whichever replica decided each.
    for expected in ["HALF_OPEN", "CLOSED"] {
        let e = ws.next_data("w", Duration::from_secs(5)).await;
        let change = &e["data"]["circuitBreakerChanged"];
        assert_eq!(change["state"], expected, "{e}");
        assert!(
            ["r0", "r1"].contains(&change["replica"].as_str().unwrap()),
            "{e}"
        );
    }

    // Persisted states survive a replica's death: force one open, kill replica 0, restart.
    c.ok(
        1,
        "mutation { forceOpenCircuitBreaker(name: \"llm\", reason: \"restart test\") { state } }",
        json!({}),
    )
    .await;
    t.replicas[0].kill9();
    let again = spawn_replica(named(&t.env, 0)).await.unwrap();
    c.bases.write().unwrap()[0] = again.base.clone();
    t.replicas[0] = again;
    for i in 0..2 {
        assert_eq!(state_on(&c, i, "llm").await["state"], "FORCED_OPEN");
    }
    c.ok(
        0,
        "mutation { resetCircuitBreaker(name: \"llm\", reason: \"done\") { state } }",
        json!({}),
    )
    .await;
    assert_eq!(state_on(&c, 1, "llm").await["state"], "CLOSED");
    drop(t.redis);
    t.shared.cleanup().await;
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// `redis-server` stops while both replicas serve acquire/record pairs: the `redis` breaker
/// opens on each, every request still succeeds, p99 during the outage stays within 2× of
/// normal, `/ready` and the breakers say `REPLICA`; Redis back → shared again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_under_load_fails_no_request() {
    let Some(mut t) = setup("a_redis_outage_under_load_fails_no_request").await else {
        return;
    };
    let c = t.cluster.clone();
    c.ok(0, CONFIGURE, prototype("llm", 2_000, 3)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let c = c.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut samples: Vec<(Duration, Duration)> = Vec::new();
                let mut failures = Vec::new();
                let mut n = 0usize;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    let at = started.elapsed();
                    let t0 = Instant::now();
                    match call(&c, w + n, "llm", "SUCCESS").await {
                        Ok(v) if v["state"] == "CLOSED" => samples.push((at, t0.elapsed())),
                        other => failures.push(format!("{other:?}")),
                    }
                }
                (samples, failures)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    let outage_from = started.elapsed();
    t.redis.stop().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Each replica says where its windows are, stays in service, and its `redis` breaker
    // opened.
    for i in 0..2 {
        let base = c.bases.read().unwrap()[i].clone();
        let res = reqwest::get(format!("{base}/ready")).await.unwrap();
        assert_eq!(
            res.status(),
            200,
            "a Redis outage takes no replica out of service"
        );
        let ready: Value = res.json().await.unwrap();
        assert_eq!(ready["status"], "degraded", "{ready}");
        assert_eq!(ready["circuitBreakers"]["scope"], "replica", "{ready}");
        let b = state_on(&c, i, "llm").await;
        assert_eq!(b["scope"], "REPLICA", "{b}");
        let r = state_on(&c, i, "redis").await;
        assert!(
            ["OPEN", "HALF_OPEN"].contains(&r["state"].as_str().unwrap()),
            "the redis breaker on replica {i}: {r}"
        );
    }
    let outage_to = started.elapsed();
    assert!(t.redis.restart().await, "redis-server starts again");
    // Back to shared on both (the `redis` breaker probes within its 5 s wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..2 {
        loop {
            if state_on(&c, i, "llm").await["scope"] == "SHARED" {
                break;
            }
            assert!(Instant::now() < deadline, "replica {i} never shared again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Release);
    let mut normal = Vec::new();
    let mut outage = Vec::new();
    let mut failures = Vec::new();
    for w in workers {
        let (samples, f) = w.await.unwrap();
        failures.extend(f);
        for (at, took) in samples {
            if at < outage_from {
                normal.push(took);
            } else if at < outage_to {
                outage.push(took);
            }
        }
    }
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    let (n_normal, n_outage) = (normal.len(), outage.len());
    let (p_normal, p_outage) = (p99(normal), p99(outage));
    println!(
        "p99 of acquire+record: {p_normal:?} normal ({n_normal} pairs), {p_outage:?} during the outage ({n_outage} pairs)"
    );
    assert!(
        n_outage > 100,
        "too few calls during the outage: {n_outage}"
    );
    assert!(
        p_outage <= p_normal * 2,
        "p99 during the outage {p_outage:?} > 2 × normal {p_normal:?}"
    );
    // Shared again: a change on one replica is the other's.
    c.ok(
        0,
        "mutation { forceOpenCircuitBreaker(name: \"llm\", reason: \"after\") { state } }",
        json!({}),
    )
    .await;
    assert_eq!(state_on(&c, 1, "llm").await["state"], "FORCED_OPEN");
    drop(t.replicas);
    t.shared.cleanup().await;
}
