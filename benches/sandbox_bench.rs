//! Sandbox benchmark: `cargo bench --bench sandbox-bench` (optimised build). Needs Docker with
//! the images of `scripts/sandbox-images` (and runsc registered for its half). Runs the real
//! `aurum` binary (embedded profile, fresh SQLite) as a separate process, once per runtime
//! (runc, runsc), and measures against a baseline taken in the same run:
//!
//! a) wall time of a trivial run (`print(1)`), from sending `startSandboxRun` to the `done`
//!    delivery of `sandboxRunOutput` on an open WebSocket, against `docker run --rm -i` of the
//!    same image with the same flags, launcher and stdin (the CLI: a process, its own API
//!    calls), rounds interleaved;
//! b) time from `startSandboxRun` to the first output chunk at a subscriber;
//! c) throughput of 20 concurrent trivial runs (the pool: `AURUM_SANDBOX_CONCURRENCY=4`)
//!    against 20 concurrent `docker run --rm` processes.
//!
//! Every run must end `SUCCEEDED` with its output, every `docker run` must print `1`: anything
//! else fails the run. Goal (issue #20): (a) ≤ 0.8×.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use common::{Ws, login, ms, spawn_server};
use futures::{SinkExt, StreamExt, future::join_all};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const ROUNDS: usize = 10;
const BURST: usize = 20;
const IMAGE: &str = "aurum/sandbox-python:1";
const CODE: &str = "print(1)";
/// The server's launcher (src/sandbox/runner.rs), so the baseline does the same work.
const LAUNCHER: &str = "n=$1; f=/tmp/$2; shift 2; dd of=\"$f\" bs=\"$n\" count=1 iflag=fullblock 2>/dev/null || exit 125; exec \"$@\"";

/// `docker run --rm -i` with the flags the runner gives every container.
async fn docker_run(runtime: &str) -> Duration {
    let started = Instant::now();
    let mut child = tokio::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,noexec,nosuid,nodev,size=16m,mode=1777",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            "65534:65534",
            "--workdir",
            "/tmp",
            "--memory",
            "128m",
            "--memory-swap",
            "128m",
            "--cpus",
            "1",
            "--pids-limit",
            "128",
            "--ulimit",
            "nofile=256:256",
            "--ulimit",
            "fsize=16777216:16777216",
            "--log-driver",
            "none",
            "--runtime",
            runtime,
            "--entrypoint",
            "",
            IMAGE,
            "/bin/sh",
            "-c",
            LAUNCHER,
            "aurum-launcher",
            &CODE.len().to_string(),
            "main.py",
            "python3",
            "-u",
            "/tmp/main.py",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(CODE.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n",
        "docker run answered {out:?}"
    );
    started.elapsed()
}

struct Aurum {
    addr: String,
    token: String,
    http: reqwest::Client,
}

impl Aurum {
    async fn ws(&self) -> Ws {
        common::graphql_ws(&self.addr, &self.token, None).await
    }

