//! The HTTP load through the balancer: keep-alive clients sending `budgetState` queries and
//! `reserveBudget` + `commitBudget` pairs, each request sent again with the same `requestId`
//! after a client-visible failure until it is answered, and what they record (latencies,
//! failures, effects, tokens committed).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hyper::header::HeaderValue;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::{
    ATTEMPT_TIMEOUT, BUDGETS, HTTP_CLIENTS, QUERY_SHARE, REQUEST_DEADLINE, RESERVE_AMOUNT,
    RETRY_PAUSE, TENANT, TICK, TOTAL, WATCHED, common,
    state::{Failure, Sample, Shared},
};

const STATE: &str = "query($t: String!, $p: String!) { budgetState(tenantId: $t, projectId: $p) { used reserved total } }";
const RESERVE: &str = "mutation($t: String!, $p: String!, $a: Int!, $r: String!) { reserveBudget(input: { tenantId: $t, projectId: $p, amount: $a, requestId: $r }) { id amount } }";
const COMMIT: &str = "mutation($id: ID!, $a: Int!, $r: String!) { commitBudget(input: { reservationId: $id, actualAmount: $a, requestId: $r }) { id status } }";

/// One HTTP client's keep-alive connection to the balancer.
struct HttpClient {
    addr: String,
    auth: HeaderValue,
    conn: Option<common::Sender>,
    shared: Arc<Shared>,
}

