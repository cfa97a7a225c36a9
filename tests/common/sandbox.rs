//! Sandbox test helpers: a client for one replica (run, wait, follow the output), the Docker
//! prerequisites (engine, runtime, images) checked or reported, and the containers of a fleet.

use std::{collections::HashMap, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use super::{TestServer, WsClient, record_skip, services_required};

pub const START: &str =
    "mutation($i: StartSandboxRunInput!) { startSandboxRun(input: $i) { id status } }";
pub const RUN: &str = "query($id: ID!) { sandboxRun(id: $id) { id status exitCode signal error durationMs queueWaitMs peakMemoryBytes stdoutBytes stderrBytes stdoutTruncated stderrTruncated storedBytes replica cancelRequested } }";
pub const OUTPUT: &str = "subscription($id: ID!, $from: Int) { sandboxRunOutput(runId: $id, fromOffset: $from) { offset nextOffset stream text base64 done run { status storedBytes exitCode } } }";
pub const CANCEL: &str =
    "mutation($id: ID!) { cancelSandboxRun(id: $id) { status cancelRequested } }";

/// Docker answering, `runtime` registered and the default languages' images present; else
/// fails (AURUM_REQUIRE_SERVICES=1) or records the skip and answers `false`.
pub async fn sandbox_or_skip(test: &str, runtime: &str) -> bool {
    let problem = async {
        let docker = bollard::Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
        let info = tokio::time::timeout(Duration::from_secs(3), docker.info())
            .await
            .map_err(|_| "docker info timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !info.runtimes.is_some_and(|r| r.contains_key(runtime)) {
            return Err(format!(
                "runtime {runtime} not registered (scripts/sandbox-images)"
            ));
        }
        for image in ["aurum/sandbox-python:1", "aurum/sandbox-shell:1"] {
            docker
                .inspect_image(image)
                .await
                .map_err(|_| format!("image {image} missing (scripts/sandbox-images)"))?;
        }
        Ok::<(), String>(())
    }
    .await;
    match problem {
        Ok(()) => true,
        Err(why) => {
            let msg = format!("{test}: sandbox unavailable: {why}");
            assert!(!services_required(), "AURUM_REQUIRE_SERVICES=1 and {msg}");
            eprintln!("SKIPPED {msg}");
            record_skip(&msg);
            false
        }
    }
}

/// The containers (any state) labelled with `fleet`.
pub async fn fleet_containers(fleet: &str) -> Vec<String> {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let filters = HashMap::from([("label".to_owned(), vec![format!("io.aurum.fleet={fleet}")])]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .expect("list containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// One replica as a sandbox client sees it.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

/// What a subscriber received: the bytes, each delivery, and the final run.
pub struct Followed {
    pub bytes: Vec<u8>,
    pub deliveries: Vec<Value>,
    pub end: Value,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    pub fn of(server: &TestServer) -> Self {
        Self::new(&format!("http://{}", server.addr), &server.token)
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    /// The whole answer of `startSandboxRun`.
    pub async fn try_start(&self, language: &str, code: &str, extra: Value) -> Value {
        let mut input = json!({
            "language": language,
            "code": code,
            "requestId": uuid::Uuid::new_v4().to_string(),
        });
        if let (Some(i), Some(e)) = (input.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                i.insert(k.clone(), v.clone());
            }
        }
        self.gql(START, json!({ "i": input })).await
    }

    /// Starts a run; its id.
    pub async fn start(&self, language: &str, code: &str, extra: Value) -> String {
        let res = self.try_start(language, code, extra).await;
        res["data"]["startSandboxRun"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("startSandboxRun: {res}"))
            .to_owned()
    }

    pub async fn run(&self, id: &str) -> Value {
        let res = self.gql(RUN, json!({ "id": id })).await;
        assert!(res.get("errors").is_none(), "{res}");
        res["data"]["sandboxRun"].clone()
    }

    /// Polls the run until its status is final (within `timeout`).
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> Value {
        let started = std::time::Instant::now();
        loop {
            let run = self.run(id).await;
            if !matches!(run["status"].as_str(), Some("QUEUED" | "RUNNING")) {
                return run;
            }
            assert!(
                started.elapsed() < timeout,
                "run {id} still {run} after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the run until `check` holds.
    pub async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = std::time::Instant::now();
        loop {
            let run = self.run(id).await;
            if check(&run) {
                return run;
            }
            assert!(
                started.elapsed() < timeout,
                "run {id}: {run} after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn ws(&self) -> WsClient {
        let url = format!("{}/graphql", self.base.replacen("http://", "ws://", 1));
        WsClient::connect(&url, "graphql-transport-ws", Some(&self.token)).await
    }

    /// Follows the output of `id` from `from` until the `done` delivery, or until `stop_at`
    /// bytes have arrived (then the socket is dropped, as a client going away would).
    pub async fn follow(
        &self,
        id: &str,
        from: i64,
        stop_at: Option<usize>,
        timeout: Duration,
    ) -> Followed {
        let mut ws = self.ws().await;
        ws.subscribe("out", OUTPUT, json!({ "id": id, "from": from }))
            .await;
        let mut out = Followed {
            bytes: Vec::new(),
            deliveries: Vec::new(),
            end: Value::Null,
        };
        let mut expected = from;
        loop {
            let d = ws.next_data("out", timeout).await;
            assert!(d.get("errors").is_none(), "output subscription failed: {d}");
            let d = d["data"]["sandboxRunOutput"].clone();
            if d["done"] == true {
                out.end = d;
                return out;
            }
            assert_eq!(
                d["offset"].as_i64(),
                Some(expected),
                "deliveries are contiguous: {d}"
            );
            let bytes = STANDARD
                .decode(d["base64"].as_str().expect("base64"))
                .expect("valid base64");
            expected = d["nextOffset"].as_i64().expect("nextOffset");
            assert_eq!(
                expected - d["offset"].as_i64().unwrap_or(0),
                bytes.len() as i64
            );
            out.bytes.extend_from_slice(&bytes);
            out.deliveries.push(d);
            if stop_at.is_some_and(|n| out.bytes.len() >= n) {
                return out;
            }
        }
    }

    /// The stored output of an ended run (stdout and stderr interleaved) as text.
    pub async fn output_text(&self, id: &str) -> String {
        let f = self.follow(id, 0, None, Duration::from_secs(30)).await;
        String::from_utf8_lossy(&f.bytes).into_owned()
    }
}
