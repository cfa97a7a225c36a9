//! Queue benchmark: `cargo bench --bench queue-bench` (optimised build). Needs PostgreSQL
//! (`AURUM_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432`) and NATS with
//! JetStream (`AURUM_BENCH_NATS_URL`, default `nats://127.0.0.1:4222`): it creates a fresh
//! database and a private subject prefix, runs the real `aurum` binary on them as a separate
//! process (the production profile: queues on JetStream), and measures:
//!
//! a) enqueue → claim → ack throughput in batches of 10, per client: through GraphQL (one
//!    request of 10 aliased `enqueueTask`, one `claimTaskMessages(max: 10)`, one request of
//!    aliased `ackTaskMessage` for what it got), against a native async-nats client doing the
//!    same on the same stream and the same consumer in the same run (10 publishes with
//!    `Nats-Msg-Id`, their acks awaited; a fetch of 10; 10 double acks). A third side is the
//!    floor of any implementation that keeps the contract's state in PostgreSQL: the native
//!    client plus one single-statement write per message per step (a key row at enqueue, its
//!    update at claim and at ack), in autocommit, from the benchmark process. 4 clients on
//!    each side; the sides take turns over several rounds (each first equally often) after a
//!    warm-up; ratios are of mean rates, with each round's GraphQL/native ratio as a range.
//!    The GraphQL side is also timed per step (enqueue, claim, ack), to show where its time
//!    goes.
//! b) latency from the last failed delivery to `dlqMessageAdded` at a WebSocket subscriber,
//!    p50 / p99 over 100 messages: a GraphQL worker nacking the last allowed delivery, and a
//!    NATS worker terminating a message (the MSG_TERMINATED advisory, captured in its
//!    stream, read by the replica's capture loop).
//!
//! Any response with errors fails the run. Goal (issue #16): (a) ≥ 0.7×.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::{HeaderMap, jetstream};
use common::{Sender, Ws, connect, login, ms, percentile, spawn_server};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};

const CLIENTS: usize = 4;
const BATCH: usize = 10;
const PHASE: Duration = Duration::from_secs(3);
const WARM_UP: Duration = Duration::from_secs(2);
const ROUNDS: usize = 4;
const DLQ_SAMPLES: usize = 100;
const QUEUES: &str = r#"[{"name":"bench","maxDeliver":5,"ackWaitSeconds":30},{"name":"dlqbench","maxDeliver":1,"ackWaitSeconds":30}]"#;

fn enqueue_doc() -> String {
    let vars: Vec<String> = (0..BATCH).map(|i| format!("$r{i}: String!")).collect();
    let fields: Vec<String> = (0..BATCH)
        .map(|i| format!("e{i}: enqueueTask(input: {{ taskId: $t, queue: \"bench\", payload: \"work\", requestId: $r{i} }}) {{ sequence }}"))
        .collect();
    format!(
        "mutation($t: ID!, {}) {{ {} }}",
        vars.join(", "),
        fields.join(" ")
    )
}

fn ack_doc(n: usize) -> String {
    let vars: Vec<String> = (0..n).map(|i| format!("$d{i}: String!")).collect();
    let fields: Vec<String> = (0..n)
        .map(|i| format!("a{i}: ackTaskMessage(deliveryId: $d{i}) {{ deliveryId }}"))
        .collect();
    format!("mutation({}) {{ {} }}", vars.join(", "), fields.join(" "))
}

const CLAIM: &str =
    "mutation { claimTaskMessages(queue: \"bench\", max: 10, waitMs: 1000) { deliveryId } }";

struct Aurum {
    child: std::process::Child,
    addr: String,
    auth: HeaderValue,
    token: String,
}

impl Drop for Aurum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(sender: &mut Sender, s: &Aurum, body: &Value) -> Value {
    common::post_graphql(sender, &s.addr, &s.auth, body).await
}

fn fail_on_errors(what: &str, v: &Value, failed: &AtomicBool) {
    if v.get("errors").is_some() {
        eprintln!("{what}: {v}");
        failed.store(true, Ordering::Relaxed);
    }
}

/// Time spent in each GraphQL step, in microseconds.
#[derive(Default)]
struct Steps {
    enqueue: AtomicU64,
    claim: AtomicU64,
    ack: AtomicU64,
}