impl HttpClient {
    /// Sends `body` until it is answered without a transport error or 5xx (the same body:
    /// the same request id), or for [`REQUEST_DEADLINE`]. The answer's `data` (`None` after
    /// an error, recorded) and how many client-visible failures it took.
    async fn call(&mut self, body: &Value) -> (Option<Value>, u32) {
        let started = Instant::now();
        let phase = self.shared.phase();
        let mut failures = 0;
        loop {
            let attempt = async {
                if self.conn.is_none() {
                    self.conn = Some(common::try_connect(&self.addr).await?);
                }
                let sender = self.conn.as_mut().unwrap();
                common::try_post_graphql(sender, &self.addr, &self.auth, body).await
            };
            let result = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt)
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
            let what = match result {
                Ok((status, v)) if status < 500 => {
                    let code = v["errors"][0]["extensions"]["code"].as_str();
                    if code == Some("IDEMPOTENCY_IN_PROGRESS")
                        && started.elapsed() < REQUEST_DEADLINE
                    {
                        self.shared.http.lock().unwrap().in_progress += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let mut log = self.shared.http.lock().unwrap();
                    if status != 200 || v.get("errors").is_some() || v["data"].is_null() {
                        log.errors.push(format!("HTTP {status}: {v}"));
                        return (None, failures);
                    }
                    log.samples.push(Sample {
                        phase,
                        latency: started.elapsed(),
                    });
                    return (Some(v["data"].clone()), failures);
                }
                Ok((status, _)) => format!("HTTP {status}"),
                Err(e) => {
                    self.conn = None;
                    e
                }
            };
            failures += 1;
            self.shared.http.lock().unwrap().failures.push(Failure {
                phase: self.shared.phase(),
                at: Instant::now(),
                what,
            });
            if started.elapsed() > REQUEST_DEADLINE {
                self.shared
                    .http
                    .lock()
                    .unwrap()
                    .errors
                    .push(format!("abandoned after {failures} failures: {body}"));
                return (None, failures);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// One reserve + commit pair on `project`, request ids `<key>-r` and `<key>-c`.
    async fn spend(&mut self, project: &str, key: &str, actual: i64) {
        let reserve_id = format!("{key}-r");
        let body = json!({ "query": RESERVE, "variables": { "t": TENANT, "p": project, "a": RESERVE_AMOUNT, "r": reserve_id } });
        let phase = self.shared.phase();
        let (data, failures) = self.call(&body).await;
        let Some(id) = data.and_then(|d| d["reserveBudget"]["id"].as_str().map(str::to_owned))
        else {
            return;
        };
        {
            let mut log = self.shared.http.lock().unwrap();
            log.done.push((reserve_id.clone(), "reserve"));
            if failures > 0 {
                log.retried.push((phase, reserve_id));
            }
        }
        let commit_id = format!("{key}-c");
        let body =
            json!({ "query": COMMIT, "variables": { "id": id, "a": actual, "r": commit_id } });
        let phase = self.shared.phase();
        let (data, failures) = self.call(&body).await;
        let Some(data) = data else { return };
        let mut log = self.shared.http.lock().unwrap();
        if data["commitBudget"]["status"] != "COMMITTED" {
            log.errors.push(format!("commit answered {data}"));
            return;
        }
        log.done.push((commit_id.clone(), "commit"));
        if failures > 0 {
            log.retried.push((phase, commit_id));
        }
        *log.committed.entry(project.to_owned()).or_default() += actual;
    }
}

/// An HTTP client of the load until `stop_http`: queries and pairs on `projects`, with a
/// pause of `pace` after each pair when given.
async fn http_client(
    mut client: HttpClient,
    run: String,
    index: usize,
    projects: Vec<String>,
    pace: Option<Duration>,
) {
    let mut rng = StdRng::from_os_rng();
    let stop = client.shared.stop_http.clone();
    let mut n = 0u64;
    while !stop.is_cancelled() {
        n += 1;
        let project = &projects[rng.random_range(0..projects.len())];
        if pace.is_none() && rng.random_bool(QUERY_SHARE) {
            let body = json!({ "query": STATE, "variables": { "t": TENANT, "p": project } });
            client.call(&body).await;
            continue;
        }
        let actual = rng.random_range(1..=RESERVE_AMOUNT);
        client
            .spend(project, &format!("{run}-{index}-{n}"), actual)
            .await;
        if let Some(pace) = pace {
            tokio::select! {
                () = tokio::time::sleep(pace) => {}
                () = stop.cancelled() => {}
            }
        }
    }
}

async fn gql(http: &reqwest::Client, lb: &str, token: &str, query: &str, vars: Value) -> Value {
    http.post(format!("http://{lb}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Creates the budgets of the load ([`BUDGETS`] of them) and the watched one through the
/// balancer at `lb`; the load's projects (the watched one not among them).
pub(crate) async fn create_budgets(http: &reqwest::Client, lb: &str, token: &str) -> Vec<String> {
    let mut projects: Vec<String> = (0..BUDGETS).map(|i| format!("b{i}")).collect();
    projects.push(WATCHED.into());
    for p in &projects {
        let made = gql(
            http,
            lb,
            token,
            "mutation($t: String!, $p: String!, $total: Int!) { createBudget(input: { tenantId: $t, projectId: $p, total: $total }) { id } }",
            json!({ "t": TENANT, "p": p, "total": TOTAL }),
        )
        .await;
        assert!(made.get("errors").is_none(), "createBudget: {made}");
    }
    projects.pop();
    projects
}

/// Starts the load on the balancer at `addr`: [`HTTP_CLIENTS`] clients on `projects` and the
/// paced one on the watched budget, request ids under `run_key`.
pub(crate) fn spawn_clients(
    shared: &Arc<Shared>,
    addr: &str,
    token: &str,
    run_key: &str,
    projects: &[String],
) -> Vec<JoinHandle<()>> {
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let mut http_tasks = Vec::new();
    for i in 0..=HTTP_CLIENTS {
        let client = HttpClient {
            addr: addr.to_owned(),
            auth: auth.clone(),
            conn: None,
            shared: shared.clone(),
        };
        // The last client paces pairs on the watched budget: the subscribers' events.
        let (targets, pace) = if i == HTTP_CLIENTS {
            (vec![WATCHED.to_owned()], Some(TICK))
        } else {
            (projects.to_vec(), None)
        };
        http_tasks.push(tokio::spawn(http_client(
            client,
            run_key.to_owned(),
            i,
            targets,
            pace,
        )));
    }
    http_tasks
}
