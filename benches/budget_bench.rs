//! Budget benchmark: `cargo bench --bench budget-bench` (optimised build). Needs PostgreSQL
//! (`AURUM_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`): it creates a
//! fresh database, runs the real `aurum` binary on it as a separate process, and measures,
//! against a baseline taken in the same run on the same database:
//!
//! a) reserve+commit pairs per second through GraphQL (HTTP, bearer token, the schema; one
//!    keep-alive connection per client through hyper's bare client) vs the
//!    same transactions — the same SQL statements, issued by the same `BudgetService` code —
//!    called in-process with no HTTP, GraphQL or authentication, at the same concurrency;
//!    once with keys spread over 1,000 budgets and once on one hot budget. The same pairs
//!    also go to a bare HTTP server: this binary in a second process, the same
//!    `BudgetService` on the same database behind two plain JSON routes (axum, typed bodies,
//!    TCP_NODELAY; no GraphQL, authentication or middleware), on the same kind of client
//!    connection. Its rate over the direct rate is the ceiling of (a) on this machine: what
//!    carrying each call over loopback HTTP costs when the server does nothing else, which no
//!    GraphQL server can beat. After an unmeasured warm-up of each side, the three sides take
//!    turns over several short rounds (each goes first, second and third equally often), so
//!    that drifts of the machine, of PostgreSQL's caches and of its background work fall on
//!    every side alike; the ratios are of mean rates, and each round's own ratios are printed
//!    as a range (min / median / max) to show how much the machine moved;
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
use common::{Sender, connect, login, ms, percentile, spawn_server};
use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, header::HeaderValue};
use rand::Rng;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
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

/// The flag that makes this binary the bare HTTP server of (a)'s ceiling; the database URL and
/// the first admin's id follow it.
const BARE_HTTP_FLAG: &str = "--bare-http-server";

/// A server process of the run: Aurum, or this binary as the bare HTTP server.
struct Server {
    child: Child,
    addr: String,
    base: String,
    /// `Authorization` of every request (Aurum's; the bare server takes none).
    auth: Option<HeaderValue>,
}

impl Server {
    fn start(db_url: &str) -> Self {
        let (child, addr) = spawn_server(&[("AURUM_DATABASE_URL", db_url)], None);
        Self::new(child, addr)
    }

    fn start_bare(db_url: &str, admin: uuid::Uuid) -> Self {
        let (child, addr) = common::spawn_bare(&[BARE_HTTP_FLAG, db_url, &admin.to_string()]);
        Self::new(child, addr)
    }

    fn new(child: Child, addr: String) -> Self {
        Self {
            child,
            base: format!("http://{addr}"),
            addr,
            auth: None,
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
    let mut request = client.post(format!("{}/graphql", s.base));
    if let Some(auth) = &s.auth {
        request = request.header(hyper::header::AUTHORIZATION, auth.clone());
    }
    let v: Value = request
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v
}

/// One JSON body POSTed to `path` on `sender`; the decoded answer, `Value::Null` when the
/// transport fails.
async fn post_on(sender: &mut Sender, s: &Server, path: &str, body: &Value) -> Value {
    let body = serde_json::to_vec(body).unwrap();
    let mut request = hyper::Request::post(path)
        .header(hyper::header::HOST, &s.addr)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(auth) = &s.auth {
        request = request.header(hyper::header::AUTHORIZATION, auth.clone());
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
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
    let vars = json!({ "t": "bench", "p": project(keys), "r": format!("{key}r") });
    let r = post_on(
        client,
        s,
        "/graphql",
        &json!({ "query": RESERVE, "variables": vars }),
    )
    .await;
    let reserve = t0.elapsed();
    if r["data"]["reserveBudget"]["amount"] != 10 {
        return None;
    }
    let id = r["data"]["reserveBudget"]["id"].as_str()?;
    let vars = json!({ "id": id, "r": format!("{key}c") });
    let c = post_on(
        client,
        s,
        "/graphql",
        &json!({ "query": COMMIT, "variables": vars }),
    )
    .await;
    (c["data"]["commitBudget"]["status"] == "COMMITTED").then_some(reserve)
}

/// The same pair through the bare HTTP server's plain JSON routes.
async fn bare_pair(client: &mut Sender, s: &Server, keys: Keys, key: &str) -> Option<Duration> {
    let t0 = Instant::now();
    let body = json!({ "t": "bench", "p": project(keys), "amount": 10, "r": format!("{key}r") });
    let r = post_on(client, s, "/reserve", &body).await;
    let reserve = t0.elapsed();
    if r["amount"] != 10 {
        return None;
    }
    let id = r["id"].as_str()?;
    let body = json!({ "id": id, "actual": 7, "r": format!("{key}c") });
    let c = post_on(client, s, "/commit", &body).await;
    (c["status"] == "committed").then_some(reserve)
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
    /// CPU seconds used during the phase by the serving process (Aurum or the bare server;
    /// none for the direct side), this process and PostgreSQL.
    cpu: [f64; 3],
}

/// Where a phase's pairs go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    GraphQL,
    Bare,
    Direct,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::GraphQL => "GraphQL",
            Side::Bare => "bare HTTP",
            Side::Direct => "direct",
        }
    }
}