/// One client's loop through GraphQL until `stop`; acked messages go to `done`.
#[allow(clippy::too_many_arguments)]
async fn graphql_client(
    s: Arc<Aurum>,
    task: String,
    client: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    steps: Arc<Steps>,
    failed: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
) {
    let mut sender = connect(&s.addr).await;
    let enqueue = enqueue_doc();
    while !stop.load(Ordering::Relaxed) {
        let mut vars = json!({ "t": task });
        for i in 0..BATCH {
            vars[format!("r{i}")] =
                json!(format!("g{client}-{}", seq.fetch_add(1, Ordering::Relaxed)));
        }
        let t0 = Instant::now();
        let e = post(
            &mut sender,
            &s,
            &json!({ "query": enqueue, "variables": vars }),
        )
        .await;
        fail_on_errors("enqueue", &e, &failed);
        let t1 = Instant::now();
        let c = post(&mut sender, &s, &json!({ "query": CLAIM })).await;
        fail_on_errors("claim", &c, &failed);
        let t2 = Instant::now();
        let ids: Vec<String> = c["data"]["claimTaskMessages"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|d| d["deliveryId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            let mut vars = json!({});
            for (i, id) in ids.iter().enumerate() {
                vars[format!("d{i}")] = json!(id);
            }
            let a = post(
                &mut sender,
                &s,
                &json!({ "query": ack_doc(ids.len()), "variables": vars }),
            )
            .await;
            fail_on_errors("ack", &a, &failed);
            done.fetch_add(ids.len() as u64, Ordering::Relaxed);
        }
        let t3 = Instant::now();
        steps
            .enqueue
            .fetch_add((t1 - t0).as_micros() as u64, Ordering::Relaxed);
        steps
            .claim
            .fetch_add((t2 - t1).as_micros() as u64, Ordering::Relaxed);
        steps
            .ack
            .fetch_add((t3 - t2).as_micros() as u64, Ordering::Relaxed);
    }
}

/// The same loop with async-nats on the same stream and consumer.
async fn native_client(
    js: jetstream::Context,
    subject: String,
    stream: String,
    client: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    seq: Arc<AtomicU64>,
) {
    let consumer: jetstream::consumer::PullConsumer =
        js.get_consumer_from_stream("bench", &stream).await.unwrap();
    while !stop.load(Ordering::Relaxed) {
        let mut acks = Vec::new();
        for _ in 0..BATCH {
            let mut headers = HeaderMap::new();
            let id = format!("n{client}-{}", seq.fetch_add(1, Ordering::Relaxed));
            headers.insert("Nats-Msg-Id", id.as_str());
            acks.push(
                js.publish_with_headers(subject.clone(), headers, "work".into())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH)
            .messages()
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(Ok(m)) = batch.next().await {
            got.push(m);
        }
        let n = got.len() as u64;
        futures::future::join_all(got.iter().map(|m| m.double_ack())).await;
        done.fetch_add(n, Ordering::Relaxed);
    }
}

/// The native loop plus one PostgreSQL write per message per step: the floor.
#[allow(clippy::too_many_arguments)]
async fn floor_client(
    js: jetstream::Context,
    subject: String,
    stream: String,
    db: DatabaseConnection,
    client: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    seq: Arc<AtomicU64>,
) {
    let consumer: jetstream::consumer::PullConsumer =
        js.get_consumer_from_stream("bench", &stream).await.unwrap();
    let write = |sql: &str, key: String| {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [key.into()])
    };
    while !stop.load(Ordering::Relaxed) {
        let mut acks = Vec::new();
        for _ in 0..BATCH {
            let id = format!("f{client}-{}", seq.fetch_add(1, Ordering::Relaxed));
            db.execute_raw(write(
                "INSERT INTO bench_floor (k, state) VALUES ($1, 'queued')",
                id.clone(),
            ))
            .await
            .unwrap();
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            acks.push(
                js.publish_with_headers(subject.clone(), headers, "work".into())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH)
            .messages()
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(Ok(m)) = batch.next().await {
            let key = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            db.execute_raw(write(
                "UPDATE bench_floor SET state = 'claimed' WHERE k = $1",
                key.clone(),
            ))
            .await
            .unwrap();
            got.push((m, key));
        }
        let n = got.len() as u64;
        for (m, key) in got {
            m.double_ack().await.unwrap();
            db.execute_raw(write(
                "UPDATE bench_floor SET state = 'acked' WHERE k = $1",
                key,
            ))
            .await
            .unwrap();
        }
        done.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Graphql,
    Native,
    Floor,
}

struct Ctx {
    s: Arc<Aurum>,
    task: String,
    js: jetstream::Context,
    subject: String,
    stream: String,
    failed: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
    db: DatabaseConnection,
}

/// Runs `side` with `CLIENTS` clients for `phase`; messages acked per second.
async fn phase(ctx: &Ctx, side: Side, phase: Duration, steps: &Arc<Steps>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for c in 0..CLIENTS {
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        handles.push(match side {
            Side::Graphql => tokio::spawn(graphql_client(
                Arc::clone(&ctx.s),
                ctx.task.clone(),
                c,
                stop,
                done,
                Arc::clone(steps),
                Arc::clone(&ctx.failed),
                Arc::clone(&ctx.seq),
            )),
            Side::Native => tokio::spawn(native_client(
                ctx.js.clone(),
                ctx.subject.clone(),
                ctx.stream.clone(),
                c,
                stop,
                done,
                Arc::clone(&ctx.seq),
            )),
            Side::Floor => tokio::spawn(floor_client(
                ctx.js.clone(),
                ctx.subject.clone(),
                ctx.stream.clone(),
                ctx.db.clone(),
                c,
                stop,
                done,
                Arc::clone(&ctx.seq),
            )),
        });
    }
    let started = Instant::now();
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn watch_dlq(addr: &str, token: &str) -> Ws {
    common::subscribed(
        addr,
        token,
        "subscription { dlqMessageAdded(queue: \"dlqbench\") { message { payload } } }",
        None,
    )
    .await
}

/// Waits for the dead letter whose payload is `payload`.
async fn arrival(ws: &mut Ws, payload: &str) -> bool {
    let wait = async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                if v["payload"]["data"]["dlqMessageAdded"]["message"]["payload"] == payload {
                    return true;
                }
                if v["type"] == "error" {
                    eprintln!("dlqMessageAdded: {v}");
                    return false;
                }
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or(false)
}

async fn dlq_latency(ctx: &Ctx) -> Option<(Vec<Duration>, Vec<Duration>)> {
    let s = &ctx.s;
    let mut sender = connect(&s.addr).await;
    let mut ws = watch_dlq(&s.addr, &s.token).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    const ENQUEUE: &str = "mutation($t: ID!, $p: String!) { enqueueTask(input: { taskId: $t, queue: \"dlqbench\", payload: $p, requestId: $p }) { sequence } }";
    let mut graphql = Vec::new();
    for i in 0..DLQ_SAMPLES {
        let p = format!("g-dead-{i}");
        let e = post(
            &mut sender,
            s,
            &json!({ "query": ENQUEUE, "variables": { "t": ctx.task, "p": p } }),
        )
        .await;
        fail_on_errors("enqueue", &e, &ctx.failed);
        let c = post(&mut sender, s, &json!({ "query": "mutation { claimTaskMessages(queue: \"dlqbench\", max: 1, waitMs: 2000) { deliveryId } }" })).await;
        let id = c["data"]["claimTaskMessages"][0]["deliveryId"].clone();
        let t0 = Instant::now();
        let n = post(&mut sender, s, &json!({ "query": "mutation($d: String!) { nackTaskMessage(deliveryId: $d, error: \"provider down\") { attempt } }", "variables": { "d": id } })).await;
        fail_on_errors("nack", &n, &ctx.failed);
        if !arrival(&mut ws, &p).await {
            return None;
        }
        graphql.push(t0.elapsed());
    }
    let consumer: jetstream::consumer::PullConsumer = ctx
        .js
        .get_consumer_from_stream("dlqbench", &ctx.stream)
        .await
        .unwrap();
    let mut native = Vec::new();
    for i in 0..DLQ_SAMPLES {
        let p = format!("n-dead-{i}");
        let e = post(
            &mut sender,
            s,
            &json!({ "query": ENQUEUE, "variables": { "t": ctx.task, "p": p } }),
        )
        .await;
        fail_on_errors("enqueue", &e, &ctx.failed);
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        let Some(Ok(m)) = batch.next().await else {
            return None;
        };
        let t0 = Instant::now();
        m.ack_with(jetstream::AckKind::Term).await.unwrap();
        if !arrival(&mut ws, &p).await {
            return None;
        }
        native.push(t0.elapsed());
    }
    graphql.sort();
    native.sort();
    Some((graphql, native))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if !runtime.block_on(bench()) {
        eprintln!("queue benchmark saw failures");
        std::process::exit(1);
    }
}

async fn bench() -> bool {
    let pg = std::env::var("AURUM_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let nats =
        std::env::var("AURUM_BENCH_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());

    let prefix = format!("qb{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let (admin, db_url, name) = common::fresh_database(&pg, "aurum_qbench").await;
    let js = jetstream::new(async_nats::connect(&nats).await.unwrap());
    let ok = measure(&db_url, &nats, &prefix, js.clone()).await;
    for stream in ["EVENTS", "TASKS", "QUEUE_ADVISORIES"] {
        let _ = js
            .delete_stream(format!("{}_{stream}", prefix.to_uppercase()))
            .await;
    }
    common::drop_database(&admin, &name).await;
    ok
}

async fn measure(db_url: &str, nats: &str, prefix: &str, js: jetstream::Context) -> bool {
    let (child, addr) = spawn_server(
        &[
            ("AURUM_DATABASE_URL", db_url),
            ("AURUM_NATS_URL", nats),
            ("AURUM_NATS_SUBJECT_PREFIX", prefix),
            (
                "AURUM_JWT_SECRET",
                "queue-bench-secret-0123456789abcdefghijkl",
            ),
            ("AURUM_QUEUES", QUEUES),
        ],
        None,
    );
    let token = login(&addr).await;
    let s = Arc::new(Aurum {
        child,
        auth: HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        addr,
        token,
    });
    let mut sender = connect(&s.addr).await;
    let task = post(
        &mut sender,
        &s,
        &json!({ "query": "mutation { createTask(input: { title: \"bench\" }) { id } }" }),
    )
    .await["data"]["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = Database::connect(db_url).await.unwrap();
    db.execute_unprepared("CREATE TABLE bench_floor (k text PRIMARY KEY, state text NOT NULL)")
        .await
        .unwrap();
    let ctx = Ctx {
        db,
        s,
        task,
        js,
        subject: format!("{prefix}.tasks.bench"),
        stream: format!("{}_TASKS", prefix.to_uppercase()),
        failed: Arc::new(AtomicBool::new(false)),
        seq: Arc::new(AtomicU64::new(0)),
    };

    println!(
        "(a) enqueue → claim → ack, batches of {BATCH}, {CLIENTS} clients per side, {ROUNDS} rounds of {PHASE:?}"
    );
    let steps = Arc::new(Steps::default());
    let unused = Arc::new(Steps::default());
    phase(&ctx, Side::Graphql, WARM_UP, &unused).await;
    phase(&ctx, Side::Native, WARM_UP, &unused).await;
    phase(&ctx, Side::Floor, WARM_UP, &unused).await;
    let sides = [Side::Graphql, Side::Native, Side::Floor];
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut ratios = Vec::new();
    for round in 0..ROUNDS.max(3) {
        let mut got = [0.0; 3];
        for k in 0..3 {
            let i = (round + k) % 3;
            let rate = phase(&ctx, sides[i], PHASE, &steps).await;
            got[i] = rate;
            rates[i].push(rate);
        }
        ratios.push(got[0] / got[1]);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    ratios.sort_by(f64::total_cmp);
    let (g, n, f) = (mean(&rates[0]), mean(&rates[1]), mean(&rates[2]));
    println!(
        "  GraphQL: {g:.0} messages/s   native async-nats: {n:.0} messages/s   ratio {:.3}× (rounds {:.3} / {:.3} / {:.3}; goal ≥ 0.7×)",
        g / n,
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
    println!(
        "  floor (native + one PostgreSQL write per message per step): {f:.0} messages/s = {:.3}× native; GraphQL = {:.3}× the floor",
        f / n,
        g / f
    );
    let total = (steps.enqueue.load(Ordering::Relaxed)
        + steps.claim.load(Ordering::Relaxed)
        + steps.ack.load(Ordering::Relaxed))
    .max(1) as f64;
    println!(
        "  GraphQL time per step: enqueue {:.0}%, claim {:.0}%, ack {:.0}%",
        steps.enqueue.load(Ordering::Relaxed) as f64 * 100.0 / total,
        steps.claim.load(Ordering::Relaxed) as f64 * 100.0 / total,
        steps.ack.load(Ordering::Relaxed) as f64 * 100.0 / total
    );

    println!(
        "(b) last failed delivery → dlqMessageAdded at a subscriber, {DLQ_SAMPLES} messages each"
    );
    match dlq_latency(&ctx).await {
        Some((graphql, native)) => {
            println!(
                "  GraphQL nack of the last delivery: p50 {:.1} ms  p99 {:.1} ms",
                ms(percentile(&graphql, 0.5)),
                ms(percentile(&graphql, 0.99))
            );
            println!(
                "  NATS worker's +TERM (advisory capture): p50 {:.1} ms  p99 {:.1} ms",
                ms(percentile(&native, 0.5)),
                ms(percentile(&native, 0.99))
            );
        }
        None => {
            eprintln!("a dead letter never reached the subscriber");
            return false;
        }
    }
    !ctx.failed.load(Ordering::Relaxed)
}
