//! GraphiQL served offline: the page is our own template and its four assets come from the
//! npm-installed folder (`npm ci --prefix web`), read once at start-up. No CDN URL is ever
//! emitted; when the assets are missing the page says how to install them.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use axum::{
    body::Bytes,
    extract::{Path as UrlPath, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use super::{
    AppState,
    assets::{candidates, file_response},
};

/// (route name, path under the assets folder, content type)
const FILES: [(&str, &str, &str); 4] = [
    (
        "graphiql.min.js",
        "graphiql/graphiql.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "graphiql.min.css",
        "graphiql/graphiql.min.css",
        "text/css; charset=utf-8",
    ),
    (
        "react.production.min.js",
        "react/umd/react.production.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "react-dom.production.min.js",
        "react-dom/umd/react-dom.production.min.js",
        "text/javascript; charset=utf-8",
    ),
];

/// The GraphiQL assets held in memory.
pub struct GraphiqlAssets {
    files: HashMap<&'static str, (Bytes, &'static str)>,
    /// Folders searched in vain (empty once the assets are loaded).
    searched: Vec<PathBuf>,
}

/// All four files under `dir`, or what is missing there.
fn read_all(dir: &Path) -> Result<HashMap<&'static str, (Bytes, &'static str)>, Vec<String>> {
    let mut files = HashMap::new();
    let mut missing = Vec::new();
    for (name, rel, content_type) in FILES {
        let path = dir.join(rel);
        match std::fs::read(&path) {
            Ok(bytes) => {
                files.insert(name, (Bytes::from(bytes), content_type));
            }
            Err(e) => missing.push(format!("{} ({e})", path.display())),
        }
    }
    if missing.is_empty() {
        Ok(files)
    } else {
        Err(missing)
    }
}