    async fn start(&self, code: &str) -> String {
        let res: Value = self
            .http
            .post(format!("http://{}/graphql", self.addr))
            .bearer_auth(&self.token)
            .json(&json!({
                "query": "mutation($i: StartSandboxRunInput!) { startSandboxRun(input: $i) { id } }",
                "variables": { "i": { "language": "python", "code": code, "requestId": uuid::Uuid::new_v4().to_string() } },
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        res["data"]["startSandboxRun"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{res}"))
            .to_owned()
    }

    /// Starts a run and follows its output on `ws`: (time to the first chunk, time to done).
    async fn run(&self, ws: &mut Ws, code: &str, expect: &str) -> (Duration, Duration) {
        let started = Instant::now();
        let id = self.start(code).await;
        let sub = json!({ "id": id, "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { sandboxRunOutput(runId: $id) { text done run { status } } }",
            "variables": { "id": id } } });
        ws.send(Message::Text(sub.to_string().into()))
            .await
            .unwrap();
        let mut first = None;
        let mut text = String::new();
        loop {
            let msg = next(ws).await;
            if msg["id"] != id.as_str() {
                continue;
            }
            if msg["type"] == "complete" {
                panic!("completed without done");
            }
            let d = &msg["payload"]["data"]["sandboxRunOutput"];
            assert!(msg["payload"].get("errors").is_none(), "{msg}");
            if d["done"] == true {
                assert_eq!(d["run"]["status"], "SUCCEEDED", "{msg}");
                assert_eq!(text, expect);
                return (first.unwrap_or_default(), started.elapsed());
            }
            first.get_or_insert(started.elapsed());
            text.push_str(d["text"].as_str().unwrap());
        }
    }
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a message in time")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "ping" {
                ws.send(Message::Text(json!({ "type": "pong" }).to_string().into()))
                    .await
                    .unwrap();
                continue;
            }
            return v;
        }
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (mean, v[v.len() / 2], v[v.len() - 1])
}

async fn bench(runtime: &str) {
    let dir = tempfile::tempdir().unwrap();
    let fleet = format!("bench{}", uuid::Uuid::new_v4().simple());
    let (mut child, addr) = spawn_server(
        &[
            ("AURUM_SANDBOX_RUNTIME", runtime),
            ("AURUM_SANDBOX_CONCURRENCY", "4"),
            ("AURUM_SANDBOX_FLEET", &fleet),
            (
                "AURUM_RATE_LIMITS",
                "login=1000000/1s,cost=1000000000/1s,mutation=1000000000/1s,sandbox=1000000/1s",
            ),
        ],
        Some(dir.path()),
    );
    let aurum = Aurum {
        token: login(&addr).await,
        addr,
        http: reqwest::Client::new(),
    };
    let mut ws = aurum.ws().await;
    // Warm-up: images in the page cache, the runtime's first start, the server's statements.
    aurum.run(&mut ws, CODE, "1\n").await;
    docker_run(runtime).await;

    let (mut ours, mut theirs, mut first) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (_, total) = aurum.run(&mut ws, CODE, "1\n").await;
        ours.push(ms(total));
        theirs.push(ms(docker_run(runtime).await));
        let (to_first, _) = aurum
            .run(
                &mut ws,
                "import time\nprint('first', flush=True)\ntime.sleep(0.2)",
                "first\n",
            )
            .await;
        first.push(ms(to_first));
    }
    let (om, op50, omax) = stats(ours);
    let (tm, tp50, tmax) = stats(theirs);
    let (fm, fp50, fmax) = stats(first);
    println!(
        "[{runtime}] a) trivial run, request to final status: Aurum mean {om:.0} ms (p50 {op50:.0}, max {omax:.0}) vs docker run --rm mean {tm:.0} ms (p50 {tp50:.0}, max {tmax:.0}): {:.2}x (goal <= 0.8x)",
        om / tm
    );
    println!(
        "[{runtime}] b) startSandboxRun to the first output chunk: mean {fm:.0} ms (p50 {fp50:.0}, max {fmax:.0})"
    );

    // c) 20 at once.
    let started = Instant::now();
    let sockets = join_all((0..BURST).map(|_| aurum.ws())).await;
    let aurum_ref = &aurum;
    join_all(
        sockets
            .into_iter()
            .map(|mut ws| async move { aurum_ref.run(&mut ws, CODE, "1\n").await }),
    )
    .await;
    let ours = started.elapsed();
    let started = Instant::now();
    join_all((0..BURST).map(|_| docker_run(runtime))).await;
    let theirs = started.elapsed();
    println!(
        "[{runtime}] c) {BURST} concurrent runs: Aurum {:.1} runs/s ({:.0} ms, 4 at a time) vs {BURST} concurrent docker run --rm {:.1} runs/s ({:.0} ms): {:.2}x",
        BURST as f64 / ours.as_secs_f64(),
        ms(ours),
        BURST as f64 / theirs.as_secs_f64(),
        ms(theirs),
        theirs.as_secs_f64() / ours.as_secs_f64(),
    );
    child.kill().ok();
    child.wait().ok();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for runtime in ["runc", "runsc"] {
        bench(runtime).await;
    }
}
