//! Platform benchmark: `cargo bench --bench aurum-bench` (optimised build of the server and
//! this client). Runs the real `aurum` binary (embedded profile, fresh SQLite) as a separate
//! process and measures, each against a baseline taken in the same run:
//!
//! a) throughput and latency of `{ __typename }` over HTTP vs the plain JSON `/health`
//!    endpoint of the same binary, on the same keep-alive connections, phases interleaved;
//! b) latency from sending a mutation to each subscriber receiving its event, at 1, 100 and
//!    1,000 WebSocket subscribers (p50/p99);
//! c) idle RSS, and RSS per idle subscription (1,000 subscriptions).
//!
//! Every response body is checked; a response with `errors` counts as a failure and fails the
//! run. Targets (issue #2): (a) ≥ 0.8× throughput, p99 ≤ 1.5×; (b) p99 ≤ 10 ms at 1,000;
//! (c) ≤ 20 MB idle, ≤ 16 KiB per idle subscription.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

const CONNECTIONS: usize = 16;
const PHASE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

struct Server {
    child: Child,
    addr: String,
    /// An admin access token (subscriptions and mutations need one).
    token: String,
    /// RSS right after start, before any request.
    idle_rss_kib: u64,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_aurum"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("AURUM_ADMIN_PASSWORD", "bench-password")
            .env("AURUM_EVENT_BUFFER", "4096")
            // The benchmark is one client address sending as fast as it can.
            .env("AURUM_HTTP_RATE_PER_SECOND", "1000000000")
            .env("AURUM_HTTP_RATE_BURST", "1000000000")
            .env(
                "AURUM_RATE_LIMITS",
                "login=1000000/1s,cost=1000000000/1s,mutation=1000000000/1s",
            )
            .env("AURUM_WS_MAX_PER_ADDRESS", "10000")
            .env("AURUM_WS_MAX_PER_USER", "10000")
            .env("RUST_LOG", "warn,aurum=info")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("server output").unwrap();
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "serving"
            {
                break v["listen"].as_str().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let mut server = Self {
            child,
            addr,
            token: String::new(),
            idle_rss_kib: 0,
            _dir: dir,
        };
        std::thread::sleep(Duration::from_millis(500));
        server.idle_rss_kib = server.rss_kib();
        // Called from inside the benchmark's runtime: log in from a thread of its own.
        let for_login = server.addr.clone();
        server.token = std::thread::spawn(move || login(&for_login))
            .join()
            .unwrap();
        server
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

fn login(addr: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let res: Value = reqwest::Client::new()
            .post(format!("http://{addr}/graphql"))
            .json(&json!({"query": "mutation { login(username: \"admin\", password: \"bench-password\") { token } }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        res["data"]["login"]["token"].as_str().expect("login").to_owned()
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Default)]
struct Phase {
    ok: u64,
    failed: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Drives `CONNECTIONS` concurrent request loops for one phase.
async fn phase(client: &reqwest::Client, base: &str, graphql: bool) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let client = client.clone();
        let stop = stop.clone();
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut p = Phase::default();
            let body = r#"{"query":"{ __typename }"}"#;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let res = if graphql {
                    client
                        .post(format!("{base}/graphql"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                } else {
                    client.get(format!("{base}/health")).send().await
                };
                let good = match res {
                    Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                        Ok(v) if graphql => {
                            v.get("errors").is_none() && v["data"]["__typename"] == "QueryRoot"
                        }
                        Ok(v) => v["status"] == "ok",
                        Err(_) => false,
                    },
                    _ => false,
                };
                p.latencies.push(t0.elapsed());
                if good { p.ok += 1 } else { p.failed += 1 }
            }
            p
        }));
    }
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Phase::default();
    for t in tasks {
        let p = t.await.unwrap();
        total.ok += p.ok;
        total.failed += p.failed;
        total.latencies.extend(p.latencies);
    }
    total.elapsed = started.elapsed();
    total
}

