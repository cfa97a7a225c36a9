//! Sandbox runs on two real replicas (PostgreSQL, NATS): queued runs are claimed once each
//! (`SKIP LOCKED`) by whichever replica has room; a subscriber on the replica not running a
//! run receives its whole output; `kill -9` of the replica running a container makes the run
//! `LOST` (found by lease expiry on the survivor, which tells the subscriber) and the orphaned
//! container is swept; SIGTERM of the replica running one kills it and records it `LOST` at
//! once, container removed, and the process exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{
    ReplicaEnv, Shared,
    queues::{LOAD_RATE_LIMITS, spawn_replica},
    sandbox::{Client, fleet_containers, sandbox_or_skip},
    services_or_skip,
};
use futures::future::join_all;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_spread_over_replicas_and_survive_a_killed_one() {
    let test = "runs_spread_over_replicas_and_survive_a_killed_one";
    let Some(urls) = services_or_skip(test).await else {
        return;
    };
    if !sandbox_or_skip(test, "runc").await {
        return;
    }
    let shared = Shared::services(&urls).await;
    let mut env = ReplicaEnv::of(&shared, Some(&urls));
    env.set(
        "AURUM_RATE_LIMITS",
        &format!("{LOAD_RATE_LIMITS},sandbox=1000/1s"),
    );
    env.set("AURUM_SANDBOX_LEASE_SECONDS", "3");
    env.set("AURUM_SANDBOX_CONCURRENCY", "2");
    let mut replicas = Vec::new();
    for i in 0..2 {
        let mut e = env.clone();
        e.set("AURUM_REPLICA_ID", &format!("r{i}"));
        // One after the other: the first migrates and creates the admin.
        replicas.push(spawn_replica(e).await.unwrap());
    }
    let token = common::queues::Cluster::new(replicas.iter().map(|r| r.base.clone()).collect())
        .await
        .token;
    let api: Vec<Client> = replicas
        .iter()
        .map(|r| Client::new(&r.base, &token))
        .collect();

    // 1. Twenty runs queued on both replicas: each runs once, on whichever had room.
    let ids = join_all((0..20).map(|i| {
        let api = api[i % 2].clone();
        async move {
            api.start("shell", &format!("echo run {i}"), json!({}))
                .await
        }
    }))
    .await;
    let mut by_replica: BTreeMap<String, usize> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        let run = api[(i + 1) % 2].wait_final(id, LIMIT).await;
        assert_eq!(run["status"], "SUCCEEDED", "{run}");
        assert_eq!(
            api[0].output_text(id).await,
            format!("run {i}\n"),
            "ran exactly once"
        );
        *by_replica
            .entry(run["replica"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(by_replica.values().sum::<usize>(), 20);
    assert_eq!(
        by_replica.len(),
        2,
        "both replicas took queued runs: {by_replica:?}"
    );

    // 2. A subscriber on the replica that does not run it receives the whole output.
    let code = "import time\nfor i in range(100):\n    print(f'{i:03d}' + 'z' * 197)\n    time.sleep(0.01)";
    let id = api[0].start("python", code, json!({})).await;
    let running = api[0]
        .wait_until(&id, LIMIT, |r| r["status"] != "QUEUED")
        .await;
    let runner = usize::from(running["replica"] == "r1");
    let other = &api[1 - runner];
    let followed = other.follow(&id, 0, None, LIMIT).await;
    let expected: String = (0..100)
        .map(|i| format!("{i:03}{}\n", "z".repeat(197)))
        .collect();
    assert!(
        followed.bytes == expected.as_bytes(),
        "every byte, in order, once"
    );
    assert_eq!(followed.end["run"]["status"], "SUCCEEDED");

    // 3. kill -9 of the replica running a container: LOST on the survivor, container swept.
    let id = api[0]
        .start(
            "shell",
            "echo started; sleep 120",
            json!({ "limits": { "timeoutMs": 60000 } }),
        )
        .await;
    let running = api[0]
        .wait_until(&id, LIMIT, |r| {
            r["status"] == "RUNNING" && r["storedBytes"] == 8
        })
        .await;
    let victim = usize::from(running["replica"] == "r1");
    let survivor = api[1 - victim].clone();
    assert_eq!(
        fleet_containers(&shared.fleet).await.len(),
        1,
        "its container runs"
    );
    let mut ws = survivor.ws().await;
    ws.subscribe(
        "out",
        common::sandbox::OUTPUT,
        json!({ "id": id, "from": 0 }),
    )
    .await;
    let first = ws.next_data("out", LIMIT).await;
    assert_eq!(
        first["data"]["sandboxRunOutput"]["text"], "started\n",
        "{first}"
    );
    let killed = Instant::now();
    replicas[victim].kill9();
    let end = ws.next_data("out", Duration::from_secs(30)).await;
    let end = &end["data"]["sandboxRunOutput"];
    assert_eq!(
        (end["done"].as_bool(), end["run"]["status"].as_str()),
        (Some(true), Some("LOST")),
        "{end}"
    );
    let lost = survivor.run(&id).await;
    assert!(
        lost["error"]
            .as_str()
            .unwrap()
            .contains(&format!("r{victim}")),
        "{lost}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "found within the lease and a sweep: {:?}",
        killed.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fleet_containers(&shared.fleet).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the orphan was not swept: {:?}",
            fleet_containers(&shared.fleet).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The survivor goes on running new work.
    let after = survivor.start("shell", "echo after", json!({})).await;
    assert_eq!(
        survivor.wait_final(&after, LIMIT).await["status"],
        "SUCCEEDED"
    );

    // 4. SIGTERM of the replica running a container: it kills the run and records it `LOST`
    //    itself (before any lease could expire), removes the container and exits 0.
    let mut e = env.clone();
    e.set("AURUM_REPLICA_ID", "r2");
    replicas.push(spawn_replica(e).await.unwrap());
    let id = api[1 - victim]
        .start(
            "shell",
            "echo started; sleep 120",
            json!({ "limits": { "timeoutMs": 60000 } }),
        )
        .await;
    let running = api[1 - victim]
        .wait_until(&id, LIMIT, |r| {
            r["status"] == "RUNNING" && r["storedBytes"] == 8
        })
        .await;
    let stopping: usize = running["replica"].as_str().unwrap()[1..].parse().unwrap();
    let staying = if stopping == 2 { 1 - victim } else { 2 };
    let watcher = Client::new(&replicas[staying].base, &token);
    let mut ws = watcher.ws().await;
    ws.subscribe(
        "out",
        common::sandbox::OUTPUT,
        json!({ "id": id, "from": 0 }),
    )
    .await;
    let first = ws.next_data("out", LIMIT).await;
    assert_eq!(first["data"]["sandboxRunOutput"]["text"], "started\n");
    let signalled = Instant::now();
    replicas[stopping].terminate();
    let end = ws.next_data("out", Duration::from_secs(10)).await;
    assert_eq!(
        end["data"]["sandboxRunOutput"]["run"]["status"], "LOST",
        "{end}"
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "recorded by the stopping replica, not by a lease sweep: {:?}",
        signalled.elapsed()
    );
    let lost = watcher.run(&id).await;
    assert!(
        lost["error"].as_str().unwrap().contains("shut down"),
        "{lost}"
    );
    assert!(
        fleet_containers(&shared.fleet).await.is_empty(),
        "the stopping replica removed its container"
    );
    let mut stopped = replicas.remove(stopping);
    let status = tokio::task::spawn_blocking(move || stopped.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    drop(replicas);
    shared.cleanup().await;
}
