//! (a) `{ __typename }` vs `/health` and the bare axum ceiling, (d) authenticated vs
//! anonymous, (e) login vs bare argon2id, (f) `/health` during a login storm.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

use crate::{
    bare::{BARE_HTTP_FLAG, Bare},
    common::{self, Sender, connect, ms, percentile},
    server::Server,
};

pub(crate) const CONNECTIONS: usize = 16;
pub(crate) const PHASE: Duration = Duration::from_secs(3);
pub(crate) const ROUNDS: usize = 3;

#[derive(Default)]
pub(crate) struct Phase {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) elapsed: Duration,
}

/// What one phase sends, and what counts as a good answer.
#[derive(Clone)]
pub(crate) enum Kind {
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
pub(crate) async fn phase(senders: Vec<Sender>, host: &str, kind: &Kind) -> (Phase, Vec<Sender>) {
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
pub(crate) async fn compare(addr: &str, baseline: &Kind, measured: &Kind) -> (Phase, Phase) {
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

pub(crate) fn rps(p: &Phase) -> f64 {
    p.ok as f64 / p.elapsed.as_secs_f64()
}

pub(crate) fn print_phase(name: &str, p: &Phase) {
    println!(
        "    {name:<28} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  failures {}",
        rps(p),
        ms(percentile(&p.latencies, 0.5)),
        ms(percentile(&p.latencies, 0.99)),
        p.failed
    );
}

pub(crate) async fn throughput(server: &Server) -> bool {
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
pub(crate) async fn authenticated(server: &Server) -> bool {
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

pub(crate) const LOGIN: &str = r#"{"query":"mutation { login(username: \"admin\", password: \"bench-password\") { token } }"}"#;

pub(crate) async fn login_once(client: &reqwest::Client, base: &str) -> bool {
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
pub(crate) async fn logins(server: &Server) -> bool {
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
