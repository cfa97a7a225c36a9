//! Deployment: what `k8s/` and the image promise, checked against the real thing (the
//! graceful shutdown the manifests rely on: `tests/shutdown.rs`).
//!
//! - The manifests, rendered by `kubectl kustomize k8s`, pass `kubernetes-validate --strict`
//!   for Kubernetes [`KUBERNETES_VERSION`] (offline: the validator ships its schemas), and the
//!   validator is seen to refuse a broken manifest.
//! - What schemas cannot see: probes name endpoints a running server answers with 200, every
//!   metric the HPA and the prometheus-adapter rules name is in `/metrics`, containers run as
//!   the image's non-root user with a read-only root and resources, the migration Job runs the
//!   Deployment's image, no secret setting sits in the ConfigMap and every key there is a real
//!   setting, the PodDisruptionBudget lets the HPA's minimum be drained one pod at a time, and
//!   the grace period outlasts the shutdown.
//! - The image `scripts/image` builds (here from this test build's binary, so CI checks the
//!   recipe without a second optimised build) runs read-only as user 10001, migrates
//!   PostgreSQL from the same image, answers `/health`, `/ready` and GraphiQL on PostgreSQL and
//!   on the embedded default, reports healthy through its own `HEALTHCHECK` command, and stops
//!   with exit code 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    ADMIN_PASSWORD, JWT_SECRET, PgDatabase, Profile, free_port, record_skip, services_or_skip,
    services_required,
};
use serde_json::{Value, json};

/// The Kubernetes version whose schemas the manifests must pass.
const KUBERNETES_VERSION: &str = "1.32.0";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Whether `tool` runs; when not, fails (AURUM_REQUIRE_SERVICES=1) or records the skip.
fn tool_or_skip(test: &str, tool: &str) -> bool {
    if Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    let msg = format!("{test}: {tool} not installed (scripts/setup installs it)");
    assert!(!services_required(), "AURUM_REQUIRE_SERVICES=1 and {msg}");
    eprintln!("SKIPPED {msg}");
    record_skip(&msg);
    false
}

/// `kubectl kustomize k8s`: the manifests as they would be applied.
fn rendered() -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", &format!("{ROOT}/k8s")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The documents of a YAML stream as JSON (PyYAML, which kubernetes-validate depends on).
fn documents(yaml: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "YAML did not parse");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn validate(files: &[std::path::PathBuf]) -> (bool, String) {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn manifests_render_and_pass_strict_validation() {
    let test = "manifests_render_and_pass_strict_validation";
    if !tool_or_skip(test, "kubectl") || !tool_or_skip(test, "kubernetes-validate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let yaml = rendered();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &yaml).unwrap();
    // Not resources of the kustomization, but applied by hand (README): validated too.
    let extra = ["prometheus-adapter-rules.yaml", "secret.example.yaml"]
        .map(|f| std::path::PathBuf::from(format!("{ROOT}/k8s/{f}")));
    let mut files = vec![file];
    files.extend(extra);
    let (ok, text) = validate(&files);
    assert!(ok, "{text}");
    let expected = documents(&yaml).len() + 2;
    assert_eq!(
        text.matches(" passed for resource ").count(),
        expected,
        "every document was validated: {text}"
    );

    // The validator is strict: an unknown field and a wrong type are refused.
    let broken = yaml
        .replacen("revisionHistoryLimit: 5", "revisionHistoryLimitt: 5", 1)
        .replacen("minReplicas: 2", "minReplicas: two", 1);
    assert_ne!(broken, yaml);
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let (ok, text) = validate(&[file]);
    assert!(!ok, "a broken manifest passed: {text}");
}

/// The resource of `kind` named `name`.
fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

/// Every `AURUM_*` setting the server reads (the `env = "…"` of `src/config.rs`).
fn settings() -> Vec<String> {
    let config = std::fs::read_to_string(format!("{ROOT}/src/config.rs")).unwrap();
    config
        .split("env = \"")
        .skip(1)
        .map(|part| part.split('"').next().unwrap().to_owned())
        .collect()
}

/// Settings that carry credentials: a Secret's, never the ConfigMap's.
const SECRET_SETTINGS: [&str; 3] = [
    "AURUM_DATABASE_URL",
    "AURUM_ADMIN_PASSWORD",
    "AURUM_JWT_SECRET",
];

/// `labels` (a selector's `matchLabels` or a Service's `selector`) all on the pod template.
fn selects(labels: &Value, pod: &Value) -> bool {
    labels
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &pod[k] == v))
}

