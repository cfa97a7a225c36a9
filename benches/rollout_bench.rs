//! Rollout benchmark: `cargo bench --profile image --bench rollout-bench`. Needs PostgreSQL
//! (`AURUM_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`), Redis
//! (`AURUM_BENCH_REDIS_URL`, default `redis://127.0.0.1:6379`), NATS with JetStream
//! (`AURUM_BENCH_NATS_URL`, default `nats://127.0.0.1:4222`) and HAProxy 2.6
//! (`/usr/sbin/haproxy`, Debian package `haproxy`). It migrates a fresh database once, starts
//! three real `aurum serve` replicas on it (each its own port and `AURUM_REPLICA_ID`; Redis keys
//! and NATS subjects under a prefix of this run; `AURUM_SHUTDOWN_DRAIN_SECONDS=2`), and HAProxy
//! in front of them as a child process (health check `GET /ready` every 300 ms, down after one
//! failure, up after two successes; `retries 3`, `option redispatch`, `retry-on conn-failure
//! empty-response response-timeout`, which HAProxy applies to POSTs too: safe here because
//! every mutation carries a `requestId`). Through the balancer it drives:
//!
//! - HTTP load: [`HTTP_CLIENTS`] keep-alive clients sending `budgetState` queries and
//!   `reserveBudget` + `commitBudget` pairs (each with its own `requestId`) on [`BUDGETS`]
//!   budgets, and one paced client spending on the watched budget. A client that gets a
//!   transport error or a 5xx counts a client-visible failure and sends the same request again,
//!   with the same `requestId`, until it is answered;
//! - [`SUBSCRIBERS`] WebSocket clients (graphql-transport-ws) subscribed to `budgetChanged` of
//!   the watched budget that reconnect as graphql-ws' client does (randomised backoff, first
//!   retry after 100-500 ms, exponential after) and resume with `after: <last cursor>`.
//!
//! Phases: warm-up; a rolling restart (SIGTERM to each replica in turn, wait for its exit,
//! start it again on its port, wait until HAProxy has it up again); a `kill -9` of one replica
//! under load, then its restart; the same HTTP load for [`SCALE_PHASE`] each with 1, 2 and 3
//! replicas in the backend (the others in maintenance; on 2 cores this does not scale, it is
//! printed for the record). At the end it reads the database: budget invariants (`0 ≤ used`,
//! `0 ≤ reserved`, `used + reserved ≤ total`, each ledger replays to its row), exactly one
//! ledger effect per request id the clients sent (none missing, none twice, none unknown) and
//! each budget's `used` equal to the sum the clients committed.
//!
//! Goals (the run exits non-zero when one fails): zero client-visible failed HTTP requests
//! during the rolling restart; every subscription back (connection acknowledged and subscribed
//! again) within 5 s of each disconnect and delivering events at the end; budget invariants
//! and exactly-once effects per request id hold; no request ends in an unexpected error.
//! Replica and HAProxy logs are left in `target/rollout-bench/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "rollout/checks.rs"]
mod checks;
mod common;
#[path = "rollout/figures.rs"]
mod figures;
#[path = "rollout/haproxy.rs"]
mod haproxy;
#[path = "rollout/load.rs"]
mod load;
#[path = "rollout/replicas.rs"]
mod replicas;
#[path = "rollout/state.rs"]
mod state;
#[path = "rollout/subscribers.rs"]
mod subscribers;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use figures::{http_figures, ms, print_http, print_subs, secs, sub_figures};
use haproxy::{Haproxy, backend_of, counters, is_down, is_up};
use replicas::roll;
use state::Shared;

