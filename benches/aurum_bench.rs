//! Platform benchmark: `cargo bench --bench aurum-bench` (optimised build of the server and
//! this client). Runs the real `aurum` binary (embedded profile, fresh SQLite) as a separate
//! process and measures, each against a baseline taken in the same run:
//!
//! a) throughput and latency of `{ __typename }` over HTTP vs the plain JSON `/health`
//!    endpoint of the same binary, on the same keep-alive connections, phases interleaved
//!    (a bare hyper HTTP/1.1 client, so the client's own cost does not flatten the ratio);
//!    then the same pair of requests on a bare axum server (this binary in a second process,
//!    no middleware, no GraphQL), whose POST/GET ratio is the ceiling of (a) on this machine;
//! b) latency from sending a mutation to each subscriber receiving its event, at 1, 100,
//!    1,000 and 10,000 WebSocket subscribers on one replica (p50/p99), against the machine's
//!    floor measured right after it: the same subscribers on a bare fan-out server (this
//!    binary in a second process: one tokio task per socket fed by a broadcast channel, no
//!    GraphQL, protocol or database), sent the same message; the subscribers decode and check
//!    every message either way, and the CPU time per delivery of the server and of the
//!    subscribers is shown for both. 10,000 runs on a fresh server, with 10 events; its
//!    sockets fit in this one client process (the open-file limit is checked first, and its
//!    soft value raised to the hard one with `prlimit` when short; without room, 10,000 is
//!    skipped);
//! c) idle RSS, and RSS per idle subscription (RSS growth of the server process divided by
//!    the count, at 1,000 and at 10,000 subscriptions);
//! d) an authenticated `{ me { id } }` vs the same request without a token (which answers
//!    `UNAUTHENTICATED`), same connections, phases interleaved;
//! e) login latency vs a bare argon2id verification with the same parameters in this process;
//! f) `/health` latency while 8 clients log in as fast as they can;
//! g) time to refuse: edge limit, per-caller mutation limit, exponential fragments, depth,
//!    oversized body (a second server with tight limits), and that nothing ran;
//! h) RSS after a burst of hostile requests (bodies near the 1 MiB cap, megabyte strings, wide,
//!    alias-heavy and deep documents, large variables) on a fresh server: idle, peak, right
//!    after, then every second for 30 s after the load stops.
//!
//! Every response body is checked; a response with an unexpected error counts as a failure and
//! fails the run. Targets: issue #2 (a) ≥ 0.8× throughput, p99 ≤ 1.5×; (b) p99 ≤ 10 ms at
//! 1,000; (c) ≤ 20 MB idle, ≤ 16 KiB per idle subscription; issue #3 (d) ≥ 0.9×;
//! (e) ≤ 1.1×; (f) p99 < 10 ms; (g) every refusal < 50 ms; issue #14 (h) ≤ 2× idle RSS
//! 30 s after the burst; issue #21 (b) 10,000 subscribers ≤ 1.2× bare (p50 and p99),
//! (c) ≤ 16 KiB per subscription at 10,000.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Sender, connect, login, spawn_server};
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
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
        Self::start_from(None, extra)
    }

    /// Starts `binary` (another build of aurum), or this build's.
    fn start_from(binary: Option<&std::path::Path>, extra: &[(&str, &str)]) -> Self {
        let mut server = Self::start_idle_from(binary, extra);
        // Called from inside the benchmark's runtime: log in from a thread of its own.
        let for_login = server.addr.clone();
        server.token = std::thread::spawn(move || login_blocking(&for_login))
            .join()
            .unwrap();
        server
    }

    /// Starts without logging in: no request has reached it yet (`token` is empty).
    fn start_idle(extra: &[(&str, &str)]) -> Self {
        Self::start_idle_from(None, extra)
    }

    fn start_idle_from(binary: Option<&std::path::Path>, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = vec![
            ("AURUM_EVENT_BUFFER", "4096"),
            // (b) holds 10,000 sockets from one address and user (issue #21), and the sockets
            // of the run before may still be closing when the next run opens its own.
            ("AURUM_WS_MAX_PER_ADDRESS", "25000"),
            ("AURUM_WS_MAX_PER_USER", "25000"),
        ];
        settings.extend_from_slice(extra);
        let (child, addr) = match binary {
            Some(binary) => common::spawn_binary(binary, &settings, Some(dir.path())),
            None => spawn_server(&settings, Some(dir.path())),
        };
        let mut server = Self {
            child,
            addr,
            token: String::new(),
            idle_rss_kib: 0,
            _dir: dir,
        };
        std::thread::sleep(Duration::from_millis(500));
        server.idle_rss_kib = server.rss_kib();
        server
    }

    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The largest RSS the process has had (`VmHWM`).
    fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
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
            Self::Typename => v.get("errors").is_none() && v["data"]["__typename"] == "Query",
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
    // The floor: the same two requests on a bare server of the same stack.
    let bare = Bare::start(BARE_HTTP_FLAG);
    let (bare_get, bare_post) = compare(&bare.addr, &Kind::Health, &Kind::Typename).await;
    println!(
        "    floor: a bare axum server (second process, no middleware, no GraphQL), same client"
    );
    for (name, p) in [
        ("GET /health", &bare_get),
        ("POST /graphql (JSON decoded)", &bare_post),
    ] {
        print_phase(name, p);
    }
    println!(
        "    bare ratio throughput {:.3}: the most a JSON POST reaches against this GET here; Aurum's ratio / bare ratio {:.3}",
        rps(&bare_post) / rps(&bare_get),
        ratio / (rps(&bare_post) / rps(&bare_get)),
    );
    plain.failed == 0 && gql.failed == 0 && bare_get.failed == 0 && bare_post.failed == 0
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
    let fragments = exponential_fragments();
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

