//! Test harness: a real Aurum server on port 0, against either profile, with its own data.
//!
//! - Embedded: a fresh SQLite file in a temporary folder, in-process event bus.
//! - Services: a fresh PostgreSQL database, a unique Redis key prefix and NATS subject prefix,
//!   and Docker at the default socket. When a service is unreachable the test fails if
//!   `AURUM_REQUIRE_SERVICES=1`, and otherwise says by name that it was skipped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use aurum::{
    AppState,
    config::{Config, ServiceUrl},
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue};

pub mod browser;
pub mod budgets;
mod processes;
pub mod queues;
pub mod sandbox;
// Each test binary uses a part of these.
#[allow(unused_imports)]
pub use processes::*;

pub const ADMIN_PASSWORD: &str = "test-admin-password";
/// Shared by every replica of a test (tokens from one must verify on the other).
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdefghijklmnop";

/// Where the shared services live (overridable for other machines).
pub struct ServiceUrls {
    pub postgres: String,
    pub redis: String,
    pub nats: String,
}

impl ServiceUrls {
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        Self {
            postgres: var(
                "AURUM_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432",
            ),
            redis: var("AURUM_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
            nats: var("AURUM_TEST_NATS_URL", "nats://127.0.0.1:4222"),
        }
    }
}

fn host_port(url: &str) -> String {
    let u = url::Url::parse(url).expect("service URL");
    format!(
        "{}:{}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port_or_known_default().unwrap_or(0)
    )
}

async fn reachable(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

async fn docker_reachable() -> Result<(), String> {
    let docker = bollard::Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(2), docker.ping()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("ping timed out".into()),
    }
}

pub fn services_required() -> bool {
    std::env::var("AURUM_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The service URLs when every service answers; otherwise fails (required) or reports the
/// skip by test name and returns `None`.
pub async fn services_or_skip(test: &str) -> Option<ServiceUrls> {
    let urls = ServiceUrls::from_env();
    let mut missing = Vec::new();
    for (name, url) in [
        ("postgres", &urls.postgres),
        ("redis", &urls.redis),
        ("nats", &urls.nats),
    ] {
        if !reachable(&host_port(url)).await {
            missing.push(format!("{name} at {url}"));
        }
    }
    if let Err(e) = docker_reachable().await {
        missing.push(format!("docker ({e})"));
    }
    if missing.is_empty() {
        return Some(urls);
    }
    let msg = format!("{test}: services unreachable: {}", missing.join(", "));
    if services_required() {
        panic!("AURUM_REQUIRE_SERVICES=1 and {msg}");
    }
    eprintln!("SKIPPED {msg}");
    record_skip(&msg);
    None
}

/// Logs in as the first admin at `base` (a server or replica process of a test): the access token.
pub async fn login_at(client: &reqwest::Client, base: &str) -> String {
    let query = format!(
        "mutation {{ login(username: \"admin\", password: \"{ADMIN_PASSWORD}\") {{ token }} }}"
    );
    let res: Value = client
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["data"]["login"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login at {base}: {res}"))
        .to_owned()
}

/// Appends a skip to `target/aurum-skipped-tests.txt`, which `scripts/test` prints.
pub fn record_skip(msg: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/aurum-skipped-tests.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "{msg}");
    }
}

/// A database of its own on the shared PostgreSQL, dropped by `TestServer::stop`.
pub struct PgDatabase {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(urls: &ServiceUrls) -> Self {
        use sea_orm::{ConnectionTrait, Database};
        let name = format!("aurum_t_{}", uuid::Uuid::new_v4().simple());
        let admin_url = format!("{}/postgres", urls.postgres);
        let admin = Database::connect(&admin_url)
            .await
            .expect("connect to postgres");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = format!("{}/{name}", urls.postgres);
        Self {
            admin_url,
            name,
            url,
        }
    }

    pub async fn drop_db(&self) {
        use sea_orm::{ConnectionTrait, Database};
        if let Ok(admin) = Database::connect(&self.admin_url).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
            admin.close().await.ok();
        }
    }
}

/// Which backends a server runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Embedded,
    Services,
}

/// Data shared by servers that must see the same state (replicas).
pub struct Shared {
    pub db_url: String,
    pub redis_prefix: String,
    pub nats_prefix: String,
    pub pg: Option<PgDatabase>,
    /// The test's sandbox fleet (container label).
    pub fleet: String,
    _dir: Option<tempfile::TempDir>,
}