/// Concurrent HTTP clients of the load (plus one paced client on the watched budget).
const HTTP_CLIENTS: usize = 12;
/// WebSocket subscribers of the watched budget.
const SUBSCRIBERS: usize = 300;
/// Budgets the HTTP clients spend on (besides the watched one).
const BUDGETS: usize = 4;
/// Share of the HTTP clients' requests that are `budgetState` queries.
const QUERY_SHARE: f64 = 0.25;
/// The paced client's pause between two pairs on the watched budget: 2 events per pair to
/// every subscriber.
const TICK: Duration = Duration::from_millis(100);
/// Load before the rolling restart (every subscriber connected first).
const WARM_UP: Duration = Duration::from_secs(5);
/// Load after each phase's last event before its figures are taken (reconnects settle).
const SETTLE: Duration = Duration::from_secs(2);
/// Load between the `kill -9` and the restart of the killed replica.
const KILL_WINDOW: Duration = Duration::from_secs(5);
/// Length of each scale measurement (1, 2 and 3 replicas).
const SCALE_PHASE: Duration = Duration::from_secs(10);
/// Goal: each disconnected subscriber subscribed again within this.
const RECONNECT_GOAL: Duration = Duration::from_secs(5);
/// A request still failing after this is abandoned (counted as an error).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// One attempt's limit (HAProxy's own `timeout server` is 10 s).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause before a client sends a failed request again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The replicas' drain (`/ready` 503, still serving) and shutdown limit.
const DRAIN_SECONDS: &str = "2";
const SHUTDOWN_TIMEOUT_SECONDS: &str = "10";
const REPLICAS: usize = 3;
const TENANT: &str = "rollout";
const WATCHED: &str = "watched";
const RESERVE_AMOUNT: i64 = 10;
const TOTAL: i64 = 1_000_000_000_000;
const JWT_SECRET: &str = "rollout-bench-jwt-secret-0123456789abcdef";
const HAPROXY: &str = "/usr/sbin/haproxy";
/// HAProxy's backend (and the stats rows of its servers).
const BACKEND: &str = "replicas";

/// Phases, as the figures name them (index = `Shared::phase`).
const PHASES: [&str; 7] = [
    "warm-up",
    "rolling restart",
    "kill -9",
    "recovery",
    "scale: 1 replica",
    "scale: 2 replicas",
    "scale: 3 replicas",
];
const WARM: u8 = 0;
const ROLLING: u8 = 1;
const KILL: u8 = 2;
const RECOVERY: u8 = 3;
const SCALE: u8 = 4;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = runtime.block_on(bench());
    if !ok {
        eprintln!("rollout benchmark: a goal failed (see the summary above)");
        std::process::exit(1);
    }
}

async fn bench() -> bool {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let pg = var(
        "AURUM_BENCH_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432",
    );
    let redis = var("AURUM_BENCH_REDIS_URL", "redis://127.0.0.1:6379");
    let nats = var("AURUM_BENCH_NATS_URL", "nats://127.0.0.1:4222");
    if !Path::new(HAPROXY).exists() {
        eprintln!("{HAPROXY} is missing: apt-get install -y haproxy (or scripts/setup)");
        return false;
    }
    let (admin, db_url, db_name) = common::fresh_database(&pg, "aurum_rollout").await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("aurumr{}", &id[..12]);
    println!("database {db_name}; Redis key and NATS subject prefix {prefix}");
    // A panic in the run still drops the database and the run's streams and keys.
    let run = tokio::spawn(run(db_url, redis.clone(), nats.clone(), prefix.clone()));
    let ok = match run.await {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("the run panicked: {e}");
            false
        }
    };
    common::drop_database(&admin, &db_name).await;
    cleanup_streams_and_keys(&nats, &redis, &prefix).await;
    ok
}