/// One hostile request of (h): its body, and the code it must be refused with (`None`: it is
/// within every limit and must be answered without errors).
struct Hostile {
    name: &'static str,
    body: String,
    code: Option<&'static str>,
}

/// About twenty hostile requests, most of them just under the 1 MiB body cap: padded bodies,
/// a megabyte-long string argument, wide and alias-heavy documents, a deep one, exponential
/// fragments, large and wide variables, a padded batch, and distinct wide documents within the
/// limits (which the document cache keeps).
fn hostile_requests() -> Vec<Hostile> {
    const NEAR_CAP: usize = 1_000_000;
    let mut out = Vec::new();
    let mut add = |name, body: Value, code| {
        out.push(Hostile {
            name,
            body: body.to_string(),
            code,
        })
    };
    for i in 0..3 {
        let pad = "x".repeat(NEAR_CAP);
        add(
            "1 MB body (padding)",
            json!({"query": format!("{{ __typename }} # {i}"), "pad": pad}),
            None,
        );
    }
    for i in 0..3 {
        let long = "x".repeat(NEAR_CAP);
        add(
            "1 MB string argument",
            json!({"query": format!("{{ __type(name: \"{long}{i}\") {{ name }} }}")}),
            None,
        );
    }
    for i in 0..3 {
        let wide = "__typename ".repeat(NEAR_CAP / 11);
        add(
            "wide document (90,000 fields)",
            json!({"query": format!("{{ {wide} }} # {i}")}),
            Some("QUERY_TOO_LARGE"),
        );
    }
    for i in 0..2 {
        // Fewer fields than the selection limit, so the alias limit is the one that refuses.
        let aliases: String = (0..9_000)
            .map(|k| format!("a{k}_{}: __typename ", "x".repeat(90)))
            .collect();
        add(
            "aliases (9,000)",
            json!({"query": format!("{{ {aliases} }} # {i}")}),
            Some("TOO_MANY_ALIASES"),
        );
    }
    for i in 0..2 {
        let deep = format!(
            "{{ __schema {{ types {{ fields {{ type {{ {}name{} }} }} }} }} }} # {i}",
            "ofType { ".repeat(60),
            " }".repeat(60)
        );
        add(
            "deep document (64)",
            json!({"query": deep}),
            Some("QUERY_TOO_DEEP"),
        );
    }
    let fragments = exponential_fragments();
    add(
        "exponential fragments",
        json!({"query": fragments}),
        Some("QUERY_TOO_LARGE"),
    );
    add(
        "1 MB variable",
        json!({"query": "query($v: String!) { __type(name: $v) { name } }", "variables": {"v": "x".repeat(NEAR_CAP)}}),
        None,
    );
    let wide: serde_json::Map<String, Value> =
        (0..60_000).map(|k| (format!("k{k}"), json!(k))).collect();
    add(
        "wide variables (60,000 keys)",
        json!({"query": "query($v: String!) { __type(name: $v) { name } }", "variables": {"v": "v", "w": wide}}),
        None,
    );
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"query": format!("{{ __typename }} # {i}"), "pad": "x".repeat(95_000)}))
        .collect();
    add("padded batch (10 operations)", json!(batch), None);
    for i in 0..3 {
        // Within every limit and under the cache's 16 KiB: kept parsed.
        let wide = "__typename ".repeat(1_400);
        add(
            "cached wide document (1,400 fields)",
            json!({"query": format!("{{ {wide} }} # {i}")}),
            None,
        );
    }
    out
}

