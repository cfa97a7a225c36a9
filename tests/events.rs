//! Events that are never lost, end to end: the transactional outbox through a NATS outage and
//! a replica killed between commit and relay, subscriptions resuming from a cursor (on another
//! replica, tenant-scoped, past retention), and subscription admin listing and closing live
//! subscriptions across replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use common::{
    ADMIN_PASSWORD, Profile, Replica, ReplicaEnv, Shared, TestServer, WsClient, error_code,
    services_or_skip,
};
use serde_json::{Value, json};

const CREATE: &str = "mutation($t: String!) { createTask(input: { title: $t }) { id } }";
const TASKS: &str =
    "subscription($after: String) { taskChanged(after: $after) { cursor kind task { id title } } }";

/// The `taskChanged` events `ws` receives on `id` until one is about a task titled `last`:
/// `(cursor, kind, title)` each. Fails on any error payload.
async fn tasks_until(ws: &mut WsClient, id: &str, last: &str) -> Vec<(u64, String, String)> {
    let mut seen = Vec::new();
    loop {
        let payload = ws.next_data(id, Duration::from_secs(30)).await;
        assert!(payload.get("errors").is_none(), "{payload}");
        let e = &payload["data"]["taskChanged"];
        let cursor: u64 = e["cursor"].as_str().unwrap().parse().unwrap();
        let title = e["task"]["title"].as_str().unwrap().to_owned();
        seen.push((
            cursor,
            e["kind"].as_str().unwrap().to_owned(),
            title.clone(),
        ));
        if title == last {
            return seen;
        }
    }
}

/// Cursors strictly increase: in order, none twice.
fn assert_ordered(events: &[(u64, String, String)]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "out of order or repeated: {events:?}"
        );
    }
}

