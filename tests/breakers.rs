//! Circuit breakers through the API on both profiles: configuration and its validation, the
//! prototype's rule (5 failures, open, 3 probes), permits and their errors, manual states
//! with audit, history, `circuitBreakerChanged`, metrics, and a restart keeping persisted
//! states. On the services profile, the Redis script is also held to the rules' answers on
//! random sequences.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Env, Profile, TestServer, error_code};
use serde_json::{Value, json};

both_profiles!(
    breaker_contract,
    restart_keeps_persisted_states,
    own_calls_fail_fast_while_their_breaker_is_open
);

pub const CONFIGURE: &str = "mutation($input: ConfigureCircuitBreakerInput!) { configureCircuitBreaker(input: $input) { name state scope dependency configuration { slidingWindowType slidingWindowSize minimumNumberOfCalls failureRateThreshold slowCallRateThreshold slowCallDurationThresholdMs waitDurationInOpenStateMs permittedNumberOfCallsInHalfOpenState maxWaitDurationInHalfOpenStateMs automaticTransitionFromOpenToHalfOpen } } }";
pub const ACQUIRE: &str = "mutation($n: String!) { acquireCircuitBreakerPermit(name: $n) { permitted permitId state retryAfterMs } }";
pub const RECORD: &str = "mutation($p: String!, $o: CallOutcome!, $d: Int) { recordCircuitBreakerOutcome(input: { permitId: $p, outcome: $o, durationMs: $d }) { counted state } }";
pub const BREAKER: &str = "query($n: String!) { circuitBreaker(name: $n) { name state scope dependency stateSince configuration { slidingWindowSize failureRateThreshold waitDurationInOpenStateMs permittedNumberOfCallsInHalfOpenState } metrics { failureRate slowCallRate numberOfCalls numberOfFailedCalls numberOfSlowCalls numberOfNotPermittedCalls probesIssued remainingOpenMs } } }";
const TRANSITIONS: &str = "query($n: String!) { circuitBreakerTransitions(name: $n, first: 20) { totalCount edges { node { fromState toState cause failureRate actor reason replica } } } }";
const SET: &str = "mutation($n: String!, $r: String!) { forceOpenCircuitBreaker(name: $n, reason: $r) { state } }";
const CLOSE: &str = "mutation($n: String!, $r: String!) { forceCloseCircuitBreaker(name: $n, reason: $r) { state } }";
const METRICS_ONLY: &str = "mutation($n: String!, $r: String!) { metricsOnlyCircuitBreaker(name: $n, reason: $r) { state } }";
const RESET: &str = "mutation($n: String!, $r: String!) { resetCircuitBreaker(name: $n, reason: $r) { state metrics { numberOfCalls } } }";

/// The prototype's rule, with a short wait: 5 consecutive failures open it, 3 probes decide.
pub fn prototype(name: &str, wait_ms: i64) -> Value {
    json!({ "input": {
        "name": name, "slidingWindowSize": 5, "minimumNumberOfCalls": 5,
        "failureRateThreshold": 100.0, "waitDurationInOpenStateMs": wait_ms,
        "permittedNumberOfCallsInHalfOpenState": 3, "reason": "the prototype's rule"
    }})
}

/// Acquires a permit on `name` and reports `outcome`; returns the record's answer.
pub async fn call(s: &TestServer, name: &str, outcome: &str) -> Value {
    let grant = s.ok(ACQUIRE, json!({ "n": name })).await;
    let grant = &grant["acquireCircuitBreakerPermit"];
    assert_eq!(grant["permitted"], true, "{grant}");
    let res = s
        .ok(
            RECORD,
            json!({ "p": grant["permitId"], "o": outcome, "d": 5 }),
        )
        .await;
    res["recordCircuitBreakerOutcome"].clone()
}

/// The next transition `circuitBreakerChanged` delivers on subscription `id` (skipping
/// configuration changes).
pub async fn next_transition(ws: &mut common::WsClient, id: &str) -> Value {
    loop {
        let event = ws.next_data(id, Duration::from_secs(5)).await;
        assert!(event["errors"].is_null(), "{event}");
        let change = event["data"]["circuitBreakerChanged"].clone();
        if change["kind"] == "TRANSITIONED" {
            return change;
        }
    }
}