/// Sends `request` and checks its answer.
async fn send_hostile(client: &reqwest::Client, base: &str, request: &Hostile) -> bool {
    let sent = client
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .body(request.body.clone())
        .send()
        .await;
    let (status, v) = match sent {
        Ok(res) => (
            res.status().as_u16(),
            res.json::<Value>().await.unwrap_or(Value::Null),
        ),
        Err(e) => {
            println!("    {}: {e}", request.name);
            return false;
        }
    };
    let good = match request.code {
        None => {
            let answers = match &v {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            status == 200
                && answers
                    .iter()
                    .all(|a| a.get("errors").is_none() && a.get("data").is_some())
        }
        Some(code) => v["errors"][0]["extensions"]["code"] == code,
    };
    if !good {
        let mut text = v.to_string();
        text.truncate(300);
        println!("    {}: unexpected {status} {text}", request.name);
    }
    good
}

/// Passes of the burst in (h); the issue saw no growth after the first.
const BURST_PASSES: usize = 3;

/// (h) RSS after a burst of hostile requests: idle, the peak, right after, then every second
/// for 30 s after the load stops, against the target (<= 2x idle within 30 s).
async fn burst_memory(label: &str, extra: &[(&str, &str)]) -> bool {
    let server = Server::start_idle(extra);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = server.rss_kib();
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    let requests = Arc::new(hostile_requests());
    let bytes: usize = requests.iter().map(|r| r.body.len()).sum();
    let mut ok = true;
    let mut after_pass = Vec::new();
    let started = Instant::now();
    for _ in 0..BURST_PASSES {
        let answers =
            futures::future::join_all(requests.iter().map(|r| send_hostile(&client, &base, r)))
                .await;
        ok &= answers.into_iter().all(|a| a);
        after_pass.push(server.rss_kib());
    }
    let load = started.elapsed();
    let stopped = Instant::now();
    let mb = |kib: u64| kib as f64 / 1024.0;
    let mut samples = Vec::new();
    for s in 1..=30u64 {
        tokio::time::sleep_until((stopped + Duration::from_secs(s)).into()).await;
        samples.push(server.rss_kib());
    }
    let peak = server.peak_rss_kib();
    let last = *samples.last().unwrap();
    let within = samples.iter().position(|&r| r <= 2 * idle).map(|i| i + 1);
    println!(
        "(h) RSS after a burst, {label}: {BURST_PASSES} passes of {} hostile requests sent at once ({:.1} MB each pass, {:.1} s in all, anonymous)",
        requests.len(),
        bytes as f64 / 1e6,
        load.as_secs_f64()
    );
    println!(
        "    idle {:.1} MB; peak {:.1} MB; right after each pass {}",
        mb(idle),
        mb(peak),
        after_pass
            .iter()
            .map(|&r| format!("{:.1}", mb(r)))
            .collect::<Vec<_>>()
            .join(" / ")
            + " MB"
    );
    println!(
        "    each second after the load stopped (MB): {}",
        samples
            .iter()
            .map(|&r| format!("{:.0}", mb(r)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "    after 30 s: {:.1} MB = {:.2}x idle (target <= 2); within 2x idle after {}",
        mb(last),
        last as f64 / idle as f64,
        within.map_or("never (30 s)".to_owned(), |s| format!("{s} s"))
    );
    ok
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Every WebSocket of (b), client or bare server: tungstenite zero-fills its read buffer
/// (128 KiB by default) on reads, and a small one keeps the benchmark's own cost per message
/// from swamping what is measured; frames are written at once, as Aurum writes them.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

async fn subscriber(addr: &str, token: &str) -> Ws {
    let mut req = format!("ws://{addr}/graphql")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let config = ws_config();
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

/// A subscriber's message, decoded without building a JSON tree (the subscribers' own cost
/// per delivery is on the same 2 cores as the server's).
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    payload: Option<Payload<'a>>,
}

#[derive(serde::Deserialize)]
struct Payload<'a> {
    #[serde(borrow)]
    data: Option<ChangedData<'a>>,
    errors: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ChangedData<'a> {
    #[serde(rename = "taskChanged", borrow)]
    task_changed: Option<Changed<'a>>,
}

#[derive(serde::Deserialize)]
struct Changed<'a> {
    #[serde(borrow)]
    task: Option<ChangedTask<'a>>,
}

#[derive(serde::Deserialize)]
struct ChangedTask<'a> {
    #[serde(borrow)]
    title: std::borrow::Cow<'a, str>,
}

/// What the subscribers of one (b) run share: the event in flight and its arrivals. Each
/// subscriber records its own delivery; the last one of an event wakes the sender, once
/// (rather than one channel message, and often one wake-up, per delivery).
struct Arrivals {
    n: usize,
    started: Instant,
    /// Index of the event in flight: its title is `bench-{n}-{event}`.
    event: AtomicUsize,
    /// When that event's mutation was sent, in ns after `started`.
    sent_ns: AtomicU64,
    received: AtomicUsize,
    failures: AtomicU64,
    latencies: std::sync::Mutex<Vec<Duration>>,
    all_in: tokio::sync::Notify,
}

impl Arrivals {
    /// One text message received at `at` by a subscriber.
    fn record(&self, text: &str, at: Instant) {
        let Ok(envelope) = serde_json::from_str::<Envelope>(text) else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if envelope.kind != "next" {
            return;
        }
        let event = self.event.load(Ordering::Acquire);
        let expected = format!("bench-{}-{event}", self.n);
        let good = envelope.payload.is_some_and(|p| {
            p.errors.is_none()
                && p.data
                    .and_then(|d| d.task_changed)
                    .and_then(|c| c.task)
                    .is_some_and(|t| t.title == expected)
        });
        if !good {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sent = self.started + Duration::from_nanos(self.sent_ns.load(Ordering::Acquire));
        if let Ok(mut latencies) = self.latencies.lock() {
            latencies.push(at.duration_since(sent));
        }
        if self.received.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.all_in.notify_one();
        }
    }
}

/// Where (b) delivers: Aurum, or the bare fan-out baseline.
enum Fanout<'a> {
    Aurum(&'a Server),
    Bare(&'a Bare),
}

/// What one (b) run measured.
struct Delivery {
    /// Every delivery's delay, sorted.
    latencies: Vec<Duration>,
    failures: u64,
    /// The mutations' own round trips, sorted (Aurum only).
    mutations: Vec<Duration>,
    /// CPU time the server process spent while the events went out (first send to last
    /// arrival, and the pauses between events).
    server_cpu: Duration,
    /// CPU time this process (the subscribers and the publisher) spent meanwhile.
    client_cpu: Duration,
}

impl Delivery {
    /// Server CPU per delivery, in µs.
    fn server_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
    }

    /// Client CPU per delivery, in µs.
    fn client_us(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
    }
}

/// User plus system CPU time of process `pid` (all its threads, live or ended), from
/// `/proc/<pid>/stat` (in USER_HZ ticks, 100 per second on Linux).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Subscriber sockets opened at once while (b) sets up a run: setup only (nothing is measured
/// then), and well under the listeners' backlog.
const CONNECT_CONCURRENCY: usize = 64;

/// Opens `n` subscriptions, then publishes `events` events one at a time (through Aurum: a
/// `createTask` mutation over HTTP; through the bare baseline: one message on its control
/// socket) and collects, for each, the delay until every subscriber has it.
async fn delivery(target: Fanout<'_>, n: usize, events: usize) -> Delivery {
    let mut mutations = Vec::with_capacity(events);
    let client = reqwest::Client::new();
    let arrivals = Arc::new(Arrivals {
        n,
        started: Instant::now(),
        event: AtomicUsize::new(0),
        sent_ns: AtomicU64::new(0),
        received: AtomicUsize::new(0),
        failures: AtomicU64::new(0),
        latencies: std::sync::Mutex::new(Vec::with_capacity(n * events)),
        all_in: tokio::sync::Notify::new(),
    });
    let rss_before = match &target {
        Fanout::Aurum(server) => server.rss_kib(),
        Fanout::Bare(_) => 0,
    };
    let mut handles = Vec::with_capacity(n);
    // A few sockets at a time (10,000 one after the other take long to set up); each reads
    // from the moment it is subscribed.
    let mut connecting = futures::stream::iter(0..n)
        .map(|_| async {
            match &target {
                Fanout::Aurum(server) => subscriber(&server.addr, &server.token).await,
                Fanout::Bare(bare) => bare.subscriber().await,
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some(mut ws) = connecting.next().await {
        let arrivals = arrivals.clone();
        handles.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    arrivals.record(&t, Instant::now());
                }
            }
        }));
    }
    drop(connecting);
    let mut control = match &target {
        Fanout::Aurum(server) => {
            let base = format!("http://{}", server.addr);
            while active_subscriptions(&client, &base).await < n as u64 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if n >= 1000 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let rss_after = server.rss_kib();
                let goal = if n >= 10_000 {
                    "goal <= 16, issue #21"
                } else {
                    "target <= 16"
                };
                println!(
                    "(c) RSS with {n} idle subscriptions: {} KiB (+{} KiB) = {:.1} KiB per subscription ({goal})",
                    rss_after,
                    rss_after.saturating_sub(rss_before),
                    rss_after.saturating_sub(rss_before) as f64 / n as f64
                );
            }
            None
        }
        Fanout::Bare(bare) => Some(bare.publisher().await),
    };
    let server_pid = match &target {
        Fanout::Aurum(server) => server.child.id(),
        Fanout::Bare(bare) => bare.child.id(),
    };
    let (server_cpu0, client_cpu0) = (cpu_time(server_pid), cpu_time(std::process::id()));
    for i in 0..events {
        let title = format!("bench-{n}-{i}");
        arrivals.received.store(0, Ordering::Release);
        arrivals.event.store(i, Ordering::Release);
        let t0 = Instant::now();
        let sent_ns = u64::try_from(t0.duration_since(arrivals.started).as_nanos()).unwrap();
        arrivals.sent_ns.store(sent_ns, Ordering::Release);
        let published = match (&target, control.as_mut()) {
            (Fanout::Aurum(server), _) => {
                let res: Value = client
                    .post(format!("http://{}/graphql", server.addr))
                    .bearer_auth(&server.token)
                    .json(&json!({"query":"mutation($t: String!) { createTask(input: { title: $t }) { id } }","variables":{"t": title}}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                mutations.push(t0.elapsed());
                res.get("errors").is_none()
            }
            (Fanout::Bare(_), Some(control)) => {
                // What Aurum sends each subscriber for this event, byte for byte in shape.
                let message = json!({"type": "next", "id": "1", "payload": {"data": {"taskChanged": {
                    "kind": "CREATED",
                    "task": {"id": uuid::Uuid::now_v7().to_string(), "title": title}}}}});
                control
                    .send(Message::Text(message.to_string().into()))
                    .await
                    .is_ok()
            }
            (Fanout::Bare(_), None) => false,
        };
        if !published {
            arrivals.failures.fetch_add(1, Ordering::Relaxed);
        }
        let waited = tokio::time::timeout(Duration::from_secs(10), arrivals.all_in.notified());
        if waited.await.is_err() {
            let missing = n.saturating_sub(arrivals.received.load(Ordering::Acquire));
            arrivals
                .failures
                .fetch_add(missing as u64, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server_cpu = cpu_time(server_pid).saturating_sub(server_cpu0);
    let client_cpu = cpu_time(std::process::id()).saturating_sub(client_cpu0);
    for h in handles {
        h.abort();
    }
    if let Fanout::Aurum(server) = &target {
        // The server has let every subscription go before the next run starts (10,000
        // closing sockets would otherwise cost the next run's server CPU time).
        let base = format!("http://{}", server.addr);
        let deadline = Instant::now() + Duration::from_secs(30);
        while active_subscriptions(&client, &base).await > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut latencies = std::mem::take(&mut *arrivals.latencies.lock().unwrap());
    latencies.sort();
    mutations.sort();
    Delivery {
        latencies,
        failures: arrivals.failures.load(Ordering::Relaxed),
        mutations,
        server_cpu,
        client_cpu,
    }
}

/// (b)'s largest count (issue #21), on one replica.
const MANY_SUBSCRIBERS: usize = 10_000;

/// The soft and hard open-file limits of this process (`None` for unlimited).
fn open_files() -> Option<(Option<u64>, Option<u64>)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(|v| v.parse::<u64>().ok());
    Some((values.next()?, values.next()?))
}

/// Makes sure this process (and the servers it starts afterwards, which inherit the limit)
/// may hold `needed` open files: raises the soft limit to the hard one when it is lower,
/// through util-linux's `prlimit` (the workspace forbids the `unsafe` a setrlimit call needs).
/// The soft limit in force, or why `needed` cannot be had.
fn open_files_for(needed: u64) -> Result<String, String> {
    let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |v| v.to_string());
    let (soft, hard) = open_files().ok_or("no /proc/self/limits")?;
    if soft.is_none_or(|s| s >= needed) {
        return Ok(show(soft));
    }
    if hard.is_some_and(|h| h < needed) {
        return Err(format!(
            "open-file hard limit {} < {needed} (raise ulimit -n)",
            show(hard)
        ));
    }
    let raise = format!("--nofile={}:{}", show(hard), show(hard));
    let pid = format!("--pid={}", std::process::id());
    let raised = std::process::Command::new("prlimit")
        .args([pid.as_str(), raise.as_str()])
        .status()
        .is_ok_and(|s| s.success());
    match open_files() {
        Some((soft, _)) if raised && soft.is_none_or(|s| s >= needed) => {
            Ok(format!("{} (raised with prlimit)", show(soft)))
        }
        _ => Err(format!(
            "open-file soft limit {} < {needed} and prlimit could not raise it (raise ulimit -n)",
            show(soft)
        )),
    }
}

/// The flag that makes this binary the bare fan-out server of (b)'s baseline.
const BARE_FANOUT_FLAG: &str = "--bare-fanout-server";

/// The flag that makes this binary the bare HTTP server of (a)'s floor.
const BARE_HTTP_FLAG: &str = "--bare-http-server";

/// This benchmark binary started again as a separate process, as a bare server:
///
/// - with `BARE_FANOUT_FLAG`, (b)'s baseline: WebSockets with what every fan-out over tokio
///   needs and nothing else (no GraphQL, protocol, authentication or database): one task per
///   socket, fed by one broadcast channel. Its latency is the machine's floor for sending one
///   message to each of n sockets from a second process over loopback TCP;
/// - with `BARE_HTTP_FLAG`, (a)'s floor: the same HTTP stack as Aurum (axum on hyper, TCP_NODELAY)
///   with two routes and nothing else: `GET /health` as Aurum answers it, and `POST /graphql`,
///   which decodes its JSON body and answers what Aurum answers `{ __typename }`. Its POST/GET
///   ratio is the most any JSON-over-POST endpoint gets on this stack and machine.
struct Bare {
    child: Child,
    addr: String,
}

impl Bare {
    /// Starts this binary with `flag` (`BARE_FANOUT_FLAG` or `BARE_HTTP_FLAG`).
    fn start(flag: &str) -> Self {
        let (child, addr) = common::spawn_bare(&[flag]);
        Self { child, addr }
    }

    async fn connect(&self, role: &str) -> Ws {
        let config = ws_config();
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("ws://{}/", self.addr),
            Some(config),
            true,
        )
        .await
        .unwrap();
        ws.send(Message::Text(role.into())).await.unwrap();
        // The server answers once the socket has its place.
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "ready" => ws,
            other => panic!("bare fan-out server: {other:?}"),
        }
    }

    async fn subscriber(&self) -> Ws {
        self.connect("subscribe").await
    }

    async fn publisher(&self) -> Ws {
        self.connect("publish").await
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bare fan-out server's process.
fn bare_fanout_server() {
    common::bare_process(|listener| async move {
        let (tx, _) =
            tokio::sync::broadcast::channel::<tokio_tungstenite::tungstenite::Utf8Bytes>(4096);
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let config = ws_config();
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                else {
                    return;
                };
                let Some(Ok(Message::Text(role))) = ws.next().await else {
                    return;
                };
                let mut rx = tx.subscribe();
                if ws.send(Message::Text("ready".into())).await.is_err() {
                    return;
                }
                if role.as_str() == "publish" {
                    drop(rx);
                    while let Some(Ok(Message::Text(text))) = ws.next().await {
                        let _ = tx.send(text);
                    }
                    return;
                }
                loop {
                    tokio::select! {
                        item = rx.recv() => match item {
                            Ok(text) => {
                                if ws.send(Message::Text(text)).await.is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        },
                        frame = ws.next() => match frame {
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                    }
                }
            });
        }
    });
}

/// The bare HTTP server's process.
fn bare_http_server() {
    async fn answer(body: axum::body::Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        match serde_json::from_slice::<Value>(&body) {
            Ok(request) if request["query"].is_string() => {
                axum::Json(json!({"data": {"__typename": "Query"}})).into_response()
            }
            _ => axum::http::StatusCode::BAD_REQUEST.into_response(),
        }
    }
    common::bare_process(|listener| async move {
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            tcp.set_nodelay(true).unwrap();
        });
        let app = axum::Router::new()
            .route(
                "/health",
                axum::routing::get(|| async { axum::Json(json!({ "status": "ok" })) }),
            )
            .route("/graphql", axum::routing::post(answer));
        axum::serve(listener, app).await.unwrap();
    });
}

