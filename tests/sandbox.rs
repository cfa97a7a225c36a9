//! Sandbox runs on both profiles (runc): a run streams its output live and ends with its
//! status; bad input is refused before any container starts; cancelling works once, queued and
//! running; a subscriber that goes away resumes from its offset and gets every byte once; a
//! missing image is a clear error; an open `docker` breaker keeps runs queued, not failed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    Env, Profile, error_code,
    sandbox::{CANCEL, Client, fleet_containers, sandbox_or_skip},
};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

async fn env(
    profile: Profile,
    test: &str,
    adjust: impl FnOnce(&mut aurum::config::Config),
) -> Option<Env> {
    if !sandbox_or_skip(test, "runc").await {
        return None;
    }
    Env::with(profile, test, |c| {
        c.rate_limits = "login=100000/1s,cost=10000000/1s,mutation=100000/1s,sandbox=1000/1s"
            .parse()
            .unwrap();
        adjust(c);
    })
    .await
}

async fn no_containers_left(fleet: &str) {
    for _ in 0..100 {
        if fleet_containers(fleet).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "containers left behind: {:?}",
        fleet_containers(fleet).await
    );
}

async fn a_run_streams_its_output_and_ends(profile: Profile, test: &str) {
    let Some(env) = env(profile, test, |_| {}).await else {
        return;
    };
    let api = Client::of(&env.server);
    let code = "import sys, time\nfor i in range(5):\n    print('line', i)\n    time.sleep(0.1)\nprint('oops', file=sys.stderr, flush=True)\ntime.sleep(0.3)\nprint(sys.stdin.read().upper())\nsys.exit(3)";
    let input = json!({ "stdin": "from stdin", "limits": { "memoryMb": 64, "timeoutMs": 20000 } });
    let request_id = "run-1";
    let first = api
        .try_start(
            "python",
            code,
            json!({ "stdin": "from stdin", "limits": input["limits"], "requestId": request_id }),
        )
        .await;
    let id = first["data"]["startSandboxRun"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first["data"]["startSandboxRun"]["status"], "QUEUED");
    // Subscribed while it runs: every line arrives, then the end (stdout and stderr are two
    // pipes: the pause keeps their order in this check).
    let followed = api.follow(&id, 0, None, LIMIT).await;
    let text = String::from_utf8(followed.bytes.clone()).unwrap();
    assert_eq!(
        text,
        "line 0\nline 1\nline 2\nline 3\nline 4\noops\nFROM STDIN\n"
    );
    assert!(
        followed.deliveries.len() >= 3,
        "output arrives as it is written: {:?}",
        followed.deliveries
    );
    let streams: Vec<&str> = followed
        .deliveries
        .iter()
        .map(|d| d["stream"].as_str().unwrap())
        .collect();
    assert!(streams.contains(&"STDERR") && streams.contains(&"STDOUT"));
    assert_eq!(followed.end["run"]["status"], "FAILED");
    assert_eq!(followed.end["run"]["exitCode"], 3);
    assert_eq!(followed.end["nextOffset"].as_i64(), Some(text.len() as i64));

    let run = api.run(&id).await;
    assert_eq!(
        (
            run["status"].as_str(),
            run["exitCode"].as_i64(),
            run["signal"].as_str()
        ),
        (Some("FAILED"), Some(3), None)
    );
    assert_eq!(run["stdoutBytes"].as_i64(), Some(text.len() as i64 - 5));
    assert_eq!(run["stderrBytes"], 5);
    assert_eq!(
        (
            run["stdoutTruncated"].as_bool(),
            run["storedBytes"].as_i64()
        ),
        (Some(false), Some(text.len() as i64))
    );
    assert!(run["durationMs"].as_i64().unwrap() >= 500, "{run}");
    assert!(run["queueWaitMs"].as_i64().is_some());

    // Its status changes, replayed from the bus: queued, started, finished (no output).
    let mut ws = env.server.ws("graphql-transport-ws").await;
    ws.subscribe(
        "changes",
        "subscription($id: ID!) { sandboxRunChanged(runId: $id, after: \"0\") { kind runId status replica storedBytes } }",
        json!({ "id": id }),
    )
    .await;
    let mut changes = Vec::new();
    for _ in 0..3 {
        let change = ws.next_data("changes", LIMIT).await;
        let change = change["data"]["sandboxRunChanged"].clone();
        assert_eq!(change["runId"].as_str(), Some(id.as_str()), "{change}");
        changes.push((
            change["kind"].as_str().unwrap().to_owned(),
            change["status"].as_str().unwrap().to_owned(),
        ));
        if change["kind"] == "FINISHED" {
            assert!(change["replica"].is_string(), "{change}");
            assert_eq!(change["storedBytes"].as_i64(), Some(text.len() as i64));
        }
    }
    assert_eq!(
        changes,
        [
            ("QUEUED", "QUEUED"),
            ("STARTED", "RUNNING"),
            ("FINISHED", "FAILED")
        ]
        .map(|(k, s)| (k.to_owned(), s.to_owned()))
    );

    // Idempotent: the same requestId answers the same run; another input with it is refused.
    let again = api
        .try_start(
            "python",
            code,
            json!({ "stdin": "from stdin", "limits": input["limits"], "requestId": request_id }),
        )
        .await;
    assert_eq!(
        again["data"]["startSandboxRun"]["id"].as_str(),
        Some(id.as_str())
    );
    let reused = api
        .try_start("python", "print(2)", json!({ "requestId": request_id }))
        .await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED");

    // Listed, counted, audited, measured.
    let listed = api.gql("{ sandboxRuns(filter: { status: FAILED, language: \"python\" }) { totalCount edges { node { id } } } }", json!({})).await;
    assert_eq!(listed["data"]["sandboxRuns"]["totalCount"], 1, "{listed}");
    assert_eq!(
        listed["data"]["sandboxRuns"]["edges"][0]["node"]["id"].as_str(),
        Some(id.as_str())
    );
    let audit = api
        .gql(
            "{ auditLog(filter: { action: \"sandbox.start\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["data"]["auditLog"]["totalCount"], 1, "{audit}");
    let metrics = env.server.metrics().await;
    assert!(common::metric_value(&metrics, "aurum_sandbox_runs_total{outcome=\"FAILED\"}") >= 1.0);
    assert!(
        metrics.contains("aurum_sandbox_queue_wait_seconds"),
        "queue wait is observed"
    );
    assert!(
        metrics.contains("aurum_sandbox_run_duration_seconds"),
        "run duration is observed"
    );
    no_containers_left(&env.shared.fleet).await;
    env.finish().await;
}

async fn bad_input_is_refused_before_any_container(profile: Profile, test: &str) {
    let Some(env) = env(profile, test, |c| c.sandbox.max_code_bytes = 1024).await else {
        return;
    };
    let api = Client::of(&env.server);
    // What a client is told it may ask for is where refusals start (the cases below).
    let bounds = api
        .gql(
            "{ sandboxLimits { defaults { memoryMb cpus timeoutMs pids outputBytes } maxima { memoryMb cpus timeoutMs pids outputBytes } maxCodeBytes maxStdinBytes } }",
            json!({}),
        )
        .await;
    assert_eq!(
        bounds["data"]["sandboxLimits"],
        json!({
            "defaults": { "memoryMb": 128, "cpus": 1.0, "timeoutMs": 10000, "pids": 128, "outputBytes": 1048576 },
            "maxima": { "memoryMb": 512, "cpus": 2.0, "timeoutMs": 60000, "pids": 512, "outputBytes": 8388608 },
            "maxCodeBytes": 1024,
            "maxStdinBytes": 262144
        }),
        "{bounds}"
    );
    let cases: Vec<(&str, String, Value, &str)> = vec![
        ("cobol", "print(1)".into(), json!({}), "language"),
        ("python", String::new(), json!({}), "code"),
        ("python", "#".repeat(1025), json!({}), "code"),
        (
            "python",
            "print(1)".into(),
            json!({ "limits": { "memoryMb": 513 } }),
            "memoryMb",
        ),
        (
            "python",
            "print(1)".into(),
            json!({ "limits": { "cpus": 2.5 } }),
            "cpus",
        ),
        (
            "python",
            "print(1)".into(),
            json!({ "limits": { "timeoutMs": 60001 } }),
            "timeoutMs",
        ),
        (
            "python",
            "print(1)".into(),
            json!({ "limits": { "pids": 100000 } }),
            "pids",
        ),
        (
            "python",
            "print(1)".into(),
            json!({ "limits": { "outputBytes": 0 } }),
            "outputBytes",
        ),
        (
            "python",
            "print(1)".into(),
            json!({ "taskId": uuid::Uuid::now_v7().to_string() }),
            "",
        ),
    ];
    for (language, code, extra, field) in cases {
        let res = api.try_start(language, &code, extra.clone()).await;
        if field.is_empty() {
            assert_eq!(error_code(&res), "NOT_FOUND", "{extra}: {res}");
        } else {
            assert_eq!(
                error_code(&res),
                "BAD_USER_INPUT",
                "{language} {extra}: {res}"
            );
            assert_eq!(
                res["errors"][0]["extensions"]["field"].as_str(),
                Some(field),
                "{res}"
            );
        }
    }
    let listed = api.gql("{ sandboxRuns { totalCount } }", json!({})).await;
    assert_eq!(
        listed["data"]["sandboxRuns"]["totalCount"], 0,
        "nothing was queued: {listed}"
    );
    assert!(
        fleet_containers(&env.shared.fleet).await.is_empty(),
        "no container started"
    );
    // The read side refuses bad arguments too.
    let bad = api
        .gql(
            "query($id: ID!) { sandboxRun(id: $id) { id } }",
            json!({ "id": "nope" }),
        )
        .await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    let missing = api
        .gql(
            "query($id: ID!) { sandboxRun(id: $id) { id } }",
            json!({ "id": uuid::Uuid::now_v7().to_string() }),
        )
        .await;
    assert_eq!(error_code(&missing), "NOT_FOUND");
    env.finish().await;
}

async fn cancel_works_once_queued_and_running(profile: Profile, test: &str) {
    let Some(env) = env(profile, test, |c| c.sandbox.concurrency = 1).await else {
        return;
    };
    let api = Client::of(&env.server);
    let long = api
        .start(
            "shell",
            "echo started; sleep 30; echo never",
            json!({ "limits": { "timeoutMs": 40000 } }),
        )
        .await;
    api.wait_until(&long, LIMIT, |r| r["status"] == "RUNNING")
        .await;
    // The only slot is taken: the next run waits.
    let queued = api.start("shell", "echo queued", json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.run(&queued).await["status"], "QUEUED");
    let cancelled = api.gql(CANCEL, json!({ "id": queued })).await;
    assert_eq!(
        cancelled["data"]["cancelSandboxRun"]["status"], "CANCELLED",
        "{cancelled}"
    );
    let twice = api.gql(CANCEL, json!({ "id": queued })).await;
    assert_eq!(error_code(&twice), "CONFLICT");

    // Running: marked, then killed by its replica.
    let started = std::time::Instant::now();
    let asked = api.gql(CANCEL, json!({ "id": long })).await;
    assert_eq!(
        asked["data"]["cancelSandboxRun"]["cancelRequested"], true,
        "{asked}"
    );
    let again = api.gql(CANCEL, json!({ "id": long })).await;
    assert_eq!(error_code(&again), "CONFLICT");
    let run = api.wait_final(&long, LIMIT).await;
    assert_eq!(
        (run["status"].as_str(), run["signal"].as_str()),
        (Some("CANCELLED"), Some("SIGKILL")),
        "{run}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the kill was prompt: {:?}",
        started.elapsed()
    );
    assert_eq!(api.output_text(&long).await, "started\n");
    let after = api.gql(CANCEL, json!({ "id": long })).await;
    assert_eq!(error_code(&after), "CONFLICT");
    // The cancelled queued run never started.
    let never = api.run(&queued).await;
    assert_eq!(
        (never["status"].as_str(), never["storedBytes"].as_i64()),
        (Some("CANCELLED"), Some(0))
    );
    assert!(never["replica"].is_null(), "{never}");
    no_containers_left(&env.shared.fleet).await;
    env.finish().await;
}

async fn a_subscriber_resumes_from_its_offset(profile: Profile, test: &str) {
    let Some(env) = env(profile, test, |_| {}).await else {
        return;
    };
    let api = Client::of(&env.server);
    // ~40 KB in 200 numbered lines over about two seconds.
    let code = "import time\nfor i in range(200):\n    print(f'{i:05d}' + 'x' * 200)\n    time.sleep(0.01)";
    let id = api.start("python", code, json!({})).await;
    let first = api.follow(&id, 0, Some(6_000), LIMIT).await;
    let resume_at = first.deliveries.last().unwrap()["nextOffset"]
        .as_i64()
        .unwrap();
    assert_eq!(resume_at, first.bytes.len() as i64);
    // Gone for a while (the program goes on), then back from the last offset.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rest = api.follow(&id, resume_at, None, LIMIT).await;
    assert_eq!(rest.end["run"]["status"], "SUCCEEDED");
    let mut joined = first.bytes.clone();
    joined.extend_from_slice(&rest.bytes);
    let expected: String = (0..200)
        .map(|i| format!("{i:05}{}\n", "x".repeat(200)))
        .collect();
    assert_eq!(joined.len(), expected.len(), "every byte once");
    assert!(
        joined == expected.as_bytes(),
        "in order, no duplicate, no gap"
    );
    // From the middle of a chunk, after the end: exact.
    let tail = api.follow(&id, 12_345, None, LIMIT).await;
    assert!(tail.bytes == expected.as_bytes()[12_345..]);
    let past = api.follow(&id, 1_000_000, None, LIMIT).await;
    assert!(past.bytes.is_empty() && past.end["done"] == true);
    // A bad offset is refused.
    let mut ws = api.ws().await;
    ws.subscribe(
        "bad",
        common::sandbox::OUTPUT,
        json!({ "id": id, "from": -1 }),
    )
    .await;
    let msg = ws.next_json().await.unwrap();
    assert!(msg.to_string().contains("BAD_USER_INPUT"), "{msg}");
    env.finish().await;
}

async fn a_missing_image_is_a_clear_error(profile: Profile, test: &str) {
    let Some(env) = env(profile, test, |c| {
        c.sandbox.languages = format!(
            "{};ghost=aurum/sandbox-ghost:404|main.sh|sh /tmp/main.sh",
            aurum::sandbox::config::DEFAULT_LANGUAGES
        )
        .parse()
        .unwrap();
    })
    .await
    else {
        return;
    };
    let api = Client::of(&env.server);
    let ready = env.server.ready().await;
    assert_eq!(
        ready["dependencies"]["sandbox"]["status"], "down",
        "{ready}"
    );
    assert!(
        ready["dependencies"]["sandbox"]["reason"]
            .as_str()
            .unwrap()
            .contains("aurum/sandbox-ghost:404"),
        "{ready}"
    );
    let res = api.try_start("ghost", "echo hi", json!({})).await;
    assert_eq!(error_code(&res), "SANDBOX_UNAVAILABLE", "{res}");
    assert!(
        res["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("aurum/sandbox-ghost:404")
    );
    let langs = api
        .gql("{ sandboxLanguages { name unavailable } }", json!({}))
        .await;
    let langs = langs["data"]["sandboxLanguages"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        langs
            .iter()
            .any(|l| l["name"] == "ghost" && l["unavailable"].is_string())
    );
    assert!(
        langs
            .iter()
            .any(|l| l["name"] == "python" && l["unavailable"].is_null())
    );
    // The other languages still run.
    let id = api.start("shell", "echo fine", json!({})).await;
    assert_eq!(api.wait_final(&id, LIMIT).await["status"], "SUCCEEDED");
    env.finish().await;
}

async fn an_open_docker_breaker_keeps_runs_queued(profile: Profile, test: &str) {
    let Some(env) = env(profile, test, |c| c.sandbox.poll_ms = 200).await else {
        return;
    };
    let api = Client::of(&env.server);
    let set = "mutation($n: String!, $r: String!) { forceOpenCircuitBreaker(name: $n, reason: $r) { state } }";
    let reset = "mutation($n: String!, $r: String!) { resetCircuitBreaker(name: $n, reason: $r) { state } }";
    env.server
        .ok(set, json!({ "n": "docker", "r": "engine maintenance" }))
        .await;
    let id = api.start("shell", "echo after the outage", json!({})).await;
    // Claimed, refused by the breaker before any container, handed back: never failed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = api.run(&id).await;
    assert!(
        matches!(run["status"].as_str(), Some("QUEUED" | "RUNNING")),
        "{run}"
    );
    assert!(fleet_containers(&env.shared.fleet).await.is_empty());
    env.server
        .ok(reset, json!({ "n": "docker", "r": "engine back" }))
        .await;
    let run = api.wait_final(&id, LIMIT).await;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(api.output_text(&id).await, "after the outage\n");
    env.finish().await;
}

both_profiles!(
    a_run_streams_its_output_and_ends,
    bad_input_is_refused_before_any_container,
    cancel_works_once_queued_and_running,
    a_subscriber_resumes_from_its_offset,
    a_missing_image_is_a_clear_error,
    an_open_docker_breaker_keeps_runs_queued,
);
