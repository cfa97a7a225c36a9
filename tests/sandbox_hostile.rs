//! Hostile programs, under runc and under runsc (gVisor): each ends as expected and leaves the
//! host as it was. Fork bomb (the pids limit holds), memory bomb (OOM_KILLED), busy loop
//! (TIMED_OUT at the limit), network (DNS, TCP to the host's PostgreSQL, raw sockets), writes
//! to `/`, filling `/tmp`, 100 MB of output (kept up to the cap, server memory bounded), the
//! host's environment, setuid and capabilities, a background process outliving the main one,
//! the Docker socket, oversized code. Afterwards no container of the test's fleet remains.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Env, Profile, error_code,
    sandbox::{Client, fleet_containers, sandbox_or_skip},
};
use futures::future::join_all;
use serde_json::{Value, json};

/// The server process's resident memory, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The host's addresses other than loopback (where its PostgreSQL may also listen).
fn host_ips() -> Vec<String> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|ip| !ip.contains(':'))
        .map(str::to_owned)
        .collect()
}

/// What a case's run and output must show.
type Check = Box<dyn Fn(&Value, &str) + Send + Sync>;

struct Case {
    name: &'static str,
    language: &'static str,
    code: String,
    limits: Value,
    check: Check,
}

fn case(
    name: &'static str,
    language: &'static str,
    code: &str,
    limits: Value,
    check: impl Fn(&Value, &str) + Send + Sync + 'static,
) -> Case {
    Case {
        name,
        language,
        code: code.to_owned(),
        limits,
        check: Box::new(check),
    }
}

fn status(run: &Value) -> &str {
    run["status"].as_str().unwrap()
}

