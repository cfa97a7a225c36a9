//! The figures the run prints: latency percentiles and failures of the HTTP load per phase,
//! the subscribers' reconnects per phase, and the summary at the end.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

pub(crate) use crate::common::{ms, percentile};
use crate::{
    RECONNECT_GOAL, SUBSCRIBERS,
    haproxy::Counters,
    state::{Failure, Shared, SubLog},
};

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// HTTP figures of one phase.
pub(crate) struct HttpFigures {
    pub(crate) requests: usize,
    pub(crate) failures: usize,
    pub(crate) failure_kinds: BTreeMap<String, usize>,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
    pub(crate) last_failure: Option<Instant>,
}

pub(crate) fn http_figures(shared: &Shared, phase: u8) -> HttpFigures {
    let log = shared.http.lock().unwrap();
    let mut lat: Vec<Duration> = log
        .samples
        .iter()
        .filter(|s| s.phase == phase)
        .map(|s| s.latency)
        .collect();
    lat.sort();
    let failures: Vec<&Failure> = log.failures.iter().filter(|f| f.phase == phase).collect();
    let mut failure_kinds = BTreeMap::new();
    for f in &failures {
        // The kind without the details that differ per connection.
        let kind: String = f.what.chars().take(70).collect();
        *failure_kinds.entry(kind).or_default() += 1;
    }
    HttpFigures {
        requests: lat.len(),
        failures: failures.len(),
        failure_kinds,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
        last_failure: failures.iter().map(|f| f.at).max(),
    }
}

pub(crate) fn print_http(
    label: &str,
    f: &HttpFigures,
    elapsed: Duration,
    lb: (Counters, Counters),
) {
    println!(
        "  HTTP ({label}): {} requests in {:.1} s ({:.0}/s), {} client-visible failures, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; HAProxy retried {} (to another replica {}), answered 5xx {}",
        f.requests,
        secs(elapsed),
        f.requests as f64 / secs(elapsed).max(1e-9),
        f.failures,
        ms(f.p50),
        ms(f.p99),
        ms(f.max),
        lb.1.retries.saturating_sub(lb.0.retries),
        lb.1.redispatches.saturating_sub(lb.0.redispatches),
        lb.1.http_5xx.saturating_sub(lb.0.http_5xx),
    );
    for (kind, n) in &f.failure_kinds {
        println!("    failure x{n}: {kind}");
    }
}

/// Subscription figures of one phase: reconnects, the slowest, and how sockets ended.
pub(crate) struct SubFigures {
    reconnects: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    first_event_p50: Duration,
    first_event_p99: Duration,
    first_event_max: Duration,
    closes: BTreeMap<String, u64>,
}

pub(crate) fn sub_figures(shared: &Shared, phase: u8) -> SubFigures {
    let log = shared.subs.lock().unwrap();
    let mut lat: Vec<Duration> = log
        .reconnects
        .iter()
        .filter(|r| r.phase == phase)
        .map(|r| r.resubscribed)
        .collect();
    lat.sort();
    let mut first: Vec<Duration> = log
        .first_events
        .iter()
        .filter(|(p, _)| *p == phase)
        .map(|(_, d)| *d)
        .collect();
    first.sort();
    let closes = log
        .closes
        .iter()
        .filter(|((p, _), _)| *p == phase)
        .map(|((_, how), n)| (how.clone(), *n))
        .collect();
    SubFigures {
        reconnects: lat.len(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
        first_event_p50: percentile(&first, 0.5),
        first_event_p99: percentile(&first, 0.99),
        first_event_max: first.last().copied().unwrap_or_default(),
        closes,
    }
}

pub(crate) fn print_subs(f: &SubFigures, live: usize) {
    let closes: Vec<String> = f.closes.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    println!(
        "  subscriptions: {} reconnects, subscribed again after p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (goal <= {} s); first event p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms after subscribing again; sockets ended: {}; {live}/{SUBSCRIBERS} connected now",
        f.reconnects,
        ms(f.p50),
        ms(f.p99),
        ms(f.max),
        RECONNECT_GOAL.as_secs(),
        ms(f.first_event_p50),
        ms(f.first_event_p99),
        ms(f.first_event_max),
        if closes.is_empty() {
            "none".into()
        } else {
            closes.join(", ")
        },
    );
}

/// One scale measurement: replicas in the backend, requests per second, p50, p99, failures.
pub(crate) type ScaleRow = (usize, f64, Duration, Duration, usize);

/// Prints the summary of the run; the slowest resubscription of the whole run, if any.
pub(crate) fn print_summary(
    rolling_http: &HttpFigures,
    rolling_subs: &SubFigures,
    kill_http: &HttpFigures,
    down: Option<Duration>,
    subs: &SubLog,
    scale: &[ScaleRow],
) -> Option<Duration> {
    let mut reconnect_times: Vec<Duration> =
        subs.reconnects.iter().map(|r| r.resubscribed).collect();
    reconnect_times.sort();
    let mut first_events: Vec<Duration> = subs.first_events.iter().map(|(_, d)| *d).collect();
    first_events.sort();
    let mut closes: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, how), n) in &subs.closes {
        *closes.entry(how.clone()).or_default() += n;
    }

    println!("\n== summary ==");
    println!(
        "  rolling restart: {} HTTP requests, {} client-visible failures, p50 {:.1} ms, p99 {:.1} ms",
        rolling_http.requests,
        rolling_http.failures,
        ms(rolling_http.p50),
        ms(rolling_http.p99)
    );
    println!(
        "  rolling restart: {} subscription reconnects, p99 {:.0} ms, max {:.0} ms; sockets ended: {}",
        rolling_subs.reconnects,
        ms(rolling_subs.p99),
        ms(rolling_subs.max),
        rolling_subs
            .closes
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  kill -9: {} client-visible failures, HAProxy routed around after {}",
        kill_http.failures,
        down.map_or("never".into(), |d| format!("{:.0} ms", ms(d)))
    );
    println!(
        "  subscriptions, whole run: {} reconnects, subscribed again p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; first event after subscribing again p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} events, {} replayed twice, {} lagged; never connected {}, no event on the last subscription {}",
        reconnect_times.len(),
        ms(percentile(&reconnect_times, 0.5)),
        ms(percentile(&reconnect_times, 0.99)),
        ms(reconnect_times.last().copied().unwrap_or_default()),
        ms(percentile(&first_events, 0.5)),
        ms(percentile(&first_events, 0.99)),
        ms(first_events.last().copied().unwrap_or_default()),
        subs.events,
        subs.repeated,
        subs.lagged,
        subs.never_connected,
        subs.deaf_at_end,
    );
    println!(
        "  sockets ended, whole run: {}",
        closes
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !subs.connect_failures.is_empty() {
        let failures: Vec<String> = subs
            .connect_failures
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect();
        println!("  failed connection attempts: {}", failures.join(", "));
    }
    for e in subs.errors.iter().take(5) {
        println!("  subscription error: {e}");
    }
    for (n, rate, p50, p99, failures) in scale {
        println!(
            "  scale: {n} replica(s): {rate:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {failures} failures",
            ms(*p50),
            ms(*p99)
        );
    }
    reconnect_times.last().copied()
}