async fn breaker(s: &TestServer, name: &str) -> Value {
    s.ok(BREAKER, json!({ "n": name })).await["circuitBreaker"].clone()
}

async fn breaker_contract(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let shared = matches!(profile, Profile::Services);
    let scope = if shared { "SHARED" } else { "REPLICA" };

    // Aurum's own dependencies are there from the start, per replica.
    let list = s
        .ok(
            "{ circuitBreakers { totalCount edges { node { name dependency scope state } } } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> = list["circuitBreakers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docker", "nats", "redis"], "{list}");
    for e in list["circuitBreakers"]["edges"].as_array().unwrap() {
        assert_eq!(e["node"]["dependency"], true);
        assert_eq!(e["node"]["scope"], "REPLICA");
        assert_eq!(e["node"]["state"], "CLOSED");
    }

    // Bad configurations: coded, naming the field, and nothing is created.
    for (field, value, named) in [
        ("failureRateThreshold", json!(0.5), "failureRateThreshold"),
        ("failureRateThreshold", json!(101), "failureRateThreshold"),
        ("slowCallRateThreshold", json!(0), "slowCallRateThreshold"),
        ("slidingWindowSize", json!(0), "slidingWindowSize"),
        ("minimumNumberOfCalls", json!(0), "minimumNumberOfCalls"),
        (
            "waitDurationInOpenStateMs",
            json!(0),
            "waitDurationInOpenStateMs",
        ),
        (
            "slowCallDurationThresholdMs",
            json!(-5),
            "slowCallDurationThresholdMs",
        ),
        (
            "permittedNumberOfCallsInHalfOpenState",
            json!(0),
            "permittedNumberOfCallsInHalfOpenState",
        ),
        ("name", json!("has space"), "name"),
        ("reason", json!("  "), "reason"),
    ] {
        let mut input = prototype("llm", 1500);
        input["input"][field] = value;
        let res = s.gql(CONFIGURE, input).await;
        assert_eq!(error_code(&res), "BAD_USER_INPUT", "{field}: {res}");
        assert_eq!(res["errors"][0]["extensions"]["field"], named, "{res}");
        assert!(s.ok(BREAKER, json!({ "n": "llm" })).await["circuitBreaker"].is_null());
    }

    // The prototype's rule; unset settings are resilience4j's defaults.
    let created = s.ok(CONFIGURE, prototype("llm", 1500)).await;
    let b = &created["configureCircuitBreaker"];
    assert_eq!(
        (
            b["state"].as_str(),
            b["scope"].as_str(),
            b["dependency"].as_bool()
        ),
        (Some("CLOSED"), Some(scope), Some(false)),
        "{b}"
    );
    let c = &b["configuration"];
    assert_eq!(c["slidingWindowType"], "COUNT_BASED");
    assert_eq!(c["slowCallRateThreshold"], 100.0);
    assert_eq!(c["slowCallDurationThresholdMs"], 60000);
    assert!(c["maxWaitDurationInHalfOpenStateMs"].is_null(), "{c}");
    assert_eq!(c["automaticTransitionFromOpenToHalfOpen"], false);

    // Watch it from here on.
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe(
        "w",
        "subscription { circuitBreakerChanged(name: \"llm\") { kind name state previousState cause replica dependency } }",
        json!({}),
    )
    .await;

    // Four failures, a success, four failures: not five in a row.
    for _ in 0..4 {
        assert_eq!(call(s, "llm", "FAILURE").await["counted"], true);
    }
    call(s, "llm", "SUCCESS").await;
    for _ in 0..4 {
        assert_eq!(call(s, "llm", "FAILURE").await["state"], "CLOSED");
    }
    let b = breaker(s, "llm").await;
    assert_eq!(b["metrics"]["numberOfCalls"], 5, "{b}");
    assert_eq!(b["metrics"]["failureRate"], 80.0, "{b}");
    // The fifth in a row opens it.
    assert_eq!(call(s, "llm", "FAILURE").await["state"], "OPEN");
    let e = &next_transition(&mut ws, "w").await;
    assert_eq!(
        (
            e["state"].as_str(),
            e["previousState"].as_str(),
            e["cause"].as_str()
        ),
        (Some("OPEN"), Some("CLOSED"), Some("THRESHOLDS_EXCEEDED")),
        "{e}"
    );
    let refused = s.ok(ACQUIRE, json!({ "n": "llm" })).await;
    let r = &refused["acquireCircuitBreakerPermit"];
    assert_eq!(
        (r["permitted"].as_bool(), r["state"].as_str()),
        (Some(false), Some("OPEN")),
        "{r}"
    );
    assert!(r["permitId"].is_null());
    let retry = r["retryAfterMs"].as_i64().unwrap();
    assert!((1..=1500).contains(&retry), "{r}");
    let b = breaker(s, "llm").await;
    assert_eq!(b["metrics"]["numberOfNotPermittedCalls"], 1, "{b}");
    assert!(b["metrics"]["remainingOpenMs"].as_i64().unwrap() > 0, "{b}");

    // Permits: malformed, unknown, reused.
    let res = s
        .gql(RECORD, json!({ "p": "nonsense", "o": "SUCCESS" }))
        .await;
    assert_eq!(error_code(&res), "BAD_USER_INPUT", "{res}");
    let res = s
        .gql(
            RECORD,
            json!({ "p": "llm:1:1700000000000:0123456789abcdef0123456789abcdef", "o": "SUCCESS" }),
        )
        .await;
    assert_eq!(error_code(&res), "NOT_FOUND", "{res}");

    // After the wait: three probes across callers, not four.
    tokio::time::sleep(Duration::from_millis(u64::try_from(retry).unwrap() + 50)).await;
    let mut probes = Vec::new();
    for _ in 0..3 {
        let g = s.ok(ACQUIRE, json!({ "n": "llm" })).await;
        assert_eq!(g["acquireCircuitBreakerPermit"]["permitted"], true, "{g}");
        assert_eq!(
            g["acquireCircuitBreakerPermit"]["state"], "HALF_OPEN",
            "{g}"
        );
        probes.push(g["acquireCircuitBreakerPermit"]["permitId"].clone());
    }
    let g = s.ok(ACQUIRE, json!({ "n": "llm" })).await;
    assert_eq!(g["acquireCircuitBreakerPermit"]["permitted"], false, "{g}");
    for p in &probes {
        s.ok(RECORD, json!({ "p": p, "o": "SUCCESS", "d": 10 }))
            .await;
    }
    let again = s
        .gql(RECORD, json!({ "p": probes[0], "o": "FAILURE" }))
        .await;
    assert_eq!(error_code(&again), "PERMIT_ALREADY_RECORDED", "{again}");
    assert_eq!(breaker(s, "llm").await["state"], "CLOSED");
    let kinds: Vec<(String, String)> = {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let e = next_transition(&mut ws, "w").await;
            seen.push((
                e["state"].as_str().unwrap().to_owned(),
                e["cause"].as_str().unwrap().to_owned(),
            ));
        }
        seen
    };
    assert_eq!(
        kinds,
        [
            ("HALF_OPEN".to_owned(), "WAIT_ELAPSED".to_owned()),
            ("CLOSED".to_owned(), "PROBES_PASSED".to_owned())
        ]
    );

    // Manual states, each audited with the person and the reason.
    let forced = s
        .ok(SET, json!({ "n": "llm", "r": "provider incident 42" }))
        .await;
    assert_eq!(forced["forceOpenCircuitBreaker"]["state"], "FORCED_OPEN");
    let g = s.ok(ACQUIRE, json!({ "n": "llm" })).await;
    assert_eq!(g["acquireCircuitBreakerPermit"]["permitted"], false, "{g}");
    let closed = s
        .ok(CLOSE, json!({ "n": "llm", "r": "let everything through" }))
        .await;
    assert_eq!(closed["forceCloseCircuitBreaker"]["state"], "DISABLED");
    for _ in 0..6 {
        assert_eq!(call(s, "llm", "FAILURE").await["counted"], false);
    }
    let measured = s
        .ok(METRICS_ONLY, json!({ "n": "llm", "r": "measure only" }))
        .await;
    assert_eq!(
        measured["metricsOnlyCircuitBreaker"]["state"],
        "METRICS_ONLY"
    );
    for _ in 0..6 {
        assert_eq!(call(s, "llm", "FAILURE").await["state"], "METRICS_ONLY");
    }
    assert_eq!(breaker(s, "llm").await["metrics"]["failureRate"], 100.0);
    let reset = s
        .ok(RESET, json!({ "n": "llm", "r": "back to normal" }))
        .await;
    assert_eq!(reset["resetCircuitBreaker"]["state"], "CLOSED");
    assert_eq!(reset["resetCircuitBreaker"]["metrics"]["numberOfCalls"], 0);
    let res = s.gql(SET, json!({ "n": "llm", "r": "" })).await;
    assert_eq!(error_code(&res), "BAD_USER_INPUT", "{res}");
    let res = s.gql(SET, json!({ "n": "nope", "r": "x" })).await;
    assert_eq!(error_code(&res), "NOT_FOUND", "{res}");

    // History, newest first.
    let h = s.ok(TRANSITIONS, json!({ "n": "llm" })).await;
    let rows: Vec<(String, String)> = h["circuitBreakerTransitions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["toState"].as_str().unwrap().to_owned(),
                e["node"]["cause"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = [
        ("CLOSED", "MANUAL"),
        ("METRICS_ONLY", "MANUAL"),
        ("DISABLED", "MANUAL"),
        ("FORCED_OPEN", "MANUAL"),
        ("CLOSED", "PROBES_PASSED"),
        ("HALF_OPEN", "WAIT_ELAPSED"),
        ("OPEN", "THRESHOLDS_EXCEEDED"),
    ];
    assert_eq!(
        rows,
        expect.map(|(a, b)| (a.to_owned(), b.to_owned())),
        "{h}"
    );
    assert_eq!(h["circuitBreakerTransitions"]["totalCount"], 7, "{h}");
    let edges = &h["circuitBreakerTransitions"]["edges"];
    assert_eq!(edges[6]["node"]["failureRate"], 100.0, "{h}");
    assert_eq!(edges[3]["node"]["actor"], "user:admin", "{h}");
    assert_eq!(edges[3]["node"]["reason"], "provider incident 42", "{h}");
    let audit = s
        .ok(
            "{ auditLog(first: 50) { edges { node { action actor resourceId details } } } }",
            json!({}),
        )
        .await;
    let entries: Vec<&Value> = audit["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .filter(|n| n["resourceId"] == "llm")
        .collect();
    assert!(
        entries
            .iter()
            .any(|n| n["action"] == "breaker.create"
                && n["details"]["reason"] == "the prototype's rule"),
        "{audit}"
    );
    assert!(
        entries.iter().any(|n| n["action"] == "breaker.transition"
            && n["details"]["to"] == "FORCED_OPEN"
            && n["details"]["reason"] == "provider incident 42"
            && n["actor"] == "user:admin"),
        "{audit}"
    );

    // Dependency breakers guard Aurum's own calls: agents do not take permits on them.
    let res = s.gql(ACQUIRE, json!({ "n": "redis" })).await;
    assert_eq!(error_code(&res), "BAD_USER_INPUT", "{res}");
    let res = s.gql(ACQUIRE, json!({ "n": "nope" })).await;
    assert_eq!(error_code(&res), "NOT_FOUND", "{res}");

    // Reset all (the prototype's endpoint).
    s.ok(SET, json!({ "n": "llm", "r": "again" })).await;
    let all = s
        .ok(
            "mutation { resetAllCircuitBreakers(reason: \"all clear\") }",
            json!({}),
        )
        .await;
    assert_eq!(all["resetAllCircuitBreakers"], 4);
    assert_eq!(breaker(s, "llm").await["state"], "CLOSED");

    // Prometheus: state, calls by outcome, refusals.
    let m = s.metrics().await;
    assert_eq!(
        common::metric_value(
            &m,
            "aurum_circuit_breaker_state{name=\"llm\",state=\"closed\"}"
        ),
        1.0
    );
    assert!(
        common::metric_value(
            &m,
            "aurum_circuit_breaker_calls_total{name=\"llm\",outcome=\"failure\"}"
        ) >= 20.0
    );
    assert!(
        common::metric_value(
            &m,
            "aurum_circuit_breaker_not_permitted_calls_total{name=\"llm\"}"
        ) >= 3.0
    );
    env.finish().await;
}

/// A restart keeps `FORCED_OPEN`, `DISABLED`, configuration, and an `OPEN` breaker's
/// remaining wait. On the services profile the breakers' Redis keys are deleted first, so
/// the database alone must carry them.
async fn restart_keeps_persisted_states(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    for (n, wait) in [("forced", 1000), ("off", 1000), ("opened", 60_000)] {
        s.ok(CONFIGURE, prototype(n, wait)).await;
    }
    s.ok(SET, json!({ "n": "forced", "r": "maintenance" }))
        .await;
    s.ok(CLOSE, json!({ "n": "off", "r": "not needed" })).await;
    for _ in 0..5 {
        call(s, "opened", "FAILURE").await;
    }
    // Aurum's own breakers keep a forced state too.
    s.ok(
        SET,
        json!({ "n": "docker", "r": "docker host under maintenance" }),
    )
    .await;
    let before = breaker(s, "opened").await;
    assert_eq!(before["state"], "OPEN");
    let opened_at = Instant::now();

    let Env {
        server,
        shared,
        urls,
    } = env;
    server.stop().await;
    if let Some(urls) = &urls {
        let mut conn = redis::Client::open(urls.redis.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:breaker*", shared.redis_prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!keys.is_empty(), "the shared breakers were in Redis");
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let s = TestServer::start(shared.config(urls.as_ref())).await;
    assert_eq!(breaker(&s, "forced").await["state"], "FORCED_OPEN");
    assert_eq!(breaker(&s, "off").await["state"], "DISABLED");
    assert_eq!(breaker(&s, "docker").await["state"], "FORCED_OPEN");
    let after = breaker(&s, "opened").await;
    assert_eq!(after["state"], "OPEN", "{after}");
    assert_eq!(after["stateSince"], before["stateSince"], "{after}");
    assert_eq!(after["configuration"]["slidingWindowSize"], 5);
    let remaining = after["metrics"]["remainingOpenMs"].as_i64().unwrap();
    let elapsed = i64::try_from(opened_at.elapsed().as_millis()).unwrap();
    assert!(
        remaining <= 60_000 - elapsed + 50 && remaining > 30_000,
        "the wait went on through the restart: {remaining} ms left after {elapsed} ms"
    );
    let g = s.ok(ACQUIRE, json!({ "n": "opened" })).await;
    assert_eq!(g["acquireCircuitBreakerPermit"]["permitted"], false, "{g}");
    s.stop().await;
    shared.cleanup().await;
}

/// Aurum's own calls go through the `redis`, `nats` and `docker` breakers: forced open, the
/// Docker probe reports the breaker instead of calling; on the services profile a queue
/// publish or claim is refused at once with `CIRCUIT_OPEN` naming `nats`, and with `redis`
/// open every request is still served, the agents' breakers on this replica's own windows.
async fn own_calls_fail_fast_while_their_breaker_is_open(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let force = |n: &str| json!({ "n": n, "r": "fault drill" });
    let docker_before = s.ready().await["dependencies"]["docker"]["status"].clone();
    if docker_before == "disabled" {
        assert!(
            !common::services_required(),
            "no Docker engine, so the docker breaker's probe cannot be shown"
        );
        common::record_skip(&format!("{name}: docker breaker part (no Docker engine)"));
    } else {
        assert_eq!(docker_before, "ok");
        s.ok(SET, force("docker")).await;
        let ready = s.ready().await;
        let docker = &ready["dependencies"]["docker"];
        assert_eq!(docker["status"], "down", "{ready}");
        assert!(
            docker["reason"]
                .as_str()
                .unwrap()
                .contains("circuit breaker `docker` is open"),
            "{ready}"
        );
        s.ok(RESET, force("docker")).await;
        assert_eq!(s.ready().await["dependencies"]["docker"]["status"], "ok");
    }
    if matches!(profile, Profile::Embedded) {
        env.finish().await;
        return;
    }
    const TASK: &str = "mutation($t: String!) { createTask(input: { title: $t }) { id } }";
    let task = s.ok(TASK, json!({ "t": "guarded" })).await["createTask"]["id"].clone();
    let enqueue = |r: &str| json!({ "task": task, "q": "default", "p": "x", "r": r });
    s.ok(common::queues::ENQUEUE, enqueue("before")).await;
    s.ok(SET, force("nats")).await;
    let started = Instant::now();
    let refused = s.gql(common::queues::ENQUEUE, enqueue("during")).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "it waited on NATS"
    );
    assert_eq!(error_code(&refused), "CIRCUIT_OPEN", "{refused}");
    let ext = &refused["errors"][0]["extensions"];
    assert_eq!(ext["breaker"], "nats", "{refused}");
    assert!(ext["retryAfter"].as_u64().unwrap() >= 1, "{refused}");
    let claim = s
        .gql(
            common::queues::CLAIM,
            json!({ "q": "default", "max": 1, "wait": 0 }),
        )
        .await;
    assert_eq!(error_code(&claim), "CIRCUIT_OPEN", "{claim}");
    s.ok(RESET, force("nats")).await;
    s.ok(common::queues::ENQUEUE, enqueue("after")).await;

    // `redis` open: everything served, from this replica's own windows and buckets.
    s.ok(CONFIGURE, prototype("llm", 1000)).await;
    s.ok(SET, force("redis")).await;
    for _ in 0..3 {
        assert_eq!(call(s, "llm", "SUCCESS").await["counted"], true);
    }
    let b = breaker(s, "llm").await;
    assert_eq!(b["scope"], "REPLICA", "{b}");
    assert_eq!(b["metrics"]["numberOfCalls"], 3, "{b}");
    let ready = s.ready().await;
    assert_eq!(ready["circuitBreakers"]["scope"], "replica", "{ready}");
    assert_eq!(ready["circuitBreakers"]["status"], "degraded", "{ready}");
    s.ok(RESET, force("redis")).await;
    let b = breaker(s, "llm").await;
    assert_eq!(b["scope"], "SHARED", "{b}");
    env.finish().await;
}

/// The Redis script and the in-process rules give the same answers on random sequences of
/// acquires, outcomes, time and manual changes (the script on Redis, timed by the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_script_agrees_with_the_rules() {
    use aurum::breaker::{
        rules::{Config, Decision, Machine, Outcome, State, WindowType},
        shared::{Answer, Op, Persisted, SharedScript},
    };
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let Some(urls) = common::services_or_skip("the_redis_script_agrees_with_the_rules").await
    else {
        return;
    };
    let client = redis::Client::open(urls.redis.as_str()).unwrap();
    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let prefix = format!("aurumt{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let script = SharedScript::default();
    let mut steps = 0;
    for seed in 0..120u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = Config {
            window_type: if rng.random_bool(0.5) {
                WindowType::CountBased
            } else {
                WindowType::TimeBased
            },
            window_size: rng.random_range(1..8),
            minimum_calls: rng.random_range(1..8),
            failure_rate_threshold: [50.0, 100.0, rng.random_range(1.0..100.0)]
                [rng.random_range(0..3)],
            slow_call_rate_threshold: [100.0, rng.random_range(1.0..100.0)][rng.random_range(0..2)],
            slow_call_duration_ms: rng.random_range(1..400),
            wait_in_open_ms: rng.random_range(1..3000),
            half_open_calls: rng.random_range(1..5),
            max_wait_in_half_open_ms: [0, rng.random_range(1..3000)][rng.random_range(0..2)],
            automatic_transition: rng.random_bool(0.5),
        };
        let name = format!("seq{seed}");
        let persisted = Persisted {
            state: State::Closed,
            epoch: 0,
            since_ms: 1_000_000,
            config_version: 1,
        };
        let mut machine = Machine::new(State::Closed, 0, 1_000_000);
        let mut now = 1_000_000u64;
        let mut held: Vec<(String, u64)> = Vec::new();
        for _ in 0..80 {
            steps += 1;
            let roll = rng.random_range(0..20);
            let (answer, expected_counted) = if roll < 7 {
                let permit = uuid::Uuid::new_v4().simple().to_string();
                let a = script
                    .call(
                        &mut conn,
                        &prefix,
                        &name,
                        &config,
                        persisted,
                        Op::Acquire {
                            permit: &permit,
                            ttl_ms: 60_000,
                        },
                        now,
                    )
                    .await
                    .unwrap();
                let (d, _) = machine.acquire(&config, now);
                let Answer::Done(r) = &a else { panic!("{a:?}") };
                match d {
                    Decision::Permitted { epoch } => {
                        assert!(
                            r.permitted,
                            "seed {seed}: the script refused what the rules permit"
                        );
                        held.push((permit, epoch));
                    }
                    Decision::Refused { retry_after_ms } => {
                        assert!(
                            !r.permitted,
                            "seed {seed}: the script permitted what the rules refuse"
                        );
                        assert_eq!(r.retry_after_ms, retry_after_ms, "seed {seed}");
                    }
                }
                (a, None)
            } else if roll < 15 && !held.is_empty() {
                let (permit, epoch) = held.remove(rng.random_range(0..held.len()));
                let (outcome, code) = match rng.random_range(0..9) {
                    0..4 => (Outcome::Failure, 'F'),
                    4..8 => (Outcome::Success, 'S'),
                    _ => (Outcome::Ignored, 'I'),
                };
                let ms = rng.random_range(0..500);
                let a = script
                    .call(
                        &mut conn,
                        &prefix,
                        &name,
                        &config,
                        persisted,
                        Op::Record {
                            permit: &permit,
                            outcome: code,
                            duration_ms: ms,
                        },
                        now,
                    )
                    .await
                    .unwrap();
                let (counted, _) = machine.record(&config, epoch, outcome, ms, now);
                (a, Some(counted))
            } else if roll < 18 {
                now += rng.random_range(0..1500);
                let a = script
                    .call(
                        &mut conn,
                        &prefix,
                        &name,
                        &config,
                        persisted,
                        Op::Snapshot,
                        now,
                    )
                    .await
                    .unwrap();
                machine.tick(&config, now);
                (a, None)
            } else {
                let to = [
                    State::Closed,
                    State::ForcedOpen,
                    State::Disabled,
                    State::MetricsOnly,
                ][rng.random_range(0..4)];
                let a = script
                    .call(
                        &mut conn,
                        &prefix,
                        &name,
                        &config,
                        persisted,
                        Op::Set(to),
                        now,
                    )
                    .await
                    .unwrap();
                machine.set(to, now);
                (a, None)
            };
            let Answer::Done(r) = answer else {
                panic!("seed {seed}: {answer:?}")
            };
            if let Some(counted) = expected_counted {
                assert_eq!(r.counted, counted, "seed {seed}: counted");
            }
            assert_eq!(
                (r.state, r.epoch, r.since_ms),
                (machine.state, machine.epoch, machine.since_ms),
                "seed {seed}"
            );
            let m = machine.metrics(&config, now);
            let counts = if r.state == State::HalfOpen {
                r.probes
            } else {
                r.window
            };
            assert_eq!(counts, m.counts, "seed {seed}: window");
            assert_eq!(r.not_permitted, m.not_permitted, "seed {seed}");
            assert_eq!(r.probes_issued, m.probes_issued, "seed {seed}");
        }
    }
    println!("the script and the rules agreed on {steps} steps");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
