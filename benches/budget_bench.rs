//! Budget benchmark: `cargo bench --bench budget-bench` (optimised build). Needs PostgreSQL
//! (`AURUM_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`): it creates a
//! fresh database, runs the real `aurum` binary on it as a separate process, and measures,
//! against a baseline taken in the same run on the same database:
//!
//! a) reserve+commit pairs per second through GraphQL (HTTP, bearer token, the schema; one
//!    keep-alive connection per client through hyper's bare client) vs the
//!    same transactions — the same SQL statements, issued by the same `BudgetService` code —
//!    called in-process with no HTTP, GraphQL or authentication, at the same concurrency;
//!    once with keys spread over 1,000 budgets and once on one hot budget; after an
//!    unmeasured warm-up of each side, phases alternate over several short rounds (the
//!    side that goes first alternates too), so that drifts of the machine, of PostgreSQL's
//!    caches and of its background work fall on both sides alike; the ratio is the mean
//!    GraphQL rate over the mean direct rate, and each round's own ratio is printed as a
//!    range (min / median / max) to show how much the machine moved;
//! b) p50 / p99 latency of `reserveBudget` at 1, 16 and 64 concurrent clients.
//!
//! While it measures, a checker samples every budget for `reserved < 0`, `used < 0` or
//! `used + reserved > total`; at the end every ledger is replayed against its budget row.
//! Any violation or any response with `errors` fails the run. Targets (issue #4): (a) ≥ 0.8×
//! spread, ≥ 0.9× hot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aurum::{
    auth::{Caller, Principal, RequestMeta, permission::Role},
    budget::service::{BudgetService, NewBudget, ReserveRequest, ResolveRequest},
    events::Bus,
};
use common::{Sender, connect, login, spawn_server};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rand::Rng;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

const CLIENTS: usize = 16;
const PHASE: Duration = Duration::from_secs(2);
const WARM_UP: Duration = Duration::from_secs(1);
/// Length of each latency phase of (b).
const LATENCY_PHASE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 6;
const SPREAD: usize = 1_000;
const TOTAL: i64 = 1_000_000_000_000;

const RESERVE: &str = "mutation($t: String!, $p: String!, $r: String!) { reserveBudget(input: { tenantId: $t, projectId: $p, amount: 10, requestId: $r }) { id amount } }";
const COMMIT: &str = "mutation($id: ID!, $r: String!) { commitBudget(input: { reservationId: $id, actualAmount: 7, requestId: $r }) { id status } }";

struct Server {
    child: Child,
    addr: String,
    base: String,
    token: String,
}

