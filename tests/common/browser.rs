//! Headless Chromium driven by node and playwright-core: what a browser test needs, checked
//! or reported (skipped by name, or failing under AURUM_REQUIRE_SERVICES=1).

use std::{path::Path, process::Command};

use super::{record_skip, services_required};

/// The Chromium path when node, `<node_modules>/playwright-core`, Chromium and every path of
/// `also` are there; otherwise the test is recorded as skipped (or fails when services are
/// required).
pub fn chromium_or_skip(test: &str, node_modules: &Path, also: &[&Path]) -> Option<String> {
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = node_modules.join("playwright-core").exists();
    let missing: Vec<String> = also
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if node_ok && playwright && Path::new(&chromium).exists() && missing.is_empty() {
        return Some(chromium);
    }
    let msg = format!(
        "{test}: needs node ({node_ok}), {}/playwright-core ({playwright}), {chromium} and {missing:?} (run scripts/setup)",
        node_modules.display()
    );
    if services_required() {
        panic!("AURUM_REQUIRE_SERVICES=1 and {msg}");
    }
    eprintln!("SKIPPED {msg}");
    record_skip(&msg);
    None
}