/// Everything a phase can send its pairs to.
#[derive(Clone)]
struct Sides {
    aurum: Arc<Server>,
    bare: Arc<Server>,
    svc: BudgetService,
    meta: RequestMeta,
}

impl Sides {
    fn server(&self, side: Side) -> Option<&Arc<Server>> {
        match side {
            Side::GraphQL => Some(&self.aurum),
            Side::Bare => Some(&self.bare),
            Side::Direct => None,
        }
    }
}

/// CPU seconds used so far by `server` (0 for none), this process and PostgreSQL.
fn cpu_now(server: Option<&Arc<Server>>) -> [f64; 3] {
    [
        server.map_or(0.0, |s| cpu_seconds(s.child.id())),
        cpu_seconds(std::process::id()),
        postgres_cpu_seconds(),
    ]
}

/// `clients` loops of pairs for one phase, on one side.
async fn phase(
    label: &str,
    length: Duration,
    clients: usize,
    keys: Keys,
    side: Side,
    sides: &Sides,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let server = sides.server(side);
    // Connections are opened before the clock starts.
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(match server {
            Some(server) => Some(connect(&server.addr).await),
            None => None,
        });
    }
    let started = Instant::now();
    let cpu_before = cpu_now(server);
    let mut tasks = Vec::new();
    for (c, connection) in connections.into_iter().enumerate() {
        let stop = stop.clone();
        let label = format!("{label}-{c}-");
        let mut http = server.cloned().zip(connection);
        let sides = sides.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut lat) = (0u64, 0u64, Vec::new());
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("{label}{n}");
                let good = match &mut http {
                    Some((server, client)) => {
                        let pair = match side {
                            Side::Bare => bare_pair(client, server, keys, &key).await,
                            _ => graphql_pair(client, server, keys, &key).await,
                        };
                        match pair {
                            Some(d) => {
                                lat.push(d);
                                true
                            }
                            None => false,
                        }
                    }
                    None => direct_pair(&sides.svc, &sides.meta, keys, &key).await,
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
    let cpu_after = cpu_now(server);
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
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == BARE_HTTP_FLAG) {
        let db_url = args[at + 1].clone();
        let admin = uuid::Uuid::parse_str(&args[at + 2]).unwrap();
        bare_http_server(db_url, admin);
        return;
    }
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

/// The in-process side: a pool opened as the server opens its own (`infra::db::connect`, with
/// the default configuration: size, pings before use, statement metrics), the same
/// `BudgetService`, and the first admin as caller.
async fn baseline(
    db_url: &str,
    admin_id: uuid::Uuid,
) -> (DatabaseConnection, BudgetService, RequestMeta) {
    let mut config = aurum::config::Config::from_env().unwrap();
    config.database_url = aurum::config::ServiceUrl::new(db_url);
    let (db, _) = aurum::infra::db::connect(&config).await.unwrap();
    // The service's events go through the outbox as the server's do; this bus relays them.
    let bus = Bus::database(
        db.clone(),
        config.bus_options(),
        aurum::infra::shutdown::Shutdown::new(),
    )
    .await
    .unwrap();
    let svc = BudgetService::new(db.clone(), bus);
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
    (db, svc, meta)
}

#[derive(serde::Deserialize)]
struct BareReserve {
    t: String,
    p: String,
    amount: i64,
    r: String,
}

#[derive(serde::Deserialize)]
struct BareCommit {
    id: uuid::Uuid,
    actual: i64,
    r: String,
}

type BareState = Arc<(BudgetService, RequestMeta)>;

/// The bare HTTP server's process: `POST /reserve` and `POST /commit` with typed JSON bodies,
/// each one call of the baseline's `BudgetService`; an error answers 409 with its code.
fn bare_http_server(db_url: String, admin: uuid::Uuid) {
    use axum::{Json, extract::State, http::StatusCode, response::IntoResponse, routing::post};
    fn answer(
        result: aurum::error::AppResult<entity::budget_reservation::Model>,
    ) -> axum::response::Response {
        match result {
            Ok(r) => {
                Json(json!({ "id": r.id, "amount": r.amount, "status": r.status })).into_response()
            }
            Err(e) => (StatusCode::CONFLICT, Json(json!({ "code": e.code() }))).into_response(),
        }
    }
    async fn reserve(
        State(s): State<BareState>,
        Json(b): Json<BareReserve>,
    ) -> axum::response::Response {
        let request = ReserveRequest {
            tenant_id: b.t,
            project_id: b.p,
            amount: b.amount,
            request_id: b.r,
            ttl_seconds: None,
            task_id: None,
            model: None,
        };
        answer(s.0.reserve(&s.1, request).await)
    }
    async fn commit(
        State(s): State<BareState>,
        Json(b): Json<BareCommit>,
    ) -> axum::response::Response {
        let request = ResolveRequest {
            reservation_id: b.id,
            actual_amount: Some(b.actual),
            request_id: b.r,
        };
        answer(s.0.resolve(&s.1, request).await)
    }
    common::bare_process(|listener| async move {
        let (_, svc, meta) = baseline(&db_url, admin).await;
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            tcp.set_nodelay(true).unwrap();
        });
        let app = axum::Router::new()
            .route("/reserve", post(reserve))
            .route("/commit", post(commit))
            .with_state(Arc::new((svc, meta)));
        axum::serve(listener, app).await.unwrap();
    });
}