impl Server {
    fn start(db_url: &str) -> Self {
        let (child, addr) = spawn_server(&[("AURUM_DATABASE_URL", db_url)], None);
        Self {
            child,
            base: format!("http://{addr}"),
            addr,
            token: String::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(client: &reqwest::Client, s: &Server, query: &str, vars: Value) -> Value {
    let v: Value = client
        .post(format!("{}/graphql", s.base))
        .bearer_auth(&s.token)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v
}

/// One operation on `sender`; `Value::Null` when the transport fails.
async fn post_on(sender: &mut Sender, s: &Server, query: &str, vars: Value) -> Value {
    let body = serde_json::to_vec(&json!({ "query": query, "variables": vars })).unwrap();
    let request = hyper::Request::post("/graphql")
        .header(hyper::header::HOST, &s.addr)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::AUTHORIZATION, format!("Bearer {}", s.token))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    if sender.ready().await.is_err() {
        return Value::Null;
    }
    let Ok(response) = sender.send_request(request).await else {
        return Value::Null;
    };
    let Ok(body) = response.into_body().collect().await else {
        return Value::Null;
    };
    serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Where the load goes.
#[derive(Clone, Copy)]
enum Keys {
    Spread,
    Hot,
}

fn project(keys: Keys) -> String {
    match keys {
        Keys::Spread => format!("p{}", rand::rng().random_range(0..SPREAD)),
        Keys::Hot => "hot".into(),
    }
}

/// One pair through GraphQL; returns the reserve latency, or `None` on any error.
async fn graphql_pair(client: &mut Sender, s: &Server, keys: Keys, key: &str) -> Option<Duration> {
    let t0 = Instant::now();
    let r = post_on(
        client,
        s,
        RESERVE,
        json!({ "t": "bench", "p": project(keys), "r": format!("{key}r") }),
    )
    .await;
    let reserve = t0.elapsed();
    let id = r["data"]["reserveBudget"]["id"].as_str()?.to_owned();
    let c = post_on(
        client,
        s,
        COMMIT,
        json!({ "id": id, "r": format!("{key}c") }),
    )
    .await;
    (c["data"]["commitBudget"]["status"] == "COMMITTED").then_some(reserve)
}

/// The same pair, the same statements, in-process.
async fn direct_pair(svc: &BudgetService, meta: &RequestMeta, keys: Keys, key: &str) -> bool {
    let Ok(r) = svc
        .reserve(
            meta,
            ReserveRequest {
                tenant_id: "bench".into(),
                project_id: project(keys),
                amount: 10,
                request_id: format!("{key}r"),
                ttl_seconds: None,
                task_id: None,
                model: None,
            },
        )
        .await
    else {
        return false;
    };
    svc.resolve(
        meta,
        ResolveRequest {
            reservation_id: r.id,
            actual_amount: Some(7),
            request_id: format!("{key}c"),
        },
    )
    .await
    .is_ok()
}

struct Run {
    pairs: u64,
    failed: u64,
    reserve_latencies: Vec<Duration>,
    elapsed: Duration,
    /// CPU seconds used during the phase by the server, this process and PostgreSQL.
    cpu: [f64; 3],
}

/// CPU seconds used so far by the server, this process and PostgreSQL.
fn cpu_now(server: u32) -> [f64; 3] {
    [
        cpu_seconds(server),
        cpu_seconds(std::process::id()),
        postgres_cpu_seconds(),
    ]
}

/// `clients` loops of pairs for one phase, through GraphQL or directly.
async fn phase(
    label: &str,
    length: Duration,
    clients: usize,
    keys: Keys,
    graphql: Option<&Arc<Server>>,
    direct: (&BudgetService, &RequestMeta),
    server_pid: u32,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    // Connections are opened before the clock starts.
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(match graphql {
            Some(server) => Some(connect(&server.addr).await),
            None => None,
        });
    }
    let started = Instant::now();
    let cpu_before = cpu_now(server_pid);
    let mut tasks = Vec::new();
    for (c, connection) in connections.into_iter().enumerate() {
        let stop = stop.clone();
        let label = format!("{label}-{c}-");
        let mut http = graphql.cloned().zip(connection);
        let svc = direct.0.clone();
        let meta = direct.1.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut lat) = (0u64, 0u64, Vec::new());
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("{label}{n}");
                let good = match &mut http {
                    Some((server, client)) => {
                        match graphql_pair(client, server, keys, &key).await {
                            Some(d) => {
                                lat.push(d);
                                true
                            }
                            None => false,
                        }
                    }
                    None => direct_pair(&svc, &meta, keys, &key).await,
                };
                if good {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed, lat)
        }));
    }
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = Run {
        pairs: 0,
        failed: 0,
        reserve_latencies: Vec::new(),
        elapsed: Duration::ZERO,
        cpu: [0.0; 3],
    };
    for t in tasks {
        let (ok, failed, lat) = t.await.unwrap();
        run.pairs += ok;
        run.failed += failed;
        run.reserve_latencies.extend(lat);
    }
    run.elapsed = started.elapsed();
    let cpu_after = cpu_now(server_pid);
    run.cpu = std::array::from_fn(|i| cpu_after[i] - cpu_before[i]);
    run.reserve_latencies.sort();
    run
}

fn rate(r: &Run) -> f64 {
    r.pairs as f64 / r.elapsed.as_secs_f64()
}

