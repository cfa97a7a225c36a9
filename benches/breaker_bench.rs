//! Circuit breaker benchmark: `cargo bench --bench breaker-bench` (optimised build). Needs
//! PostgreSQL (`AURUM_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`) and
//! Redis (`AURUM_BENCH_REDIS_URL`, default `redis://127.0.0.1:6379`): it creates a fresh
//! database and a private key prefix, runs the real `aurum` binary on them as a separate
//! process (breakers shared in Redis), and measures:
//!
//! a) `acquireCircuitBreakerPermit` + `recordCircuitBreakerOutcome` pairs per second through
//!    GraphQL (two requests per pair, one keep-alive connection per client), against the same
//!    Redis script called directly from this process in the same run (an acquire and a
//!    record per pair, on the same breaker and keys, through redis-rs). 4 clients per side;
//!    the sides take turns over several rounds after a warm-up; the ratio is of mean rates,
//!    with each round's ratio as a range.
//! b) the in-process guard on Aurum's own calls (`redis`, `nats`, `docker`) while `CLOSED`:
//!    nanoseconds per admitted call (admit + outcome report), against the same loop without
//!    the guard, in one thread.
//!
//! Any response with errors fails the run. Goal (issue #17): (a) ≥ 0.6×.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aurum::{
    breaker::{
        Dependency,
        local::DependencyGuard,
        rules::{Config, State},
        shared::{Answer, Op, Persisted, SharedScript},
    },
    infra::guard::CallGuard,
};
use common::{Sender, connect, login, spawn_server};
use serde_json::{Value, json};

const CLIENTS: usize = 4;
const PHASE: Duration = Duration::from_secs(3);
const WARM_UP: Duration = Duration::from_secs(2);
const ROUNDS: usize = 4;
const GUARD_CALLS: u64 = 20_000_000;
const NAME: &str = "bench";

const ACQUIRE: &str =
    "mutation { acquireCircuitBreakerPermit(name: \"bench\") { permitted permitId } }";
const RECORD: &str = "mutation($p: String!) { recordCircuitBreakerOutcome(input: { permitId: $p, outcome: SUCCESS, durationMs: 5 }) { counted } }";

struct Aurum {
    addr: String,
    auth: hyper::header::HeaderValue,
}

async fn post(sender: &mut Sender, s: &Aurum, body: &Value) -> Value {
    common::post_graphql(sender, &s.addr, &s.auth, body).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Graphql,
    Direct,
}

#[derive(Clone)]
struct Ctx {
    s: Arc<Aurum>,
    redis: redis::aio::ConnectionManager,
    prefix: String,
    script: Arc<SharedScript>,
    failed: Arc<AtomicBool>,
}