impl GraphiqlAssets {
    /// Reads the assets from the first folder of [`candidates`] that holds all of them; when
    /// none does, logs every folder tried and what was missing there, and the page says so.
    pub fn load(dir: &Path) -> Self {
        let exe = std::env::current_exe().ok();
        let searched = candidates(dir, exe.as_deref());
        let mut missing = Vec::new();
        for folder in &searched {
            match read_all(folder) {
                Ok(files) => {
                    tracing::info!(graphiql.assets = %folder.display(), "GraphiQL assets loaded");
                    return Self {
                        files,
                        searched: Vec::new(),
                    };
                }
                Err(not_there) => missing.extend(not_there),
            }
        }
        tracing::warn!(
            graphiql.searched = ?searched,
            graphiql.missing = ?missing,
            "GraphiQL assets not found in any folder tried; run `npm ci --prefix web` in the \
             checkout (or set AURUM_GRAPHIQL_ASSETS to an installed node_modules)"
        );
        Self {
            files: HashMap::new(),
            searched,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.searched.is_empty()
    }
}

/// What a first visit to GraphiQL shows (GraphiQL's `defaultQuery`: later visits keep their
/// own tabs): how to log in and pass the token, a first query and a first subscription.
const STARTER: &str = r#"# Welcome to Aurum.
#
# 1. Log in: put the admin password in `Login` below (`aurum serve` printed it on its
#    first start, or it is AURUM_ADMIN_PASSWORD) and run `Login` (the run button asks
#    which operation when there are several).
# 2. Copy `token` from the result into the Headers tab, below this editor:
#      { "Authorization": "Bearer <token>" }
#    Every operation from then on runs as that user.
# 3. Run `FirstQuery`.
# 4. Run `WatchTasks`: it stays open and shows each task change as it happens. Run
#    `CreateTask` in a new tab (with the same header) and see it arrive here. Each event
#    has a `cursor`: subscribe with `taskChanged(after: "<cursor>")` to get what happened
#    since then, then live changes.
# 5. As an admin, in another tab: `LiveSubscriptions` lists every open subscription on
#    every replica (yours included); `CloseSubscription` closes one by its id (its client
#    receives SUBSCRIPTION_CLOSED).
# 6. Dead letters: run `WatchDlq` in its own tab; a task message a worker rejects, or that
#    fails all its deliveries, shows up there as it is recorded. `RetryDeadLetter` puts one
#    back on its queue (and its task back to PENDING).
# 7. Circuit breakers: run `WatchBreakers` in its own tab. `ConfigureBreaker` creates one with
#    the prototype's rule; `AcquirePermit` then `ReportFailure` (with the permit's id) five
#    times opens it, and the watch shows it. `ForceCloseBreaker` lets every call through
#    again; `Breakers` lists every breaker with its state and live figures.
# 8. Governance: run `WatchGovernance` in its own tab. A developer (another user: four eyes)
#    runs `ProposeUpdate`; the `security` role requires approval, so it waits. `PendingUpdates`
#    lists what waits; `ApproveUpdate` (with its id) applies it as the role's next prompt
#    version, and the watch shows the role's status move. `ValidateOutput` checks a model's
#    answer against the SYNTHESIS schema and lists every fix it made.
# 9. Quality gates: `SendToReview` (with a task id; an IN_PROGRESS task) is refused with
#    GATE_FAILED until its gates hold, and `WhyStuck` shows the remediation plan and each
#    gate's latest result. Agents report gates with `ReportGate`; once in REVIEWING,
#    `StartReview` opens a peer review and `WatchReview` (its own tab) shows every vote and
#    the explainer's score until the quorum is reached.
# 10. Sandbox: `RunCode` queues a Python program (no network, read-only root, its own limits);
#    put its id in `WatchOutput` (its own tab) to see the lines as they are printed and the
#    final status. Reload the page mid-run and subscribe again with `fromOffset` set to the
#    last `nextOffset` you saw: the output continues from there, no byte twice or missing.
#    `SandboxRuns` lists runs with their outcome; `CancelRun` stops one.
#
# The Docs button (top left) lists every query, mutation and subscription.

mutation Login {
  login(username: "admin", password: "the password printed at first start") {
    token
    expiresAt
    user {
      username
      role
    }
  }
}

query FirstQuery {
  me {
    username
    role
  }
  tasks(first: 10) {
    totalCount
    nodes {
      id
      title
      state
    }
  }
}

subscription WatchTasks {
  taskChanged {
    cursor
    kind
    task {
      id
      title
      state
    }
  }
}

mutation CreateTask {
  createTask(input: { title: "My first task" }) {
    id
    title
    state
  }
}

query LiveSubscriptions {
  activeSubscriptions {
    id
    replica
    caller
    operationName
    startedAt
    eventsDelivered
    lag
    clientAddress
  }
}

mutation CloseSubscription {
  closeSubscription(id: "an id from LiveSubscriptions")
}

subscription WatchDlq {
  dlqMessageAdded {
    cursor
    message {
      id
      queue
      taskId
      reason
      attempts
      lastError
    }
  }
}

mutation RetryDeadLetter {
  retryDlqMessage(id: "an id from WatchDlq", requestId: "retry-1") {
    id
    status
  }
}

subscription WatchBreakers {
  circuitBreakerChanged {
    name
    kind
    state
    previousState
    cause
    replica
  }
}

mutation ConfigureBreaker {
  configureCircuitBreaker(
    input: {name: "openai", slidingWindowSize: 5, minimumNumberOfCalls: 5, failureRateThreshold: 100, waitDurationInOpenStateMs: 30000, permittedNumberOfCallsInHalfOpenState: 3, reason: "the prototype's rule"}
  ) {
    name
    state
  }
}

mutation AcquirePermit {
  acquireCircuitBreakerPermit(name: "openai") {
    permitted
    permitId
    retryAfterMs
  }
}

mutation ReportFailure {
  recordCircuitBreakerOutcome(
    input: {permitId: "a permitId from AcquirePermit", outcome: FAILURE}
  ) {
    counted
    state
  }
}

mutation ForceCloseBreaker {
  forceCloseCircuitBreaker(name: "openai", reason: "provider confirmed healthy") {
    state
  }
}

query Breakers {
  circuitBreakers {
    edges {
      node {
        name
        state
        scope
        metrics {
          failureRate
          numberOfCalls
          remainingOpenMs
        }
      }
    }
  }
}

subscription WatchGovernance {
  governanceStatusChanged(agentRole: "security") {
    kind
    status {
      status
      updatesInWindow
      pendingApprovals
      nextAllowedAt
      currentVersion
    }
  }
}

mutation ProposeUpdate {
  proposeLearningUpdate(
    input: {
      agentRole: "security"
      promptUpdate: "Report every finding with the evidence that supports it."
      rationale: "reviews of the last round lacked evidence"
      requestId: "propose-1"
    }
  ) {
    id
    status
    expiresAt
  }
}

query PendingUpdates {
  learningUpdates(filter: { status: PENDING_APPROVAL }) {
    edges {
      node {
        id
        agentRole
        promptUpdate
        proposedBy
      }
    }
  }
}

mutation ApproveUpdate {
  approveLearningUpdate(id: "<id from PendingUpdates>", note: "evidence matters") {
    status
    promptVersion
    decidedBy
  }
}

mutation SendToReview {
  updateTaskState(id: "<task id>", state: REVIEWING) {
    state
  }
}

query WhyStuck {
  task(id: "<task id>") {
    state
    remediationPlan {
      targetState
      actions {
        gate
        actionType
        priority
        agentRole
        status
      }
    }
    gateResults {
      gate
      passed
      refusalsInARow
    }
  }
}

mutation ReportGate {
  reportGateResult(
    input: { taskId: "<task id>", gate: "code_quality", passed: true, detail: "lint clean" }
  ) {
    gate
    passed
  }
}

mutation StartReview {
  startPeerReview(input: { taskId: "<task id>", requestId: "review-1" }) {
    id
    totalWeight
    voters {
      label
      role
      weight
    }
  }
}

subscription WatchReview {
  peerReviewChanged(taskId: "<task id>") {
    kind
    review {
      status
      score
      explanation
      couldPassAlone {
        label
      }
    }
  }
}

query ValidateOutput {
  validateLlmOutput(
    kind: "SYNTHESIS"
    text: "Here it is: {\"reasoning\": \"the retries drop errors\", \"action_plan\": [{\"priority\": \"7\", \"type\": \"FIX\", \"issue\": \"keep the last error\", \"agent\": \"developer\"}]}"
  ) {
    valid
    value
    fixes {
      pointer
      kind
      message
    }
    errors {
      pointer
      message
    }
  }
}

mutation RunCode {
  startSandboxRun(
    input: {
      language: "python"
      code: "import time\nfor i in range(30):\n    print('tick', i, flush=True)\n    time.sleep(0.5)"
      limits: { memoryMb: 64, timeoutMs: 30000 }
      requestId: "graphiql-run-1"
    }
  ) {
    id
    status
  }
}

subscription WatchOutput {
  sandboxRunOutput(runId: "<run id>", fromOffset: 0) {
    offset
    nextOffset
    stream
    text
    done
    run {
      status
      exitCode
      durationMs
    }
  }
}

query SandboxRuns {
  sandboxRuns(first: 10) {
    totalCount
    nodes {
      id
      language
      status
      exitCode
      signal
      durationMs
      storedBytes
      stdoutTruncated
    }
  }
}

mutation CancelRun {
  cancelSandboxRun(id: "<run id>") {
    status
    cancelRequested
  }
}
"#;

/// The page, with [`STARTER`] in place of `{{STARTER}}`.
static PAGE_HTML: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| PAGE.replace("{{STARTER}}", STARTER));

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="robots" content="noindex">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Aurum GraphiQL</title>
  <link rel="icon" href="data:,">
  <style>body{height:100%;margin:0;width:100%;overflow:hidden}#graphiql{height:100vh}</style>
  <link rel="stylesheet" href="/graphiql/assets/graphiql.min.css">
  <script src="/graphiql/assets/react.production.min.js"></script>
  <script src="/graphiql/assets/react-dom.production.min.js"></script>