/// Checks a pod spec's containers: the image's non-root user, read-only root, no escalation,
/// no capabilities, requests and a memory limit.
fn check_containers(what: &str, pod: &Value) {
    let containers = pod["containers"].as_array().unwrap();
    assert!(!containers.is_empty(), "{what}: no container");
    for c in containers {
        let sc = &c["securityContext"];
        let pod_sc = &pod["securityContext"];
        let non_root = sc["runAsNonRoot"] == true || pod_sc["runAsNonRoot"] == true;
        assert!(non_root, "{what}: runAsNonRoot missing");
        let user = sc["runAsUser"].as_i64().or(pod_sc["runAsUser"].as_i64());
        assert_eq!(user, Some(10001), "{what}: not the image's user 10001");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}: writable root");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}: escalation");
        assert!(
            sc["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.contains(&json!("ALL"))),
            "{what}: capabilities not dropped"
        );
        for (part, resource) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            assert!(
                c["resources"][part][resource].is_string(),
                "{what}: resources.{part}.{resource} missing"
            );
        }
    }
}

/// The metric names of a prometheus-adapter rule set (`seriesQuery`'s metric and `as`).
fn adapter_metrics() -> Vec<String> {
    let text =
        std::fs::read_to_string(format!("{ROOT}/k8s/prometheus-adapter-rules.yaml")).unwrap();
    let cm = documents(&text).remove(0);
    let config = documents(cm["data"]["config.yaml"].as_str().unwrap()).remove(0);
    let mut names = Vec::new();
    for group in ["rules", "externalRules"] {
        for rule in config[group].as_array().into_iter().flatten() {
            let query = rule["seriesQuery"].as_str().unwrap();
            names.push(
                query
                    .split(['{', ' '])
                    .next()
                    .unwrap()
                    .trim_matches('\'')
                    .to_owned(),
            );
            names.push(rule["name"]["as"].as_str().unwrap().to_owned());
        }
    }
    assert!(!names.is_empty(), "no adapter rule");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_hold_what_schemas_cannot_see() {
    let test = "manifests_hold_what_schemas_cannot_see";
    if !tool_or_skip(test, "kubectl") || !tool_or_skip(test, "kubernetes-validate") {
        return;
    }
    let docs = documents(&rendered());
    let deployment = find(&docs, "Deployment", "aurum");
    let job = find(&docs, "Job", "aurum-migrate");
    let cm = &find(&docs, "ConfigMap", "aurum")["data"];
    let hpa = find(&docs, "HorizontalPodAutoscaler", "aurum");
    let pdb = find(&docs, "PodDisruptionBudget", "aurum");
    let service = find(&docs, "Service", "aurum");
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let server = &pod["containers"][0];

    // Containers: the image's user, read-only, resources; one image for both.
    check_containers("Deployment aurum", pod);
    check_containers("Job aurum-migrate", &job["spec"]["template"]["spec"]);
    let image = server["image"].as_str().unwrap();
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"], image,
        "the migration Job must run the Deployment's image"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["migrate", "up"])
    );
    assert_eq!(server["args"], json!(["serve"]));
    assert_eq!(
        cm["AURUM_MIGRATE_ON_START"], "false",
        "replicas must leave migrations to the Job"
    );
    // A writable /tmp beside the read-only root.
    assert!(
        server["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|v| v["mountPath"] == "/tmp")),
        "no /tmp mount"
    );

    // The ConfigMap: real settings only, none of them a secret; the Secret example likewise.
    let settings = settings();
    for (key, value) in cm.as_object().unwrap() {
        assert!(settings.contains(key), "ConfigMap key {key} is no setting");
        assert!(
            !SECRET_SETTINGS.contains(&key.as_str())
                && !["PASSWORD", "SECRET", "TOKEN", "PRIVATE_KEY"]
                    .iter()
                    .any(|w| key.contains(w)),
            "ConfigMap holds secret setting {key}"
        );
        let value = value.as_str().unwrap();
        assert!(
            !(value.contains("://") && value.contains('@')),
            "ConfigMap {key} carries credentials in a URL"
        );
    }
    let secret_example =
        std::fs::read_to_string(format!("{ROOT}/k8s/secret.example.yaml")).unwrap();
    let secret = documents(&secret_example).remove(0);
    for key in secret["stringData"].as_object().unwrap().keys() {
        assert!(settings.contains(key), "Secret key {key} is no setting");
    }
    for key in SECRET_SETTINGS {
        assert!(
            secret["stringData"].get(key).is_some(),
            "the Secret example lacks {key}"
        );
    }
    assert!(
        server["envFrom"]
            .as_array()
            .is_some_and(|e| e.iter().any(|s| s["secretRef"]["name"] == "aurum")),
        "the Deployment does not read the Secret"
    );

    // The image's paths and user, as the Dockerfile sets them.
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let assets = cm["AURUM_GRAPHIQL_ASSETS"].as_str().unwrap();
    assert!(
        dockerfile.contains(&format!("AURUM_GRAPHIQL_ASSETS={assets}")),
        "the ConfigMap's GraphiQL assets are not where the image keeps them"
    );
    assert!(dockerfile.contains("USER 10001:10001"));

    // Scaling and disruption: the PDB lets an eviction through at the HPA's minimum, the
    // Deployment starts at or above that minimum, selectors select the server pods.
    let min_replicas = hpa["spec"]["minReplicas"].as_i64().unwrap();
    let min_available = pdb["spec"]["minAvailable"].as_i64().unwrap();
    assert!(
        min_available < min_replicas,
        "PDB minAvailable {min_available} blocks every eviction at minReplicas {min_replicas}"
    );
    assert!(deployment["spec"]["replicas"].as_i64().unwrap() >= min_replicas);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "aurum");
    let pod_labels = &template["metadata"]["labels"];
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    assert!(selects(&service["spec"]["selector"], pod_labels));
    let ports: Vec<&Value> = server["ports"].as_array().unwrap().iter().collect();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == service["spec"]["ports"][0]["targetPort"]),
        "the Service targets no container port"
    );
    let listen_port = cm["AURUM_LISTEN"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    assert!(
        ports.iter().any(|p| p["containerPort"] == listen_port),
        "AURUM_LISTEN's port is no container port"
    );

    // Shutdown: the grace period outlasts the server's timeout, which outlasts the drain.
    let timeout: i64 = cm["AURUM_SHUTDOWN_TIMEOUT_SECONDS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let drain: i64 = cm["AURUM_SHUTDOWN_DRAIN_SECONDS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(drain > 0 && drain < timeout);
    assert!(pod["terminationGracePeriodSeconds"].as_i64().unwrap() > timeout);

    // A running server (on PostgreSQL, Redis and NATS, as deployed) answers every probe with
    // 200 and exposes every metric the autoscaling names.
    let Some(env) = common::Env::new(Profile::Services, test).await else {
        return;
    };
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &server[probe]["httpGet"];
        assert!(
            ports.iter().any(|p| p["name"] == get["port"]),
            "{probe} names no container port"
        );
        let path = get["path"].as_str().unwrap();
        let status = env
            .server
            .client
            .get(env.server.url(path))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{probe} {path}");
    }
    let mut wanted: Vec<String> = hpa["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["pods"]["metric"]["name"].as_str().map(str::to_owned))
        .collect();
    assert!(!wanted.is_empty(), "the HPA names no custom metric");
    wanted.extend(adapter_metrics());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let exposition = env.server.metrics().await;
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|name| {
                !exposition.lines().any(|l| {
                    l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))
                })
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics named by the HPA or the adapter rules are not in /metrics: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.finish().await;
}

