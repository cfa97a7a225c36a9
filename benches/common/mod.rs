//! What both benchmarks share: one keep-alive HTTP/1.1 connection driven by hyper's bare
//! client. No pool and no URL parsing per request, so the client's own cost per request stays
//! small next to the server's on a machine whose cores the client shares with the server (a
//! heavier client flattens every ratio towards 1 and charges its cost to the GraphQL side).
// Each benchmark uses a part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures::{SinkExt, StreamExt};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    Message, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig,
};

/// The request side of one connection.
pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens a connection to `addr` (host:port) with TCP_NODELAY; its driver runs as a task.
pub async fn connect(addr: &str) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// POSTs `body` to `/graphql` over `sender`'s connection to `addr`, as `auth`; the answer.
pub async fn post_graphql(
    sender: &mut Sender,
    addr: &str,
    auth: &hyper::header::HeaderValue,
    body: &Value,
) -> Value {
    use http_body_util::BodyExt;
    let body = serde_json::to_vec(body).unwrap();
    let request = hyper::Request::post("/graphql")
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::AUTHORIZATION, auth.clone())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// Like [`connect`], with the failure instead of a panic (a balancer or a replica that is
/// going away).
pub async fn try_connect(addr: &str) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Like [`post_graphql`], with the transport's failure instead of a panic: the HTTP status
/// and the body decoded (`Value::Null` when it is not JSON, a balancer's error page, say).
pub async fn try_post_graphql(
    sender: &mut Sender,
    addr: &str,
    auth: &hyper::header::HeaderValue,
    body: &Value,
) -> Result<(u16, Value), String> {
    use http_body_util::BodyExt;
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let request = hyper::Request::post("/graphql")
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::AUTHORIZATION, auth.clone())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// A fresh PostgreSQL database for one run on the server at `pg` (a URL without a database):
/// the connection that made it (to drop it with [`drop_database`]), and its URL.
pub async fn fresh_database(pg: &str, stem: &str) -> (sea_orm::DatabaseConnection, String, String) {
    use sea_orm::ConnectionTrait;
    let name = format!("{stem}_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(format!("{pg}/postgres"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{pg}/{name}");
    (admin, url, name)
}

/// Drops a database [`fresh_database`] made.
pub async fn drop_database(admin: &sea_orm::DatabaseConnection, name: &str) {
    use sea_orm::ConnectionTrait;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .ok();
}

/// The first admin's password in every benchmark server.
pub const ADMIN_PASSWORD: &str = "bench-password";

/// Starts the optimised `aurum` binary (`serve` on a free port) with the benchmarks' settings
/// — the first admin's password, limits that never refuse the one benchmark client — then
/// `extra`, in `dir` when given. Returns the process and the address it printed.
pub fn spawn_server(extra: &[(&str, &str)], dir: Option<&Path>) -> (Child, String) {
    spawn_binary(Path::new(env!("CARGO_BIN_EXE_aurum")), extra, dir)
}

/// Like `spawn_server`, from another build of `aurum` (an earlier commit, for a before/after
/// comparison in the same run).
pub fn spawn_binary(binary: &Path, extra: &[(&str, &str)], dir: Option<&Path>) -> (Child, String) {
    let mut command = server_command(binary, "127.0.0.1:0", extra);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(addr) = serving_address(&line) {
            break addr;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// `aurum serve` on `listen` with the benchmarks' settings (see `spawn_server`), then `extra`;
/// its stdout (the JSON log) piped.
fn server_command(binary: &Path, listen: &str, extra: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["serve", "--listen", listen])
        .env("AURUM_ADMIN_PASSWORD", ADMIN_PASSWORD)
        // The benchmark is one client address sending as fast as it can.
        .env("AURUM_HTTP_RATE_PER_SECOND", "1000000000")
        .env("AURUM_HTTP_RATE_BURST", "1000000000")
        .env(
            "AURUM_RATE_LIMITS",
            "login=1000000/1s,cost=1000000000/1s,mutation=1000000000/1s",
        )
        // "serving" (the address) is an info line of aurum.
        .env("RUST_LOG", "warn,aurum=info")
        .envs(extra.iter().copied())
        .stdout(Stdio::piped());
    command
}

/// The address of aurum's "serving" log line, if `line` is that line.
fn serving_address(line: &str) -> Option<String> {
    let v = serde_json::from_str::<Value>(line).ok()?;
    (v["message"] == "serving").then(|| v["listen"].as_str().map(str::to_owned))?
}

/// Like `spawn_server` on a fixed `listen` address (a replica restarted on its own port),
/// appending every line of its log to `log`. `Err` when the process ends before it serves
/// (its port still taken, say).
pub fn spawn_server_at(
    listen: &str,
    extra: &[(&str, &str)],
    log: &Path,
) -> Result<(Child, String), String> {
    use std::io::Write;
    let binary = Path::new(env!("CARGO_BIN_EXE_aurum"));
    let mut child = server_command(binary, listen, extra)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(format!("aurum on {listen} ended before serving ({status})"));
        };
        let _ = writeln!(file, "{line}");
        if let Some(addr) = serving_address(&line) {
            break addr;
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    Ok((child, addr))
}

/// Logs in as the first admin at `addr`; an access token.
pub async fn login(addr: &str) -> String {
    let query = format!(
        "mutation {{ login(username: \"admin\", password: \"{ADMIN_PASSWORD}\") {{ token }} }}"
    );
    let res: Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["data"]["login"]["token"]
        .as_str()
        .expect("login")
        .to_owned()
}

/// Starts this benchmark binary again with `args` (a flag that makes it a bare server, and
/// that server's arguments); returns the process and the address it printed (`bare_process`).
pub fn spawn_bare(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

/// A bare server's process: a runtime built as Aurum builds its own, a listener on a free port
/// whose address goes to stdout (where `spawn_bare` reads it), then `serve` until killed.
pub fn bare_process<F: std::future::Future<Output = ()>>(
    serve: impl FnOnce(tokio::net::TcpListener) -> F,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        serve(listener).await;
    });
}

/// The `p` quantile (0..=1) of `sorted` (nearest rank; zero when empty).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A client WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `graphql-transport-ws` socket to `addr`'s `/graphql`, past `connection_init` /
/// `connection_ack` (`config`: tungstenite's buffers; its defaults when `None`).
pub async fn graphql_ws(addr: &str, token: &str, config: Option<WebSocketConfig>) -> Ws {
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, config, true)
        .await
        .unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("connection_ack") => return ws,
            Some(Ok(_)) => {}
            other => panic!("no connection_ack: {other:?}"),
        }
    }
}

/// [`graphql_ws`] with `query` subscribed as id `1`.
pub async fn subscribed(
    addr: &str,
    token: &str,
    query: &str,
    config: Option<WebSocketConfig>,
) -> Ws {
    let mut ws = graphql_ws(addr, token, config).await;
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    ws
}
