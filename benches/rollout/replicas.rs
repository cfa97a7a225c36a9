//! The `aurum serve` replicas behind the balancer: starting them (each on a fixed port, so the
//! balancer's configuration holds across restarts), signalling them (SIGTERM, `kill -9`),
//! waiting for their exit and readiness, and one rollout step (`roll`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use crate::{
    DRAIN_SECONDS, JWT_SECRET, REPLICAS, SHUTDOWN_TIMEOUT_SECONDS, common,
    figures::secs,
    haproxy::{Haproxy, is_down, is_up},
};

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `aurum serve` process on a fixed port (so the balancer's configuration holds across
/// restarts).
pub(crate) struct Replica {
    pub(crate) name: String,
    pub(crate) port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    /// Starts it; how long until it printed that it serves. Retries while its port is taken.
    pub(crate) async fn start(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        let mut last = String::new();
        for _ in 0..10 {
            let (listen, env, log) = (
                format!("127.0.0.1:{}", self.port),
                self.env.clone(),
                self.log.clone(),
            );
            let spawned = tokio::task::spawn_blocking(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                common::spawn_server_at(&listen, &env, &log)
            })
            .await
            .unwrap();
            match spawned {
                Ok((child, _)) => {
                    self.child = Some(child);
                    return Ok(started.elapsed());
                }
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        Err(last)
    }

    pub(crate) fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Waits up to `limit` for the process to end: after how long, and its status.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> Option<(Duration, String)> {
        let started = Instant::now();
        let child = self.child.as_mut()?;
        while started.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some((started.elapsed(), status.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    /// `GET /ready` on the replica itself until 200; how long it took.
    pub(crate) async fn wait_ready(
        &self,
        http: &reqwest::Client,
        limit: Duration,
    ) -> Option<Duration> {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{}/ready", self.port);
        while started.elapsed() < limit {
            if let Ok(r) = http.get(&url).send().await
                && r.status() == 200
            {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Restarts `replica` as a rollout does: SIGTERM, its exit, start again on its port, wait
/// until it is ready and the balancer has it up. One line of figures; `false` if a step
/// did not happen in time.
pub(crate) async fn roll(replica: &mut Replica, lb: &Haproxy, http: &reqwest::Client) -> bool {
    let name = replica.name.clone();
    replica.signal("-TERM");
    let (out, exit) = tokio::join!(
        lb.wait_status(&name, is_down, Duration::from_secs(15)),
        replica.wait_exit(Duration::from_secs(20)),
    );
    let out = out.map_or("not within 15 s".into(), |d| format!("{:.2} s", secs(d)));
    let Some((exited, status)) = exit else {
        println!(
            "  {name}: SIGTERM; out of rotation after {out}; still running after 20 s: killed"
        );
        replica.signal("-KILL");
        replica.wait_exit(Duration::from_secs(5)).await;
        return false;
    };
    let started = match replica.start().await {
        Ok(d) => d,
        Err(e) => {
            println!("  {name}: could not start again: {e}");
            return false;
        }
    };
    let ready = replica.wait_ready(http, Duration::from_secs(20)).await;
    let up = lb
        .wait_status(&name, is_up, Duration::from_secs(20))
        .await
        .map(|d| d + started);
    let show = |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.2} s", secs(d)));
    println!(
        "  {name}: SIGTERM -> out of rotation after {out}, exited after {:.2} s ({status}); started again: serving after {:.2} s, /ready 200 after {}, up in HAProxy after {}",
        secs(exited),
        secs(started),
        show(ready.map(|d| d + started)),
        show(up),
    );
    ready.is_some() && up.is_some()
}

/// Starts the [`REPLICAS`] replicas, one after the other (the first creates the first admin),
/// each on a port of its own, on the migrated database `db_url`, with Redis keys and NATS
/// subjects under `prefix` and its log in `logs`.
pub(crate) async fn start_all(
    db_url: &str,
    redis: &str,
    nats: &str,
    prefix: &str,
    logs: &Path,
) -> Vec<Replica> {
    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let mut replicas: Vec<Replica> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let name = format!("r{}", i + 1);
        let env: Vec<(String, String)> = [
            ("AURUM_DATABASE_URL", db_url),
            ("AURUM_REDIS_URL", redis),
            ("AURUM_REDIS_KEY_PREFIX", prefix),
            ("AURUM_NATS_URL", nats),
            ("AURUM_NATS_SUBJECT_PREFIX", prefix),
            ("AURUM_JWT_SECRET", JWT_SECRET),
            ("AURUM_REPLICA_ID", &name),
            ("AURUM_MIGRATE_ON_START", "false"),
            ("AURUM_SHUTDOWN_DRAIN_SECONDS", DRAIN_SECONDS),
            ("AURUM_SHUTDOWN_TIMEOUT_SECONDS", SHUTDOWN_TIMEOUT_SECONDS),
            ("AURUM_WS_MAX_PER_ADDRESS", "2000"),
            ("AURUM_WS_MAX_PER_USER", "2000"),
            ("AURUM_SANDBOX_FLEET", prefix),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let mut replica = Replica {
            log: logs.join(format!("{name}.log")),
            name,
            port: *port,
            env,
            child: None,
        };
        // One after the other: the first creates the first admin.
        let took = replica.start().await.expect("start a replica");
        println!(
            "{} serving on 127.0.0.1:{port} after {:.2} s",
            replica.name,
            secs(took)
        );
        replicas.push(replica);
    }
    replicas
}