/// `docker …`, its output; panics with stderr when it fails.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes the test's containers and image, whatever happened.
struct ImageGuard {
    tag: String,
    containers: Vec<String>,
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

/// GETs `url` until it answers 200 (within 30 s); the body.
async fn wait_ok(client: &reqwest::Client, url: &str, container: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(url).send().await
            && res.status() == 200
        {
            return res.text().await.unwrap();
        }
        if Instant::now() > deadline {
            let logs = Command::new("docker")
                .args(["logs", container])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!("{url} did not answer 200 within 30 s; container log:\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_read_only_migrates_and_serves() {
    let test = "the_image_runs_read_only_migrates_and_serves";
    let Some(urls) = services_or_skip(test).await else {
        return;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut guard = ImageGuard {
        tag: format!("aurum-test:{}", &id[..12]),
        containers: Vec::new(),
    };
    let built = Command::new(format!("{ROOT}/scripts/image"))
        .args(["--binary", env!("CARGO_BIN_EXE_aurum"), "--tag", &guard.tag])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "scripts/image: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&built.stdout).trim(), guard.tag);
    eprintln!("{}", String::from_utf8_lossy(&built.stderr).trim());

    // What the image declares.
    let config: Value = serde_json::from_str(&docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config}}",
        &guard.tag,
    ]))
    .unwrap();
    assert_eq!(config["User"], "10001:10001");
    assert_eq!(config["Entrypoint"], json!(["/app/aurum"]));
    assert_eq!(config["Cmd"], json!(["serve"]));
    assert_eq!(
        config["Healthcheck"]["Test"],
        json!(["CMD", "/app/aurum", "healthcheck"])
    );
    let labels = &config["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap();
    assert!(revision.len() >= 40, "revision label: {revision}");

    // `aurum migrate up` from the same image, on a read-only root.
    let pg = PgDatabase::create(&urls).await;
    let migrated = Command::new("docker")
        .args(["run", "--rm", "--network", "host", "--read-only"])
        .args(["-e", &format!("AURUM_DATABASE_URL={}", pg.url)])
        .args([&guard.tag, "migrate", "up"])
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "migrate up: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let status = Command::new("docker")
        .args(["run", "--rm", "--network", "host", "--read-only"])
        .args(["-e", &format!("AURUM_DATABASE_URL={}", pg.url)])
        .args([&guard.tag, "migrate", "status"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && !listed.contains("pending") && listed.contains("m2026"),
        "migrate status: {listed}"
    );

    // `serve` on PostgreSQL, not migrating (as the Deployment runs it), read-only root.
    let client = reqwest::Client::new();
    let port = free_port().unwrap();
    let name = format!("aurum-test-{}", &id[..12]);
    guard.containers.push(name.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "-e",
        &format!("AURUM_LISTEN=127.0.0.1:{port}"),
        "-e",
        &format!("AURUM_DATABASE_URL={}", pg.url),
        "-e",
        "AURUM_MIGRATE_ON_START=false",
        "-e",
        &format!("AURUM_ADMIN_PASSWORD={ADMIN_PASSWORD}"),
        "-e",
        &format!("AURUM_JWT_SECRET={JWT_SECRET}"),
        "-e",
        "AURUM_SHUTDOWN_DRAIN_SECONDS=1",
        &guard.tag,
    ]);
    let base = format!("http://127.0.0.1:{port}");
    wait_ok(&client, &format!("{base}/health"), &name).await;
    let ready: Value =
        serde_json::from_str(&wait_ok(&client, &format!("{base}/ready"), &name).await).unwrap();
    assert_eq!(ready["dependencies"]["database"]["status"], "ok", "{ready}");
    let page = wait_ok(&client, &format!("{base}/graphql"), &name).await;
    assert!(page.contains("/graphiql/assets/graphiql.min.js"), "{page}");
    for asset in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
    ] {
        let res = client
            .get(format!("{base}/graphiql/assets/{asset}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{asset}");
        assert!(res.bytes().await.unwrap().len() > 1000, "{asset}");
    }
    common::login_at(&client, &base).await;
    // The image's own HEALTHCHECK command, as Docker runs it.
    docker(&["exec", &name, "/app/aurum", "healthcheck"]);
    // SIGTERM (docker stop): drains, stops, exit code 0.
    let stopping = Instant::now();
    docker(&["stop", "-t", "20", &name]);
    assert!(stopping.elapsed() < Duration::from_secs(15));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]),
        "0"
    );

    // The embedded default: no configuration but a port; SQLite in the /data volume.
    let port = free_port().unwrap();
    let embedded = format!("aurum-test-embedded-{}", &id[..12]);
    guard.containers.push(embedded.clone());
    docker(&[
        "run",
        "-d",
        "--name",
        &embedded,
        "--network",
        "host",
        "--read-only",
        "-e",
        &format!("AURUM_LISTEN=127.0.0.1:{port}"),
        &guard.tag,
    ]);
    let ready: Value = serde_json::from_str(
        &wait_ok(
            &client,
            &format!("http://127.0.0.1:{port}/ready"),
            &embedded,
        )
        .await,
    )
    .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let logs = Command::new("docker")
        .args(["logs", &embedded])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("First admin created"),
        "the embedded image did not bootstrap"
    );
    drop(guard);
    pg.drop_db().await;
}
