//! The ops console: the binary serves its build at `/console` (the page for every view path,
//! content-hashed assets, a page that allows nothing but this origin, and a clear page when the
//! build is missing), and headless Chromium drives it against a real server on the services
//! profile, one script of `console/tests/` per view: each logs in through the page, acts as an
//! operator would while a second client changes things, checks the page follows live, and
//! saves screenshots under `target/console-screenshots` (CI keeps them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::Path, time::Duration};

use common::{Env, Profile};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `console/tests/<script>.mjs` against a fresh services-profile server.
async fn browse(script: &str, adjust: impl FnOnce(&mut aurum::config::Config)) {
    let test = format!("console::{script}");
    let dist = root().join("console/dist/index.html");
    let Some(chromium) =
        common::browser::chromium_or_skip(&test, &root().join("console/node_modules"), &[&dist])
    else {
        return;
    };
    if script == "sandbox" && !common::sandbox::sandbox_or_skip(&test, "runc").await {
        return;
    }
    let Some(env) = Env::with(Profile::Services, &test, |c| {
        c.console_assets = root().join("console/dist");
        adjust(c);
    })
    .await
    else {
        return;
    };
    let shots = root().join("target/console-screenshots");
    let run = tokio::process::Command::new("node")
        .arg(root().join(format!("console/tests/{script}.mjs")))
        .env("AURUM_URL", env.server.url(""))
        .env("AURUM_ADMIN_TOKEN", &env.server.token)
        .env("AURUM_SCREENSHOTS", &shots)
        .env("CHROMIUM_PATH", &chromium)
        .current_dir(root().join("console"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .unwrap_or_else(|_| panic!("{script}.mjs ran past 4 minutes"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "console/tests/{script}.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("screenshot "),
        "{script}.mjs saved no screenshot"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets() {
    browse("budgets", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters() {
    browse("dead_letters", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakers() {
    browse("breakers", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance() {
    browse("governance", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks() {
    browse("tasks", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox() {
    browse("sandbox", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles() {
    browse("roles", |_| {}).await;
}

/// Access tokens of 5 s: the page refreshes them (and its socket) before they expire, and
/// a refresh the server refuses ends the session on the login page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session() {
    browse("session", |c| c.access_token_ttl_seconds = 5).await;
}

/// The build is served from memory: the page for `/console` and any view path under it (the
/// console's router owns them), assets cached for good, a CSP that allows this origin only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_is_served_with_its_views_and_a_strict_policy() {
    let dist = root().join("console/dist");
    if !dist.join("index.html").exists() {
        let msg = "console::the_build_is_served…: console/dist missing (run scripts/setup)";
        if common::services_required() {
            panic!("AURUM_REQUIRE_SERVICES=1 and {msg}");
        }
        common::record_skip(msg);
        return;
    }
    let env = Env::with(Profile::Embedded, "console-served", |c| {
        c.console_assets = dist.clone();
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let index = std::fs::read_to_string(dist.join("index.html")).unwrap();
    for path in [
        "/console",
        "/console/",
        "/console/budgets",
        "/console/dead-letters/x/y",
    ] {
        let res = client.get(env.server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert_eq!(res.headers()["cache-control"], "no-cache");
        assert_eq!(res.text().await.unwrap(), index, "{path}");
    }
    // Every script and stylesheet the page names is served, and nothing from elsewhere.
    let assets: Vec<&str> = index
        .split('"')
        .filter(|s| s.starts_with("/console/assets/"))
        .collect();
    assert!(assets.len() >= 2, "{index}");
    assert!(
        !index.contains("http://") && !index.contains("https://"),
        "{index}"
    );
    for asset in assets {
        let res = client.get(env.server.url(asset)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{asset}");
        let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            kind.starts_with("text/javascript") || kind.starts_with("text/css"),
            "{asset}: {kind}"
        );
        assert!(
            res.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }
    let missing = client
        .get(env.server.url("/console/assets/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    env.finish().await;
}

/// Without a build, `/console` says how to make one (and the API still works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_build_answers_how_to_make_it() {
    let empty = tempfile::tempdir().unwrap();
    let env = Env::with(Profile::Embedded, "console-missing", |c| {
        c.console_assets = empty.path().to_path_buf();
    })
    .await
    .unwrap();
    let res = reqwest::get(env.server.url("/console/budgets"))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("npm ci --prefix console") && body.contains("AURUM_CONSOLE_ASSETS"),
        "{body}"
    );
    env.server
        .ok("{ me { username permissions } }", serde_json::json!({}))
        .await;
    env.finish().await;
}
