//! Budgets under contention on PostgreSQL: a key held by a running call, and the proof on two
//! replicas (random reserve / commit / release / abandon with retries, never above the limit,
//! each request id once) with its kill -9 variant on a real `aurum` process. The ledger is
//! replayed against the budget rows at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aurum::idempotency::lock_key;
use common::{
    Env, Profile, Replica, ReplicaEnv, Shared, TestServer, budgets::*, error_code, services_or_skip,
};
use entity::{budget_reservation, budget_transaction};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{Value, json};

/// On PostgreSQL, a call whose key is held by a running call answers at once with
/// IDEMPOTENCY_IN_PROGRESS, and succeeds once the first is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_key_answers_in_progress() {
    let Some(env) = Env::new(Profile::Services, "in_flight_key_answers_in_progress").await else {
        return;
    };
    let s = &env.server;
    create(s, "acme", "bot", 100).await;
    let me = s.ok("{ me { id } }", json!({})).await["me"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another connection plays the first call: it holds the key's lock in an open transaction.
    let other = sea_orm::Database::connect(&env.shared.db_url)
        .await
        .unwrap();
    let txn = sea_orm::TransactionTrait::begin(&other).await.unwrap();
    txn.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock({})",
        lock_key(&format!("user:{me}"), "held")
    ))
    .await
    .unwrap();
    let vars = json!({ "t": "acme", "p": "bot", "a": 5, "r": "held" });
    let started = Instant::now();
    let busy = s.gql(RESERVE, vars.clone()).await;
    assert_eq!(error_code(&busy), "IDEMPOTENCY_IN_PROGRESS", "{busy}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it must not wait"
    );
    assert_eq!(triple(&state(s, "acme", "bot").await), (100, 0, 0));
    txn.rollback().await.unwrap();
    let ok = s.ok(RESERVE, vars).await;
    assert_eq!(ok["reserveBudget"]["amount"], 5);
    other.close().await.ok();
    env.finish().await;
}

// ---- the contention proof ------------------------------------------------------------------

/// Where a client sends its requests: a fixed server, or one that may move (restart).
#[derive(Clone)]
struct Target(Arc<Mutex<String>>);

impl Target {
    fn new(base: String) -> Self {
        Self(Arc::new(Mutex::new(base)))
    }
    fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }
    fn set(&self, base: String) {
        *self.0.lock().unwrap() = base;
    }
}