async fn graphql_client(ctx: Ctx, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut sender = connect(&ctx.s.addr).await;
    let acquire = json!({ "query": ACQUIRE });
    while !stop.load(Ordering::Relaxed) {
        let a = post(&mut sender, &ctx.s, &acquire).await;
        let permit = &a["data"]["acquireCircuitBreakerPermit"];
        if a.get("errors").is_some() || permit["permitted"] != true {
            eprintln!("acquire: {a}");
            ctx.failed.store(true, Ordering::Relaxed);
            return;
        }
        let r = post(
            &mut sender,
            &ctx.s,
            &json!({ "query": RECORD, "variables": { "p": permit["permitId"] } }),
        )
        .await;
        if r.get("errors").is_some() {
            eprintln!("record: {r}");
            ctx.failed.store(true, Ordering::Relaxed);
            return;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn direct_client(ctx: Ctx, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut conn = ctx.redis.clone();
    let config = Config::DEFAULT;
    let persisted = Persisted {
        state: State::Closed,
        epoch: 0,
        since_ms: 0,
        config_version: 1,
    };
    while !stop.load(Ordering::Relaxed) {
        let permit = uuid::Uuid::new_v4().simple().to_string();
        let acquire = Op::Acquire {
            permit: &permit,
            ttl_ms: 3_600_000,
        };
        let a = ctx
            .script
            .call(&mut conn, &ctx.prefix, NAME, &config, persisted, acquire, 0)
            .await
            .unwrap();
        let record = Op::Record {
            permit: &permit,
            outcome: 'S',
            duration_ms: 5,
        };
        let r = ctx
            .script
            .call(&mut conn, &ctx.prefix, NAME, &config, persisted, record, 0)
            .await
            .unwrap();
        if !matches!(a, Answer::Done(ref d) if d.permitted) || !matches!(r, Answer::Done(_)) {
            eprintln!("direct: {a:?} / {r:?}");
            ctx.failed.store(true, Ordering::Relaxed);
            return;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Pairs per second of `side` over `length`.
async fn phase(ctx: &Ctx, side: Side, length: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (ctx, stop, done) = (ctx.clone(), Arc::clone(&stop), Arc::clone(&done));
            match side {
                Side::Graphql => tokio::spawn(graphql_client(ctx, stop, done)),
                Side::Direct => tokio::spawn(direct_client(ctx, stop, done)),
            }
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Nanoseconds per call: admit + report through a `CLOSED` dependency guard, and the same
/// loop without it.
fn guard_cost() -> (f64, f64) {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let guard = DependencyGuard::new("bench", Dependency::DEFAULT, tx);
    let elapsed = Duration::from_micros(300);
    let started = Instant::now();
    for _ in 0..GUARD_CALLS {
        let ticket = guard.admit().unwrap();
        guard.report(black_box(ticket), black_box(true), black_box(elapsed));
    }
    let guarded = started.elapsed();
    let started = Instant::now();
    let mut sink = 0u64;
    for i in 0..GUARD_CALLS {
        sink = sink.wrapping_add(black_box(i));
        black_box((black_box(true), black_box(elapsed)));
    }
    black_box(sink);
    let bare = started.elapsed();
    let per = |d: Duration| d.as_nanos() as f64 / GUARD_CALLS as f64;
    (per(guarded), per(bare))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if !runtime.block_on(bench()) {
        eprintln!("breaker benchmark saw failures");
        std::process::exit(1);
    }
}

async fn bench() -> bool {
    let pg = std::env::var("AURUM_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let redis_url =
        std::env::var("AURUM_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());

    let prefix = format!("bb{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let (admin, db_url, name) = common::fresh_database(&pg, "aurum_bbench").await;
    let redis =
        redis::aio::ConnectionManager::new(redis::Client::open(redis_url.as_str()).unwrap())
            .await
            .unwrap();
    let ok = measure(&db_url, &redis_url, &prefix, redis.clone()).await;
    let mut conn = redis;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
    common::drop_database(&admin, &name).await;
    ok
}

async fn measure(
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    redis: redis::aio::ConnectionManager,
) -> bool {
    let (mut child, addr) = spawn_server(
        &[
            ("AURUM_DATABASE_URL", db_url),
            ("AURUM_REDIS_URL", redis_url),
            ("AURUM_REDIS_KEY_PREFIX", prefix),
            (
                "AURUM_JWT_SECRET",
                "breaker-bench-secret-0123456789abcdefghij",
            ),
        ],
        None,
    );
    let token = login(&addr).await;
    let s = Arc::new(Aurum {
        auth: hyper::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        addr,
    });
    let mut sender = connect(&s.addr).await;
    let configured = post(
        &mut sender,
        &s,
        &json!({ "query": "mutation { configureCircuitBreaker(input: { name: \"bench\", reason: \"benchmark\" }) { name } }" }),
    )
    .await;
    assert!(configured.get("errors").is_none(), "{configured}");
    let ctx = Ctx {
        s,
        redis,
        prefix: prefix.to_owned(),
        script: Arc::new(SharedScript::default()),
        failed: Arc::new(AtomicBool::new(false)),
    };
    println!(
        "(a) acquire + record pairs, {CLIENTS} clients per side, {ROUNDS} rounds of {PHASE:?}"
    );
    phase(&ctx, Side::Graphql, WARM_UP).await;
    phase(&ctx, Side::Direct, WARM_UP).await;
    let mut rates: [Vec<f64>; 2] = Default::default();
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 {
            [Side::Graphql, Side::Direct]
        } else {
            [Side::Direct, Side::Graphql]
        };
        let mut got = [0.0; 2];
        for side in order {
            let i = usize::from(side == Side::Direct);
            got[i] = phase(&ctx, side, PHASE).await;
            rates[i].push(got[i]);
        }
        ratios.push(got[0] / got[1]);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    ratios.sort_by(f64::total_cmp);
    let (g, d) = (mean(&rates[0]), mean(&rates[1]));
    println!(
        "  GraphQL: {g:.0} pairs/s   the script called directly: {d:.0} pairs/s   ratio {:.3}× (rounds {:.3} … {:.3}; goal ≥ 0.6×)",
        g / d,
        ratios[0],
        ratios[ratios.len() - 1]
    );
    let _ = child.kill();
    let _ = child.wait();

    println!("(b) the in-process guard on Aurum's own calls, CLOSED, {GUARD_CALLS} calls");
    let (guarded, bare) = guard_cost();
    println!(
        "  admit + report: {guarded:.1} ns/call   the loop without it: {bare:.1} ns/call   guard cost {:.1} ns/call",
        guarded - bare
    );
    !ctx.failed.load(Ordering::Relaxed)
}
