//! The `aurum` binary as an operator runs it: configuration errors, `schema`, `migrate`, and
//! `serve` with nothing configured (first admin, GraphiQL, readiness, SIGTERM).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_aurum");

/// A command with no `AURUM_*` variable inherited from the test environment.
fn aurum() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("AURUM_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn bad_configuration_stops_with_one_line_naming_the_setting() {
    for (var, value, name) in [
        ("AURUM_REDIS_URL", "http://localhost", "AURUM_REDIS_URL"),
        ("AURUM_LISTEN", "not-an-address", "AURUM_LISTEN"),
        ("AURUM_DATABASE_URL", "mysql://x/y", "AURUM_DATABASE_URL"),
        ("AURUM_MAX_PAGE_SIZE", "0", "AURUM_MAX_PAGE_SIZE"),
    ] {
        let out = aurum().args(["serve"]).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
    }
    // An unreachable database is named too (and fails, not hangs).
    let dir = tempfile::tempdir().unwrap();
    let out = aurum()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("AURUM_DATABASE_URL", "postgres://127.0.0.1:9/none")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AURUM_DATABASE_URL"), "{stderr}");
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = aurum().arg("schema").output().unwrap();
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let first_difference = printed
        .lines()
        .zip(committed.lines())
        .position(|(a, b)| a != b);
    assert!(
        printed == committed,
        "`aurum schema` differs from schema.graphql (first differing line: {first_difference:?})"
    );
}

