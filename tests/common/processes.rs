//! Real processes a test may kill or stop: private `redis-server` / `nats-server` instances
//! on free ports, and `aurum serve` replicas on a test's data.

use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpStream;

use super::{ADMIN_PASSWORD, JWT_SECRET, ServiceUrls, Shared};

/// A port nothing listens on (bound once by the OS, then released).
pub fn free_port() -> Option<u16> {
    Some(
        std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port(),
    )
}

/// A private server process (`redis-server`, `nats-server`, …) that a test may kill: started
/// with `args`, killed on drop, returned once it accepts connections on `port` (within 5 s).
pub async fn private_server(
    program: &str,
    args: &[&str],
    port: u16,
) -> Option<tokio::process::Child> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    for _ in 0..50 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// What a real `aurum serve` process needs to join a test's data: its database, and on the
/// services profile Redis and NATS under the test's prefixes, plus any extra `AURUM_*`.
#[derive(Clone)]
pub struct ReplicaEnv {
    pub db_url: String,
    pub redis: Option<(String, String)>,
    pub nats: Option<(String, String)>,
    pub extra: Vec<(String, String)>,
}

impl ReplicaEnv {
    pub fn of(shared: &Shared, urls: Option<&ServiceUrls>) -> Self {
        Self {
            db_url: shared.db_url.clone(),
            redis: urls.map(|u| (u.redis.clone(), shared.redis_prefix.clone())),
            nats: urls.map(|u| (u.nats.clone(), shared.nats_prefix.clone())),
            extra: vec![("AURUM_SANDBOX_FLEET".to_owned(), shared.fleet.clone())],
        }
    }

    /// One more setting for the process.
    pub fn set(&mut self, key: &str, value: &str) {
        self.extra.push((key.to_owned(), value.to_owned()));
    }
}

/// A real `aurum serve` process on a test's data (blocking: spawn it from `spawn_blocking`).
pub struct Replica {
    child: std::process::Child,
    pub base: String,
    /// Its stdout (JSON log lines) so far.
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Replica {
    pub fn spawn(env: &ReplicaEnv) -> Self {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aurum"));
        for (key, _) in std::env::vars() {
            if key.starts_with("AURUM_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("AURUM_DATABASE_URL", &env.db_url)
            .env("AURUM_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("AURUM_JWT_SECRET", JWT_SECRET)
            .env("AURUM_HTTP_RATE_PER_SECOND", "1000000")
            .env("AURUM_HTTP_RATE_BURST", "1000000")
            .env("RUST_LOG", "warn,aurum=info");
        if let Some((url, prefix)) = &env.redis {
            cmd.env("AURUM_REDIS_URL", url)
                .env("AURUM_REDIS_KEY_PREFIX", prefix);
        }
        if let Some((url, prefix)) = &env.nats {
            cmd.env("AURUM_NATS_URL", url)
                .env("AURUM_NATS_SUBJECT_PREFIX", prefix);
        }
        for (key, value) in &env.extra {
            cmd.env(key, value);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("server output").unwrap();
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "serving"
            {
                break format!("http://{}", v["listen"].as_str().unwrap());
            }
        };
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            base,
            output,
        }
    }

    /// SIGTERM, as Kubernetes sends it; returns at once.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// The exit status, once the process has ended within `within` (polled); `None` if it
    /// still runs.
    pub fn wait_exit(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The log lines printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// SIGKILL: no shutdown, no flush, nothing after the signal runs.
    pub fn kill9(&mut self) {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private `nats-server` with JetStream on a store of its own, on a free port: a test may
/// stop it and start it again, and the store (the event stream) survives.
pub struct PrivateNats {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl PrivateNats {
    /// Not started yet.
    pub fn new() -> Self {
        Self {
            port: free_port().expect("a free port"),
            store: tempfile::tempdir().expect("a JetStream store"),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it; `false` when it does not accept connections within 5 s.
    pub async fn start(&mut self) -> bool {
        let port = self.port.to_string();
        let store = self.store.path().display().to_string();
        let args = ["-a", "127.0.0.1", "-p", &port, "-js", "-sd", &store];
        self.child = private_server("nats-server", &args, self.port).await;
        self.child.is_some()
    }

    /// Stops it as an operator restarting it would (SIGTERM: JetStream flushes its store),
    /// waiting up to 10 s for it to exit, then kills it. nats-server 2.9 acknowledges a publish
    /// before its store is on disk (it has no `sync_interval`), so SIGKILL may drop the last
    /// acknowledged messages: a test that counts every message restarts it this way.
    pub async fn stop_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                child.kill().await.expect("stop nats-server");
            }
        }
    }

    /// Kills it (SIGKILL) and waits for it to be gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("stop nats-server");
        }
    }
}

/// A `redis-server` of a test's own, on a free port, without persistence, killed on drop: a
/// test may stop it and start it again on the same port.
pub struct PrivateRedis {
    pub child: tokio::process::Child,
    pub url: String,
    pub port: u16,
}

impl PrivateRedis {
    pub async fn start() -> Option<Self> {
        Self::start_on(free_port()?).await
    }

    pub async fn start_on(port: u16) -> Option<Self> {
        let port_arg = port.to_string();
        let args = [
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        let child = private_server("redis-server", &args, port).await?;
        Some(Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            port,
        })
    }

    /// Kills it (SIGKILL) and waits for it to be gone.
    pub async fn stop(&mut self) {
        self.child.kill().await.expect("stop redis-server");
    }

    /// Starts it again on the same port (empty: it keeps nothing).
    pub async fn restart(&mut self) -> bool {
        match Self::start_on(self.port).await {
            Some(again) => {
                *self = again;
                true
            }
            None => false,
        }
    }
}
