//! (b) delivery to 1 … 10,000 WebSocket subscribers against the bare fan-out, (c) RSS per
//! idle subscription.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    bare::{BARE_FANOUT_FLAG, Bare},
    common::{self, Ws, ms, percentile},
    server::Server,
};

/// Every WebSocket of (b), client or bare server: tungstenite zero-fills its read buffer
/// (128 KiB by default) on reads, and a small one keeps the benchmark's own cost per message
/// from swamping what is measured; frames are written at once, as Aurum writes them.
pub(crate) fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

pub(crate) async fn subscriber(addr: &str, token: &str) -> Ws {
    common::subscribed(
        addr,
        token,
        "subscription { taskChanged { kind task { id title } } }",
        Some(ws_config()),
    )
    .await
}

pub(crate) async fn active_subscriptions(client: &reqwest::Client, base: &str) -> u64 {
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
pub(crate) struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) payload: Option<Payload<'a>>,
}

#[derive(serde::Deserialize)]
pub(crate) struct Payload<'a> {
    #[serde(borrow)]
    pub(crate) data: Option<ChangedData<'a>>,
    pub(crate) errors: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
pub(crate) struct ChangedData<'a> {
    #[serde(rename = "taskChanged", borrow)]
    pub(crate) task_changed: Option<Changed<'a>>,
}

#[derive(serde::Deserialize)]
pub(crate) struct Changed<'a> {
    #[serde(borrow)]
    pub(crate) task: Option<ChangedTask<'a>>,
}

#[derive(serde::Deserialize)]
pub(crate) struct ChangedTask<'a> {
    #[serde(borrow)]
    pub(crate) title: std::borrow::Cow<'a, str>,
}

/// What the subscribers of one (b) run share: the event in flight and its arrivals. Each
/// subscriber records its own delivery; the last one of an event wakes the sender, once
/// (rather than one channel message, and often one wake-up, per delivery).
pub(crate) struct Arrivals {
    pub(crate) n: usize,
    pub(crate) started: Instant,
    /// Index of the event in flight: its title is `bench-{n}-{event}`.
    pub(crate) event: AtomicUsize,
    /// When that event's mutation was sent, in ns after `started`.
    pub(crate) sent_ns: AtomicU64,
    pub(crate) received: AtomicUsize,
    pub(crate) failures: AtomicU64,
    pub(crate) latencies: std::sync::Mutex<Vec<Duration>>,
    pub(crate) all_in: tokio::sync::Notify,
}

impl Arrivals {
    /// One text message received at `at` by a subscriber.
    pub(crate) fn record(&self, text: &str, at: Instant) {
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
pub(crate) enum Fanout<'a> {
    Aurum(&'a Server),
    Bare(&'a Bare),
}

/// What one (b) run measured.
pub(crate) struct Delivery {
    /// Every delivery's delay, sorted.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) failures: u64,
    /// The mutations' own round trips, sorted (Aurum only).
    pub(crate) mutations: Vec<Duration>,
    /// CPU time the server process spent while the events went out (first send to last
    /// arrival, and the pauses between events).
    pub(crate) server_cpu: Duration,
    /// CPU time this process (the subscribers and the publisher) spent meanwhile.
    pub(crate) client_cpu: Duration,
}

impl Delivery {
    /// Server CPU per delivery, in µs.
    pub(crate) fn server_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
    }

    /// Client CPU per delivery, in µs.
    pub(crate) fn client_us(&self) -> f64 {
        self.client_cpu.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
    }
}

/// User plus system CPU time of process `pid` (all its threads, live or ended), from
/// `/proc/<pid>/stat` (in USER_HZ ticks, 100 per second on Linux).
pub(crate) fn cpu_time(pid: u32) -> Duration {
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
pub(crate) const CONNECT_CONCURRENCY: usize = 64;

/// Opens `n` subscriptions, then publishes `events` events one at a time (through Aurum: a
/// `createTask` mutation over HTTP; through the bare baseline: one message on its control
/// socket) and collects, for each, the delay until every subscriber has it.
pub(crate) async fn delivery(target: Fanout<'_>, n: usize, events: usize) -> Delivery {
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
pub(crate) const MANY_SUBSCRIBERS: usize = 10_000;

/// The soft and hard open-file limits of this process (`None` for unlimited).
pub(crate) fn open_files() -> Option<(Option<u64>, Option<u64>)> {
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
pub(crate) fn open_files_for(needed: u64) -> Result<String, String> {
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

/// (b) and (c): delivery at each count against the bare fan-out (and against an earlier build
/// when `AURUM_BENCH_BEFORE_BIN` names one), and the server's RSS. False: a delivery failed.
pub(crate) async fn run() -> bool {
    let mut ok = true;
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
    for (n, events) in counts
        .into_iter()
        .filter(|&(n, _)| many || n < MANY_SUBSCRIBERS)
    {
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
            ok &= old_run.failures == 0;
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
        ok &= failures == 0 && bare_failures == 0;
    }
    ok
}
