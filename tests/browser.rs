//! GraphiQL in a real browser: headless Chromium opens the page served by a running Aurum, with
//! no internet, runs a query against tasks and finds the result on the page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::Path, process::Command};

use common::{Env, Profile};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_query_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = root.join("web/node_modules/playwright-core").exists();
    if !node_ok || !playwright || !Path::new(&chromium).exists() {
        let msg = format!(
            "graphiql_runs_a_query_in_headless_chromium: needs node ({node_ok}), web/node_modules/playwright-core ({playwright}) and {chromium} (run scripts/setup)"
        );
        if common::services_required() {
            panic!("AURUM_REQUIRE_SERVICES=1 and {msg}");
        }
        eprintln!("SKIPPED {msg}");
        common::record_skip(&msg);
        return;
    }
    let env = Env::new(Profile::Embedded, "browser")
        .await
        .expect("embedded profile");
    let title = format!("browser-check-{}", uuid::Uuid::new_v4().simple());
    env.server
        .ok(
            "mutation($t: String!) { createTask(input: { title: $t }) { id } }",
            json!({ "t": title }),
        )
        .await;
    let query = "{ tasks(first: 10) { totalCount edges { node { title state } } } }";
    let headers = json!({ "Authorization": format!("Bearer {}", env.server.token) }).to_string();
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let url = format!(
        "{}?query={}&headers={}",
        env.server.url("/graphql"),
        enc(query),
        enc(&headers)
    );
    let shot = std::env::temp_dir().join("aurum-graphiql.png");
    let script = root.join("web/tests/graphiql.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&url)
        .arg(&title)
        .arg(&shot)
        .env("CHROMIUM_PATH", &chromium)
        .current_dir(root.join("web"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser check failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&title) && stdout.contains("PENDING"),
        "{stdout}"
    );
    env.finish().await;
}