async fn create(s: &TestServer, title: &str) -> String {
    s.ok(CREATE, json!({ "t": title })).await["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One replica on the embedded profile (a resume on the same server after reconnecting),
/// two on the services profile (the resume goes to the other one).
async fn replicas(profile: Profile, test: &str) -> Option<(Vec<TestServer>, Shared)> {
    match profile {
        Profile::Embedded => {
            let shared = Shared::embedded();
            let s = TestServer::start(shared.config(None)).await;
            Some((vec![s], shared))
        }
        Profile::Services => {
            let urls = services_or_skip(test).await?;
            let shared = Shared::services(&urls).await;
            let mut out = Vec::new();
            for name in ["a", "b"] {
                let mut config = shared.config(Some(&urls));
                config.replica_id = name.into();
                out.push(TestServer::start(config).await);
            }
            Some((out, shared))
        }
    }
}

async fn finish(servers: Vec<TestServer>, shared: Shared) {
    for s in servers {
        s.stop().await;
    }
    shared.cleanup().await;
}

/// A subscriber disconnects mid-stream; changes happen; it reconnects with its last cursor (on
/// the other replica when there is one): exactly the missed events, then live ones.
async fn resume_after_cursor(profile: Profile, name: &str) {
    let Some((servers, shared)) = replicas(profile, name).await else {
        return;
    };
    let first = &servers[0];
    let other = servers.last().unwrap();
    let mut ws = first.ws("graphql-transport-ws").await;
    ws.subscribe("t", TASKS, json!({})).await;
    let (_, event) =
        common::create_until_delivered(first, &mut ws, "t", |i| format!("warm-{i}")).await;
    let warm = event["data"]["taskChanged"]["task"]["title"]
        .as_str()
        .unwrap()
        .to_owned();
    create(first, "before-1").await;
    create(first, "before-2").await;
    let before = tasks_until(&mut ws, "t", "before-2").await;
    let cursor = before.last().unwrap().0;
    drop(ws);

    // Missed while away, written through both replicas.
    for i in 0..3 {
        create(&servers[i % servers.len()], &format!("missed-{i}")).await;
    }
    let mut ws =
        WsClient::connect(&other.ws_url(), "graphql-transport-ws", Some(&other.token)).await;
    ws.subscribe("t", TASKS, json!({ "after": cursor.to_string() }))
        .await;
    let replayed = tasks_until(&mut ws, "t", "missed-2").await;
    let titles: Vec<_> = replayed.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(
        titles,
        ["missed-0", "missed-1", "missed-2"],
        "{replayed:?} (warm-up was {warm})"
    );
    assert!(replayed[0].0 > cursor, "{replayed:?} after {cursor}");
    create(first, "live-1").await;
    let live = tasks_until(&mut ws, "t", "live-1").await;
    assert_eq!(live.len(), 1, "{live:?}");
    let all: Vec<_> = replayed.into_iter().chain(live).collect();
    assert_ordered(&all);
    let metrics = other.metrics().await;
    assert!(
        common::metric_value(&metrics, "aurum_events_replayed_total") >= 3.0
            && common::metric_value(&metrics, "aurum_events_relayed_total") >= 1.0,
        "replay and relay counters"
    );
    finish(servers, shared).await;
}

/// Replayed events pass the same tenant scope as live ones: a tenant's auditor resuming from
/// before another tenant's changes never receives them.
async fn replay_keeps_tenant_scope(profile: Profile, name: &str) {
    let Some((servers, shared)) = replicas(profile, name).await else {
        return;
    };
    let s = &servers[0];
    s.ok(
        "mutation { createUser(input: { username: \"auditor\", password: \"a long password\", role: OPERATOR, tenantId: \"acme\" }) { id } }",
        json!({}),
    )
    .await;
    let token = s.login("auditor", "a long password").await;
    let added = "subscription($after: String) { auditLogAdded(after: $after) { cursor entry { tenantId resourceType } } }";
    // The auditor's starting point: its own tenant's first change.
    let mut ws = WsClient::connect(&s.ws_url(), "graphql-transport-ws", Some(&token)).await;
    ws.subscribe("a", added, json!({})).await;
    let budget = |tenant: &str, project: &str| {
        format!(
            "mutation {{ createBudget(input: {{ tenantId: \"{tenant}\", projectId: \"{project}\", total: 10 }}) {{ id }} }}"
        )
    };
    let mut start = None;
    for i in 0..50 {
        s.ok(&budget("acme", &format!("warm-{i}")), json!({})).await;
        if let Ok(event) = tokio::time::timeout(
            Duration::from_millis(200),
            ws.next_data("a", Duration::from_secs(5)),
        )
        .await
        {
            start = Some(
                event["data"]["auditLogAdded"]["cursor"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
            break;
        }
    }
    let start = start.expect("the auditor's subscription delivered nothing");
    drop(ws);
    for i in 0..3 {
        s.ok(&budget("globex", &format!("p{i}")), json!({})).await;
    }
    s.ok(&budget("acme", "last"), json!({})).await;
    let other = servers.last().unwrap();
    let mut ws = WsClient::connect(&other.ws_url(), "graphql-transport-ws", Some(&token)).await;
    ws.subscribe("a", added, json!({ "after": start })).await;
    let event = ws.next_data("a", Duration::from_secs(15)).await;
    let entry = &event["data"]["auditLogAdded"]["entry"];
    assert_eq!(
        entry["tenantId"], "acme",
        "another tenant's entry was replayed: {event}"
    );
    finish(servers, shared).await;
}

/// A cursor the bus no longer holds (past retention, simulated by dropping what retention
/// would drop) or never gave out gets `CURSOR_EXPIRED`, not a silent gap; a malformed one
/// `BAD_USER_INPUT`.
async fn expired_cursor_is_refused(profile: Profile, name: &str) {
    let Some((servers, shared)) = replicas(profile, name).await else {
        return;
    };
    let s = &servers[0];
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe("t", TASKS, json!({})).await;
    let (_, warm) = common::create_until_delivered(s, &mut ws, "t", |i| format!("old-{i}")).await;
    let first: u64 = warm["data"]["taskChanged"]["cursor"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    create(s, "old-last").await;
    tasks_until(&mut ws, "t", "old-last").await;
    // Retention passes over every event: the bus keeps only the newest (the database bus's
    // own sweep, as if the retention period had passed; JetStream's purge, as its `max_age`).
    match profile {
        Profile::Embedded => {
            let db = sea_orm::Database::connect(&shared.db_url).await.unwrap();
            let later = chrono::Utc::now() + chrono::Duration::hours(1);
            let dropped = aurum::infra::outbox::sweep(&db, later).await.unwrap();
            assert!(dropped >= 2, "the sweep dropped {dropped} events");
            db.close().await.unwrap();
        }
        Profile::Services => {
            let urls = common::ServiceUrls::from_env();
            let client = async_nats::connect(&urls.nats).await.unwrap();
            let js = async_nats::jetstream::new(client);
            let stream = format!("{}_EVENTS", shared.nats_prefix.to_uppercase());
            js.get_stream(&stream).await.unwrap().purge().await.unwrap();
        }
    }
    for (after, code) in [
        (first.saturating_sub(1).to_string(), "CURSOR_EXPIRED"),
        ("99999999".to_owned(), "CURSOR_EXPIRED"),
        ("not-a-cursor".to_owned(), "BAD_USER_INPUT"),
    ] {
        ws.subscribe(&after, TASKS, json!({ "after": after })).await;
        let payload = ws.next_data(&after, Duration::from_secs(10)).await;
        assert_eq!(error_code(&payload), code, "after {after}: {payload}");
    }
    drop(ws);
    finish(servers, shared).await;
}

/// A replica (a real process) commits a change and is killed with SIGKILL before its relay
/// runs (held back by `AURUM_OUTBOX_RELAY_DELAY_MS`): the event waits in the outbox, and the
/// next replica (another one on PostgreSQL + NATS, the same one restarted on SQLite) relays
/// it. A subscriber resuming from before it receives it, once.
async fn killed_between_commit_and_relay(profile: Profile, name: &str) {
    let (shared, urls) = match profile {
        Profile::Embedded => (Shared::embedded(), None),
        Profile::Services => {
            let Some(urls) = services_or_skip(name).await else {
                return;
            };
            (Shared::services(&urls).await, Some(urls))
        }
    };
    // A starting cursor, from a replica that then stops cleanly.
    let s = TestServer::start(shared.config(urls.as_ref())).await;
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe("t", TASKS, json!({})).await;
    let (_, event) =
        common::create_until_delivered(&s, &mut ws, "t", |i| format!("start-{i}")).await;
    let start = event["data"]["taskChanged"]["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(ws);
    s.stop().await;

    let mut env = ReplicaEnv::of(&shared, urls.as_ref());
    env.set("AURUM_OUTBOX_RELAY_DELAY_MS", "3600000");
    let mut held = tokio::task::spawn_blocking(move || Replica::spawn(&env))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let base = held.base.clone();
    let post = |token: Option<String>, query: &str, variables: Value| {
        let mut req = client.post(format!("{base}/graphql"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.json(&json!({ "query": query, "variables": variables }))
            .send()
    };
    let login = post(
        None,
        "mutation($p: String!) { login(username: \"admin\", password: $p) { token } }",
        json!({ "p": ADMIN_PASSWORD }),
    )
    .await
    .unwrap()
    .json::<Value>()
    .await
    .unwrap();
    let token = login["data"]["login"]["token"].as_str().unwrap().to_owned();
    let made = post(Some(token), CREATE, json!({ "t": "orphaned" }))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(made.get("errors").is_none(), "{made}");
    // Committed, and held between commit and relay.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        common::metric_value(&metrics, "aurum_outbox_depth") >= 1.0,
        "the event was not waiting in the outbox"
    );
    held.kill9();

    let s = TestServer::start(shared.config(urls.as_ref())).await;
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe("t", TASKS, json!({ "after": start })).await;
    let seen = tasks_until(&mut ws, "t", "orphaned").await;
    assert_ordered(&seen);
    assert_eq!(
        seen.iter().filter(|(_, _, t)| t == "orphaned").count(),
        1,
        "{seen:?}"
    );
    // Nothing more of it: no second delivery.
    create(&s, "after").await;
    let rest = tasks_until(&mut ws, "t", "after").await;
    assert!(rest.iter().all(|(_, _, t)| t != "orphaned"), "{rest:?}");
    drop(ws);
    s.stop().await;
    shared.cleanup().await;
}

/// Subscription admin: a subscription on one replica is listed from the other with its
/// caller, operation and delivery count; closing it there ends it with `SUBSCRIPTION_CLOSED`
/// then `complete`, audited; `closeSubscriptionsOf` closes a user's subscriptions.
async fn admin_lists_and_closes_subscriptions(profile: Profile, name: &str) {
    let Some((servers, shared)) = replicas(profile, name).await else {
        return;
    };
    let (serving, asking) = (&servers[0], servers.last().unwrap());
    let mut ws = serving.ws("graphql-transport-ws").await;
    ws.subscribe(
        "watch",
        "subscription Watch { taskChanged { cursor } }",
        json!({}),
    )
    .await;
    common::create_until_delivered(serving, &mut ws, "watch", |i| format!("admin-{i}")).await;
    let list = "{ activeSubscriptions { id replica caller userId operationName eventsDelivered lag clientAddress startedAt } }";
    let listed = asking.ok(list, json!({})).await["activeSubscriptions"].clone();
    let mine: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["operationName"] == "Watch")
        .collect();
    assert_eq!(mine.len(), 1, "{listed}");
    let sub = mine[0];
    assert_eq!(sub["caller"], "user:admin", "{sub}");
    assert!(sub["eventsDelivered"].as_u64().unwrap() >= 1, "{sub}");
    if profile == Profile::Services {
        assert_eq!(sub["replica"], "a", "{sub}");
    }
    let id = sub["id"].as_str().unwrap().to_owned();
    asking
        .ok(
            "mutation($id: ID!) { closeSubscription(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    let closed = ws.next_json().await.unwrap();
    assert_eq!(closed["type"], "next", "{closed}");
    assert_eq!(
        error_code(&closed["payload"]),
        "SUBSCRIPTION_CLOSED",
        "{closed}"
    );
    let complete = ws.next_json().await.unwrap();
    assert_eq!(complete["type"], "complete", "{complete}");
    let again = asking
        .gql(
            "mutation($id: ID!) { closeSubscription(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&again), "NOT_FOUND", "{again}");
    let audit = asking
        .ok(
            "{ auditLog(filter: { action: \"subscription.close\" }) { edges { node { resourceId } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        audit["auditLog"]["edges"][0]["node"]["resourceId"],
        id.as_str(),
        "{audit}"
    );

    // Every subscription of one user, wherever it runs.
    let me = serving.ok("{ me { id } }", json!({})).await["me"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut sockets = Vec::new();
    for s in &servers {
        let mut ws = s.ws("graphql-transport-ws").await;
        ws.subscribe("w", "subscription { taskChanged { cursor } }", json!({}))
            .await;
        common::create_until_delivered(s, &mut ws, "w", |i| format!("of-{i}")).await;
        sockets.push(ws);
    }
    let n = asking
        .ok(
            "mutation($u: ID!) { closeSubscriptionsOf(userId: $u) }",
            json!({ "u": me }),
        )
        .await["closeSubscriptionsOf"]
        .as_u64()
        .unwrap();
    assert_eq!(n, sockets.len() as u64);
    for ws in &mut sockets {
        let mut codes = HashSet::new();
        loop {
            let msg = ws.next_json().await.unwrap();
            if msg["type"] == "complete" {
                break;
            }
            codes.insert(error_code(&msg["payload"]));
        }
        assert!(codes.contains("SUBSCRIPTION_CLOSED"), "{codes:?}");
    }
    let left = asking.ok(list, json!({})).await["activeSubscriptions"].clone();
    assert_eq!(left, json!([]), "{left}");
    drop(ws);
    drop(sockets);
    finish(servers, shared).await;
}

/// The slow-subscriber rule: memory stays bounded (a subscriber more than the buffer behind is
/// dropped), and the one `Lagged` it gets carries the cursor of the last event it received,
/// from which a resume yields exactly what it missed.
async fn a_lagging_subscriber_resumes_from_its_last_cursor(profile: Profile, name: &str) {
    use aurum::{events::DomainEvent, infra::event_bus::Interrupted};
    use futures::StreamExt;
    let Some(env) = common::Env::with(profile, name, |c| c.event_buffer = 16).await else {
        return;
    };
    let s = &env.server;
    let bus = &s.state.services.bus;
    let title_of = |event: &DomainEvent| match event {
        DomainEvent::Task(t) => Some(t.task.title.clone()),
        _ => None,
    };
    let mut events = bus.subscribe();
    create(s, "first").await;
    let first = loop {
        let delivered = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the first event")
            .unwrap()
            .unwrap();
        if title_of(&delivered.event).as_deref() == Some("first") {
            break delivered.position;
        }
    };
    // 40 tasks: 80 events (each with its audit entry's), five times the buffer, unread.
    for i in 0..40 {
        create(s, &format!("missed-{i}")).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while bus.head() < first + 80 {
        assert!(
            std::time::Instant::now() < deadline,
            "head {} < {}",
            bus.head(),
            first + 80
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lagged = events.next().await.unwrap();
    let Err(Interrupted::Lagged { skipped, last }) = lagged else {
        panic!("expected a lag, got {lagged:?}");
    };
    assert!(skipped >= 64, "skipped {skipped}");
    assert_eq!(last, first, "the lag names the last event received");
    assert!(events.next().await.is_none(), "a lagged subscriber ends");
    let mut resumed = bus.subscribe_after(Some(last)).await.unwrap();
    let mut titles = Vec::new();
    let mut position = first;
    while titles.len() < 40 {
        let delivered = tokio::time::timeout(Duration::from_secs(10), resumed.next())
            .await
            .expect("a replayed event")
            .unwrap()
            .unwrap();
        assert_eq!(delivered.position, position + 1, "a gap or a duplicate");
        position = delivered.position;
        titles.extend(title_of(&delivered.event));
    }
    let expected: Vec<String> = (0..40).map(|i| format!("missed-{i}")).collect();
    assert_eq!(titles, expected);
    env.finish().await;
}

both_profiles!(
    a_lagging_subscriber_resumes_from_its_last_cursor,
    resume_after_cursor,
    replay_keeps_tenant_scope,
    expired_cursor_is_refused,
    killed_between_commit_and_relay,
    admin_lists_and_closes_subscriptions,
);

/// Services profile, two replicas on a private NATS (JetStream on disk): NATS is stopped for
/// 15 s while replica A changes tasks and a budget (crossing a threshold); once NATS is back,
/// replica B's subscribers receive every event, in order per feed, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_loses_nothing() {
    let name = "nats_outage_loses_nothing";
    let Some(urls) = services_or_skip(name).await else {
        return;
    };
    let mut nats = common::PrivateNats::new();
    assert!(nats.start().await, "a private nats-server");
    let shared = Shared::services(&urls).await;
    let mut replicas = Vec::new();
    for id in ["a", "b"] {
        let mut config = shared.config(Some(&urls));
        config.nats_url = Some(aurum::config::ServiceUrl::new(nats.url()));
        config.replica_id = id.into();
        replicas.push(TestServer::start(config).await);
    }
    let (a, b) = (&replicas[0], &replicas[1]);
    a.ok(
        "mutation { createBudget(input: { tenantId: \"acme\", projectId: \"outage\", total: 100 }) { id } }",
        json!({}),
    )
    .await;
    let reserve = "mutation($a: Int!, $r: String!) { reserveBudget(input: { tenantId: \"acme\", projectId: \"outage\", amount: $a, requestId: $r }) { id } }";
    let changed = "subscription($after: String) { budgetChanged(tenantId: \"acme\", projectId: \"outage\", after: $after) { cursor kind } }";
    let mut ws = b.ws("graphql-transport-ws").await;
    ws.subscribe("t", TASKS, json!({})).await;
    common::create_until_delivered(a, &mut ws, "t", |i| format!("up-{i}")).await;
    // Live from before the warm-up: a resume (`after`) would read JetStream at subscribe
    // time, and that read could still be under way when NATS stops below.
    ws.subscribe(
        "x",
        "subscription { budgetThresholdReached(tenantId: \"acme\", projectId: \"outage\") { cursor threshold } }",
        json!({}),
    )
    .await;
    ws.subscribe("b", changed, json!({})).await;
    let mut cursor = None;
    for i in 0..50 {
        a.ok(reserve, json!({ "a": 1, "r": format!("probe-{i}") }))
            .await;
        if let Ok(e) = tokio::time::timeout(
            Duration::from_millis(300),
            ws.next_data("b", Duration::from_secs(5)),
        )
        .await
        {
            cursor = e["data"]["budgetChanged"]["cursor"]
                .as_str()
                .map(str::to_owned);
            break;
        }
    }
    assert!(cursor.is_some(), "budgetChanged delivered nothing");
    // Drain what the warm-up left queued for the task feed.
    create(a, "up-last").await;
    tasks_until(&mut ws, "t", "up-last").await;

    nats.stop().await;
    let stopped = std::time::Instant::now();
    let first = create(a, "down-0").await;
    a.ok(
        "mutation($id: ID!) { updateTaskState(id: $id, state: CANCELLED) { id } }",
        json!({ "id": first }),
    )
    .await;
    create(a, "down-1").await;
    let r = a.ok(reserve, json!({ "a": 60, "r": "big" })).await["reserveBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.ok(
        "mutation($id: ID!) { commitBudget(input: { reservationId: $id, actualAmount: 60, requestId: \"big-commit\" }) { id } }",
        json!({ "id": r }),
    )
    .await;
    create(a, "down-2").await;
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "mutations waited for NATS: {:?}",
        stopped.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(stopped.elapsed())).await;
    assert!(nats.start().await, "nats-server restarted");

    // One socket carries the three feeds: read them together, by operation id.
    let mut feeds: HashMap<String, Vec<Value>> = HashMap::new();
    let done = |feeds: &HashMap<String, Vec<Value>>| {
        let last = |id: &str, field: &str, key: &str| {
            feeds
                .get(id)
                .and_then(|v| v.last())
                .map(|p| p["data"][field][key].clone())
        };
        last("t", "taskChanged", "task").is_some_and(|t| t["title"] == "down-2")
            && last("b", "budgetChanged", "kind").is_some_and(|k| k == "COMMITTED")
            && feeds.get("x").is_some_and(|v| !v.is_empty())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done(&feeds) {
        assert!(
            std::time::Instant::now() < deadline,
            "events missing a minute after NATS came back: {feeds:?}"
        );
        let msg = ws.next_json().await.expect("socket open");
        if msg["type"] == "next" {
            assert!(msg["payload"].get("errors").is_none(), "{msg}");
            feeds
                .entry(msg["id"].as_str().unwrap().to_owned())
                .or_default()
                .push(msg["payload"].clone());
        }
    }
    let cursor_of = |p: &Value, field: &str| -> u64 {
        p["data"][field]["cursor"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let tasks: Vec<(u64, String, String)> = feeds["t"]
        .iter()
        .map(|p| {
            let e = &p["data"]["taskChanged"];
            (
                cursor_of(p, "taskChanged"),
                e["kind"].as_str().unwrap().to_owned(),
                e["task"]["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_ordered(&tasks);
    let got: Vec<(&str, &str)> = tasks
        .iter()
        .map(|(_, k, t)| (k.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("CREATED", "down-0"),
            ("STATE_CHANGED", "down-0"),
            ("CREATED", "down-1"),
            ("CREATED", "down-2"),
        ],
        "{tasks:?}"
    );
    let budget: Vec<(u64, String)> = feeds["b"]
        .iter()
        .map(|p| {
            (
                cursor_of(p, "budgetChanged"),
                p["data"]["budgetChanged"]["kind"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    // The warm-up probes' events may precede; the outage's two come last, in order.
    let n = budget.len();
    assert!(n >= 2 && budget[n - 2].1 == "RESERVED", "{budget:?}");
    assert!(budget.windows(2).all(|w| w[0].0 < w[1].0), "{budget:?}");
    assert_eq!(feeds["x"].len(), 1, "{:?}", feeds["x"]);
    assert_eq!(
        feeds["x"][0]["data"]["budgetThresholdReached"]["threshold"], 50,
        "{:?}",
        feeds["x"]
    );
    // None twice: nothing more arrives on any feed.
    let extra = tokio::time::timeout(Duration::from_secs(2), ws.next_json()).await;
    assert!(extra.is_err(), "an event arrived twice: {extra:?}");
    drop(ws);
    finish(replicas, shared).await;
}

/// A relay that dies after publishing a batch and before deleting it has its batch published
/// again by the next relay: JetStream drops the second copy (same `Nats-Msg-Id` within the
/// duplicate window), so subscribers get the event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_publishing_twice_is_deduplicated() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let name = "a_relay_publishing_twice_is_deduplicated";
    let Some(urls) = services_or_skip(name).await else {
        return;
    };
    let shared = Shared::services(&urls).await;
    // `held` commits but never relays; `relay` relays only when its own commits wake it.
    let mut config = shared.config(Some(&urls));
    config.outbox_relay_delay_ms = 3_600_000;
    let held = TestServer::start(config).await;
    let mut config = shared.config(Some(&urls));
    config.outbox_poll_ms = 60_000;
    let relay = TestServer::start(config).await;
    let mut ws = relay.ws("graphql-transport-ws").await;
    ws.subscribe("t", TASKS, json!({})).await;
    common::create_until_delivered(&relay, &mut ws, "t", |i| format!("warm-{i}")).await;
    create(&relay, "warm-last").await;
    tasks_until(&mut ws, "t", "warm-last").await;

    create(&held, "twice").await;
    // What the relay that died had published: the row, as a relay sends it.
    let db = Database::connect(&shared.db_url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT event_id, subject, payload FROM event_outbox ORDER BY id DESC LIMIT 1",
        ))
        .await
        .unwrap()
        .expect("the held event in the outbox");
    let event_id: uuid::Uuid = row.try_get("", "event_id").unwrap();
    let subject: String = row.try_get("", "subject").unwrap();
    let payload: String = row.try_get("", "payload").unwrap();
    let client = async_nats::connect(&urls.nats).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        event_id.to_string().as_str(),
    );
    js.publish_with_headers(
        format!("{}.events.{subject}", shared.nats_prefix),
        headers,
        payload.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // The next relay pass publishes the same row again, then deletes it.
    create(&relay, "wake").await;
    let seen = tasks_until(&mut ws, "t", "wake").await;
    assert_ordered(&seen);
    let twice = seen.iter().filter(|(_, _, t)| t == "twice").count();
    assert_eq!(twice, 1, "{seen:?}");
    // The relay deletes its batch once JetStream has acknowledged it, which may be just
    // after a subscriber received it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while held.state.services.bus.backlog().await.unwrap().0 > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the relayed rows stayed in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let extra = tokio::time::timeout(Duration::from_secs(2), ws.next_json()).await;
    assert!(extra.is_err(), "an event arrived twice: {extra:?}");
    drop(ws);
    db.close().await.unwrap();
    held.stop().await;
    relay.stop().await;
    shared.cleanup().await;
}