/// Sends one call until it gets an answer that is not a transport failure or "in progress"
/// (the server may be down or restarting); returns the raw body.
async fn call(
    client: &reqwest::Client,
    target: &Target,
    token: &str,
    query: &str,
    vars: &Value,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        match post_raw(client, &target.get(), Some(token), query, vars).await {
            Ok(body) if !body.contains("IDEMPOTENCY_IN_PROGRESS") => return body,
            Ok(_) | Err(_) => {
                assert!(Instant::now() < deadline, "no answer for {vars}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the clients saw, per (user, request id): `Ok` or the error code of the final answer.
type Outcomes = Arc<Mutex<BTreeMap<(String, String), Result<(), String>>>>;

struct Contention {
    targets: Vec<Target>,
    tokens: Vec<(String, String)>,
    projects: Vec<String>,
    total: i64,
    clients: usize,
    rounds: usize,
}

/// Random reserve / partial commit / release / abandon from `clients` clients spread over
/// the targets and users, 10 % of calls retried with the same key (a third of those with a
/// changed input), while a reader checks every sampled state. Returns the outcomes.
async fn run_contention(c: &Contention, stop_reader: Arc<AtomicBool>) -> (Outcomes, usize) {
    use rand::Rng;
    let outcomes: Outcomes = Arc::default();
    let client = reqwest::Client::new();
    let reader = {
        let client = client.clone();
        let targets = c.targets.clone();
        let token = c.tokens[0].1.clone();
        let projects = c.projects.clone();
        let total = c.total;
        let stop = stop_reader.clone();
        tokio::spawn(async move {
            let mut samples = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for (i, p) in projects.iter().enumerate() {
                    let target = &targets[(samples + i) % targets.len()];
                    let Ok(body) = post_raw(
                        &client,
                        &target.get(),
                        Some(&token),
                        STATE,
                        &json!({ "t": "proof", "p": p }),
                    )
                    .await
                    else {
                        continue; // that server is down right now
                    };
                    let v: Value = serde_json::from_str(&body).unwrap();
                    let st = &v["data"]["budgetState"];
                    if st.is_null() {
                        continue;
                    }
                    let (t, u, r) = triple(st);
                    assert!(r >= 0 && u >= 0, "negative sample {st}");
                    assert!(u + r <= t, "overspent sample {st}");
                    assert_eq!(t, total);
                    assert_eq!(st["available"].as_i64().unwrap(), t - u - r);
                    samples += 1;
                }
            }
            samples
        })
    };
    let mut tasks = Vec::new();
    for n in 0..c.clients {
        let client = client.clone();
        let target = c.targets[n % c.targets.len()].clone();
        let (user, token) = c.tokens[n % c.tokens.len()].clone();
        let projects = c.projects.clone();
        let outcomes = outcomes.clone();
        let rounds = c.rounds;
        tasks.push(tokio::spawn(async move {
            let record = |key: &str, body: &str| {
                let v: Value = serde_json::from_str(body).unwrap();
                let outcome = if v.get("errors").is_some() {
                    Err(error_code(&v))
                } else {
                    Ok(())
                };
                outcomes
                    .lock()
                    .unwrap()
                    .insert((user.clone(), key.to_owned()), outcome);
                v
            };
            // Sends `vars`; sometimes retries it (same bytes back) or reuses its key
            // with a changed input (refused).
            let send = |query: &'static str, vars: Value, changed: Value| {
                let client = client.clone();
                let target = target.clone();
                let token = token.clone();
                async move {
                    let body = call(&client, &target, &token, query, &vars).await;
                    // A refused call stored nothing: a retry could act, so only successes
                    // are retried.
                    if body.contains("\"errors\"") {
                        return body;
                    }
                    let roll: u32 = rand::rng().random_range(0..100);
                    if roll < 7 {
                        let again = call(&client, &target, &token, query, &vars).await;
                        assert_eq!(body, again, "replay differs for {vars}");
                    } else if roll < 10 {
                        let reused = call(&client, &target, &token, query, &changed).await;
                        let v: Value = serde_json::from_str(&reused).unwrap();
                        assert_eq!(error_code(&v), "IDEMPOTENCY_KEY_REUSED", "{reused}");
                    }
                    body
                }
            };
            for round in 0..rounds {
                let (project, amount, action, actual) = {
                    let mut rng = rand::rng();
                    let amount: i64 = rng.random_range(1..=150);
                    (
                        projects[rng.random_range(0..projects.len())].clone(),
                        amount,
                        rng.random_range(0..100u32),
                        rng.random_range(0..=amount),
                    )
                };
                let abandon = action >= 85;
                let key = format!("c{n}-{round}-r");
                let vars = json!({ "t": "proof", "p": project, "a": amount, "r": key, "ttl": if abandon { 1 } else { 60 } });
                let mut changed = vars.clone();
                changed["a"] = json!(amount + 1);
                let body = send(RESERVE, vars, changed).await;
                let v = record(&key, &body);
                let Some(id) = v["data"]["reserveBudget"]["id"].as_str().map(str::to_owned)
                else {
                    assert_eq!(error_code(&v), "BUDGET_EXCEEDED", "{v}");
                    continue;
                };
                if abandon {
                    continue;
                }
                let key = format!("c{n}-{round}-x");
                let body = if action < 50 {
                    let vars = json!({ "id": id, "a": actual, "r": key });
                    let changed = json!({ "id": id, "a": (actual + 1) % (amount + 1), "r": key });
                    send(COMMIT, vars, changed).await
                } else {
                    let vars = json!({ "id": id, "r": key });
                    let changed = json!({ "id": uuid::Uuid::now_v7(), "r": key });
                    send(RELEASE, vars, changed).await
                };
                let v = record(&key, &body);
                assert!(v.get("errors").is_none(), "resolution failed: {v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop_reader.store(true, Ordering::Relaxed);
    let samples = reader.await.unwrap();
    (outcomes, samples)
}

/// Quiescence: waits for every abandoned reservation to expire, then checks the ledger, the
/// sums and exactly one effect per successful request id (none per refused one).
async fn assert_quiescent(
    db: &DatabaseConnection,
    outcomes: &Outcomes,
    users: &[(String, String)],
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live = budget_reservation::Entity::find()
            .filter(budget_reservation::Column::Status.eq("reserved"))
            .all(db)
            .await
            .unwrap();
        if live.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} reservations never expired",
            live.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let budgets = assert_ledger_replays(db).await;
    let reservations = budget_reservation::Entity::find().all(db).await.unwrap();
    for b in &budgets {
        let committed: i64 = reservations
            .iter()
            .filter(|r| r.budget_id == b.id && r.status == budget_reservation::Status::Committed)
            .map(|r| r.actual_amount.unwrap_or(0))
            .sum();
        assert_eq!(
            b.used, committed,
            "used of {} is not Σ committed",
            b.project_id
        );
        assert_eq!(b.reserved, 0);
    }
    // Every reservation resolved exactly once.
    let ledger = budget_transaction::Entity::find().all(db).await.unwrap();
    let mut resolutions: HashMap<uuid::Uuid, usize> = HashMap::new();
    for row in &ledger {
        if let (Some(r), true) = (
            row.reservation_id,
            row.kind != budget_transaction::Kind::Reserve,
        ) {
            *resolutions.entry(r).or_default() += 1;
        }
    }
    for r in &reservations {
        assert_eq!(
            resolutions.get(&r.id),
            Some(&1),
            "reservation {} resolved ≠ once",
            r.id
        );
    }
    // One effect per successful key, none per refused one.
    let scope_of: HashMap<&str, String> = users
        .iter()
        .map(|(name, id)| (name.as_str(), format!("user:{id}")))
        .collect();
    let mut per_key: HashMap<(String, String), usize> = HashMap::new();
    for row in &ledger {
        if let (Some(c), Some(k)) = (&row.caller, &row.request_id) {
            *per_key.entry((c.clone(), k.clone())).or_default() += 1;
        }
    }
    let outcomes = outcomes.lock().unwrap();
    assert!(outcomes.len() > 100, "only {} calls", outcomes.len());
    for ((user, key), outcome) in outcomes.iter() {
        let n = per_key
            .get(&(scope_of[user.as_str()].clone(), key.clone()))
            .copied()
            .unwrap_or(0);
        match outcome {
            Ok(()) => assert_eq!(n, 1, "{user}/{key} succeeded with {n} effects"),
            Err(code) => assert_eq!(n, 0, "{user}/{key} failed ({code}) with {n} effects"),
        }
    }
    let exceeded = outcomes
        .values()
        .filter(|o| matches!(o, Err(c) if c == "BUDGET_EXCEEDED"))
        .count();
    eprintln!(
        "contention: {} keyed calls, {} BUDGET_EXCEEDED, {} reservations, {} ledger rows",
        outcomes.len(),
        exceeded,
        reservations.len(),
        ledger.len()
    );
}

/// Developer users (and their ids) for the contention clients, plus the admin.
async fn contention_users(s: &TestServer) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let mut tokens = vec![("admin".to_owned(), s.token.clone())];
    let me = s.ok("{ me { id } }", json!({})).await["me"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = vec![("admin".to_owned(), me)];
    for i in 0..3 {
        let name = format!("agent{i}");
        let made = s
            .ok(
                "mutation($u: String!) { createUser(input: { username: $u, password: \"a long password\", role: DEVELOPER }) { id } }",
                json!({ "u": name }),
            )
            .await;
        ids.push((
            name.clone(),
            made["createUser"]["id"].as_str().unwrap().to_owned(),
        ));
        tokens.push((name.clone(), s.login(&name, "a long password").await));
    }
    (tokens, ids)
}

const PROJECTS: [&str; 3] = ["alpha", "beta", "gamma"];
const PROOF_TOTAL: i64 = 2_000;

/// Two replicas on one PostgreSQL + NATS, 54 clients, 3 budgets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_overspend() {
    let Some(urls) = services_or_skip("two_replicas_never_overspend").await else {
        return;
    };
    let shared = Shared::services(&urls).await;
    let mut config = shared.config(Some(&urls));
    config.budget_sweep_interval_ms = 200;
    let a = TestServer::start(config.clone()).await;
    let b = TestServer::start(config).await;
    for p in PROJECTS {
        create(&a, "proof", p, PROOF_TOTAL).await;
    }
    let (tokens, ids) = contention_users(&a).await;
    let started = Instant::now();
    let c = Contention {
        targets: vec![Target::new(a.url("")), Target::new(b.url(""))],
        tokens,
        projects: PROJECTS.iter().map(|p| (*p).to_owned()).collect(),
        total: PROOF_TOTAL,
        clients: 54,
        rounds: 12,
    };
    let (outcomes, samples) = run_contention(&c, Arc::default()).await;
    eprintln!(
        "contention run: {:?}, {samples} state samples",
        started.elapsed()
    );
    assert!(samples > 10, "the reader sampled only {samples} states");
    assert_quiescent(&a.state.db, &outcomes, &ids).await;
    a.stop().await;
    b.stop().await;
    shared.cleanup().await;
}

/// The same proof while one replica (a real process) is killed with SIGKILL mid-run and
/// restarted on the same database: retried keys still have exactly one effect, and the
/// reservations abandoned meanwhile come back through expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_keeps_exactly_once() {
    let Some(urls) = services_or_skip("kill_9_mid_run_keeps_exactly_once").await else {
        return;
    };
    let shared = Shared::services(&urls).await;
    let mut config = shared.config(Some(&urls));
    config.budget_sweep_interval_ms = 200;
    let a = TestServer::start(config).await;
    for p in PROJECTS {
        create(&a, "proof", p, PROOF_TOTAL).await;
    }
    let (tokens, ids) = contention_users(&a).await;
    let mut replica_env = ReplicaEnv::of(&shared, Some(&urls));
    replica_env.set("AURUM_BUDGET_SWEEP_INTERVAL_MS", "200");
    let first = {
        let env = replica_env.clone();
        tokio::task::spawn_blocking(move || Replica::spawn(&env))
            .await
            .unwrap()
    };
    let moving = Target::new(first.base.clone());
    let c = Contention {
        targets: vec![Target::new(a.url("")), moving.clone()],
        tokens,
        projects: PROJECTS.iter().map(|p| (*p).to_owned()).collect(),
        total: PROOF_TOTAL,
        clients: 50,
        rounds: 14,
    };
    // Kills the replica once work is flowing through it, then starts a new one on the same
    // database while the clients keep retrying.
    let chaos = {
        let db_url = shared.db_url.clone();
        let moving = moving.clone();
        let mut victim = first;
        tokio::spawn(async move {
            let db = sea_orm::Database::connect(&db_url).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let n = sea_orm::PaginatorTrait::count(budget_transaction::Entity::find(), &db)
                    .await
                    .unwrap();
                if n > 300 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            db.close().await.ok();
            let killed_at = Instant::now();
            victim.kill9();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let restarted = tokio::task::spawn_blocking(move || Replica::spawn(&replica_env))
                .await
                .unwrap();
            moving.set(restarted.base.clone());
            eprintln!("replica killed and back after {:?}", killed_at.elapsed());
            restarted
        })
    };
    let (outcomes, samples) = run_contention(&c, Arc::default()).await;
    let restarted = chaos.await.unwrap();
    eprintln!("kill-restart run: {samples} state samples");
    assert!(samples > 10, "the reader sampled only {samples} states");
    assert_quiescent(&a.state.db, &outcomes, &ids).await;
    drop(restarted);
    a.stop().await;
    shared.cleanup().await;
}