</head>
<body>
  <div id="graphiql">Loading…</div>
  <script type="application/graphql" id="starter">{{STARTER}}</script>
  <script src="/graphiql/assets/graphiql.min.js"></script>
  <script>
    const url = new URL('/graphql', window.location.href);
    const wsUrl = new URL('/graphql', window.location.href);
    wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
    const params = new URLSearchParams(window.location.search);
    const fetcher = GraphiQL.createFetcher({
      url: url.toString(),
      subscriptionUrl: wsUrl.toString(),
      fetch: (u, o = {}) => fetch(u, { ...o, credentials: 'same-origin' }),
    });
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, {
        fetcher,
        defaultEditorToolsVisibility: true,
        defaultQuery: document.getElementById('starter').textContent,
        query: params.get('query') ?? undefined,
        variables: params.get('variables') ?? undefined,
        headers: params.get('headers') ?? undefined,
      })
    );
  </script>
</body>
</html>
"#;

/// The GraphiQL page, or an explanation of how to install its assets.
pub fn page(state: &AppState) -> Response {
    if state.graphiql.is_complete() {
        return Html(PAGE_HTML.as_str()).into_response();
    }
    let body = format!(
        "<!DOCTYPE html><html><body><h1>GraphiQL assets are not installed</h1>\
         <p>Run <code>npm ci --prefix web</code> in the Aurum checkout (or point \
         AURUM_GRAPHIQL_ASSETS at an installed <code>node_modules</code>) and restart. \
         {} folder(s) searched; the server log lists them. POST /graphql works without \
         them.</p></body></html>",
        state.graphiql.searched.len()
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(body)).into_response()
}

