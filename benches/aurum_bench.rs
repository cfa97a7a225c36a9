//! Platform benchmark: `cargo bench --bench aurum-bench` (optimised build of the server and
//! this client). Runs the real `aurum` binary (embedded profile, fresh SQLite) as a separate
//! process and measures, each against a baseline taken in the same run:
//!
//! a) throughput and latency of `{ __typename }` over HTTP vs the plain JSON `/health`
//!    endpoint of the same binary, on the same keep-alive connections, phases interleaved
//!    (a bare hyper HTTP/1.1 client, so the client's own cost does not flatten the ratio);
//! b) latency from sending a mutation to each subscriber receiving its event, at 1, 100 and
//!    1,000 WebSocket subscribers (p50/p99);
//! c) idle RSS, and RSS per idle subscription (1,000 subscriptions);
//! d) an authenticated `{ me { id } }` vs the same request without a token (which answers
//!    `UNAUTHENTICATED`), same connections, phases interleaved;
//! e) login latency vs a bare argon2id verification with the same parameters in this process;
//! f) `/health` latency while 8 clients log in as fast as they can;
//! g) time to refuse: edge limit, per-caller mutation limit, exponential fragments, depth,
//!    oversized body (a second server with tight limits), and that nothing ran.
//!
//! Every response body is checked; a response with an unexpected error counts as a failure and
//! fails the run. Targets: issue #2 (a) ≥ 0.8× throughput, p99 ≤ 1.5×; (b) p99 ≤ 10 ms at
//! 1,000; (c) ≤ 20 MB idle, ≤ 16 KiB per idle subscription; issue #3 (d) ≥ 0.9×;
//! (e) ≤ 1.1×; (f) p99 < 10 ms; (g) every refusal < 50 ms.
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

