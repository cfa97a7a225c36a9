//! HAProxy in front of the replicas: its configuration (health checks on `/ready`, retries
//! and redispatch), the child process, and its admin stats socket (server status, retry and
//! 5xx counters, putting servers in and out of maintenance).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{BACKEND, HAPROXY, REPLICAS, replicas::free_port};

/// HAProxy in the foreground (`-db`), with its admin stats socket.
pub(crate) struct Haproxy {
    child: Child,
    socket: PathBuf,
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of `show stat`.
#[derive(Clone, Default)]
struct Stat {
    status: String,
    /// Requests HAProxy sent again (`wretr`) and sent again to another server (`wredis`).
    retries: u64,
    redispatches: u64,
    /// Responses 5xx (on the frontend: those clients got).
    http_5xx: u64,
}

impl Haproxy {
    pub(crate) fn start(ports: &[u16], logs: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let port = free_port();
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server r{} 127.0.0.1:{p} check\n", i + 1))
            .collect();
        // Checks: /ready every 300 ms; one failure takes a server out, two successes bring it
        // back. Retries: a request whose connection failed, whose server closed without a
        // response (killed, or closing an idle keep-alive connection as it went out) or did
        // not answer in time is sent again, each time to another server (`redispatch 1`).
        let config = format!(
            "global
    maxconn 4000
    nbthread 1
    stats socket {socket} mode 600 level admin
    stats timeout 10s

defaults
    mode http
    timeout connect 500ms
    timeout client 60s
    timeout server 10s
    timeout http-request 10s
    timeout http-keep-alive 60s
    timeout tunnel 1h
    timeout check 1s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

frontend aurum
    bind 127.0.0.1:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance leastconn
    option httpchk GET /ready
    http-check expect status 200
    default-server inter 300ms fastinter 300ms downinter 300ms fall 1 rise 2
{servers}",
            socket = socket.display()
        );
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, &config).unwrap();
        std::fs::write(logs.join("haproxy.cfg"), &config).unwrap();
        let log = std::fs::File::create(logs.join("haproxy.log")).unwrap();
        let child = Command::new(HAPROXY)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        Self {
            child,
            socket,
            addr: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// One command on the admin socket; its answer.
    async fn command(&self, command: &str) -> Result<String, String> {
        let mut s = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// `show stat`: server (or `FRONTEND` / `BACKEND`) name → its row, for the frontend and
    /// the backend.
    async fn stats(&self) -> HashMap<String, Stat> {
        let Ok(text) = self.command("show stat").await else {
            return HashMap::new();
        };
        let mut lines = text.lines();
        let Some(header) = lines.next() else {
            return HashMap::new();
        };
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let at = |name: &str| columns.iter().position(|c| *c == name);
        let (Some(px), Some(sv), Some(status), Some(wretr), Some(wredis), Some(h5xx)) = (
            at("pxname"),
            at("svname"),
            at("status"),
            at("wretr"),
            at("wredis"),
            at("hrsp_5xx"),
        ) else {
            return HashMap::new();
        };
        let mut out = HashMap::new();
        for line in lines {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < columns.len() || (f[px] != BACKEND && f[px] != "aurum") {
                continue;
            }
            let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            out.insert(
                f[sv].to_owned(),
                Stat {
                    status: f[status].to_owned(),
                    retries: n(wretr),
                    redispatches: n(wredis),
                    http_5xx: n(h5xx),
                },
            );
        }
        out
    }

    pub(crate) async fn status(&self, server: &str) -> String {
        self.stats()
            .await
            .get(server)
            .map(|s| s.status.clone())
            .unwrap_or_default()
    }

    /// Polls until `server`'s status satisfies `want`; how long it took.
    pub(crate) async fn wait_status(
        &self,
        server: &str,
        want: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if want(&self.status(server).await) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

pub(crate) fn is_up(status: &str) -> bool {
    status == "UP"
}

pub(crate) fn is_down(status: &str) -> bool {
    status.starts_with("DOWN") || status.starts_with("MAINT")
}

/// The balancer's retry counters and the 5xx it answered, at one moment.
#[derive(Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) retries: u64,
    pub(crate) redispatches: u64,
    pub(crate) http_5xx: u64,
}

pub(crate) async fn counters(lb: &Haproxy) -> Counters {
    let stats = lb.stats().await;
    let backend = stats.get("BACKEND").cloned().unwrap_or_default();
    Counters {
        retries: backend.retries,
        redispatches: backend.redispatches,
        http_5xx: stats.get("FRONTEND").map(|s| s.http_5xx).unwrap_or(0),
    }
}

/// Puts the first `n` replicas in the backend and the others in maintenance; waits until the
/// balancer has the first `n` up.
pub(crate) async fn backend_of(lb: &Haproxy, n: usize) {
    for i in 0..REPLICAS {
        let verb = if i < n { "enable" } else { "disable" };
        let _ = lb
            .command(&format!("{verb} server {BACKEND}/r{}", i + 1))
            .await;
    }
    for i in 0..n {
        lb.wait_status(&format!("r{}", i + 1), is_up, Duration::from_secs(10))
            .await;
    }
}