async fn measure(db_url: &str) -> bool {
    let mut server = Server::start(db_url);
    let client = reqwest::Client::new();
    let token = login(&server.addr).await;
    server.auth = Some(HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let me = post(&client, &server, "{ me { id } }", json!({})).await;
    let admin_id = uuid::Uuid::parse_str(me["data"]["me"]["id"].as_str().unwrap()).unwrap();

    let (db, svc, meta) = baseline(db_url, admin_id).await;
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
    let sides = Sides {
        aurum: Arc::new(server),
        bare: Arc::new(Server::start_bare(db_url, admin_id)),
        svc,
        meta,
    };

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

    let mut all_ok = true;
    let mut phase_no = 0;
    const SIDES: [Side; 3] = [Side::GraphQL, Side::Bare, Side::Direct];
    for (keys, label, target) in [
        (Keys::Spread, "1,000 budgets", 0.8),
        (Keys::Hot, "one hot budget", 0.9),
    ] {
        // Per side: the sum of round rates, CPU seconds and pairs (for CPU per pair).
        let mut rates = [0.0; 3];
        let mut cpu = [[0.0; 3]; 3];
        let mut pairs = [0u64; 3];
        let mut failed = 0;
        // Unmeasured: each side once, so that none measures cold caches.
        for side in SIDES {
            phase_no += 1;
            let run = phase(
                &format!("w{phase_no}"),
                WARM_UP,
                CLIENTS,
                keys,
                side,
                &sides,
            )
            .await;
            failed += run.failed;
        }
        // Per round: GraphQL / direct and bare / direct.
        let mut round_ratios = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let mut round_rates = [0.0; 3];
            // Every order of going first, second and third comes up equally often.
            for k in 0..3 {
                let i = (round + k) % 3;
                phase_no += 1;
                let run = phase(
                    &format!("t{phase_no}"),
                    PHASE,
                    CLIENTS,
                    keys,
                    SIDES[i],
                    &sides,
                )
                .await;
                failed += run.failed;
                round_rates[i] = rate(&run);
                rates[i] += rate(&run);
                pairs[i] += run.pairs;
                for (total, used) in cpu[i].iter_mut().zip(run.cpu) {
                    *total += used;
                }
            }
            round_ratios.0.push(round_rates[0] / round_rates[2]);
            round_ratios.1.push(round_rates[1] / round_rates[2]);
        }
        let [g, b, d] = rates.map(|r| r / ROUNDS as f64);
        println!(
            "(a) {label}, {CLIENTS} clients: GraphQL {g:.0} pairs/s, direct {d:.0} pairs/s, ratio {:.2}x (target >= {target}), failures {failed}",
            g / d
        );
        println!(
            "    ceiling: bare HTTP {b:.0} pairs/s, bare / direct {:.2}x; GraphQL / bare {:.2}x",
            b / d,
            g / b
        );
        let spread = |ratios: &mut Vec<f64>| {
            ratios.sort_by(f64::total_cmp);
            format!(
                "min {:.2}  median {:.2}  max {:.2}",
                ratios[0],
                (ratios[(ROUNDS - 1) / 2] + ratios[ROUNDS / 2]) / 2.0,
                ratios[ROUNDS - 1]
            )
        };
        println!(
            "    each round ({ROUNDS} rounds of {} s per side): GraphQL / direct {}; bare / direct {}",
            PHASE.as_secs(),
            spread(&mut round_ratios.0),
            spread(&mut round_ratios.1)
        );
        let per_pair = |i: usize| {
            let us = |s: f64| s * 1e6 / pairs[i].max(1) as f64;
            let c = cpu[i];
            format!(
                "{} server {:.0} + bench {:.0} + PostgreSQL {:.0} = {:.0}",
                SIDES[i].name(),
                us(c[0]),
                us(c[1]),
                us(c[2]),
                us(c.iter().sum())
            )
        };
        println!(
            "    CPU per pair (us): {}; {}; {}",
            per_pair(0),
            per_pair(1),
            per_pair(2)
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
            Side::GraphQL,
            &sides,
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