use common::{Sender, connect, login, spawn_server};
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
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
        Self::start_with(&[])
    }

    /// Starts with extra environment settings (applied after the benchmark's own).
    fn start_with(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = vec![
            ("AURUM_EVENT_BUFFER", "4096"),
            ("AURUM_WS_MAX_PER_ADDRESS", "10000"),
            ("AURUM_WS_MAX_PER_USER", "10000"),
        ];
        settings.extend_from_slice(extra);
        let (child, addr) = spawn_server(&settings, Some(dir.path()));
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
        server.token = std::thread::spawn(move || login_blocking(&for_login))
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

/// Logs in from outside any runtime (the caller may be inside the benchmark's own).
fn login_blocking(addr: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(login(addr))
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

/// What one phase sends, and what counts as a good answer.
#[derive(Clone)]
enum Kind {
    Health,
    Typename,
    /// `{ me { id } }` with this token, or without one (then `UNAUTHENTICATED` is expected).
    Me(Option<String>),
}

impl Kind {
    /// Whether `v` is the answer this request should get.
    fn accepts(&self, v: &Value) -> bool {
        match self {
            Self::Health => v["status"] == "ok",
            Self::Typename => v.get("errors").is_none() && v["data"]["__typename"] == "QueryRoot",
            Self::Me(Some(_)) => v.get("errors").is_none() && v["data"]["me"]["id"].is_string(),
            Self::Me(None) => v["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED",
        }
    }
}

impl Kind {
    /// Sends one request on `sender`; true when the answer is the expected one.
    async fn send_on(&self, sender: &mut Sender, host: &str) -> bool {
        let post = |body: &'static str| {
            hyper::Request::post("/graphql")
                .header(hyper::header::HOST, host)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
        };
        let request = match self {
            Self::Health => hyper::Request::get("/health")
                .header(hyper::header::HOST, host)
                .body(Full::new(Bytes::new())),
            Self::Typename => post(r#"{"query":"{ __typename }"}"#),
            Self::Me(token) => {
                let mut r = hyper::Request::post("/graphql")
                    .header(hyper::header::HOST, host)
                    .header(hyper::header::CONTENT_TYPE, "application/json");
                if let Some(t) = token {
                    r = r.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
                }
                r.body(Full::new(Bytes::from_static(
                    br#"{"query":"{ me { id } }"}"#,
                )))
            }
        };
        let Ok(request) = request else { return false };
        if sender.ready().await.is_err() {
            return false;
        }
        let Ok(response) = sender.send_request(request).await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        let Ok(body) = response.into_body().collect().await else {
            return false;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
            return false;
        };
        self.accepts(&v)
    }
}

/// Drives one request loop per connection for one phase; hands the connections back.
async fn phase(senders: Vec<Sender>, host: &str, kind: &Kind) -> (Phase, Vec<Sender>) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut sender in senders {
        let stop = stop.clone();
        let host = host.to_owned();
        let kind = kind.clone();
        tasks.push(tokio::spawn(async move {
            let mut p = Phase::default();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let good = kind.send_on(&mut sender, &host).await;
                p.latencies.push(t0.elapsed());
                if good { p.ok += 1 } else { p.failed += 1 }
            }
            (p, sender)
        }));
    }
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Phase::default();
    let mut senders = Vec::new();
    for t in tasks {
        let (p, sender) = t.await.unwrap();
        total.ok += p.ok;
        total.failed += p.failed;
        total.latencies.extend(p.latencies);
        senders.push(sender);
    }
    total.elapsed = started.elapsed();
    (total, senders)
}

/// Both kinds on the same `CONNECTIONS` connections: a warm-up of each, then `ROUNDS` rounds
/// of baseline then measured.
async fn compare(addr: &str, baseline: &Kind, measured: &Kind) -> (Phase, Phase) {
    let mut senders = Vec::new();
    for _ in 0..CONNECTIONS {
        senders.push(connect(addr).await);
    }
    let (_, senders) = phase(senders, addr, baseline).await;
    let (_, mut senders) = phase(senders, addr, measured).await;
    let (mut plain, mut gql) = (Phase::default(), Phase::default());
    for _ in 0..ROUNDS {
        for (kind, acc) in [(baseline, &mut plain), (measured, &mut gql)] {
            let (p, back) = phase(senders, addr, kind).await;
            senders = back;
            acc.ok += p.ok;
            acc.failed += p.failed;
            acc.elapsed += p.elapsed;
            acc.latencies.extend(p.latencies);
        }
    }
    plain.latencies.sort();
    gql.latencies.sort();
    (plain, gql)
}

fn rps(p: &Phase) -> f64 {
    p.ok as f64 / p.elapsed.as_secs_f64()
}

fn print_phase(name: &str, p: &Phase) {
    println!(
        "    {name:<28} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  failures {}",
        rps(p),
        ms(percentile(&p.latencies, 0.5)),
        ms(percentile(&p.latencies, 0.99)),
        p.failed
    );
}

async fn throughput(server: &Server) -> bool {
    let (plain, gql) = compare(&server.addr, &Kind::Health, &Kind::Typename).await;
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
        print_phase(name, p);
    }
    println!(
        "    ratio throughput {ratio:.3} (target >= 0.8)   ratio p99 {p99_ratio:.3} (target <= 1.5)"
    );
    plain.failed == 0 && gql.failed == 0
}

/// (d) authenticated vs anonymous `{ me { id } }`.
async fn authenticated(server: &Server) -> bool {
    let (anon, authed) = compare(
        &server.addr,
        &Kind::Me(None),
        &Kind::Me(Some(server.token.clone())),
    )
    .await;
    println!(
        "(d) {{ me {{ id }} }} with and without a token, {CONNECTIONS} connections, interleaved"
    );
    print_phase("no token (UNAUTHENTICATED)", &anon);
    print_phase("bearer access token", &authed);
    println!(
        "    ratio throughput {:.3} (target >= 0.9)",
        rps(&authed) / rps(&anon)
    );
    anon.failed == 0 && authed.failed == 0
}

const LOGIN: &str = r#"{"query":"mutation { login(username: \"admin\", password: \"bench-password\") { token } }"}"#;

async fn login_once(client: &reqwest::Client, base: &str) -> bool {
    match client
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .body(LOGIN)
        .send()
        .await
    {
        Ok(r) => r
            .json::<Value>()
            .await
            .is_ok_and(|v| v["data"]["login"]["token"].is_string()),
        Err(_) => false,
    }
}