/// `cargo bench --bench aurum-bench [-- PARTS]`: PARTS picks letters of the parts to run
/// (`a`…`h`; `b` and `c` share their run); all of them by default.
/// A tiny document whose 25 fragments each spread the next twice: 2^24 fields once expanded.
fn exponential_fragments() -> String {
    let mut fragments = String::from("query { ...f0 }\n");
    for i in 0..24 {
        fragments.push_str(&format!(
            "fragment f{i} on Query {{ ...f{} ...f{} }}\n",
            i + 1,
            i + 1
        ));
    }
    fragments.push_str("fragment f24 on Query { __typename }\n");
    fragments
}

fn main() {
    if std::env::args().any(|a| a == BARE_FANOUT_FLAG) {
        bare_fanout_server();
        return;
    }
    if std::env::args().any(|a| a == BARE_HTTP_FLAG) {
        bare_http_server();
        return;
    }
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
            // Before any server starts: they inherit this process's open-file limit.
            let many = match open_files_for(MANY_SUBSCRIBERS as u64 + 512) {
                Ok(limit) => {
                    println!(
                        "(b) open-file limit {limit} per process: {MANY_SUBSCRIBERS} sockets fit in one client process and in each server"
                    );
                    true
                }
                Err(why) => {
                    println!("(b) {MANY_SUBSCRIBERS} subscribers skipped: {why}");
                    false
                }
            };
            let mut server = Server::start();
            tokio::time::sleep(Duration::from_millis(500)).await;
            println!(
                "(c) idle RSS after start: {:.1} MB (target <= 20); after one login: {:.1} MB (argon2id's 19 MiB working memory, kept for the next login)",
                server.idle_rss_kib as f64 / 1024.0,
                server.rss_kib() as f64 / 1024.0
            );
            let bare = Bare::start(BARE_FANOUT_FLAG);
            // Issue #15: the same delivery through a build from before the transactional
            // outbox (its binary named by AURUM_BENCH_BEFORE_BIN; scripts/bench-outbox builds
            // it), in the same run.
            let before = std::env::var("AURUM_BENCH_BEFORE_BIN")
                .ok()
                .map(|bin| Server::start_from(Some(std::path::Path::new(&bin)), &[]));
            let counts = [(1, 200), (100, 50), (1000, 20), (MANY_SUBSCRIBERS, 10)];
            for (n, events) in counts.into_iter().filter(|&(n, _)| many || n < MANY_SUBSCRIBERS) {
                if n == MANY_SUBSCRIBERS {
                    // Issue #21 on a fresh server: its RSS growth is then the subscriptions'
                    // alone, not offset by pages the allocator kept from the runs before.
                    server = Server::start();
                    println!(
                        "(b) {n} subscribers: a fresh server, idle RSS after one login {:.1} MB",
                        server.rss_kib() as f64 / 1024.0
                    );
                }
                let run = delivery(Fanout::Aurum(&server), n, events).await;
                let (lat, failures, writes) = (&run.latencies, run.failures, &run.mutations);
                if let Some(before) = &before {
                    let old_run = delivery(Fanout::Aurum(before), n, events).await;
                    let (old, old_writes) = (&old_run.latencies, &old_run.mutations);
                    println!(
                        "(b) before the outbox, {n:>5} subscribers: delivery p50 {:.2} ms  p99 {:.2} ms; outbox / before: p50 {:.2}x  p99 {:.2}x (goal <= 1.1)",
                        ms(percentile(old, 0.5)),
                        ms(percentile(old, 0.99)),
                        ms(percentile(lat, 0.5)) / ms(percentile(old, 0.5)),
                        ms(percentile(lat, 0.99)) / ms(percentile(old, 0.99)),
                    );
                    println!(
                        "    createTask round trip: with the outbox write p50 {:.2} ms  p99 {:.2} ms, before p50 {:.2} ms  p99 {:.2} ms; ratio p50 {:.2}x  p99 {:.2}x (goal <= 1.1)",
                        ms(percentile(writes, 0.5)),
                        ms(percentile(writes, 0.99)),
                        ms(percentile(old_writes, 0.5)),
                        ms(percentile(old_writes, 0.99)),
                        ms(percentile(writes, 0.5)) / ms(percentile(old_writes, 0.5)),
                        ms(percentile(writes, 0.99)) / ms(percentile(old_writes, 0.99)),
                    );
                    all_ok &= old_run.failures == 0;
                }
                let bare_run = delivery(Fanout::Bare(&bare), n, events).await;
                let (floor, bare_failures) = (&bare_run.latencies, bare_run.failures);
                let (p50, p99) = (percentile(lat, 0.5), percentile(lat, 0.99));
                println!(
                    "(b) delivery to {n:>5} subscribers: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} deliveries, failures {failures})",
                    ms(p50),
                    ms(p99),
                    ms(lat.last().copied().unwrap_or_default()),
                    lat.len()
                );
                let goal = if n == MANY_SUBSCRIBERS {
                    " (goal <= 1.2, issue #21)"
                } else {
                    ""
                };
                println!(
                    "    bare fan-out baseline:       p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} deliveries, failures {bare_failures}); Aurum / bare: p50 {:.2}x  p99 {:.2}x{goal}",
                    ms(percentile(floor, 0.5)),
                    ms(percentile(floor, 0.99)),
                    ms(floor.last().copied().unwrap_or_default()),
                    floor.len(),
                    ms(p50) / ms(percentile(floor, 0.5)),
                    ms(p99) / ms(percentile(floor, 0.99)),
                );
                println!(
                    "    CPU per delivery while the events went out: server {:.1} us (bare {:.1} us), subscribers {:.1} us (bare run {:.1} us)",
                    run.server_us(),
                    bare_run.server_us(),
                    run.client_us(),
                    bare_run.client_us(),
                );
                all_ok &= failures == 0 && bare_failures == 0;
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
        if wants('h') {
            all_ok &= burst_memory("embedded profile", &[]).await;
        }
    });
    if !all_ok {
        eprintln!("benchmark saw failed responses");
        std::process::exit(1);
    }
}
