//! GraphiQL in a real browser: headless Chromium opens the page served by a running Aurum, with
//! no internet, runs a query against tasks and finds the result on the page; and watches a
//! budget live through a subscription while an agent spends it; and lists and closes an
//! agent's live subscription (subscription admin).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Env, Profile, TestServer};
use serde_json::json;

fn browser_ready(test: &str) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::browser::chromium_or_skip(test, &root.join("web/node_modules"), &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_query_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(chromium) = browser_ready("graphiql_runs_a_query_in_headless_chromium") else {
        return;
    };
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

/// A budget watched live from GraphiQL: the page runs a `budgetChanged` subscription over its
/// WebSocket (authenticated with the headers typed in the editor) while an agent's API key
/// spends the budget; the event shows up on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_watches_a_budget_live() {
    let Some(chromium) = browser_ready("graphiql_watches_a_budget_live") else {
        return;
    };
    let env = Env::new(Profile::Embedded, "browser-budget")
        .await
        .expect("embedded profile");
    let s = &env.server;
    s.ok(
        "mutation { createBudget(input: { tenantId: \"acme\", projectId: \"bot\", total: 100000 }) { id } }",
        json!({}),
    )
    .await;
    let key = s
        .ok(
            "mutation { createApiKey(input: { name: \"agent\", role: DEVELOPER, tenantId: \"acme\" }) { secret } }",
            json!({}),
        )
        .await["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let query = "subscription { budgetChanged(tenantId: \"acme\", projectId: \"bot\") { kind state { used reserved available } } }";
    let mut node = open_graphiql(s, &chromium, query, "RESERVED");
    // The agent spends until the page has the event (the subscription starts when the page
    // has loaded and the button was clicked).
    let mut spent = 0;
    let status = loop {
        if let Ok(Some(status)) = node.try_wait() {
            break status;
        }
        assert!(spent < 60, "the page never showed the reservation");
        let res = s
            .gql_as(
                Some(&key),
                "mutation($r: String!) { reserveBudget(input: { tenantId: \"acme\", projectId: \"bot\", amount: 10, requestId: $r }) { id } }",
                json!({ "r": format!("call-{spent}") }),
            )
            .await;
        assert!(res.get("errors").is_none(), "{res}");
        spent += 1;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let stdout = page_output(node, status).await;
    assert!(
        stdout.contains("RESERVED") && stdout.contains("reserved"),
        "{stdout}"
    );
    env.finish().await;
}

/// Starts the browser driver on GraphiQL running `document` (the admin's token in the headers
/// tab); it ends once `expected` shows up in the result pane. For a watch the test acts on
/// while the page runs; `page_output` collects it.
fn open_graphiql(
    s: &TestServer,
    chromium: &str,
    document: &str,
    expected: &str,
) -> tokio::process::Child {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let headers = json!({ "Authorization": format!("Bearer {}", s.token) }).to_string();
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let url = format!(
        "{}?query={}&headers={}",
        s.url("/graphql"),
        enc(document),
        enc(&headers)
    );
    tokio::process::Command::new("node")
        .arg(root.join("web/tests/graphiql.mjs"))
        .arg(&url)
        .arg(expected)
        .env("CHROMIUM_PATH", chromium)
        .current_dir(root.join("web"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// What a driver that ended with `status` printed; fails the test with its output unless it
/// saw what it waited for.
async fn page_output(node: tokio::process::Child, status: std::process::ExitStatus) -> String {
    let out = node.wait_with_output().await.unwrap();
    checked(&out, status.success())
}

fn checked(out: &std::process::Output, success: bool) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(success, "browser check failed:\n{stdout}\n{stderr}");
    stdout
}

/// Runs `document` in GraphiQL (headless Chromium, the admin's token in the headers tab) and
/// returns what the page printed once `expected` showed up in the result pane.
async fn run_in_graphiql(env: &Env, chromium: &str, document: &str, expected: &str) -> String {
    let node = open_graphiql(&env.server, chromium, document, expected);
    let out = node.wait_with_output().await.unwrap();
    checked(&out, out.status.success())
}

/// Subscription admin from GraphiQL: an admin lists the live subscriptions (an agent's
/// `WatchTasks` among them) and closes it; the agent's socket is told `SUBSCRIPTION_CLOSED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_lists_and_closes_live_subscriptions() {
    let Some(chromium) = browser_ready("graphiql_lists_and_closes_live_subscriptions") else {
        return;
    };
    let env = Env::new(Profile::Embedded, "browser-admin")
        .await
        .expect("embedded profile");
    let s = &env.server;
    let mut agent = s.ws("graphql-transport-ws").await;
    agent
        .subscribe(
            "1",
            "subscription AgentWatch { taskChanged { cursor } }",
            json!({}),
        )
        .await;
    common::create_until_delivered(s, &mut agent, "1", |i| format!("admin-page-{i}")).await;
    let page = run_in_graphiql(
        &env,
        &chromium,
        "{ activeSubscriptions { id operationName caller eventsDelivered } }",
        "AgentWatch",
    )
    .await;
    let listed = s
        .ok("{ activeSubscriptions { id operationName } }", json!({}))
        .await;
    let id = listed["activeSubscriptions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(page.contains(&id), "the page did not list {id}: {page}");
    let page = run_in_graphiql(
        &env,
        &chromium,
        &format!("mutation {{ closeSubscription(id: \"{id}\") }}"),
        "closeSubscription",
    )
    .await;
    assert!(page.contains("true"), "{page}");
    let closed = agent.next_json().await.unwrap();
    assert_eq!(
        common::error_code(&closed["payload"]),
        "SUBSCRIPTION_CLOSED",
        "{closed}"
    );
    env.finish().await;
}

/// A dead letter watched arriving live in GraphiQL, then retried from it: the page runs
/// `dlqMessageAdded` while an agent enqueues, claims and rejects a message as poison; the
/// dead letter shows up on the page, and `retryDlqMessage` run on the page puts it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_watches_a_dead_letter_arrive_and_retries_it() {
    let Some(chromium) = browser_ready("graphiql_watches_a_dead_letter_arrive_and_retries_it")
    else {
        return;
    };
    let env = Env::new(Profile::Embedded, "browser-dlq")
        .await
        .expect("embedded profile");
    let s = &env.server;
    let query =
        "subscription WatchDlq { dlqMessageAdded { cursor message { id reason lastError } } }";
    let mut node = open_graphiql(s, &chromium, query, "REJECTED");
    // The agent dead-letters messages until the page shows one (its subscription starts once
    // the page has loaded and the button was clicked).
    let mut round = 0;
    let status = loop {
        if let Ok(Some(status)) = node.try_wait() {
            break status;
        }
        assert!(round < 60, "the page never showed the dead letter");
        let task = s
            .ok(
                "mutation($t: String!) { createTask(input: { title: $t }) { id } }",
                json!({ "t": format!("poison-{round}") }),
            )
            .await["createTask"]["id"]
            .clone();
        s.ok(
            "mutation($t: ID!, $r: String!) { enqueueTask(input: { taskId: $t, queue: \"default\", payload: \"{}\", requestId: $r }) { sequence } }",
            json!({ "t": task, "r": format!("poison-{round}") }),
        )
        .await;
        let claimed = s
            .ok(
                "mutation { claimTaskMessages(queue: \"default\", max: 1) { deliveryId } }",
                json!({}),
            )
            .await;
        s.ok(
            "mutation($d: String!) { rejectTaskMessage(deliveryId: $d, reason: \"cannot parse the payload\") { deliveryId } }",
            json!({ "d": claimed["claimTaskMessages"][0]["deliveryId"] }),
        )
        .await;
        round += 1;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let stdout = page_output(node, status).await;
    assert!(stdout.contains("cannot parse the payload"), "{stdout}");
    // The letter the page showed (earlier rounds may have died before it subscribed).
    let letters = s
        .ok(
            "{ dlqMessages(first: 100) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let first = letters["dlqMessages"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["node"]["id"].as_str())
        .find(|id| stdout.contains(id))
        .unwrap_or_else(|| panic!("the page showed no dead letter id: {stdout}"))
        .to_owned();
    let page = run_in_graphiql(
        &env,
        &chromium,
        &format!("mutation {{ retryDlqMessage(id: \"{first}\", requestId: \"page-retry\") {{ status }} }}"),
        "RETRIED",
    )
    .await;
    assert!(page.contains("RETRIED"), "{page}");
    let back = s
        .ok(
            "mutation { claimTaskMessages(queue: \"default\", max: 10) { payload } }",
            json!({}),
        )
        .await;
    assert_eq!(
        back["claimTaskMessages"].as_array().unwrap().len(),
        1,
        "{back}"
    );
    env.finish().await;
}

/// A breaker watched opening live in GraphiQL, then forced closed from it: the page runs
/// `circuitBreakerChanged` while an agent reports five failures in a row; the transition to
/// `OPEN` shows up on the page, and `forceCloseCircuitBreaker` run on the page lets calls
/// through again, recorded as the operator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_watches_a_breaker_open_and_forces_it_closed() {
    let Some(chromium) = browser_ready("graphiql_watches_a_breaker_open_and_forces_it_closed")
    else {
        return;
    };
    let env = Env::new(Profile::Embedded, "browser-breaker")
        .await
        .expect("embedded profile");
    let s = &env.server;
    s.ok(
        "mutation { configureCircuitBreaker(input: { name: \"openai\", slidingWindowSize: 5, minimumNumberOfCalls: 5, failureRateThreshold: 100, waitDurationInOpenStateMs: 30000, permittedNumberOfCallsInHalfOpenState: 3, reason: \"browser test\" }) { state } }",
        json!({}),
    )
    .await;
    let query = "subscription WatchBreakers { circuitBreakerChanged(name: \"openai\") { name state previousState cause } }";
    let mut node = open_graphiql(s, &chromium, query, "THRESHOLDS_EXCEEDED");
    // The agent fails five calls in a row (the breaker opens), and the operator's script
    // resets it, until the page shows an opening (its subscription starts once the page has
    // loaded and the button was clicked).
    let mut round = 0;
    let status = loop {
        if let Ok(Some(status)) = node.try_wait() {
            break status;
        }
        assert!(round < 60, "the page never showed the breaker open");
        for _ in 0..5 {
            let grant = s
                .ok(
                    "mutation { acquireCircuitBreakerPermit(name: \"openai\") { permitId } }",
                    json!({}),
                )
                .await;
            s.ok(
                "mutation($p: String!) { recordCircuitBreakerOutcome(input: { permitId: $p, outcome: FAILURE }) { state } }",
                json!({ "p": grant["acquireCircuitBreakerPermit"]["permitId"] }),
            )
            .await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        s.ok(
            "mutation { resetCircuitBreaker(name: \"openai\", reason: \"next round\") { state } }",
            json!({}),
        )
        .await;
        round += 1;
    };
    let stdout = page_output(node, status).await;
    // The page showed an opening (the driver waits for THRESHOLDS_EXCEEDED in the result
    // pane); by the time it prints the pane, the next round's reset may have replaced it.
    assert!(stdout.contains("circuitBreakerChanged"), "{stdout}");
    let page = run_in_graphiql(
        &env,
        &chromium,
        "mutation { forceCloseCircuitBreaker(name: \"openai\", reason: \"provider confirmed healthy\") { state } }",
        "DISABLED",
    )
    .await;
    assert!(page.contains("DISABLED"), "{page}");
    let now = s
        .ok(
            "{ circuitBreaker(name: \"openai\") { state } circuitBreakerTransitions(name: \"openai\", first: 1) { edges { node { toState actor reason } } } }",
            json!({}),
        )
        .await;
    assert_eq!(now["circuitBreaker"]["state"], "DISABLED", "{now}");
    let last = &now["circuitBreakerTransitions"]["edges"][0]["node"];
    assert_eq!(last["actor"], "user:admin", "{now}");
    assert_eq!(last["reason"], "provider confirmed healthy", "{now}");
    env.finish().await;
}

/// A pending prompt update approved from GraphiQL while another GraphiQL page watches
/// `governanceStatusChanged`: a developer proposes (the role requires approval), the
/// operator approves on a page (`APPLIED`, version 1), and the watching page shows the role's
/// status move to `DAILY_LIMIT_REACHED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_approves_a_prompt_update_while_watching_the_status() {
    let Some(chromium) =
        browser_ready("graphiql_approves_a_prompt_update_while_watching_the_status")
    else {
        return;
    };
    let env = Env::new(Profile::Embedded, "browser-governance")
        .await
        .expect("embedded profile");
    let s = &env.server;
    s.ok(
        "mutation { createUser(input: { username: \"dev\", password: \"a long password\", role: DEVELOPER }) { id } }",
        json!({}),
    )
    .await;
    let dev = s.login("dev", "a long password").await;
    let query = "subscription WatchGovernance { governanceStatusChanged(agentRole: \"scout\") { kind status { status pendingApprovals updatesInWindow currentVersion } } }";
    let mut node = open_graphiql(s, &chromium, query, "DAILY_LIMIT_REACHED");
    // Each round: the rule allows one more update today, the developer proposes, and the
    // operator approves on a page; until the watching page (subscribed once it has loaded and
    // its button was clicked) has seen the status reach the limit.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mut round = 0;
    let status = loop {
        if let Ok(Some(status)) = node.try_wait() {
            break status;
        }
        assert!(round < 6, "the page never showed the status move");
        round += 1;
        s.ok(
            "mutation($n: Int!) { configureGovernanceRule(input: { agentRole: \"scout\", maxUpdatesPerDay: $n, cooldownHours: 0, requireApproval: true }) { version } }",
            json!({ "n": round }),
        )
        .await;
        let proposed = s
            .gql_as(
                Some(&dev),
                "mutation($r: String!) { proposeLearningUpdate(input: { agentRole: \"scout\", promptUpdate: \"Report every finding with its evidence.\", rationale: \"reviews lacked evidence\", requestId: $r }) { id status } }",
                json!({ "r": format!("scout-{round}") }),
            )
            .await;
        let update = &proposed["data"]["proposeLearningUpdate"];
        assert_eq!(update["status"], "PENDING_APPROVAL", "{proposed}");
        let page = run_in_graphiql(
            &env,
            &chromium,
            &format!(
                "mutation ApproveUpdate {{ approveLearningUpdate(id: \"{}\", note: \"evidence matters\") {{ status promptVersion decidedBy }} }}",
                update["id"].as_str().unwrap()
            ),
            "APPLIED",
        )
        .await;
        assert!(page.contains("user:admin"), "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let stdout = page_output(node, status).await;
    assert!(stdout.contains("governanceStatusChanged"), "{stdout}");
    let prompt = s
        .gql_as(
            Some(&dev),
            "{ currentPrompt(agentRole: \"scout\") { version text approvedBy } }",
            json!({}),
        )
        .await;
    assert_eq!(
        prompt["data"]["currentPrompt"]["approvedBy"], "user:admin",
        "{prompt}"
    );
    assert_eq!(
        prompt["data"]["currentPrompt"]["text"],
        "Report every finding with its evidence."
    );
    env.finish().await;
}

/// The quality flow from GraphiQL: a move to review refused by the gates shows its plan;
/// agents report the gates and the task enters review; an operator page watches the peer
/// review reach quorum live while agents vote; the task moves on to deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_follows_a_task_through_gates_and_peer_review() {
    let Some(chromium) = browser_ready("graphiql_follows_a_task_through_gates_and_peer_review")
    else {
        return;
    };
    let env = Env::new(Profile::Embedded, "browser-quality")
        .await
        .expect("embedded profile");
    let s = &env.server;
    let id_of = |v: &serde_json::Value, field: &str| v[field]["id"].as_str().unwrap().to_owned();
    let agent = |name: String, role: &'static str| async move {
        let v = s
            .ok(
                "mutation($n: String!, $r: String!) { registerAgent(input: { name: $n, role: $r }) { id } }",
                json!({ "n": name, "r": role }),
            )
            .await;
        v["registerAgent"]["id"].as_str().unwrap().to_owned()
    };
    let author = agent("author".into(), "developer").await;
    let mut panel = Vec::new();
    for i in 0..8 {
        panel.push(agent(format!("critic-{i}"), "reviewer").await);
    }
    let task = id_of(
        &s.ok(
            "mutation { createTask(input: { title: \"cache the embeddings\" }) { id } }",
            json!({}),
        )
        .await,
        "createTask",
    );
    s.ok(
        "mutation($t: ID!, $a: ID!) { assignTask(taskId: $t, agentId: $a) { id } }",
        json!({ "t": task, "a": author }),
    )
    .await;
    let mv = "mutation($t: ID!, $s: TaskState!) { updateTaskState(id: $t, state: $s) { state } }";
    s.ok(mv, json!({ "t": task, "s": "IN_PROGRESS" })).await;
    let key = s
        .ok(
            "mutation { createApiKey(input: { name: \"fleet\", role: DEVELOPER }) { secret } }",
            json!({}),
        )
        .await["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    // The operator tries to send it to review: refused, with the gates that fail.
    let page = run_in_graphiql(
        &env,
        &chromium,
        &format!("mutation SendToReview {{ updateTaskState(id: \"{task}\", state: REVIEWING) {{ state }} }}"),
        "GATE_FAILED",
    )
    .await;
    assert!(page.contains("code_quality"), "{page}");
    let page = run_in_graphiql(
        &env,
        &chromium,
        &format!("{{ task(id: \"{task}\") {{ state remediationPlan {{ status actions {{ gate actionType priority agentRole }} }} }} }}"),
        "REFACTOR",
    )
    .await;
    assert!(
        page.contains("DOCUMENT") && page.contains("IMPROVE"),
        "{page}"
    );

    // Agents act and report; the task enters review; a panel of eight reviewers.
    for gate in [
        "code_quality",
        "has_documentation",
        "performance_ok",
        "has_tests",
    ] {
        s.gql_as(
            Some(&key),
            "mutation($t: ID!, $g: String!) { reportGateResult(input: { taskId: $t, gate: $g, passed: true, detail: \"done\" }) { gate } }",
            json!({ "t": task, "g": gate }),
        )
        .await;
    }
    s.ok(mv, json!({ "t": task, "s": "REVIEWING" })).await;
    let review = s
        .ok(
            "mutation($t: ID!, $who: [ID!]) { startPeerReview(input: { taskId: $t, quorum: 1, reviewers: $who, requestId: \"browser\" }) { id } }",
            json!({ "t": task, "who": panel }),
        )
        .await["startPeerReview"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The operator watches; agents vote one by one (unanimity: only the last vote passes
    // it, so a page that subscribes while the votes come in still sees the quorum reached).
    let watch = format!(
        "subscription WatchReview {{ peerReviewChanged(taskId: \"{task}\") {{ kind review {{ status score explanation }} }} }}"
    );
    let mut node = open_graphiql(s, &chromium, &watch, "PASSED");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for critic in &panel {
        let v = s
            .gql_as(
                Some(&key),
                "mutation($r: ID!, $a: ID!) { castReviewVote(input: { reviewId: $r, agentId: $a, decision: APPROVE, reasoning: \"well tested\", confidence: 1 }) { status } }",
                json!({ "r": review, "a": critic }),
            )
            .await;
        assert!(v.get("errors").is_none(), "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    }
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), node.wait())
        .await
        .expect("the page saw the review pass")
        .unwrap();
    let stdout = page_output(node, status).await;
    assert!(stdout.contains("peerReviewChanged"), "{stdout}");

    // security_approved came from the review: the task moves on.
    let page = run_in_graphiql(
        &env,
        &chromium,
        &format!(
            "mutation Deploy {{ updateTaskState(id: \"{task}\", state: DEPLOYING) {{ state }} }}"
        ),
        "DEPLOYING",
    )
    .await;
    assert!(!page.contains("GATE_FAILED"), "{page}");
    env.finish().await;
}

/// A run's output watched live in GraphiQL, then (a reload: a new page) resumed from the last
/// `nextOffset` the first page showed, to the run's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_watches_sandbox_output_and_resumes_after_a_reload() {
    let test = "graphiql_watches_sandbox_output_and_resumes_after_a_reload";
    let Some(chromium) = browser_ready(test) else {
        return;
    };
    if !common::sandbox::sandbox_or_skip(test, "runc").await {
        return;
    }
    let env = Env::new(Profile::Embedded, "browser-sandbox")
        .await
        .expect("embedded profile");
    let api = common::sandbox::Client::of(&env.server);
    let id = api
        .start(
            "python",
            "import time\nfor i in range(40):\n    print('tick', i, flush=True)\n    time.sleep(0.25)",
            json!({ "limits": { "timeoutMs": 40000 } }),
        )
        .await;
    let watch = |from: i64| {
        format!(
            "subscription WatchOutput {{ sandboxRunOutput(runId: \"{id}\", fromOffset: {from}) {{ offset nextOffset text done run {{ status }} }} }}"
        )
    };
    // Live: the page shows ticks as they are printed.
    let page = run_in_graphiql(&env, &chromium, &watch(0), "tick 3").await;
    let next: i64 = page
        .split("\"nextOffset\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '\n']).next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no nextOffset on the page: {page}"));
    assert!(
        next >= "tick 0\ntick 1\ntick 2\ntick 3\n".len() as i64,
        "{page}"
    );
    // Reloaded: from that offset to the end; the first delivery starts exactly there.
    let page = run_in_graphiql(&env, &chromium, &watch(next), "SUCCEEDED").await;
    assert!(page.contains("\"done\": true"), "{page}");
    let rest = api
        .follow(&id, next, None, std::time::Duration::from_secs(30))
        .await;
    assert!(rest.deliveries.first().is_some_and(|d| d["offset"] == next));
    let all = api.output_text(&id).await;
    assert_eq!(all.len() as i64, next + rest.bytes.len() as i64);
    env.finish().await;
}