/// (e) login latency vs bare argon2id; (f) /health during a login storm.
async fn logins(server: &Server) -> bool {
    use argon2::{PasswordHasher, PasswordVerifier};
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let argon2 = argon2::Argon2::default();
    let stored = argon2
        .hash_password(common::ADMIN_PASSWORD.as_bytes())
        .unwrap()
        .to_string();
    let mut failed = 0u64;
    let (mut bare, mut login) = (Vec::new(), Vec::new());
    // Interleaved, one at a time: the same machine state for both.
    for _ in 0..30 {
        let parsed = argon2::password_hash::phc::PasswordHash::new(&stored).unwrap();
        let t0 = Instant::now();
        assert!(
            argon2
                .verify_password(common::ADMIN_PASSWORD.as_bytes(), &parsed)
                .is_ok()
        );
        bare.push(t0.elapsed());
        let t0 = Instant::now();
        if !login_once(&client, &base).await {
            failed += 1;
        }
        login.push(t0.elapsed());
    }
    bare.sort();
    login.sort();
    let (b50, l50) = (percentile(&bare, 0.5), percentile(&login, 0.5));
    println!(
        "(e) login p50 {:.2} ms (p99 {:.2}) vs bare argon2id verify p50 {:.2} ms (p99 {:.2}), same parameters: ratio {:.3} (target <= 1.1)",
        ms(l50),
        ms(percentile(&login, 0.99)),
        ms(b50),
        ms(percentile(&bare, 0.99)),
        l50.as_secs_f64() / b50.as_secs_f64()
    );
    // (f) 8 clients log in back to back while one client times /health.
    let stop = Arc::new(AtomicBool::new(false));
    let logged_in = Arc::new(AtomicU64::new(0));
    let mut storm = Vec::new();
    for _ in 0..8 {
        let (client, base, stop, logged_in) = (
            client.clone(),
            base.clone(),
            stop.clone(),
            logged_in.clone(),
        );
        storm.push(tokio::spawn(async move {
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if login_once(&client, &base).await {
                    logged_in.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed += 1;
                }
            }
            failed
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health_client = reqwest::Client::new();
    let mut health = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let t0 = Instant::now();
        let ok = match health_client.get(format!("{base}/health")).send().await {
            Ok(r) if r.status().is_success() => r
                .json::<Value>()
                .await
                .is_ok_and(|v| Kind::Health.accepts(&v)),
            _ => false,
        };
        health.push(t0.elapsed());
        if !ok {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in storm {
        failed += t.await.unwrap();
    }
    health.sort();
    println!(
        "(f) /health during a login storm (8 clients, {} logins in {:.1} s): p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms over {} checks (target p99 < 10)",
        logged_in.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        ms(percentile(&health, 0.5)),
        ms(percentile(&health, 0.99)),
        ms(health.last().copied().unwrap_or_default()),
        health.len()
    );
    failed == 0
}

/// (g) refusals by each limit: time to answer, and the expected status and code.
async fn refusals() -> bool {
    let server = Server::start_with(&[
        ("AURUM_HTTP_RATE_PER_SECOND", "1"),
        ("AURUM_HTTP_RATE_BURST", "1000000"),
        ("AURUM_RATE_LIMITS", "mutation=1/1h:1,login=1000/1s"),
    ]);
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let mut ok = true;
    let mut fragments = String::from("query { ...f0 }\n");
    for i in 0..24 {
        fragments.push_str(&format!(
            "fragment f{i} on QueryRoot {{ ...f{} ...f{} }}\n",
            i + 1,
            i + 1
        ));
    }
    fragments.push_str("fragment f24 on QueryRoot { __typename }\n");
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {}name{} }} }} }} }} }}",
        "ofType { ".repeat(12),
        " }".repeat(12)
    );
    let big = "x".repeat(2 * 1024 * 1024);
    let create = json!({"query": "mutation { createTask(input: { title: \"r\" }) { id } }"});
    // The one mutation the limit allows.
    let first: Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(&server.token)
        .json(&create)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ok &= first.get("errors").is_none();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "per-caller mutation limit",
            create.clone(),
            429,
            "RATE_LIMITED",
        ),
        (
            "exponential fragments (2^24 fields)",
            json!({"query": fragments}),
            200,
            "QUERY_TOO_LARGE",
        ),
        (
            "depth 17 (limit 12)",
            json!({"query": deep}),
            200,
            "QUERY_TOO_DEEP",
        ),
        (
            "2 MiB body",
            json!({"query": "{ __typename }", "pad": big}),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    println!("(g) time to refuse (20 tries each; target < 50 ms)");
    for (name, body, status, code) in cases {
        let body = body.to_string();
        let mut times = Vec::new();
        let mut cut_off = 0;
        for _ in 0..20 {
            let t0 = Instant::now();
            let sent = client
                .post(format!("{base}/graphql"))
                .bearer_auth(&server.token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let res = match sent {
                Ok(res) => res,
                // The server answers 413 and closes as soon as the cap is passed; when that
                // lands while this client is still writing, the client sees the close instead
                // of the answer. Still a refusal, timed the same way.
                Err(e) if status == 413 && e.is_request() => {
                    times.push(t0.elapsed());
                    cut_off += 1;
                    continue;
                }
                Err(e) => panic!("{name}: {e}"),
            };
            let got = res.status().as_u16();
            let v: Value = res.json().await.unwrap_or(Value::Null);
            times.push(t0.elapsed());
            if got != status || v["errors"][0]["extensions"]["code"] != code {
                println!("    {name}: unexpected {got} {v}");
                ok = false;
            }
        }
        times.sort();
        println!(
            "    {name:<38} p50 {:.3} ms  max {:.3} ms{}",
            ms(percentile(&times, 0.5)),
            ms(times.last().copied().unwrap_or_default()),
            if cut_off > 0 {
                format!("  ({cut_off} of 20 saw the connection closed mid-upload)")
            } else {
                String::new()
            }
        );
    }
    // Nothing ran: still the one task.
    let count: Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(&server.token)
        .json(&json!({"query": "{ tasks(first: 1) { totalCount } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tasks = count["data"]["tasks"]["totalCount"].as_u64();
    println!("    tasks after 20 refused createTask: {tasks:?} (expected Some(1))");
    ok &= tasks == Some(1);
    // The edge limit, on a server whose burst the start-up login and two requests use up.
    let server2 = Server::start_with(&[
        ("AURUM_HTTP_RATE_PER_SECOND", "1"),
        ("AURUM_HTTP_RATE_BURST", "2"),
    ]);
    let base2 = format!("http://{}", server2.addr);
    for _ in 0..2 {
        let _ = client
            .post(format!("{base2}/graphql"))
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await;
    }
    let mut edge = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        let res = client
            .post(format!("{base2}/graphql"))
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await
            .unwrap();
        let got = res.status().as_u16();
        edge.push(t0.elapsed());
        if got != 429 {
            ok = false;
            println!("    edge limit: unexpected {got}");
        }
    }
    edge.sort();
    println!(
        "    {:<38} p50 {:.3} ms  max {:.3} ms",
        "edge limit per address (429)",
        ms(percentile(&edge, 0.5)),
        ms(edge.last().copied().unwrap_or_default())
    );
    ok
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

/// `cargo bench --bench aurum-bench [-- PARTS]`: PARTS picks letters of the parts to run
/// (`a`…`g`; `b` and `c` share their run); all of them by default.
fn main() {
    let parts: String = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: char| parts.is_empty() || parts.contains(part);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut all_ok = true;
    runtime.block_on(async {
        if wants('b') || wants('c') {
            let server = Server::start();
            tokio::time::sleep(Duration::from_millis(500)).await;
            println!(
                "(c) idle RSS after start: {:.1} MB (target <= 20); after one login: {:.1} MB (argon2id's 19 MiB working memory, kept for the next login)",
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
        }
        if ['a', 'd', 'e', 'f'].into_iter().any(wants) {
            let server = Server::start();
            if wants('a') {
                all_ok &= throughput(&server).await;
            }
            if wants('d') {
                all_ok &= authenticated(&server).await;
            }
            if wants('e') || wants('f') {
                all_ok &= logins(&server).await;
            }
        }
        if wants('g') {
            all_ok &= refusals().await;
        }
    });
    if !all_ok {
        eprintln!("benchmark saw failed responses");
        std::process::exit(1);
    }
}