/// `GET /graphiql/assets/{name}`.
pub async fn asset(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    file_response(
        state.graphiql.files.get(name.as_str()),
        "public, max-age=86400",
    )
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    #[test]
    fn page_names_no_remote_host() {
        let page = PAGE_HTML.as_str();
        assert!(!page.contains("https://") && !page.contains("http://"));
        assert!(page.contains("subscription WatchTasks") && !page.contains("{{STARTER}}"));
        // The starter sits in a script element: it must not close it.
        assert!(!STARTER.contains("</"));
    }

    /// Every operation of the starter passes the schema's validation (a renamed field
    /// fails here, not in a newcomer's first minute). Without services the resolvers fail,
    /// and their errors carry a path; validation errors have none.
    #[tokio::test]
    async fn starter_operations_validate_against_the_schema() {
        use async_graphql::{Request, futures_util::StreamExt};
        let schema = crate::graphql::AurumSchema::build(
            Default::default(),
            Default::default(),
            Default::default(),
        )
        .finish();
        // Every operation the page offers, read from the document itself.
        let operations: Vec<(&str, bool)> = STARTER
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (kind, rest) = l.split_once(' ')?;
                let name = rest.split([' ', '(', '{']).next()?;
                ["query", "mutation", "subscription"]
                    .contains(&kind)
                    .then_some((name, kind == "subscription"))
            })
            .collect();
        for expected in ["Login", "WatchTasks", "WatchGovernance", "ApproveUpdate"] {
            assert!(
                operations.iter().any(|(name, _)| *name == expected),
                "{expected} not found in {operations:?}"
            );
        }
        for (operation, subscription) in operations {
            let request = Request::new(STARTER).operation_name(operation);
            let response = if subscription {
                schema.execute_stream(request).next().await
            } else {
                Some(schema.execute(request).await)
            };
            let response = response.unwrap_or_default();
            let invalid: Vec<_> = response
                .errors
                .iter()
                .filter(|e| e.path.is_empty())
                .collect();
            assert!(invalid.is_empty(), "{operation}: {invalid:?}");
        }
    }

    #[test]
    fn relative_asset_folders_are_searched_in_three_places() {
        let exe = Path::new("/opt/aurum/bin/aurum");
        let found = candidates(Path::new("web/node_modules"), Some(exe));
        let cwd = std::env::current_dir().unwrap_or_default();
        // The working directory and the checkout are one folder when tests run, tried once.
        let mut expected = vec![
            cwd.join("web/node_modules"),
            PathBuf::from("/opt/aurum/bin/web/node_modules"),
        ];
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/node_modules");
        if checkout != expected[0] {
            expected.push(checkout);
        }
        assert_eq!(found, expected);
        assert_eq!(
            candidates(Path::new("/srv/assets"), Some(exe)),
            [PathBuf::from("/srv/assets")]
        );
    }
}