fn cases(runtime: &'static str) -> Vec<Case> {
    let targets: Vec<String> = std::iter::once("127.0.0.1".to_owned())
        .chain(host_ips())
        .collect();
    let network = format!(
        "import socket\nfor host in {targets:?}:\n    try:\n        socket.create_connection((host, 5432), timeout=2)\n        print('CONNECTED', host)\n    except OSError as e:\n        print('tcp failed', host, e)\ntry:\n    socket.getaddrinfo('deb.debian.org', 80)\n    print('RESOLVED')\nexcept OSError as e:\n    print('dns failed', e)\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n    print('RAW OPENED')\nexcept OSError as e:\n    print('raw failed', e)\nprint('network checks done')"
    );
    let n_targets = targets.len();
    vec![
        case(
            "fork counting",
            "python",
            "import os, time\nn = 0\ntry:\n    for _ in range(2000):\n        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('fork refused after', n)\nprint('forked', n)",
            json!({ "pids": 128, "timeoutMs": 20000 }),
            move |run, out| {
                assert!(
                    run["durationMs"].as_i64().unwrap() < 15_000,
                    "children sleeping do not keep it alive: {run}"
                );
                if runtime == "runsc" && status(run) != "SUCCEEDED" {
                    // gVisor applies the pids cgroup to its own threads: at the limit the whole
                    // sandbox stops (the program sees no EAGAIN), which still holds the line.
                    assert!(
                        matches!(status(run), "FAILED" | "OOM_KILLED"),
                        "{run} {out}"
                    );
                    return;
                }
                assert_eq!(status(run), "SUCCEEDED", "{run} {out}");
                assert!(
                    out.contains("fork refused after"),
                    "the pids limit stopped it: {out}"
                );
                let n: u32 = out
                    .lines()
                    .find_map(|l| l.strip_prefix("forked "))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(n < 128, "at most the limit: {n}");
            },
        ),
        case(
            "fork bomb",
            "shell",
            "f() { f | f & }; f; sleep 5; echo survived",
            json!({ "pids": 128, "timeoutMs": 3000 }),
            |run, out| {
                assert!(
                    matches!(status(run), "TIMED_OUT" | "FAILED" | "SUCCEEDED"),
                    "{run}"
                );
                assert!(
                    run["durationMs"].as_i64().unwrap() < 15_000,
                    "it ended: {run} {out}"
                );
            },
        ),
        case(
            "memory bomb",
            "python",
            "x = []\nwhile True:\n    x.append(bytearray(1 << 20))",
            json!({ "memoryMb": 64, "timeoutMs": 20000 }),
            |run, _| {
                assert_eq!(status(run), "OOM_KILLED", "{run}");
                assert_eq!(run["signal"], "SIGKILL");
            },
        ),
        case(
            "busy loop",
            "python",
            "while True:\n    pass",
            json!({ "timeoutMs": 1500 }),
            |run, _| {
                assert_eq!(status(run), "TIMED_OUT", "{run}");
                let ms = run["durationMs"].as_i64().unwrap();
                assert!((1500..6000).contains(&ms), "killed at the limit: {ms} ms");
            },
        ),
        case(
            "network",
            "python",
            &network,
            json!({ "timeoutMs": 20000 }),
            move |run, out| {
                assert_eq!(status(run), "SUCCEEDED", "{out}");
                assert!(out.contains("network checks done"), "{out}");
                assert_eq!(out.matches("tcp failed").count(), n_targets, "{out}");
                assert!(
                    out.contains("dns failed") && out.contains("raw failed"),
                    "{out}"
                );
                assert!(
                    !out.contains("CONNECTED")
                        && !out.contains("RESOLVED")
                        && !out.contains("RAW OPENED"),
                    "{out}"
                );
            },
        ),
        case(
            "write to /",
            "shell",
            "for f in /x /etc/x /bin/x /usr/x; do if echo x > $f; then echo WROTE $f; else echo refused $f; fi; done 2>/dev/null",
            json!({}),
            |run, out| {
                assert_eq!(status(run), "SUCCEEDED", "{out}");
                assert_eq!(out.matches("refused").count(), 4, "{out}");
                assert!(!out.contains("WROTE"), "{out}");
            },
        ),
        case(
            "fill /tmp",
            "shell",
            "dd if=/dev/zero of=/tmp/fill bs=1048576 count=64 2>/dev/null; echo dd=$?; wc -c < /tmp/fill; cp /bin/sh /tmp/sh 2>/dev/null; /tmp/sh -c 'echo EXECUTED' 2>/dev/null || echo noexec",
            json!({}),
            |run, out| {
                assert_eq!(status(run), "SUCCEEDED", "{out}");
                let size: u64 = out.lines().nth(1).unwrap().trim().parse().unwrap();
                assert!(size <= 16 * 1024 * 1024, "/tmp is capped: {size}");
                assert!(out.contains("dd=1"), "the write failed at the cap: {out}");
                assert!(
                    out.contains("noexec") && !out.contains("EXECUTED"),
                    "/tmp is noexec: {out}"
                );
            },
        ),
        case(
            "100 MB of output",
            "python",
            "import sys\nb = b'y' * 65536\nfor _ in range(1600):\n    sys.stdout.buffer.write(b)",
            json!({ "timeoutMs": 30000 }),
            move |run, out| {
                assert_eq!(status(run), "SUCCEEDED", "{run}");
                assert_eq!(run["storedBytes"], 1_048_576, "kept up to the cap");
                assert_eq!(out.len(), 1_048_576);
                assert_eq!(run["stdoutTruncated"], true);
                let written = run["stdoutBytes"].as_i64().unwrap();
                // Under runsc the stream's tail can be cut when the program exits: counted
                // bytes past the cap are then fewer than written.
                if runtime == "runc" {
                    assert_eq!(written, 104_857_600, "every byte read and counted");
                } else {
                    assert!(written > 1_048_576, "{run}");
                }
            },
        ),
        case(
            "host environment",
            "shell",
            "tr '\\0' '\\n' < /proc/1/environ; echo; tr '\\0' '\\n' < /proc/self/environ",
            json!({}),
            |run, out| {
                assert_eq!(status(run), "SUCCEEDED", "{out}");
                let allowed = ["PATH", "HOSTNAME", "HOME", "PWD", "SHLVL"];
                let mut seen = 0;
                for line in out.lines().filter(|l| !l.is_empty()) {
                    let key = line.split('=').next().unwrap();
                    assert!(allowed.contains(&key), "no host variable inside: {line}");
                    seen += 1;
                }
                assert!(seen >= 2, "the environment was read: {out}");
                for (key, _) in std::env::vars() {
                    assert!(
                        !out.contains(&format!("{key}=")) || allowed.contains(&key.as_str()),
                        "{key} leaked"
                    );
                }
            },
        ),
        case(
            "setuid and capabilities",
            "python",
            "import os\nfor name, call in [('setuid', lambda: os.setuid(0)), ('setgid', lambda: os.setgid(0)), ('chown', lambda: os.chown('/tmp', 0, 0)), ('mknod', lambda: os.mknod('/tmp/dev', 0o600 | 0o20000, os.makedev(1, 3)))]:\n    try:\n        call()\n        print('ALLOWED', name)\n    except OSError as e:\n        print('refused', name)\nstatus = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)\nprint('uid', os.getuid(), 'euid', os.geteuid())\nprint('CapEff', status['CapEff'].strip(), 'CapBnd', status['CapBnd'].strip(), 'NoNewPrivs', status.get('NoNewPrivs', 'absent').strip())",
            json!({}),
            move |run, out| {
                assert_eq!(status(run), "SUCCEEDED", "{out}");
                assert!(
                    out.contains("refused setuid\nrefused setgid\nrefused chown\n"),
                    "{out}"
                );
                assert!(out.contains("uid 65534 euid 65534"), "{out}");
                assert!(
                    out.contains("CapEff 0000000000000000 CapBnd 0000000000000000 NoNewPrivs"),
                    "{out}"
                );
                if runtime == "runc" {
                    assert!(
                        out.contains("refused mknod") && out.contains("NoNewPrivs 1"),
                        "{out}"
                    );
                } else {
                    // gVisor's own kernel: a device node made in its memory filesystem reaches
                    // none of the host's devices, and its /proc shows no NoNewPrivs line.
                    assert!(
                        !out.contains("ALLOWED setuid") && !out.contains("ALLOWED chown"),
                        "{out}"
                    );
                }
            },
        ),
        case(
            "background process",
            "shell",
            "(sleep 60; echo LATE) & echo started",
            json!({ "timeoutMs": 30000 }),
            |run, out| {
                assert_eq!(status(run), "SUCCEEDED", "{run}");
                assert_eq!(out, "started\n");
                assert!(
                    run["durationMs"].as_i64().unwrap() < 10_000,
                    "the run ended with its main process: {run}"
                );
            },
        ),
        case(
            "docker socket",
            "shell",
            "for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock; do [ -e $s ] && echo PRESENT $s || echo absent $s; done; ls /var/run /run 2>&1 | head -n 5",
            json!({}),
            |run, out| {
                assert_eq!(status(run), "SUCCEEDED", "{out}");
                assert_eq!(out.matches("absent").count(), 3, "{out}");
                assert!(!out.contains("PRESENT"), "{out}");
            },
        ),
    ]
}