/// The run's JetStream streams (the shared NATS keeps them on disk) and Redis keys.
async fn cleanup_streams_and_keys(nats: &str, redis_url: &str, prefix: &str) {
    if let Ok(Ok(client)) =
        tokio::time::timeout(Duration::from_secs(2), async_nats::connect(nats)).await
    {
        let js = async_nats::jetstream::new(client);
        for stream in ["EVENTS", "TASKS", "QUEUE_ADVISORIES"] {
            let _ = js
                .delete_stream(format!("{}_{stream}", prefix.to_uppercase()))
                .await;
        }
    }
    if let Ok(client) = redis::Client::open(redis_url)
        && let Ok(mut con) = client.get_multiplexed_async_connection().await
    {
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await
            else {
                break;
            };
            if !keys.is_empty() {
                let _: Result<u64, _> = redis::cmd("DEL").arg(keys).query_async(&mut con).await;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

async fn run(db_url: String, redis: String, nats: String, prefix: String) -> bool {
    let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/rollout-bench");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // Migrations once, then replicas that do not migrate.
    let migrated = Command::new(env!("CARGO_BIN_EXE_aurum"))
        .args(["migrate", "up"])
        .env("AURUM_DATABASE_URL", &db_url)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(migrated.success(), "aurum migrate up: {migrated}");
    let mut replicas = replicas::start_all(&db_url, &redis, &nats, &prefix, &logs).await;
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let lb = Haproxy::start(&ports, &logs);
    for r in &replicas {
        if lb
            .wait_status(&r.name, is_up, Duration::from_secs(15))
            .await
            .is_none()
        {
            println!(
                "HAProxy does not have {} up (status {:?}); see {}",
                r.name,
                lb.status(&r.name).await,
                logs.join("haproxy.log").display()
            );
            return false;
        }
    }
    println!(
        "HAProxy on {} with {REPLICAS} replicas up; logs in {}",
        lb.addr,
        logs.display()
    );

    let token = common::login(&lb.addr).await;
    let projects = load::create_budgets(&http, &lb.addr, &token).await;

    let shared = Arc::new(Shared::new(WARM));
    let run_key = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let http_tasks = load::spawn_clients(&shared, &lb.addr, &token, &run_key, &projects);
    let sub_tasks = subscribers::spawn_all(&shared, &lb.addr, &token);

    // Warm-up, with every subscriber connected.
    println!("\n== warm-up ==");
    let started = Instant::now();
    let c0 = counters(&lb).await;
    let connected = async {
        while shared.live_subs.load(Ordering::Relaxed) < SUBSCRIBERS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let all_connected = tokio::time::timeout(Duration::from_secs(30), connected)
        .await
        .is_ok();
    println!(
        "  {}/{SUBSCRIBERS} subscribers connected after {:.1} s",
        shared.live_subs.load(Ordering::Relaxed),
        secs(started.elapsed())
    );
    tokio::time::sleep(WARM_UP).await;
    let f = http_figures(&shared, WARM);
    print_http("warm-up", &f, started.elapsed(), (c0, counters(&lb).await));

    // Rolling restart.
    println!(
        "\n== rolling restart: SIGTERM each replica in turn (drain {DRAIN_SECONDS} s), start it again =="
    );
    shared.set_phase(ROLLING);
    let started = Instant::now();
    let c0 = counters(&lb).await;
    let mut rolled = true;
    for replica in replicas.iter_mut() {
        rolled &= roll(replica, &lb, &http).await;
    }
    tokio::time::sleep(SETTLE).await;
    let rolling_http = http_figures(&shared, ROLLING);
    print_http(
        "rolling restart",
        &rolling_http,
        started.elapsed(),
        (c0, counters(&lb).await),
    );
    let rolling_subs = sub_figures(&shared, ROLLING);
    print_subs(&rolling_subs, shared.live_subs.load(Ordering::Relaxed));

    // kill -9 under load.
    println!("\n== kill -9 of r2 under load ==");
    shared.set_phase(KILL);
    let c0 = counters(&lb).await;
    let killed_at = Instant::now();
    replicas[1].signal("-KILL");
    let (down, _) = tokio::join!(
        lb.wait_status("r2", is_down, Duration::from_secs(10)),
        replicas[1].wait_exit(Duration::from_secs(5)),
    );
    let remaining = KILL_WINDOW.saturating_sub(killed_at.elapsed());
    tokio::time::sleep(remaining).await;
    let kill_http = http_figures(&shared, KILL);
    print_http(
        "after kill -9",
        &kill_http,
        killed_at.elapsed(),
        (c0, counters(&lb).await),
    );
    println!(
        "  balancer routed around r2 (HAProxy has it DOWN) after {}; last client-visible failure {}",
        down.map_or("never (10 s)".into(), |d| format!("{:.0} ms", ms(d))),
        kill_http.last_failure.map_or("none".into(), |t| format!(
            "{:.0} ms after the kill",
            ms(t.duration_since(killed_at))
        )),
    );
    print_subs(
        &sub_figures(&shared, KILL),
        shared.live_subs.load(Ordering::Relaxed),
    );
    println!("  restarting r2:");
    shared.set_phase(RECOVERY);
    let c0 = counters(&lb).await;
    let started = Instant::now();
    let took = replicas[1].start().await;
    let ready = replicas[1].wait_ready(&http, Duration::from_secs(20)).await;
    let up = lb.wait_status("r2", is_up, Duration::from_secs(20)).await;
    println!(
        "  r2 serving after {}, /ready 200 {}, up in HAProxy after {:.2} s",
        took.as_ref()
            .map_or_else(|e| format!("never ({e})"), |d| format!("{:.2} s", secs(*d))),
        if ready.is_some() { "yes" } else { "never" },
        secs(started.elapsed())
    );
    rolled &= took.is_ok() && ready.is_some() && up.is_some();
    tokio::time::sleep(SETTLE).await;
    print_http(
        "recovery",
        &http_figures(&shared, RECOVERY),
        started.elapsed(),
        (c0, counters(&lb).await),
    );
    print_subs(
        &sub_figures(&shared, RECOVERY),
        shared.live_subs.load(Ordering::Relaxed),
    );

    // The subscribers stop here: the scale figures are of the HTTP load alone.
    shared.stop_subs.cancel();
    for t in sub_tasks {
        let _ = t.await;
    }

    println!(
        "\n== scale: the same HTTP load for {} s with 1, 2 and 3 replicas in the backend ==",
        SCALE_PHASE.as_secs()
    );
    let mut scale = Vec::new();
    for n in 1..=REPLICAS {
        backend_of(&lb, n).await;
        let phase = SCALE + n as u8 - 1;
        let c0 = counters(&lb).await;
        shared.set_phase(phase);
        let started = Instant::now();
        tokio::time::sleep(SCALE_PHASE).await;
        let elapsed = started.elapsed();
        // Requests still in flight at the switch are counted where they started.
        shared.set_phase(u8::MAX);
        let f = http_figures(&shared, phase);
        print_http(
            PHASES[phase as usize],
            &f,
            elapsed,
            (c0, counters(&lb).await),
        );
        scale.push((
            n,
            f.requests as f64 / secs(elapsed),
            f.p50,
            f.p99,
            f.failures,
        ));
    }
    shared.stop_http.cancel();
    for t in http_tasks {
        let _ = t.await;
    }

    let lb_end = counters(&lb).await;
    let log = std::mem::take(&mut *shared.http.lock().unwrap());
    // Invariants, read from the database.
    let checks = checks::check(&db_url, &run_key, &log, lb_end).await;

    let subs = std::mem::take(&mut *shared.subs.lock().unwrap());
    let slowest_reconnect = figures::print_summary(
        &rolling_http,
        &rolling_subs,
        &kill_http,
        down,
        &subs,
        &scale,
    );
    let goals = [
        (
            "zero client-visible failed HTTP requests during the rolling restart",
            rolling_http.failures == 0,
        ),
        ("every replica restarted and came back up", rolled),
        (
            "every subscription subscribed again within 5 s of each disconnect",
            slowest_reconnect.is_none_or(|d| d <= RECONNECT_GOAL),
        ),
        (
            "every subscriber connected and delivering events at the end",
            all_connected && subs.never_connected == 0 && subs.deaf_at_end == 0,
        ),
        (
            "budget invariants hold and every ledger replays",
            checks.violations == 0 && checks.unreplayable == 0,
        ),
        (
            "exactly one effect per request id (none missing, none twice, none unknown)",
            checks.missing == 0
                && checks.twice == 0
                && checks.unknown == 0
                && checks.twice_reserved == 0,
        ),
        (
            "each budget's used = what the clients committed",
            checks.used_matches,
        ),
        (
            "no unexpected error or abandoned request",
            log.errors.is_empty() && subs.errors.is_empty(),
        ),
    ];
    let mut ok = true;
    for (goal, met) in goals {
        println!("  [{}] {goal}", if met { "ok" } else { "FAILED" });
        ok &= met;
    }
    drop(lb);
    for r in replicas.iter_mut() {
        r.signal("-TERM");
        r.wait_exit(Duration::from_secs(12)).await;
    }
    ok
}