/// Budgets breaking `0 ≤ used`, `0 ≤ reserved`, `used + reserved ≤ total`.
async fn violations(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM budgets WHERE used < 0 OR reserved < 0 OR used + reserved > total",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Budgets whose ledger does not sum to their row, or whose `reserved` is not Σ live.
async fn ledger_mismatches(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM budgets b LEFT JOIN (SELECT budget_id, sum(delta_total) t, \
             sum(delta_used) u, sum(delta_reserved) r, count(*) c FROM budget_transactions \
             GROUP BY budget_id) l ON l.budget_id = b.id LEFT JOIN (SELECT budget_id, sum(amount) a \
             FROM budget_reservations WHERE status = 'reserved' GROUP BY budget_id) live \
             ON live.budget_id = b.id WHERE l.t <> b.total OR l.u <> b.used OR l.r <> b.reserved \
             OR l.c <> b.version OR coalesce(live.a, 0) <> b.reserved",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = runtime.block_on(bench());
    if !ok {
        eprintln!("budget benchmark saw failures or invariant violations");
        std::process::exit(1);
    }
}

async fn bench() -> bool {
    let pg = std::env::var("AURUM_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("aurum_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(format!("{pg}/postgres")).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let db_url = format!("{pg}/{name}");
    let result = measure(&db_url).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .ok();
    result
}

async fn measure(db_url: &str) -> bool {
    let mut server = Server::start(db_url);
    let client = reqwest::Client::new();
    server.token = login(&server.addr).await;
    let server = Arc::new(server);
    let me = post(&client, &server, "{ me { id } }", json!({})).await;
    let admin_id = uuid::Uuid::parse_str(me["data"]["me"]["id"].as_str().unwrap()).unwrap();

    // The baseline's pool has the server's default size.
    let mut options = ConnectOptions::new(db_url.to_owned());
    options.max_connections(16).sqlx_logging(false);
    let db = Database::connect(options).await.unwrap();
    let svc = BudgetService::new(db.clone(), Bus::local(1024));
    let meta = RequestMeta {
        caller: Caller::User {
            id: admin_id,
            username: "admin".into(),
            role: Role::Admin,
            tenant: None,
            token: None,
            principal: Principal::Person,
        },
        request_id: "bench".into(),
        client: None,
    };
    for p in (0..SPREAD)
        .map(|i| format!("p{i}"))
        .chain(["hot".to_owned()])
    {
        svc.create_budget(
            &meta,
            NewBudget {
                tenant_id: "bench".into(),
                project_id: p,
                total: TOTAL,
                period: None,
                alert_thresholds: None,
            },
        )
        .await
        .unwrap();
    }

    // The invariant checker runs through every measured phase.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let checker = {
        let (db, stop, seen) = (db.clone(), stop.clone(), seen.clone());
        tokio::spawn(async move {
            let mut bad = 0;
            while !stop.load(Ordering::Relaxed) {
                bad += violations(&db).await;
                seen.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            bad
        })
    };

    let server_pid = server.child.id();
    let mut all_ok = true;
    let mut phase_no = 0;
    for (keys, label, target) in [
        (Keys::Spread, "1,000 budgets", 0.8),
        (Keys::Hot, "one hot budget", 0.9),
    ] {
        let (mut g_rate, mut d_rate) = (0.0, 0.0);
        // CPU seconds and pairs of each side, for CPU per pair.
        let (mut g_cpu, mut d_cpu) = ([0.0; 3], [0.0; 3]);
        let (mut g_pairs, mut d_pairs) = (0u64, 0u64);
        let mut failed = 0;
        // Unmeasured: each side once, so that neither measures cold caches.
        for graphql in [true, false] {
            phase_no += 1;
            let run = phase(
                &format!("w{phase_no}"),
                WARM_UP,
                CLIENTS,
                keys,
                graphql.then_some(&server),
                (&svc, &meta),
                server_pid,
            )
            .await;
            failed += run.failed;
        }
        let mut round_ratios = Vec::new();
        for round in 0..ROUNDS {
            let mut rates = [0.0; 2];
            for graphql in [round % 2 == 0, round % 2 != 0] {
                phase_no += 1;
                let tag = format!("t{phase_no}");
                let run = phase(
                    &tag,
                    PHASE,
                    CLIENTS,
                    keys,
                    graphql.then_some(&server),
                    (&svc, &meta),
                    server_pid,
                )
                .await;
                failed += run.failed;
                rates[usize::from(graphql)] = rate(&run);
                let (rate_sum, cpu, pairs) = if graphql {
                    (&mut g_rate, &mut g_cpu, &mut g_pairs)
                } else {
                    (&mut d_rate, &mut d_cpu, &mut d_pairs)
                };
                *rate_sum += rate(&run);
                *pairs += run.pairs;
                for (total, used) in cpu.iter_mut().zip(run.cpu) {
                    *total += used;
                }
            }
            round_ratios.push(rates[1] / rates[0]);
        }
        round_ratios.sort_by(f64::total_cmp);
        let (g, d) = (g_rate / ROUNDS as f64, d_rate / ROUNDS as f64);
        println!(
            "(a) {label}, {CLIENTS} clients: GraphQL {g:.0} pairs/s, direct {d:.0} pairs/s, ratio {:.2}x (target >= {target}), failures {failed}",
            g / d
        );
        println!(
            "    ratio of each round ({ROUNDS} rounds of {} s per side): min {:.2}  median {:.2}  max {:.2}",
            PHASE.as_secs(),
            round_ratios[0],
            (round_ratios[(ROUNDS - 1) / 2] + round_ratios[ROUNDS / 2]) / 2.0,
            round_ratios[ROUNDS - 1]
        );
        let per_pair = |cpu: [f64; 3], pairs: u64| {
            let us = |s: f64| s * 1e6 / pairs.max(1) as f64;
            format!(
                "server {:.0} + bench {:.0} + PostgreSQL {:.0} = {:.0}",
                us(cpu[0]),
                us(cpu[1]),
                us(cpu[2]),
                us(cpu.iter().sum())
            )
        };
        println!(
            "    CPU per pair (us): GraphQL {}; direct {}",
            per_pair(g_cpu, g_pairs),
            per_pair(d_cpu, d_pairs)
        );
        all_ok &= failed == 0;
    }

    for clients in [1, 16, 64] {
        phase_no += 1;
        let run = phase(
            &format!("l{phase_no}"),
            LATENCY_PHASE,
            clients,
            Keys::Spread,
            Some(&server),
            (&svc, &meta),
            server_pid,
        )
        .await;
        let lat = &run.reserve_latencies;
        println!(
            "(b) reserveBudget at {clients:>2} clients: p50 {:.2} ms  p99 {:.2} ms  ({} reservations, {:.0} pairs/s, failures {})",
            ms(percentile(lat, 0.5)),
            ms(percentile(lat, 0.99)),
            lat.len(),
            rate(&run),
            run.failed
        );
        all_ok &= run.failed == 0;
    }

    stop.store(true, Ordering::Relaxed);
    let bad = checker.await.unwrap();
    let mismatched = ledger_mismatches(&db).await;
    println!(
        "invariants: {bad} violations in {} samples of every budget; {mismatched} budgets whose ledger does not replay",
        seen.load(Ordering::Relaxed)
    );
    db.close().await.ok();
    all_ok && bad == 0 && mismatched == 0
}

/// CPU seconds (user + system) a process has used so far; 0 once it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces) in parentheses: utime is the 12th,
    // stime the 13th, in clock ticks (USER_HZ, 100 on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => 0.0,
    }
}

/// CPU seconds used so far by every PostgreSQL process of this machine (backends that
/// exited are not counted: sample around phases whose connections stay open).
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("postgres"))
        })
        .map(cpu_seconds)
        .sum()
}
