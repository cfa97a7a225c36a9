//! Graceful shutdown of a real `aurum serve` process, on both profiles: on SIGTERM `/ready`
//! answers 503 at once while requests, new connections and subscription events are still
//! served for the drain delay (`AURUM_SHUTDOWN_DRAIN_SECONDS`); then the listener closes,
//! WebSockets get 1001, a request in flight finishes, background tasks end, and the process
//! exits 0 within `AURUM_SHUTDOWN_TIMEOUT_SECONDS`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

use common::{Profile, Replica, ReplicaEnv, Shared, WsClient, services_or_skip};
use serde_json::{Value, json};

both_profiles!(sigterm_drains_then_stops);

/// Sends `head` and the first half of `body` of one POST: a request in flight.
fn start_request(addr: &str, body: &str) -> (std::net::TcpStream, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let half = body.len() / 2;
    write!(
        stream,
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..half]
    )
    .unwrap();
    (stream, body[half..].to_owned())
}

async fn sigterm_drains_then_stops(profile: Profile, name: &str) {
    let (shared, urls) = match profile {
        Profile::Embedded => (Shared::embedded(), None),
        Profile::Services => {
            let Some(urls) = services_or_skip(name).await else {
                return;
            };
            (Shared::services(&urls).await, Some(urls))
        }
    };
    const DRAIN: Duration = Duration::from_secs(3);
    let mut env = ReplicaEnv::of(&shared, urls.as_ref());
    env.set("AURUM_SHUTDOWN_DRAIN_SECONDS", "3");
    env.set("AURUM_SHUTDOWN_TIMEOUT_SECONDS", "10");
    let mut replica = tokio::task::spawn_blocking(move || Replica::spawn(&env))
        .await
        .unwrap();
    let base = replica.base.clone();
    let addr = base.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    let token = common::login_at(&client, &base).await;
    let mut ws = WsClient::connect(
        &format!("ws://{addr}/graphql"),
        "graphql-transport-ws",
        Some(&token),
    )
    .await;
    ws.subscribe(
        "s",
        "subscription { taskChanged { kind task { title } } }",
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let create = |title: &str| json!({"query": "mutation($t: String!) { createTask(input: { title: $t }) { id } }", "variables": {"t": title}});
    // A request whose body is still arriving when the listener closes.
    let body = serde_json::to_string(&json!({"query": "{ __typename }"})).unwrap();
    let (mut in_flight, rest) = start_request(&addr, &body);

    let signalled = Instant::now();
    replica.terminate();
    // Draining: out of rotation at once, everything else served.
    // The signal is handled on its own task, so the first probe may still
    // race it; the promise is "out of rotation within half a second".
    let ready = loop {
        let ready = client.get(format!("{base}/ready")).send().await.unwrap();
        if ready.status() == 503 {
            break ready;
        }
        assert_eq!(ready.status(), 200);
        assert!(
            signalled.elapsed() < Duration::from_millis(500),
            "/ready still 200 half a second after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "draining");
    let fresh = reqwest::Client::new();
    assert_eq!(
        fresh
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let made: Value = fresh
        .post(format!("{base}/graphql"))
        .bearer_auth(&token)
        .json(&create("while draining"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(made["data"]["createTask"]["id"].is_string(), "{made}");
    let event = ws.next_data("s", Duration::from_secs(2)).await;
    assert_eq!(
        event["data"]["taskChanged"]["task"]["title"], "while draining",
        "subscriptions are served while draining"
    );
    assert!(
        signalled.elapsed() < DRAIN,
        "the checks of the drain took longer than the drain"
    );

    // Stopped: WebSockets get 1001 once the drain is over.
    assert_eq!(ws.closed_with(Duration::from_secs(6)).await, Some(1001));
    let closed = signalled.elapsed();
    assert!(
        closed >= DRAIN - Duration::from_millis(100),
        "WebSockets closed {closed:?} after SIGTERM, before the {DRAIN:?} drain ended"
    );
    // The request in flight still gets its answer.
    in_flight.write_all(rest.as_bytes()).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = in_flight.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"__typename\":\"Query\""),
        "the request in flight was not answered: {answer:?}"
    );
    // No new connection is accepted any more.
    let deadline = Instant::now() + Duration::from_secs(2);
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after the drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, output) = tokio::task::spawn_blocking(move || {
        let status = replica.wait_exit(Duration::from_secs(10));
        (status, replica.output())
    })
    .await
    .unwrap();
    let status = status.expect("the process did not exit");
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exited {:?} after SIGTERM, past AURUM_SHUTDOWN_TIMEOUT_SECONDS",
        signalled.elapsed()
    );
    let log = output.join("\n");
    assert!(log.contains("background tasks stopped"), "{log}");
    assert!(!log.contains("shutdown timed out"), "{log}");
    shared.cleanup().await;
}
