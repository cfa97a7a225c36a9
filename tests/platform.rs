//! Platform behaviour over HTTP and WebSocket on both profiles: error codes and request ids,
//! subscriptions on both protocols, readiness, metrics, graceful shutdown; plus the schema
//! drift check and the two-replica event fan-out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, Profile, Shared, TestServer, WsClient, error_code, services_or_skip};
use sea_orm::ConnectionTrait;
use serde_json::json;

both_profiles!(
    errors_carry_codes_and_request_ids,
    internal_errors_are_masked,
    subscriptions_on_both_protocols,
    ready_reports_every_dependency,
    metrics_are_exported,
    websockets_close_with_1001_on_shutdown,
    http_surface_refuses_bad_requests,
    websocket_protocol_rules,
    subscriptions_share_one_execution,
    hostile_documents_are_refused_with_codes,
    cors_origins_and_security_headers,
    repeated_documents_stay_checked,
    repeated_documents_with_variables_stay_checked,
);

#[test]
fn schema_file_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let committed = std::fs::read_to_string(path).expect("schema.graphql is committed");
    let current = aurum::graphql::sdl();
    assert!(
        committed == current,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql` and commit it"
    );
}

async fn errors_carry_codes_and_request_ids(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let cases = [
        ("{ tasks { edges { node { id } } }", "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ task(id: \"not-a-uuid\") { id } }", "BAD_USER_INPUT"),
        (
            "{ task(id: \"01a214a0-d3e9-720f-a444-8e7b40e5ec5b\") { id } }",
            "NOT_FOUND",
        ),
        (
            "query($n: Int) { tasks(first: $n) { totalCount } }",
            "BAD_USER_INPUT",
        ),
        (
            "{ tasks { edges { node { assignee { currentTask { assignee { currentTask { assignee { currentTask { assignee { currentTask { assignee { id } } } } } } } } } } } } }",
            "QUERY_TOO_DEEP",
        ),
    ];
    for (i, (query, code)) in cases.iter().enumerate() {
        let vars = if query.contains("$n") {
            json!({ "n": "x" })
        } else {
            json!({})
        };
        let rid = format!("req-{i}");
        let res = s
            .client
            .post(s.url("/graphql"))
            .header("x-request-id", &rid)
            .bearer_auth(&s.token)
            .json(&json!({ "query": query, "variables": vars }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], rid.as_str());
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(error_code(&body), *code, "{query}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["requestId"],
            rid.as_str(),
            "{body}"
        );
    }
    // Without a client id, one is generated and is the same in the header and the error.
    let res = s
        .client
        .post(s.url("/graphql"))
        .json(&json!({ "query": "{ nope }" }))
        .send()
        .await
        .unwrap();
    let header = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(!header.is_empty());
    assert_eq!(
        body["errors"][0]["extensions"]["requestId"],
        header.as_str()
    );
    // A client id that is not a plain token is replaced.
    let res = s
        .client
        .post(s.url("/graphql"))
        .header("x-request-id", "x".repeat(300))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"].len(), 300);
    // Too complex: a huge page of nested lists.
    let complex = s
        .gql("{ a: tasks(first: 100) { edges { node { escalations { task { escalations { task { escalations { id } } } } } } } } b: tasks(first: 100) { edges { node { escalations { task { escalations { task { escalations { id } } } } } } } } }", json!({}))
        .await;
    assert!(
        ["QUERY_TOO_COMPLEX", "QUERY_TOO_DEEP"].contains(&error_code(&complex).as_str()),
        "{complex}"
    );
    env.finish().await;
}

async fn internal_errors_are_masked(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    // Break the database under the server: the failure must reach the client as a masked
    // INTERNAL_SERVER_ERROR with no SQL in it.
    s.state
        .db
        .execute_unprepared("DROP TABLE escalations")
        .await
        .unwrap();
    let res = s.gql("{ escalations { totalCount } }", json!({})).await;
    assert_eq!(error_code(&res), "INTERNAL_SERVER_ERROR", "{res}");
    let msg = res["errors"][0]["message"].as_str().unwrap();
    assert_eq!(msg, "internal error");
    let text = res.to_string().to_lowercase();
    assert!(
        !text.contains("no such table") && !text.contains("does not exist"),
        "{res}"
    );
    assert!(res["errors"][0]["extensions"]["requestId"].is_string());
    env.finish().await;
}

async fn subscriptions_on_both_protocols(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut ws = s.ws(protocol).await;
        ws.subscribe(
            "all",
            "subscription { taskChanged { kind task { id title state } } }",
            json!({}),
        )
        .await;
        // A subscription starts asynchronously; retry the mutation until the first event lands.
        let title = format!("via {protocol}");
        let (_, event) = common::create_until_delivered(s, &mut ws, "all", |_| title.clone()).await;
        assert_eq!(event["data"]["taskChanged"]["kind"], "CREATED");
        assert_eq!(
            event["data"]["taskChanged"]["task"]["title"],
            title.as_str()
        );

        // Filtered by id: only that task's changes arrive.
        let id = event["data"]["taskChanged"]["task"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        ws.subscribe(
            "one",
            "subscription($id: ID) { taskChanged(id: $id) { kind task { id state } } }",
            json!({ "id": id }),
        )
        .await;
        // The filtered feed starts asynchronously: change the task (IN_PROGRESS and BLOCKED in
        // turn) until one change arrives; another task's change, made first each time, must
        // never reach it.
        let mut states = ["IN_PROGRESS", "BLOCKED"].into_iter().cycle();
        let one = loop {
            s.ok(
                "mutation { createTask(input: { title: \"other\" }) { id } }",
                json!({}),
            )
            .await;
            let state = states.next().unwrap();
            s.ok(
                "mutation($id: ID!, $s: TaskState!) { updateTaskState(id: $id, state: $s) { id } }",
                json!({ "id": id, "s": state }),
            )
            .await;
            if let Ok(v) = tokio::time::timeout(
                Duration::from_millis(500),
                ws.next_data("one", Duration::from_secs(5)),
            )
            .await
            {
                break v;
            }
        };
        assert_eq!(one["data"]["taskChanged"]["kind"], "STATE_CHANGED");
        assert_eq!(one["data"]["taskChanged"]["task"]["id"], id.as_str());

        // Errors in a subscription document carry codes too.
        ws.subscribe(
            "bad",
            "subscription { taskChanged(id: \"zzz\") { kind } }",
            json!({}),
        )
        .await;
        let err = loop {
            let m = ws.next_json().await.expect("message");
            if m["id"] == "bad" {
                break m;
            }
        };
        let payload = if err["payload"].is_array() {
            err["payload"][0].clone()
        } else {
            err["payload"]["errors"][0].clone()
        };
        assert_eq!(payload["extensions"]["code"], "BAD_USER_INPUT", "{err}");
    }
    env.finish().await;
}

async fn ready_reports_every_dependency(profile: Profile, name: &str) {
    let services = matches!(profile, Profile::Services);
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let res = s.client.get(s.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let deps = &body["dependencies"];
    assert_eq!(deps["database"]["status"], "ok", "{body}");
    if services {
        for dep in ["redis", "nats", "docker"] {
            assert_eq!(deps[dep]["status"], "ok", "{dep}: {body}");
        }
    } else {
        assert_eq!(deps["redis"]["status"], "disabled", "{body}");
        assert_eq!(deps["nats"]["status"], "disabled", "{body}");
        assert!(
            ["ok", "disabled"].contains(&deps["docker"]["status"].as_str().unwrap()),
            "{body}"
        );
    }
    let health = s.client.get(s.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    env.finish().await;
}

async fn metrics_are_exported(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    s.ok("query ListForMetrics { tasks { totalCount } }", json!({}))
        .await;
    let _ = s.gql("{ nope }", json!({})).await;
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe("m", "subscription { taskChanged { kind } }", json!({}))
        .await;
    // The subscription counts once it is running; poll the exposition until it shows.
    let mut text = String::new();
    for _ in 0..50 {
        text = s
            .client
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text
            .lines()
            .any(|l| l.starts_with("aurum_graphql_subscriptions_active") && !l.ends_with(" 0"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for needle in [
        "aurum_http_requests_total{",
        "aurum_http_request_duration_seconds_bucket{",
        "aurum_graphql_operations_total{",
        "name=\"ListForMetrics\"",
        "outcome=\"error\"",
        "aurum_graphql_operation_duration_seconds_bucket{",
        "aurum_websocket_connections",
        "aurum_graphql_subscriptions_active",
        "aurum_db_statements_total",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("aurum_graphql_subscriptions_active") && !l.ends_with(" 0")),
        "active subscription not counted:\n{text}"
    );
    env.finish().await;
}

async fn websockets_close_with_1001_on_shutdown(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let mut ws = env.server.ws("graphql-transport-ws").await;
    ws.subscribe("s", "subscription { taskChanged { kind } }", json!({}))
        .await;
    let addr = env.server.addr;
    let Env { server, shared, .. } = env;
    let stopping = tokio::spawn(server.stop());
    assert_eq!(ws.closed_with(Duration::from_secs(5)).await, Some(1001));
    stopping.await.unwrap();
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    shared.cleanup().await;
}

async fn http_surface_refuses_bad_requests(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| c.max_body_bytes = 4096).await else {
        return;
    };
    let s = &env.server;
    let text_plain = s
        .client
        .post(s.url("/graphql"))
        .header("content-type", "text/plain")
        .body(r#"{"query":"mutation { createTask(input: { title: \"csrf\" }) { id } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(text_plain.status(), 415);
    let body: serde_json::Value = text_plain.json().await.unwrap();
    assert_eq!(error_code(&body), "UNSUPPORTED_MEDIA_TYPE");
    let big = s
        .client
        .post(s.url("/graphql"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"query":"{{ __typename }}","x":"{}"}}"#,
            "a".repeat(10_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let garbage = s
        .client
        .post(s.url("/graphql"))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let batch: Vec<_> = (0..11)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let res: serde_json::Value = s
        .client
        .post(s.url("/graphql"))
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&res), "BATCH_TOO_LARGE");
    let small: Vec<_> = (0..2)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let res: serde_json::Value = s
        .client
        .post(s.url("/graphql"))
        .json(&small)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res.as_array().map(Vec::len), Some(2), "{res}");
    // Nothing above created a task.
    let count = s.ok("{ tasks { totalCount } }", json!({})).await;
    assert_eq!(count["tasks"]["totalCount"], 0);
    // GraphiQL page: local assets only.
    let page = s.client.get(s.url("/graphql")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "{html}"
    );
    env.finish().await;
}

/// Two servers on one PostgreSQL and NATS: a change made through one reaches a subscriber
/// of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_task_events() {
    let Some(urls) = services_or_skip("two_replicas_share_task_events").await else {
        return;
    };
    let shared = Shared::services(&urls).await;
    let a = TestServer::start(shared.config(Some(&urls))).await;
    let b = TestServer::start(shared.config(Some(&urls))).await;
    let mut ws = a.ws("graphql-transport-ws").await;
    ws.subscribe(
        "x",
        "subscription { taskChanged { kind task { id title } } }",
        json!({}),
    )
    .await;
    let (made, v) =
        common::create_until_delivered(&b, &mut ws, "x", |i| format!("from b {i}")).await;
    assert_eq!(v["data"]["taskChanged"]["kind"], "CREATED");
    assert!(
        v["data"]["taskChanged"]["task"]["title"]
            .as_str()
            .unwrap()
            .starts_with("from b")
    );
    // And it is in A's database view too.
    let id = made["createTask"]["id"].as_str().unwrap();
    let via_a = a
        .ok(
            "query($id: ID!) { task(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert!(via_a["task"]["id"].is_string());
    a.stop().await;
    b.stop().await;
    shared.cleanup().await;
}

async fn websocket_protocol_rules(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| {
        c.ws_init_timeout_seconds = 1;
        c.ws_max_operations = 2;
    })
    .await
    else {
        return;
    };
    let url = env.server.ws_url();
    let t = Duration::from_secs(5);
    // No connection_init in time.
    let mut ws = WsClient::connect_raw(&url, "graphql-transport-ws").await;
    assert_eq!(ws.closed_with(t).await, Some(4408));
    // Subscribe before ack.
    let mut ws = WsClient::connect_raw(&url, "graphql-transport-ws").await;
    ws.subscribe("a", "subscription { taskChanged { kind } }", json!({}))
        .await;
    assert_eq!(ws.closed_with(t).await, Some(4401));
    // Second connection_init.
    let mut ws = env.server.ws("graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init" })).await;
    assert_eq!(ws.closed_with(t).await, Some(4429));
    // Duplicate id.
    let mut ws = env.server.ws("graphql-transport-ws").await;
    ws.subscribe("a", "subscription { taskChanged { kind } }", json!({}))
        .await;
    ws.subscribe("a", "subscription { taskChanged { kind } }", json!({}))
        .await;
    assert_eq!(ws.closed_with(t).await, Some(4409));
    // Past the per-connection cap.
    let mut ws = env.server.ws("graphql-transport-ws").await;
    for id in ["a", "b", "c"] {
        ws.subscribe(id, "subscription { taskChanged { kind } }", json!({}))
            .await;
    }
    assert_eq!(ws.closed_with(t).await, Some(4429));
    // Not a protocol message.
    let mut ws = env.server.ws("graphql-transport-ws").await;
    ws.send(json!({ "type": "nonsense" })).await;
    assert_eq!(ws.closed_with(t).await, Some(4400));
    // Client ping gets a pong; queries and mutations run over the socket too, then complete.
    let mut ws = env.server.ws("graphql-transport-ws").await;
    ws.send(json!({ "type": "ping" })).await;
    let pong = ws.next_json().await.unwrap();
    assert_eq!(pong["type"], "pong");
    ws.subscribe(
        "m",
        "mutation { createTask(input: { title: \"over ws\" }) { title } }",
        json!({}),
    )
    .await;
    let data = ws.next_data("m", t).await;
    assert_eq!(data["data"]["createTask"]["title"], "over ws");
    let done = ws.next_json().await.unwrap();
    assert_eq!(
        (done["type"].as_str(), done["id"].as_str()),
        (Some("complete"), Some("m"))
    );
    // A stopped subscription receives nothing more (legacy protocol: stop → complete), while
    // a live one beside it on the same socket still does. Events already in flight when the
    // stop arrives (the mutation above travels through NATS in the services profile) may
    // precede the `complete`; nothing for "s" may follow it.
    let mut legacy = env.server.ws("graphql-ws").await;
    legacy
        .subscribe("s", "subscription { taskChanged { kind } }", json!({}))
        .await;
    legacy
        .subscribe(
            "live",
            "subscription { taskChanged { task { title } } }",
            json!({}),
        )
        .await;
    legacy.send(json!({ "type": "stop", "id": "s" })).await;
    loop {
        let msg = legacy.next_json().await.unwrap();
        if msg["type"] == "complete" && msg["id"] == "s" {
            break;
        }
        assert!(
            msg["type"] == "data" && (msg["id"] == "s" || msg["id"] == "live"),
            "before complete: {msg}"
        );
    }
    // The live feed may still be starting: create tasks until one reaches it.
    let mut delivered = false;
    for i in 0..20 {
        env.server
            .ok(
                "mutation($t: String!) { createTask(input: { title: $t }) { id } }",
                json!({ "t": format!("after stop {i}") }),
            )
            .await;
        let wait = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                let msg = legacy.next_json().await.unwrap();
                assert_ne!(msg["id"], "s", "stopped subscription got {msg}");
                assert_eq!(msg["type"], "data", "{msg}");
                let title = &msg["payload"]["data"]["taskChanged"]["task"]["title"];
                if title.as_str().is_some_and(|t| t.starts_with("after stop")) {
                    break;
                }
            }
        });
        if wait.await.is_ok() {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the live subscription never delivered");
    env.finish().await;
}

async fn subscriptions_share_one_execution(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let query = "subscription { taskChanged { kind task { title } } }";
    let mut a = s.ws("graphql-transport-ws").await;
    let mut b = s.ws("graphql-ws").await;
    a.subscribe("1", query, json!({})).await;
    b.subscribe("2", query, json!({})).await;
    // A different document is a different execution.
    let mut c = s.ws("graphql-transport-ws").await;
    c.subscribe("3", "subscription { taskChanged { kind } }", json!({}))
        .await;
    let (_, first) =
        common::create_until_delivered(s, &mut a, "1", |i| format!("shared {i}")).await;
    let title = first["data"]["taskChanged"]["task"]["title"]
        .as_str()
        .unwrap()
        .to_owned();
    // b sees the same event (it may have seen earlier ones too).
    loop {
        let v = b.next_data("2", Duration::from_secs(5)).await;
        if v["data"]["taskChanged"]["task"]["title"] == title.as_str() {
            break;
        }
    }
    let v = c.next_data("3", Duration::from_secs(5)).await;
    assert_eq!(v["data"]["taskChanged"]["kind"], "CREATED");
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let feeds = common::metric_value(&metrics, "aurum_subscription_feeds_active");
    let subs = common::metric_value(&metrics, "aurum_graphql_subscriptions_active");
    assert_eq!((feeds, subs), (2.0, 3.0), "{metrics}");
    env.finish().await;
}

async fn hostile_documents_are_refused_with_codes(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    // Fragments that fan out exponentially: 2^24 fields from a document of about 1 KB.
    let mut q = String::from("query { ...f0 }\n");
    for i in 0..24 {
        q.push_str(&format!(
            "fragment f{i} on Query {{ ...f{} ...f{} }}\n",
            i + 1,
            i + 1
        ));
    }
    q.push_str("fragment f24 on Query { __typename }\n");
    let started = std::time::Instant::now();
    let res = s.gql(&q, json!({})).await;
    assert_eq!(error_code(&res), "QUERY_TOO_LARGE", "{res}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let aliases: String = (0..65).map(|i| format!("a{i}: __typename ")).collect();
    assert_eq!(
        error_code(&s.gql(&format!("{{ {aliases} }}"), json!({})).await),
        "TOO_MANY_ALIASES"
    );
    let directives: String = (0..17).map(|_| "@include(if: true) ").collect();
    let res = s
        .gql(&format!("{{ __typename {directives} }}"), json!({}))
        .await;
    assert_eq!(error_code(&res), "TOO_MANY_DIRECTIVES", "{res}");
    let repeated: String = (0..20_000).map(|_| "__typename ").collect();
    let res = s.gql(&format!("{{ {repeated} }}"), json!({})).await;
    assert_eq!(error_code(&res), "QUERY_TOO_LARGE", "{res}");
    // No field-name hints by default.
    let res = s.gql("{ taks { totalCount } }", json!({})).await;
    assert_eq!(error_code(&res), "GRAPHQL_VALIDATION_FAILED");
    assert!(!res.to_string().contains("Did you mean"), "{res}");
    env.finish().await;
}

/// A document without variables is validated strictly until one run of it succeeds, then only
/// against the limits; guards and everything else still run on every request.
async fn repeated_documents_stay_checked(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    for _ in 0..3 {
        let res = s.gql("{ taks { totalCount } }", json!({})).await;
        assert_eq!(error_code(&res), "GRAPHQL_VALIDATION_FAILED", "{res}");
    }
    let query = "{ tasks(first: 1) { totalCount } }";
    let refused = s.gql_as(None, query, json!({})).await;
    assert_eq!(error_code(&refused), "UNAUTHENTICATED", "{refused}");
    for _ in 0..3 {
        let res = s.ok(query, json!({})).await;
        assert!(res["tasks"]["totalCount"].is_number(), "{res}");
    }
    // The document is now trusted by validation, not by the guards.
    let refused = s.gql_as(None, query, json!({})).await;
    assert_eq!(error_code(&refused), "UNAUTHENTICATED", "{refused}");
    assert!(
        refused["data"].is_null() || refused["data"]["tasks"].is_null(),
        "{refused}"
    );
    env.finish().await;
}

/// A document with variables that passed strict validation once skips it only for variables
/// strict validation could only accept: a bad value, a null for a non-null variable, or an
/// input object (never plain) gets the same refusal as on the first request, and nothing runs.
async fn repeated_documents_with_variables_stay_checked(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let create = "mutation($t: String!, $d: String) { createTask(input: { title: $t, description: $d }) { id title } }";
    let count = "{ tasks { totalCount } }";
    // The first refusal, from a document never seen before.
    let first = s.gql(create, json!({ "t": 5, "d": "x" })).await;
    assert_eq!(error_code(&first), "BAD_USER_INPUT", "{first}");
    for i in 0..3 {
        let res = s.ok(create, json!({ "t": format!("ok{i}") })).await;
        assert_eq!(res["createTask"]["title"], format!("ok{i}"), "{res}");
    }
    let before = s.ok(count, json!({})).await["tasks"]["totalCount"].clone();
    for bad in [
        json!({ "t": 5 }),
        json!({ "t": null }),
        json!({ "d": "no title" }),
        json!({ "t": "x", "d": 7 }),
        json!({ "t": { "nested": "object" } }),
    ] {
        let res = s.gql(create, bad.clone()).await;
        assert_eq!(error_code(&res), "BAD_USER_INPUT", "{bad}: {res}");
        assert!(res["data"].is_null(), "{bad}: {res}");
    }
    // The same refusal, word for word, as before the document was trusted.
    let again = s.gql(create, json!({ "t": 5, "d": "x" })).await;
    assert_eq!(again["errors"][0]["message"], first["errors"][0]["message"]);
    assert_eq!(s.ok(count, json!({})).await["tasks"]["totalCount"], before);
    // Guards still run on the trusted path.
    let refused = s.gql_as(None, create, json!({ "t": "anonymous" })).await;
    assert_eq!(error_code(&refused), "UNAUTHENTICATED", "{refused}");
    assert_eq!(s.ok(count, json!({})).await["tasks"]["totalCount"], before);
    env.finish().await;
}

async fn cors_origins_and_security_headers(profile: Profile, name: &str) {
    let Some(env) = Env::with(profile, name, |c| {
        c.cors_origins = vec!["https://ops.example.com".into()]
    })
    .await
    else {
        return;
    };
    let s = &env.server;
    let preflight = |origin: &'static str| {
        s.client
            .request(reqwest::Method::OPTIONS, s.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    let ok = preflight("https://ops.example.com").await.unwrap();
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://ops.example.com")
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let res = s.client.get(s.url("/health")).send().await.unwrap();
    for (h, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(
            res.headers().get(h).map(|x| x.to_str().unwrap()),
            Some(v),
            "{h}"
        );
    }
    // WebSocket upgrades from a foreign page are refused; configured or same origins pass.
    let upgrade = |origin: String| {
        use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};
        let mut req = s.ws_url().into_client_request().unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(&origin).unwrap());
        tokio_tungstenite::connect_async(req)
    };
    let refused = upgrade("https://evil.example".into()).await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 403),
        "{refused:?}"
    );
    assert!(upgrade("https://ops.example.com".into()).await.is_ok());
    assert!(upgrade(format!("http://{}", s.addr)).await.is_ok());
    env.finish().await;
}

/// NATS down when a replica starts: the replica starts, `/ready` says NATS is down, a mutation
/// does not hang on the event it cannot send yet, and once NATS answers the replica's events
/// flow through it, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_at_start_is_reported_then_used_once_it_answers() {
    let test = "nats_down_at_start_is_reported_then_used_once_it_answers";
    let Some(urls) = services_or_skip(test).await else {
        return;
    };
    let mut private_nats = common::PrivateNats::new();
    let shared = Shared::services(&urls).await;
    let mut config = shared.config(Some(&urls));
    config.nats_url = Some(aurum::config::ServiceUrl::new(private_nats.url()));
    let started = std::time::Instant::now();
    let s = TestServer::start(config).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "start-up waited {:?} for NATS",
        started.elapsed()
    );
    let status = s.ready().await["dependencies"]["nats"].clone();
    assert_eq!(status["status"], "down", "{status}");
    let create = "mutation($t: String!) { createTask(input: { title: $t }) { id } }";
    let t0 = std::time::Instant::now();
    s.ok(create, json!({ "t": "while NATS is down" })).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "a mutation waited {:?} on NATS",
        t0.elapsed()
    );

    if !private_nats.start().await {
        if common::services_required() {
            panic!("could not start a private nats-server");
        }
        common::record_skip(&format!("{test}: no nats-server"));
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let nats = s.ready().await["dependencies"]["nats"].clone();
        if nats["status"] == "ok" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "NATS never reported ok: {nats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The replica's own events now make the round trip through NATS.
    let mut events = s.state.services.bus.subscribe();
    let data = s.ok(create, json!({ "t": "after NATS came up" })).await;
    let id = data["createTask"]["id"].as_str().unwrap().to_owned();
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = futures::StreamExt::next(&mut events).await {
            if let Ok(event) = event
                && let aurum::events::DomainEvent::Task(t) = &event.event
                && t.task.id.to_string() == id
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        seen,
        Ok(true),
        "the task's event never came back through NATS"
    );
    s.stop().await;
    shared.cleanup().await;
}