#[test]
fn migrate_up_status_down() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let run = |args: &[&str]| {
        let out = aurum()
            .arg("migrate")
            .args(args)
            .env("AURUM_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["up"]);
    let status = run(&["status"]);
    assert!(
        status.contains("m20261125_000001_platform") && status.contains("Applied"),
        "{status}"
    );
    run(&["down"]);
    let status = run(&["status"]);
    assert!(status.contains("Pending"), "{status}");
}

struct Served {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `aurum serve` in `dir` with no configuration but a free port and the assets
    /// folder, and waits for its "serving" log line.
    fn start(dir: &std::path::Path) -> Self {
        let mut cmd = aurum();
        cmd.env(
            "AURUM_GRAPHIQL_ASSETS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/web/node_modules"),
        );
        Self::spawn(cmd, dir)
    }

    /// Starts `cmd serve` in `dir` on a free port, with whatever else `cmd` sets, and waits
    /// for its "serving" log line.
    #[expect(
        clippy::zombie_processes,
        reason = "Drop kills and waits for the child"
    )]
    fn spawn(mut cmd: Command, dir: &std::path::Path) -> Self {
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("serving line");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "serving"
            {
                let addr = v["listen"].as_str().unwrap().to_owned();
                let mut served = Self {
                    child,
                    addr,
                    lines: rx,
                };
                served.replay(seen);
                return served;
            }
            seen.push(line);
        }
    }

    fn replay(&mut self, seen: Vec<String>) {
        let (tx, rx) = mpsc::channel();
        for l in seen {
            let _ = tx.send(l);
        }
        let old = std::mem::replace(&mut self.lines, rx);
        std::thread::spawn(move || {
            while let Ok(l) = old.recv() {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
    }

    fn output_so_far(&self) -> String {
        let mut out = String::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("aurum did not exit within 10 s of SIGTERM");
    }
}

/// POSTs one operation to the server at `base` (with `token`, if any); returns the JSON answer.
async fn post(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    let mut req = client.post(format!("{base}/graphql"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.json(&serde_json::json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The first admin's generated password, as `serve` printed it once.
fn printed_password(out: &str) -> String {
    out.split("Password: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned()
}

async fn login(client: &reqwest::Client, base: &str, password: &str) -> String {
    let res = post(
        client,
        base,
        None,
        "mutation($p: String!) { login(username: \"admin\", password: $p) { token } }",
        serde_json::json!({ "p": password }),
    )
    .await;
    res["data"]["login"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_nothing_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Served::start(dir.path());
    let out = server.output_so_far();
    assert!(
        out.contains("First admin created. Username: admin  Password: "),
        "{out}"
    );
    assert!(dir.path().join("aurum.db").exists());
    let password = printed_password(&out);

    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let token = login(&client, &base, &password).await;
    let page = client.get(format!("{base}/graphql")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("/graphiql/assets/graphiql.min.js"), "{html}");
    let js = client
        .get(format!("{base}/graphiql/assets/graphiql.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.unwrap().len() > 500_000);
    let ready: serde_json::Value = client
        .get(format!("{base}/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["dependencies"]["database"]["status"], "ok", "{ready}");
    assert_eq!(
        ready["dependencies"]["nats"]["status"], "disabled",
        "{ready}"
    );
    let anonymous = post(
        &client,
        &base,
        None,
        "mutation { createTask(input: { title: \"nope\" }) { id } }",
        serde_json::json!({}),
    )
    .await;
    assert_eq!(
        anonymous["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{anonymous}"
    );
    let made = post(
        &client,
        &base,
        Some(&token),
        "mutation { createTask(input: { title: \"persisted\" }) { id } }",
        serde_json::json!({}),
    )
    .await;
    assert!(made["data"]["createTask"]["id"].is_string(), "{made}");

    // SIGTERM: open subscriptions are closed with 1001 and the process exits cleanly.
    let mut ws = common::WsClient::connect(
        &format!("ws://{}/graphql", server.addr),
        "graphql-transport-ws",
        Some(&token),
    )
    .await;
    ws.subscribe(
        "s",
        "subscription { taskChanged { kind } }",
        serde_json::json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    });
    assert_eq!(ws.closed_with(Duration::from_secs(10)).await, Some(1001));
    let (status, _server) = status.await.unwrap();
    assert!(status.success(), "{status:?}");

    // Second start: same file, data kept, no new password.
    let mut again = Served::start(dir.path());
    let out = again.output_so_far();
    assert!(!out.contains("Password:"), "{out}");
    let base = format!("http://{}", again.addr);
    // The printed password still works; the old token does not (per-process signing key).
    let stale = post(
        &client,
        &base,
        Some(&token),
        "{ tasks { totalCount } }",
        serde_json::json!({}),
    )
    .await;
    assert_eq!(
        stale["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{stale}"
    );
    let token = login(&client, &base, &password).await;
    let count = post(
        &client,
        &base,
        Some(&token),
        "{ tasks { totalCount } }",
        serde_json::json!({}),
    )
    .await;
    assert_eq!(count["data"]["tasks"]["totalCount"], 1, "{count}");
    assert!(again.terminate().success());
}

/// The next JSON log line of `server` that mentions `request_id`, within 10 s.
fn log_line_with(server: &Served, request_id: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let Ok(line) = server.lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if line.contains(request_id)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
        {
            return v;
        }
    }
    panic!("no log line mentions request id {request_id}");
}

/// The fields of the span named `name` in a JSON log line's span list.
fn span<'a>(line: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    line["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} span in {line}"))
}

/// A client's `extensions.requestId` finds the server's log line. The database is broken
/// under a running server (the tasks table renamed away behind its back); a query over HTTP
/// and one over a WebSocket fail with a masked INTERNAL_SERVER_ERROR, and the JSON log holds,
/// for each, a line with that request id, the caller, the operation and the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_finds_its_log_line() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let server = Served::start(dir.path());
    let out = server.output_so_far();
    let password = printed_password(&out);
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let token = login(&client, &base, &password).await;

    let file = dir.path().join("aurum.db");
    let breaker = sea_orm::Database::connect(format!("sqlite://{}?mode=rw", file.display()))
        .await
        .unwrap();
    breaker
        .execute_unprepared("ALTER TABLE tasks RENAME TO tasks_moved_away")
        .await
        .unwrap();

    // HTTP, with the client's own request id.
    let answer: serde_json::Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(&token)
        .header("x-request-id", "trace-me-0001")
        .json(&serde_json::json!({ "query": "query BrokenTasks { tasks { totalCount } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let error = &answer["errors"][0];
    assert_eq!(
        error["extensions"]["code"], "INTERNAL_SERVER_ERROR",
        "{answer}"
    );
    assert_eq!(error["message"], "internal error", "{answer}");
    assert_eq!(
        error["extensions"]["requestId"], "trace-me-0001",
        "{answer}"
    );
    let line = log_line_with(&server, "trace-me-0001");
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(
        line["error.cause"].as_str().unwrap_or("").contains("tasks"),
        "the cause names the table: {line}"
    );
    let request = span(&line, "request");
    assert_eq!(request["request.id"], "trace-me-0001", "{line}");
    assert_eq!(request["caller"], "user:admin", "{line}");
    assert_eq!(request["operation.kind"], "query", "{line}");
    assert_eq!(request["operation.name"], "BrokenTasks", "{line}");

    // WebSocket: the connection's request id, on an operation's line.
    let mut ws = common::WsClient::connect(
        &format!("ws://{}/graphql", server.addr),
        "graphql-transport-ws",
        Some(&token),
    )
    .await;
    ws.subscribe(
        "q1",
        "query WsBrokenTasks { tasks { totalCount } }",
        serde_json::json!({}),
    )
    .await;
    let reply = ws.next_json().await.expect("a reply");
    let error = &reply["payload"]["errors"][0];
    assert_eq!(
        error["extensions"]["code"], "INTERNAL_SERVER_ERROR",
        "{reply}"
    );
    let request_id = error["extensions"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let line = log_line_with(&server, &request_id);
    assert_eq!(span(&line, "websocket")["caller"], "user:admin", "{line}");
    let operation = span(&line, "operation");
    assert_eq!(operation["operation.id"], "q1", "{line}");
    assert_eq!(operation["operation.name"], "WsBrokenTasks", "{line}");
    assert!(
        line["error.cause"].as_str().unwrap_or("").contains("tasks"),
        "{line}"
    );
}

/// The value of `field` in the first JSON log line that has it.
fn log_field(out: &str, field: &str) -> String {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v[field].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no log line with {field} in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_started_elsewhere_finds_graphiql_or_says_where_it_looked() {
    let checkout_assets = concat!(env!("CARGO_MANIFEST_DIR"), "/web/node_modules");
    if !std::path::Path::new(checkout_assets)
        .join("graphiql/graphiql.min.js")
        .exists()
    {
        let msg = "serve_started_elsewhere_finds_graphiql_or_says_where_it_looked: needs web/node_modules (run scripts/setup)";
        assert!(!common::services_required(), "{msg}");
        common::record_skip(msg);
        return;
    }
    let client = reqwest::Client::new();
    let asset = |addr: String| {
        let req = client.get(format!("http://{addr}/graphiql/assets/graphiql.min.js"));
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.bytes().await.unwrap().len())
        }
    };

    // Started in an unrelated folder with nothing configured: the checkout the binary was
    // built from.
    let dir = tempfile::tempdir().unwrap();
    let mut server = Served::spawn(aurum(), dir.path());
    let out = server.output_so_far();
    assert_eq!(log_field(&out, "graphiql.assets"), checkout_assets);
    let (status, len) = asset(server.addr.clone()).await;
    assert!(status == 200 && len > 500_000, "{status} {len}");
    assert!(server.terminate().success());

    // Installed next to the binary: found there, before the checkout.
    let install = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
    let bin = install.path().join("aurum");
    if std::fs::hard_link(BIN, &bin).is_err() {
        std::fs::copy(BIN, &bin).unwrap();
    }
    std::fs::create_dir(install.path().join("web")).unwrap();
    std::os::unix::fs::symlink(checkout_assets, install.path().join("web/node_modules")).unwrap();
    let mut installed = Command::new(&bin);
    installed
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let mut server = Served::spawn(installed, dir.path());
    let out = server.output_so_far();
    assert_eq!(
        log_field(&out, "graphiql.assets"),
        install
            .path()
            .join("web/node_modules")
            .display()
            .to_string()
    );
    let (status, len) = asset(server.addr.clone()).await;
    assert!(status == 200 && len > 500_000, "{status} {len}");
    assert!(server.terminate().success());

    // Nowhere: the log names every folder tried, and the page says how to install them.
    let mut cmd = aurum();
    cmd.env("AURUM_GRAPHIQL_ASSETS", "no/such/assets");
    let mut server = Served::spawn(cmd, dir.path());
    let out = server.output_so_far();
    let searched = log_field(&out, "graphiql.searched");
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    for folder in [
        dir.path().join("no/such/assets"),
        bin_dir.join("no/such/assets"),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("no/such/assets"),
    ] {
        assert!(
            searched.contains(&folder.display().to_string()),
            "{folder:?} not in {searched}"
        );
    }
    let page = client
        .get(format!("http://{}/graphql", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    assert!(server.terminate().success());
}

#[test]
fn readme_documents_every_setting() {
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/config.rs")).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    for part in config.split("env = \"").skip(1) {
        let name = part.split('"').next().unwrap();
        if !readme.contains(&format!("`{name}`")) {
            missing.push(name.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "README configuration table lacks {missing:?}"
    );
}

#[test]
fn readme_role_table_is_the_generated_one() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = aurum::auth::permission::role_table_markdown();
    assert!(
        readme.contains(&table),
        "README role table is stale: paste the output of `aurum roles`"
    );
    let out = aurum().arg("roles").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), table);
}

#[test]
fn user_create_bootstraps_an_account() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display());
    let out = aurum()
        .args(["user", "create", "--username", "ops", "--role", "operator"])
        .env("AURUM_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("created user ops") && stdout.contains("password (shown once): "),
        "{stdout}"
    );
    let bad = aurum()
        .args(["user", "create", "--username", "x", "--role", "root"])
        .env("AURUM_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--role"));
}