async fn throughput(server: &Server) -> bool {
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap();
    // Warm up both paths and the connection pool.
    let _ = phase(&client, &base, false).await;
    let _ = phase(&client, &base, true).await;
    let (mut plain, mut gql) = (Phase::default(), Phase::default());
    for _ in 0..ROUNDS {
        for (graphql, acc) in [(false, &mut plain), (true, &mut gql)] {
            let p = phase(&client, &base, graphql).await;
            acc.ok += p.ok;
            acc.failed += p.failed;
            acc.elapsed += p.elapsed;
            acc.latencies.extend(p.latencies);
        }
    }
    plain.latencies.sort();
    gql.latencies.sort();
    let rps = |p: &Phase| p.ok as f64 / p.elapsed.as_secs_f64();
    let ratio = rps(&gql) / rps(&plain);
    let p99_ratio = ms(percentile(&gql.latencies, 0.99)) / ms(percentile(&plain.latencies, 0.99));
    println!(
        "(a) HTTP, {CONNECTIONS} keep-alive connections, {ROUNDS}x{}s per endpoint, interleaved",
        PHASE.as_secs()
    );
    for (name, p) in [
        ("GET /health (baseline)", &plain),
        ("POST { __typename }", &gql),
    ] {
        println!(
            "    {name:<24} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  failures {}",
            rps(p),
            ms(percentile(&p.latencies, 0.5)),
            ms(percentile(&p.latencies, 0.99)),
            p.failed
        );
    }
    println!(
        "    ratio throughput {ratio:.3} (target >= 0.8)   ratio p99 {p99_ratio:.3} (target <= 1.5)"
    );
    plain.failed == 0 && gql.failed == 0
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscriber(addr: &str, token: &str) -> Ws {
    let mut req = format!("ws://{addr}/graphql")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    // tungstenite zero-fills its read buffer (128 KiB by default) on reads; a small one keeps
    // the client's cost per message from swamping what is measured.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true)
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"type":"connection_init","payload":{"Authorization": format!("Bearer {token}")}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await
            && t.contains("connection_ack")
        {
            break;
        }
    }
    ws.send(Message::Text(
        json!({"id":"1","type":"subscribe","payload":{"query":"subscription { taskChanged { kind task { id title } } }"}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    ws
}

async fn active_subscriptions(client: &reqwest::Client, base: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("aurum_graphql_subscriptions_active"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Opens `n` subscriptions, then sends `events` mutations one at a time and collects, for each,
/// the delay until every subscriber has it. Returns (latencies, failures).
async fn delivery(
    server: &Server,
    n: usize,
    events: usize,
    rss_report: bool,
) -> (Vec<Duration>, u64) {
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let rss_before = server.rss_kib();
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant, bool)>();
    let mut handles = Vec::new();
    for _ in 0..n {
        let mut ws = subscriber(&server.addr, &server.token).await;
        let tx = tx.clone();
        handles.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    let at = Instant::now();
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    if v["type"] == "next" {
                        let ok = v["payload"].get("errors").is_none();
                        let title = v["payload"]["data"]["taskChanged"]["task"]["title"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned();
                        if tx.send((title, at, ok)).is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    while active_subscriptions(&client, &base).await < n as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if rss_report {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_after = server.rss_kib();
        println!(
            "(c) RSS with {n} idle subscriptions: {} KiB (+{} KiB) = {:.1} KiB per subscription (target <= 16)",
            rss_after,
            rss_after.saturating_sub(rss_before),
            rss_after.saturating_sub(rss_before) as f64 / n as f64
        );
    }
    let failures = AtomicU64::new(0);
    let mut latencies = Vec::with_capacity(n * events);
    for i in 0..events {
        let title = format!("bench-{n}-{i}");
        let t0 = Instant::now();
        let res: Value = client
            .post(format!("{base}/graphql"))
            .bearer_auth(&server.token)
            .json(&json!({"query":"mutation($t: String!) { createTask(input: { title: $t }) { id } }","variables":{"t": title}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if res.get("errors").is_some() {
            failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut received = 0;
        while received < n {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some((got, at, ok))) => {
                    if got == title && ok {
                        received += 1;
                        latencies.push(at.duration_since(t0));
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    failures.fetch_add((n - received) as u64, Ordering::Relaxed);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for h in handles {
        h.abort();
    }
    latencies.sort();
    (latencies, failures.into_inner())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut all_ok = true;
    runtime.block_on(async {
        let server = Server::start();
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "(c) idle RSS after start: {:.1} MB (target <= 20); after one login: {:.1} MB (argon2id holds 19 MiB per verification, which glibc keeps)",
            server.idle_rss_kib as f64 / 1024.0,
            server.rss_kib() as f64 / 1024.0
        );
        for (n, events) in [(1, 200), (100, 50), (1000, 20)] {
            let (lat, failures) = delivery(&server, n, events, n == 1000).await;
            println!(
                "(b) delivery to {n:>4} subscribers: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} deliveries, failures {failures})",
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(lat.last().copied().unwrap_or_default()),
                lat.len()
            );
            all_ok &= failures == 0;
        }
        drop(server);
        let server = Server::start();
        all_ok &= throughput(&server).await;
    });
    if !all_ok {
        eprintln!("benchmark saw failed responses");
        std::process::exit(1);
    }
}
