//! What the DLQ fault tests share: replicas as their clients see them (`Cluster`), the
//! operations they send, the message keys their payloads carry, and the dead letters read
//! back from PostgreSQL.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

use super::{ADMIN_PASSWORD, Replica, ReplicaEnv};

pub const ENQUEUE: &str = "mutation($task: ID!, $q: String!, $p: String, $r: String!) { enqueueTask(input: { taskId: $task, queue: $q, payload: $p, requestId: $r }) { sequence } }";
pub const CLAIM: &str = "mutation($q: String!, $max: Int, $wait: Int) { claimTaskMessages(queue: $q, max: $max, waitMs: $wait) { deliveryId attempt payload } }";

/// Replicas as the clients see them: base URLs (swapped when one restarts) and a token.
#[derive(Clone)]
pub struct Cluster {
    pub bases: Arc<RwLock<Vec<String>>>,
    pub token: String,
    http: reqwest::Client,
}

impl Cluster {
    pub async fn new(bases: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let res: Value = http
            .post(format!("{}/graphql", bases[0]))
            .json(&json!({ "query": "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", "variables": { "u": "admin", "p": ADMIN_PASSWORD } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = res["data"]["login"]["token"].as_str().unwrap().to_owned();
        Self {
            bases: Arc::new(RwLock::new(bases)),
            token,
            http,
        }
    }

    fn base(&self, i: usize) -> String {
        let bases = self.bases.read().unwrap();
        bases[i % bases.len()].clone()
    }

    /// One operation on replica `i` (modulo the replicas); `Err` when no answer came.
    pub async fn call(&self, i: usize, query: &str, variables: Value) -> Result<Value, String> {
        let res = self
            .http
            .post(format!("{}/graphql", self.base(i)))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        res.json::<Value>().await.map_err(|e| e.to_string())
    }

    /// `call` until it answers without errors (a fault is passing).
    pub async fn ok(&self, i: usize, query: &str, variables: Value) -> Value {
        let started = Instant::now();
        loop {
            match self.call(i, query, variables.clone()).await {
                Ok(v) if v.get("errors").is_none() => return v["data"].clone(),
                other => {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "{query} kept failing: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// The key `m-<n>` payloads carry.
pub fn key_of(payload: &str) -> Option<u64> {
    payload.strip_prefix("m-")?.parse().ok()
}

/// Every dead letter: message key → (attempts, count of rows).
pub async fn dead_letters(db: &DatabaseConnection) -> HashMap<u64, (i64, u32)> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload, attempts FROM dlq_messages",
        ))
        .await
        .unwrap();
    let mut out: HashMap<u64, (i64, u32)> = HashMap::new();
    for r in rows {
        let payload: Option<String> = r.try_get("", "payload").unwrap();
        let attempts: i32 = r.try_get("", "attempts").unwrap();
        let key = key_of(payload.as_deref().unwrap_or_default()).unwrap();
        let e = out.entry(key).or_insert((i64::from(attempts), 0));
        e.1 += 1;
    }
    out
}

/// Starts a replica process (blocking, so on the blocking pool).
pub fn spawn_replica(env: ReplicaEnv) -> tokio::task::JoinHandle<Replica> {
    tokio::task::spawn_blocking(move || Replica::spawn(&env))
}

/// Rate limits high enough that load tests on replicas measure the service, not the limits.
pub const LOAD_RATE_LIMITS: &str = "login=100000/1s,cost=10000000/1s,mutation=100000/1s";

/// Two replica processes on `shared`'s PostgreSQL and the services' NATS, with
/// [`LOAD_RATE_LIMITS`], started one after the other (the first migrates and creates the
/// first admin), and a client logged in as that admin.
pub async fn load_cluster(
    shared: &super::Shared,
    urls: &super::ServiceUrls,
) -> (Vec<Replica>, Cluster) {
    let mut env = ReplicaEnv::of(shared, Some(urls));
    env.set("AURUM_RATE_LIMITS", LOAD_RATE_LIMITS);
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(spawn_replica(env.clone()).await.unwrap());
    }
    let cluster = Cluster::new(replicas.iter().map(|r| r.base.clone()).collect()).await;
    (replicas, cluster)
}