async fn hostile(runtime: &'static str, test: &str) {
    if !sandbox_or_skip(test, runtime).await {
        return;
    }
    let env = Env::with(Profile::Embedded, test, |c| {
        c.sandbox.runtime = runtime.to_owned();
        c.sandbox.concurrency = 3;
        c.rate_limits = "login=100000/1s,cost=10000000/1s,mutation=100000/1s,sandbox=1000/1s"
            .parse()
            .unwrap();
    })
    .await
    .unwrap();
    let api = Client::of(&env.server);

    // Oversized code never reaches Docker.
    let big = "#".repeat(300_000);
    let refused = api.try_start("python", &big, json!({})).await;
    assert_eq!(error_code(&refused), "BAD_USER_INPUT");
    assert_eq!(refused["errors"][0]["extensions"]["field"], "code");

    let rss_before = rss_kib();
    let started = Instant::now();
    let cases = cases(runtime);
    let runs = join_all(cases.iter().map(|c| {
        let api = api.clone();
        async move {
            let id = api
                .start(c.language, &c.code, json!({ "limits": c.limits }))
                .await;
            let run = api.wait_final(&id, Duration::from_secs(120)).await;
            let out = api.output_text(&id).await;
            (run, out)
        }
    }))
    .await;
    let rss_after = rss_kib();
    for (c, (run, out)) in cases.iter().zip(&runs) {
        eprintln!(
            "{runtime} {}: {} in {} ms",
            c.name, run["status"], run["durationMs"]
        );
        (c.check)(run, out);
    }
    // 100 MB went through this process: what it kept is bounded by the cap, not the volume.
    assert!(
        rss_after.saturating_sub(rss_before) < 96 * 1024,
        "server memory grew {} KiB while reading 100 MB",
        rss_after.saturating_sub(rss_before)
    );
    // The host is unaffected: it still forks, and nothing of the fleet remains.
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fleet_containers(&env.shared.fleet).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "containers left: {:?}",
            fleet_containers(&env.shared.fleet).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{runtime}: suite in {:?}", started.elapsed());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_programs_under_runc() {
    hostile("runc", "hostile_programs_under_runc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_programs_under_runsc() {
    hostile("runsc", "hostile_programs_under_runsc").await;
}