impl Shared {
    pub fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("aurum.db").display()
        );
        Self {
            db_url,
            redis_prefix: String::new(),
            nats_prefix: String::new(),
            pg: None,
            fleet: format!("t{}", uuid::Uuid::new_v4().simple()),
            _dir: Some(dir),
        }
    }

    pub async fn services(urls: &ServiceUrls) -> Self {
        let pg = PgDatabase::create(urls).await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            db_url: pg.url.clone(),
            redis_prefix: format!("aurumt{}", &id[..12]),
            nats_prefix: format!("aurumt{}", &id[..12]),
            pg: Some(pg),
            fleet: format!("t{id}"),
            _dir: None,
        }
    }

    /// A configuration for one replica over this data.
    pub fn config(&self, urls: Option<&ServiceUrls>) -> Config {
        let mut c = Config::from_env().expect("default configuration");
        // Replicas of one test share a fleet; the sweepers of other tests leave it alone.
        c.sandbox.fleet = self.fleet.clone();
        c.database_url = ServiceUrl::new(self.db_url.clone());
        c.admin_password = Some(secrecy::SecretString::from(ADMIN_PASSWORD.to_owned()));
        c.jwt_secret = Some(secrecy::SecretString::from(JWT_SECRET.to_owned()));
        c.graphiql_assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/node_modules");
        c.shutdown_timeout_seconds = 5;
        // Tests drive hundreds of requests from one address; the edge limit has its own test.
        c.http_rate_per_second = 1_000_000;
        c.http_rate_burst = 1_000_000;
        // Likewise the per-caller limits (tests/protection.rs sets its own).
        c.rate_limits = "login=100000/1s,cost=10000000/1s,mutation=100000/1s"
            .parse()
            .expect("test rate limits");
        match urls {
            Some(u) => {
                c.redis_url = Some(ServiceUrl::new(u.redis.clone()));
                c.redis_key_prefix = self.redis_prefix.clone();
                c.nats_url = Some(ServiceUrl::new(u.nats.clone()));
                c.nats_subject_prefix = self.nats_prefix.clone();
                c.docker_host = None;
            }
            None => {
                c.redis_url = None;
                c.nats_url = None;
            }
        }
        c
    }

    pub async fn cleanup(&self) {
        if let Some(pg) = &self.pg {
            pg.drop_db().await;
        }
        if !self.nats_prefix.is_empty() {
            // The test's streams (the shared NATS keeps streams on disk).
            let url = ServiceUrls::from_env().nats;
            if let Ok(Ok(client)) =
                tokio::time::timeout(Duration::from_secs(2), async_nats::connect(url)).await
            {
                let js = async_nats::jetstream::new(client);
                for stream in ["EVENTS", "TASKS", "QUEUE_ADVISORIES"] {
                    let stream = format!("{}_{stream}", self.nats_prefix.to_uppercase());
                    let _ = js.delete_stream(stream).await;
                }
            }
        }
    }
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    /// An access token of the first admin; `gql`/`ok` send it.
    pub token: String,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// `GET /ready`, decoded.
    pub async fn ready(&self) -> Value {
        self.client
            .get(self.url("/ready"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (state, _) = AppState::build(config).await.expect("build state");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(aurum::run(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        let mut server = Self {
            addr,
            state,
            client: reqwest::Client::new(),
            token: String::new(),
            stop: Some(tx),
            handle,
        };
        server.token = server.login("admin", ADMIN_PASSWORD).await;
        server
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let res = self
            .gql_as(
                None,
                "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
                json!({ "u": username, "p": password }),
            )
            .await;
        res["data"]["login"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login as {username} failed: {res}"))
            .to_owned()
    }

    /// A WebSocket authenticated as the first admin.
    pub async fn ws(&self, protocol: &'static str) -> WsClient {
        WsClient::connect(&self.ws_url(), protocol, Some(&self.token)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql", self.addr)
    }

    /// POSTs one operation as the first admin and returns the whole JSON response.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_as(Some(&self.token), query, variables).await
    }

    /// POSTs one operation with the given access token (or none).
    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self.client.post(self.url("/graphql"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("POST /graphql")
            .json()
            .await
            .expect("JSON response")
    }

    /// Like `gql`, asserting there are no errors, and returning `data`.
    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        let res = self.gql(query, variables).await;
        assert!(res.get("errors").is_none(), "unexpected errors: {res}");
        res["data"].clone()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }
}

/// The value of an unlabelled metric in a Prometheus exposition; -1 when absent.
pub fn metric_value(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// A subscription starts asynchronously: creates tasks through `server` (titled `title(i)`)
/// until subscription `id` on `ws` delivers one. Returns the `createTask` data and the event.
pub async fn create_until_delivered(
    server: &TestServer,
    ws: &mut WsClient,
    id: &str,
    title: impl Fn(usize) -> String,
) -> (Value, Value) {
    for i in 0..50 {
        let made = server
            .ok(
                "mutation($t: String!) { createTask(input: { title: $t }) { id } }",
                json!({ "t": title(i) }),
            )
            .await;
        if let Ok(event) = tokio::time::timeout(
            Duration::from_millis(200),
            ws.next_data(id, Duration::from_secs(5)),
        )
        .await
        {
            return (made, event);
        }
    }
    panic!("subscription {id} delivered nothing after 50 changes");
}

/// The first error's `extensions.code`.
pub fn error_code(res: &Value) -> String {
    res["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A minimal GraphQL WebSocket client speaking either protocol.
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    pub protocol: &'static str,
}

impl WsClient {
    /// Connects without sending anything.
    pub async fn connect_raw(url: &str, protocol: &'static str) -> Self {
        let mut request = url.into_client_request().expect("ws request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connect");
        Self { stream, protocol }
    }

    /// Connects and completes `connection_init` / `connection_ack`, with the token (if any)
    /// in the init payload.
    pub async fn connect(url: &str, protocol: &'static str, token: Option<&str>) -> Self {
        let mut request = url.into_client_request().expect("ws request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
        let (stream, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connect");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol)
        );
        let mut client = Self { stream, protocol };
        let payload = match token {
            Some(t) => json!({ "Authorization": format!("Bearer {t}") }),
            None => json!({}),
        };
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let ack = client.next_json().await.expect("connection_ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        client
    }

    pub async fn send(&mut self, msg: Value) {
        self.stream
            .send(tungstenite::Message::Text(msg.to_string().into()))
            .await
            .expect("ws send");
    }

    /// Starts a subscription with the protocol's message type.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == "graphql-ws" {
            "start"
        } else {
            "subscribe"
        };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next JSON message (pings answered, keep-alives skipped); `None` when closed.
    /// Panics after 10 s without one, so a protocol bug fails a test instead of hanging it.
    pub async fn next_json(&mut self) -> Option<Value> {
        tokio::time::timeout(Duration::from_secs(10), self.next_json_inner())
            .await
            .expect("a WebSocket message within 10 s")
    }

    async fn next_json_inner(&mut self) -> Option<Value> {
        loop {
            match self.stream.next().await? {
                Ok(tungstenite::Message::Text(text)) => {
                    let v: Value = serde_json::from_str(&text).expect("json frame");
                    if v["type"] == "ka" || v["type"] == "ping" {
                        if v["type"] == "ping" {
                            self.send(json!({ "type": "pong" })).await;
                        }
                        continue;
                    }
                    return Some(v);
                }
                Ok(tungstenite::Message::Close(frame)) => {
                    return Some(
                        json!({ "type": "__closed", "code": frame.map(|f| u16::from(f.code)) }),
                    );
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The next data payload of subscription `id`, within `timeout`.
    pub async fn next_data(&mut self, id: &str, timeout: Duration) -> Value {
        let fut = async {
            loop {
                let msg = self.next_json().await.expect("socket closed");
                if msg["id"] == id && (msg["type"] == "next" || msg["type"] == "data") {
                    return msg["payload"].clone();
                }
                if msg["type"] == "error" || msg["type"] == "__closed" {
                    panic!("subscription failed: {msg}");
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .expect("subscription event in time")
    }

    /// Waits for a close frame and returns its code.
    pub async fn closed_with(&mut self, timeout: Duration) -> Option<u16> {
        let fut = async {
            loop {
                match self.next_json().await {
                    Some(v) if v["type"] == "__closed" => {
                        return v["code"].as_u64().map(|c| c as u16);
                    }
                    Some(_) => continue,
                    None => return None,
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.ok().flatten()
    }
}

/// One server for a scenario in a given profile, plus what to clean up. `None` = skipped.
pub struct Env {
    pub server: TestServer,
    pub shared: Shared,
    pub urls: Option<ServiceUrls>,
}

impl Env {
    pub async fn new(profile: Profile, test: &str) -> Option<Self> {
        Self::with(profile, test, |_| {}).await
    }

    /// Like `new`, with a chance to adjust the configuration.
    pub async fn with(
        profile: Profile,
        test: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        let (shared, urls) = match profile {
            Profile::Embedded => (Shared::embedded(), None),
            Profile::Services => {
                let urls = services_or_skip(test).await?;
                (Shared::services(&urls).await, Some(urls))
            }
        };
        let mut config = shared.config(urls.as_ref());
        adjust(&mut config);
        let server = TestServer::start(config).await;
        Some(Self {
            server,
            shared,
            urls,
        })
    }

    pub async fn finish(self) {
        self.server.stop().await;
        self.shared.cleanup().await;
    }
}

/// Runs a scenario once per profile, as two tests named `<scenario>::embedded` and
/// `<scenario>::services`.
#[macro_export]
macro_rules! both_profiles {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$scenario($crate::common::Profile::Embedded, concat!(stringify!($scenario), "::embedded")).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn services() {
                super::$scenario($crate::common::Profile::Services, concat!(stringify!($scenario), "::services")).await
            }
        }
    )*};
}

impl TestServer {
    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}
