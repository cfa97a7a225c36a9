//! (g) time to refuse by each limit, (h) RSS after a burst of hostile requests.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    common::{ms, percentile},
    server::Server,
};

/// (g) refusals by each limit: time to answer, and the expected status and code.
pub(crate) async fn refusals() -> bool {
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
pub(crate) struct Hostile {
    pub(crate) name: &'static str,
    pub(crate) body: String,
    pub(crate) code: Option<&'static str>,
}

/// About twenty hostile requests, most of them just under the 1 MiB body cap: padded bodies,
/// a megabyte-long string argument, wide and alias-heavy documents, a deep one, exponential
/// fragments, large and wide variables, a padded batch, and distinct wide documents within the
/// limits (which the document cache keeps).
pub(crate) fn hostile_requests() -> Vec<Hostile> {
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
pub(crate) async fn send_hostile(client: &reqwest::Client, base: &str, request: &Hostile) -> bool {
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
pub(crate) const BURST_PASSES: usize = 3;

/// (h) RSS after a burst of hostile requests: idle, the peak, right after, then every second
/// for 30 s after the load stops, against the target (<= 2x idle within 30 s).
pub(crate) async fn burst_memory(label: &str, extra: &[(&str, &str)]) -> bool {
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

/// A tiny document whose 25 fragments each spread the next twice: 2^24 fields once expanded.
pub(crate) fn exponential_fragments() -> String {
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
