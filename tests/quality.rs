//! Quality gates, remediation plans, peer reviews and deadlock escalations through the API,
//! on both profiles: every default gate → plan row, the fallback and a configured mapping;
//! a refused move changes nothing but its plan, counts and audit entry; weighted votes with
//! the explainer's numbers; one vote per voter; rejection escalates; the task moves on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Env, Profile, TestServer, error_code};
use serde_json::{Value, json};

const MOVE: &str = "mutation($id: ID!, $s: TaskState!) { updateTaskState(id: $id, state: $s) { id state updatedAt } }";
const REPORT: &str = "mutation($t: ID!, $g: String!, $p: Boolean!, $d: String) { reportGateResult(input: { taskId: $t, gate: $g, passed: $p, detail: $d }) { gate passed detail refusalsInARow } }";
const CONFIGURE: &str = "mutation($i: ConfigureTaskGateInput!) { configureTaskGate(input: $i) { name targetStates actionType priority agentRole escalateAfter satisfiedByReview enabled configured } }";
const TASK: &str = "query($id: ID!) { task(id: $id) { state updatedAt gateResults { gate passed refusalsInARow reportedBy } remediationPlan { id status targetState actions { gate actionType priority agentRole status reason } } escalations { reason pattern suggestedFix severity } } }";
const PLANS: &str = "query($id: ID!) { remediationPlans(taskId: $id) { id status targetState supersededBy actions { gate actionType priority agentRole status doneBy } } }";
const START: &str = "mutation($t: ID!, $r: String!, $q: Float, $who: [ID!]) { startPeerReview(input: { taskId: $t, requestId: $r, quorum: $q, reviewers: $who }) { id status quorum totalWeight voters { label role weight } } }";
const VOTE: &str = "mutation($r: ID!, $a: ID, $d: ReviewDecision!, $c: Float!) { castReviewVote(input: { reviewId: $r, agentId: $a, decision: $d, reasoning: \"read the diff\", confidence: $c }) { id status score countedWeight missingWeight maxScore explanation voters { label contribution couldPassAlone decision } couldPassAlone { label } } }";

async fn task(s: &TestServer, title: &str) -> String {
    s.ok(
        "mutation($t: String!) { createTask(input: { title: $t }) { id } }",
        json!({ "t": title }),
    )
    .await["createTask"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn agent(s: &TestServer, name: &str, role: &str) -> String {
    s.ok(
        "mutation($n: String!, $r: String!) { registerAgent(input: { name: $n, role: $r }) { id } }",
        json!({ "n": name, "r": role }),
    )
    .await["registerAgent"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A task assigned to a new agent and IN_PROGRESS.
async fn working(s: &TestServer, title: &str, worker: &str) -> String {
    let t = task(s, title).await;
    let a = agent(s, worker, "developer").await;
    s.ok(
        "mutation($t: ID!, $a: ID!) { assignTask(taskId: $t, agentId: $a) { id } }",
        json!({ "t": t, "a": a }),
    )
    .await;
    s.ok(MOVE, json!({ "id": t, "s": "IN_PROGRESS" })).await;
    t
}

async fn report(s: &TestServer, t: &str, gate: &str, passed: bool) -> Value {
    s.ok(
        REPORT,
        json!({ "t": t, "g": gate, "p": passed, "d": "checked" }),
    )
    .await["reportGateResult"]
        .clone()
}

async fn show(s: &TestServer, t: &str) -> Value {
    s.ok(TASK, json!({ "id": t })).await["task"].clone()
}

fn actions(plan: &Value) -> Vec<(String, String, i64, String)> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["gate"].as_str().unwrap().to_owned(),
                a["actionType"].as_str().unwrap().to_owned(),
                a["priority"].as_i64().unwrap(),
                a["agentRole"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(gate: &str, action: &str, priority: i64, role: &str) -> (String, String, i64, String) {
    (gate.into(), action.into(), priority, role.into())
}

async fn audit_count(s: &TestServer, action: &str) -> i64 {
    s.ok(
        "query($a: String!) { auditLog(filter: { action: $a }) { totalCount } }",
        json!({ "a": action }),
    )
    .await["auditLog"]["totalCount"]
        .as_i64()
        .unwrap()
}

async fn gates_plans_and_the_fallback(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;

    // The prototype's gates and remediation table.
    let gates = s
        .ok("{ taskGates { name targetStates actionType priority agentRole satisfiedByReview configured } }", json!({}))
        .await["taskGates"]
        .clone();
    assert_eq!(
        gates,
        json!([
            { "name": "code_quality", "targetStates": ["REVIEWING"], "actionType": "REFACTOR", "priority": 2, "agentRole": "developer", "satisfiedByReview": false, "configured": false },
            { "name": "has_documentation", "targetStates": ["REVIEWING", "DEPLOYING"], "actionType": "DOCUMENT", "priority": 3, "agentRole": "developer", "satisfiedByReview": false, "configured": false },
            { "name": "has_tests", "targetStates": ["DEPLOYING"], "actionType": "TEST", "priority": 1, "agentRole": "tester", "satisfiedByReview": false, "configured": false },
            { "name": "performance_ok", "targetStates": ["REVIEWING", "DEPLOYING"], "actionType": "IMPROVE", "priority": 2, "agentRole": "developer", "satisfiedByReview": false, "configured": false },
            { "name": "security_approved", "targetStates": ["DEPLOYING"], "actionType": "REVIEW", "priority": 1, "agentRole": "reviewer", "satisfiedByReview": true, "configured": false },
        ])
    );

    // The move to review is refused: GATE_FAILED naming the gates, and a plan.
    let t = working(s, "ship the parser", "dev-a").await;
    let before = show(s, &t).await;
    let refused = s.gql(MOVE, json!({ "id": t, "s": "REVIEWING" })).await;
    assert_eq!(error_code(&refused), "GATE_FAILED", "{refused}");
    let ext = &refused["errors"][0]["extensions"];
    assert_eq!(
        ext["failingGates"],
        json!(["code_quality", "has_documentation", "performance_ok"])
    );
    assert_eq!(ext["targetState"], "REVIEWING");
    assert_eq!(ext["planCreated"], true);
    assert_eq!(ext["failures"][0]["why"], "no result reported");
    let after = show(s, &t).await;
    // Nothing changed but the plan (and the refusal counts): same state, same updatedAt.
    assert_eq!(after["state"], "IN_PROGRESS");
    assert_eq!(after["updatedAt"], before["updatedAt"]);
    let plan = after["remediationPlan"].clone();
    assert_eq!(plan["id"], ext["planId"]);
    assert_eq!(
        (plan["status"].as_str(), plan["targetState"].as_str()),
        (Some("ACTIVE"), Some("REVIEWING"))
    );
    assert_eq!(
        actions(&plan),
        vec![
            row("code_quality", "REFACTOR", 2, "developer"),
            row("performance_ok", "IMPROVE", 2, "developer"),
            row("has_documentation", "DOCUMENT", 3, "developer"),
        ]
    );
    for r in after["gateResults"].as_array().unwrap() {
        assert_eq!(r["passed"], Value::Null, "{r}");
        assert_eq!(r["refusalsInARow"], 1, "{r}");
    }
    assert_eq!(audit_count(s, "task.gate_refused").await, 1);
    assert!(after["escalations"].as_array().unwrap().is_empty());

    // A second refusal keeps the active plan (it is replaced only explicitly).
    let again = s.gql(MOVE, json!({ "id": t, "s": "REVIEWING" })).await;
    assert_eq!(again["errors"][0]["extensions"]["planCreated"], false);
    assert_eq!(again["errors"][0]["extensions"]["planId"], plan["id"]);

    // Agents act and report: each pass ticks off its action; the last resolves the plan.
    let failed = report(s, &t, "code_quality", false).await;
    assert_eq!(
        (
            failed["passed"].as_bool(),
            failed["refusalsInARow"].as_i64()
        ),
        (Some(false), Some(2))
    );
    for gate in ["code_quality", "has_documentation"] {
        let r = report(s, &t, gate, true).await;
        assert_eq!(
            (r["passed"].as_bool(), r["refusalsInARow"].as_i64()),
            (Some(true), Some(0))
        );
    }
    let still = show(s, &t).await["remediationPlan"].clone();
    let open: Vec<&str> = still["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "OPEN")
        .map(|a| a["gate"].as_str().unwrap())
        .collect();
    assert_eq!(open, ["performance_ok"]);
    let blocked = s.gql(MOVE, json!({ "id": t, "s": "REVIEWING" })).await;
    assert_eq!(
        blocked["errors"][0]["extensions"]["failingGates"],
        json!(["performance_ok"])
    );
    report(s, &t, "performance_ok", true).await;
    assert_eq!(show(s, &t).await["remediationPlan"], Value::Null);
    let moved = s.ok(MOVE, json!({ "id": t, "s": "REVIEWING" })).await;
    assert_eq!(moved["updateTaskState"]["state"], "REVIEWING");

    // Refused on the way to deployment: back to work, with the deploy gates' plan.
    let refused = s.gql(MOVE, json!({ "id": t, "s": "DEPLOYING" })).await;
    assert_eq!(error_code(&refused), "GATE_FAILED");
    assert_eq!(
        refused["errors"][0]["extensions"]["failingGates"],
        json!(["has_tests", "security_approved"])
    );
    let back = show(s, &t).await;
    assert_eq!(back["state"], "IN_PROGRESS");
    assert_eq!(
        actions(&back["remediationPlan"]),
        vec![
            row("has_tests", "TEST", 1, "tester"),
            row("security_approved", "REVIEW", 1, "reviewer")
        ]
    );

    // A configured mapping, and an explicit replacement that uses it.
    let configured = s
        .ok(CONFIGURE, json!({ "i": { "gate": "has_tests", "actionType": "FIX", "priority": 5, "agentRole": "qa" } }))
        .await["configureTaskGate"]
        .clone();
    assert_eq!(
        (
            configured["configured"].as_bool(),
            configured["targetStates"].clone()
        ),
        (Some(true), json!(["DEPLOYING"]))
    );
    let replaced = s
        .ok("mutation($t: ID!) { replaceRemediationPlan(taskId: $t, targetState: DEPLOYING) { id status actions { gate actionType priority agentRole } } }", json!({ "t": t }))
        .await["replaceRemediationPlan"]
        .clone();
    assert_eq!(
        actions(&replaced),
        vec![
            row("security_approved", "REVIEW", 1, "reviewer"),
            row("has_tests", "FIX", 5, "qa")
        ]
    );
    let plans = s.ok(PLANS, json!({ "id": t })).await["remediationPlans"].clone();
    assert_eq!(plans.as_array().unwrap().len(), 3, "{plans}");
    assert_eq!(plans[0]["id"], replaced["id"]);
    assert_eq!(
        (
            plans[1]["status"].as_str(),
            plans[1]["supersededBy"].clone()
        ),
        (Some("SUPERSEDED"), replaced["id"].clone())
    );
    assert_eq!(plans[2]["status"], "RESOLVED");
    assert!(
        plans[2]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "DONE" && a["doneBy"] == "user:admin")
    );

    // A gate outside the table gets the fallback: fix, priority 1, developer.
    let lint = s
        .ok(
            CONFIGURE,
            json!({ "i": { "gate": "lint_clean", "targetStates": ["COMPLETED"] } }),
        )
        .await["configureTaskGate"]
        .clone();
    assert_eq!(
        (
            lint["actionType"].as_str(),
            lint["priority"].as_i64(),
            lint["agentRole"].as_str()
        ),
        (Some("FIX"), Some(1), Some("developer"))
    );
    let other = working(s, "tidy the logs", "dev-b").await;
    let refused = s.gql(MOVE, json!({ "id": other, "s": "COMPLETED" })).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["failingGates"],
        json!(["lint_clean"])
    );
    assert_eq!(
        actions(&show(s, &other).await["remediationPlan"]),
        vec![row("lint_clean", "FIX", 1, "developer")]
    );

    // Bad input names the field and changes nothing.
    let all_gates = "{ taskGates { name targetStates actionType priority agentRole escalateAfter satisfiedByReview enabled } }";
    let snapshot = s.ok(all_gates, json!({})).await;
    for (input, field) in [
        (
            json!({ "gate": "has_tests", "targetStates": ["PENDING"] }),
            "targetStates",
        ),
        (
            json!({ "gate": "has_tests", "targetStates": [] }),
            "targetStates",
        ),
        (json!({ "gate": "has_tests", "priority": 0 }), "priority"),
        (
            json!({ "gate": "has_tests", "escalateAfter": -1 }),
            "escalateAfter",
        ),
        (
            json!({ "gate": "has_tests", "agentRole": "Q A" }),
            "agentRole",
        ),
        (json!({ "gate": "Has Tests" }), "gate"),
        (json!({ "gate": "brand_new" }), "targetStates"),
    ] {
        let res = s.gql(CONFIGURE, json!({ "i": input })).await;
        assert_eq!(error_code(&res), "BAD_USER_INPUT", "{input} {res}");
        assert_eq!(
            res["errors"][0]["extensions"]["field"], field,
            "{input} {res}"
        );
    }
    let unknown = s
        .gql(REPORT, json!({ "t": t, "g": "no_such_gate", "p": true }))
        .await;
    assert_eq!(
        unknown["errors"][0]["extensions"]["field"], "gate",
        "{unknown}"
    );
    assert_eq!(s.ok(all_gates, json!({})).await, snapshot);
    assert_eq!(audit_count(s, "task_gate.configure").await, 2);

    let metrics = s.metrics().await;
    assert!(
        common::metric_value(&metrics, "aurum_gate_failures_total{gate=\"code_quality\"}") >= 2.0,
        "{metrics}"
    );
    env.finish().await;
}

async fn repeated_refusals_escalate(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    s.ok(
        CONFIGURE,
        json!({ "i": { "gate": "has_documentation", "escalateAfter": 0 } }),
    )
    .await;
    let t = working(s, "flaky work", "dev-c").await;
    report(s, &t, "code_quality", false).await;
    for _ in 0..4 {
        let r = s.gql(MOVE, json!({ "id": t, "s": "REVIEWING" })).await;
        assert_eq!(error_code(&r), "GATE_FAILED");
    }
    // The third refusal in a row escalated each gate once: a gate whose results fail is a
    // skill gap, one nobody reports a process issue; escalateAfter 0 never escalates.
    let escalations = show(s, &t).await["escalations"].clone();
    let mut patterns: Vec<(String, bool)> = escalations
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pattern"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().contains("3 times"),
            )
        })
        .collect();
    patterns.sort();
    assert_eq!(
        patterns,
        vec![
            ("PROCESS_ISSUE".to_owned(), true),
            ("SKILL_GAP".to_owned(), true)
        ],
        "{escalations}"
    );
    let skill = escalations
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pattern"] == "SKILL_GAP")
        .unwrap();
    assert!(
        skill["reason"].as_str().unwrap().contains("code_quality"),
        "{skill}"
    );
    assert!(
        skill["suggestedFix"]
            .as_str()
            .unwrap()
            .contains("developer"),
        "{skill}"
    );
    assert_eq!(skill["severity"], "HIGH");
    // A pass resets the count.
    report(s, &t, "code_quality", true).await;
    let results = show(s, &t).await["gateResults"].clone();
    let cq = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["gate"] == "code_quality")
        .unwrap();
    assert_eq!(cq["refusalsInARow"], 0);
    env.finish().await;
}

/// A task in REVIEWING (its review gates reported passed) and its panel's agent ids.
async fn reviewing(s: &TestServer, title: &str, worker: &str) -> String {
    let t = working(s, title, worker).await;
    for gate in ["code_quality", "has_documentation", "performance_ok"] {
        report(s, &t, gate, true).await;
    }
    s.ok(MOVE, json!({ "id": t, "s": "REVIEWING" })).await;
    t
}

async fn weighted_review_passes_and_the_task_moves_on(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    let sec = agent(s, "sec", "security").await;
    let rev = agent(s, "rev", "reviewer").await;
    let dev = agent(s, "dev", "developer").await;
    let tst = agent(s, "tst", "tester").await;
    let t = reviewing(s, "add the cache", "author").await;
    let key = s
        .ok(
            "mutation { createApiKey(input: { name: \"fleet\", role: DEVELOPER }) { secret } }",
            json!({}),
        )
        .await["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    // Panel: every agent but the author, weighted by role (4.75 in all).
    let started = s.ok(START, json!({ "t": t, "r": "review-1" })).await["startPeerReview"].clone();
    let id = started["id"].clone();
    assert_eq!(started["status"], "OPEN");
    assert_eq!(started["totalWeight"], 4.75);
    assert_eq!(
        started["voters"],
        json!([
            { "label": "dev", "role": "developer", "weight": 1.0 },
            { "label": "rev", "role": "reviewer", "weight": 1.25 },
            { "label": "sec", "role": "security", "weight": 1.5 },
            { "label": "tst", "role": "tester", "weight": 1.0 },
        ])
    );
    let replay = s.ok(START, json!({ "t": t, "r": "review-1" })).await["startPeerReview"].clone();
    assert_eq!(replay["id"], id);
    let second = s.gql(START, json!({ "t": t, "r": "review-2" })).await;
    assert_eq!(error_code(&second), "CONFLICT", "{second}");

    // An operator watches it live.
    let mut ws = s.ws("graphql-transport-ws").await;
    ws.subscribe(
        "review",
        "subscription($id: ID!) { peerReviewChanged(reviewId: $id) { kind review { status score explanation } } }",
        json!({ "id": id }),
    )
    .await;

    let vote = |agent: &str, d: &str, c: f64| json!({ "r": id, "a": agent, "d": d, "c": c });
    s.gql_as(Some(&key), VOTE, vote(&sec, "APPROVE", 1.0)).await;
    let after_two =
        s.gql_as(Some(&key), VOTE, vote(&rev, "APPROVE", 1.0)).await["data"]["castReviewVote"]
            .clone();
    // 2.75 / 4.75; either remaining seat (weight 1) would take it to 3.75 / 4.75 ≥ 0.75.
    assert!(
        (after_two["score"].as_f64().unwrap() - 2.75 / 4.75).abs() < 1e-9,
        "{after_two}"
    );
    assert!((after_two["missingWeight"].as_f64().unwrap() - (0.75 * 4.75 - 2.75)).abs() < 1e-9);
    assert_eq!(
        after_two["couldPassAlone"],
        json!([{ "label": "dev" }, { "label": "tst" }])
    );
    assert_eq!(after_two["status"], "OPEN");
    assert!(
        after_two["explanation"]
            .as_str()
            .unwrap()
            .contains("could pass it alone: dev"),
        "{after_two}"
    );

    // One vote per voter; only the panel votes; API keys name their agent; bad input.
    let twice = s.gql_as(Some(&key), VOTE, vote(&rev, "REJECT", 1.0)).await;
    assert_eq!(error_code(&twice), "CONFLICT", "{twice}");
    let author = s
        .ok(
            "{ agents(role: \"developer\") { edges { node { id name } } } }",
            json!({}),
        )
        .await;
    let author_id = author["agents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["name"] == "author")
        .unwrap()["node"]["id"]
        .clone();
    let outsider = s
        .gql_as(
            Some(&key),
            VOTE,
            json!({ "r": id, "a": author_id, "d": "APPROVE", "c": 1.0 }),
        )
        .await;
    assert_eq!(
        (
            error_code(&outsider).as_str(),
            outsider["errors"][0]["extensions"]["field"].as_str()
        ),
        ("BAD_USER_INPUT", Some("agentId")),
        "{outsider}"
    );
    let no_agent = s
        .gql_as(
            Some(&key),
            VOTE,
            json!({ "r": id, "d": "APPROVE", "c": 1.0 }),
        )
        .await;
    assert_eq!(
        no_agent["errors"][0]["extensions"]["field"], "agentId",
        "{no_agent}"
    );
    let sure = s.gql_as(Some(&key), VOTE, vote(&dev, "APPROVE", 1.5)).await;
    assert_eq!(
        sure["errors"][0]["extensions"]["field"], "confidence",
        "{sure}"
    );

    // The third approval reaches the quorum: passed, once.
    let passed =
        s.gql_as(Some(&key), VOTE, vote(&dev, "APPROVE", 1.0)).await["data"]["castReviewVote"]
            .clone();
    assert_eq!(passed["status"], "PASSED", "{passed}");
    let late = s.gql_as(Some(&key), VOTE, vote(&tst, "REJECT", 1.0)).await;
    assert_eq!(error_code(&late), "CONFLICT");
    let mut kinds = Vec::new();
    while kinds.last().map(String::as_str) != Some("COMPLETED") {
        let e = ws.next_data("review", Duration::from_secs(10)).await;
        let change = &e["data"]["peerReviewChanged"];
        kinds.push(change["kind"].as_str().unwrap().to_owned());
        if change["kind"] == "COMPLETED" {
            assert_eq!(change["review"]["status"], "PASSED");
            assert!(
                change["review"]["explanation"]
                    .as_str()
                    .unwrap()
                    .starts_with("passed")
            );
        }
    }
    assert_eq!(kinds, ["VOTED", "VOTED", "COMPLETED"]);
    assert_eq!(audit_count(s, "review.complete").await, 1);

    // The passed review satisfied security_approved; tests pass; the task ships.
    let results = show(s, &t).await["gateResults"].clone();
    let sa = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["gate"] == "security_approved")
        .unwrap()
        .clone();
    assert_eq!(
        (sa["passed"].as_bool(), sa["reportedBy"].clone()),
        (
            Some(true),
            json!(format!("review:{}", id.as_str().unwrap()))
        )
    );
    report(s, &t, "has_tests", true).await;
    s.ok(MOVE, json!({ "id": t, "s": "DEPLOYING" })).await;
    assert_eq!(
        s.ok(MOVE, json!({ "id": t, "s": "COMPLETED" })).await["updateTaskState"]["state"],
        "COMPLETED"
    );

    // A person on the panel votes as themself; a rejected review escalates AGENT_CONFLICT.
    let person = s
        .ok("mutation { createUser(input: { username: \"carol\", password: \"a long password\", role: DEVELOPER }) { id } }", json!({}))
        .await["createUser"]["id"]
        .clone();
    let carol = s.login("carol", "a long password").await;
    let t2 = reviewing(s, "rewrite the scheduler", "author-2").await;
    let review = s
        .ok(
            START,
            json!({ "t": t2, "r": "review-3", "q": 0.5, "who": [sec, rev, person] }),
        )
        .await["startPeerReview"]
        .clone();
    assert_eq!(review["totalWeight"], 4.75, "{review}");
    let as_agent = s
        .gql_as(
            Some(&key),
            VOTE,
            json!({ "r": review["id"], "a": person, "d": "APPROVE", "c": 1.0 }),
        )
        .await;
    assert_eq!(
        as_agent["errors"][0]["extensions"]["field"], "agentId",
        "a key cannot fill a person's seat: {as_agent}"
    );
    let by_person = s
        .gql_as(
            Some(&carol),
            VOTE,
            json!({ "r": review["id"], "d": "REJECT", "c": 0.9 }),
        )
        .await;
    assert_eq!(
        by_person["data"]["castReviewVote"]["status"], "OPEN",
        "{by_person}"
    );
    let rejected = s
        .gql_as(
            Some(&key),
            VOTE,
            json!({ "r": review["id"], "a": sec, "d": "REJECT", "c": 1.0 }),
        )
        .await["data"]["castReviewVote"]
        .clone();
    // carol (human, 2) rejecting leaves at best 2.75 / 4.75 = 0.58 ≥ 0.5; with security
    // (1.5) rejecting too, at best 1.25 / 4.75 = 0.26 < 0.5.
    assert_eq!(rejected["status"], "REJECTED", "{rejected}");
    let shown = show(s, &t2).await;
    let conflict = shown["escalations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pattern"] == "AGENT_CONFLICT")
        .expect("escalated")
        .clone();
    assert!(
        conflict["suggestedFix"].as_str().unwrap().contains("carol"),
        "{conflict}"
    );
    let sa = shown["gateResults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["gate"] == "security_approved")
        .unwrap()
        .clone();
    assert_eq!(sa["passed"], false);
    let list = s
        .ok(
            "query($t: ID!) { peerReviews(taskId: $t) { totalCount edges { node { status } } } }",
            json!({ "t": t2 }),
        )
        .await;
    assert_eq!(list["peerReviews"]["totalCount"], 1);

    // Sent back to work while its review is open: the review is withdrawn, its votes stop
    // counting, and the next round of review starts afresh.
    let t3 = reviewing(s, "tune the index", "author-3").await;
    let open = s.ok(START, json!({ "t": t3, "r": "review-4" })).await["startPeerReview"].clone();
    s.gql_as(
        Some(&key),
        VOTE,
        json!({ "r": open["id"], "a": sec, "d": "APPROVE", "c": 1.0 }),
    )
    .await;
    s.ok(MOVE, json!({ "id": t3, "s": "IN_PROGRESS" })).await;
    let withdrawn = s
        .ok(
            "query($id: ID!) { peerReview(id: $id) { status completedAt } }",
            json!({ "id": open["id"] }),
        )
        .await["peerReview"]
        .clone();
    assert_eq!(withdrawn["status"], "WITHDRAWN", "{withdrawn}");
    let stale = s
        .gql_as(
            Some(&key),
            VOTE,
            json!({ "r": open["id"], "a": rev, "d": "APPROVE", "c": 1.0 }),
        )
        .await;
    assert_eq!(error_code(&stale), "CONFLICT", "{stale}");
    assert_eq!(audit_count(s, "review.withdraw").await, 1);
    s.ok(MOVE, json!({ "id": t3, "s": "REVIEWING" })).await;
    let again = s.ok(START, json!({ "t": t3, "r": "review-5" })).await["startPeerReview"].clone();
    assert_eq!(again["status"], "OPEN");

    let metrics = s.metrics().await;
    assert!(common::metric_value(&metrics, "aurum_peer_reviews_total{outcome=\"passed\"}") >= 1.0);
    assert!(
        common::metric_value(&metrics, "aurum_peer_reviews_total{outcome=\"rejected\"}") >= 1.0
    );
    env.finish().await;
}

async fn tenants_keep_to_their_own(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;
    s.ok(
        "mutation { createUser(input: { username: \"acme-ops\", password: \"a long password\", role: OPERATOR, tenantId: \"acme\" }) { id } }",
        json!({}),
    )
    .await;
    let acme = s.login("acme-ops", "a long password").await;
    // Gates and weights are the fleet's: a tenant's operator may not change them.
    let gate = s
        .gql_as(
            Some(&acme),
            CONFIGURE,
            json!({ "i": { "gate": "has_tests", "priority": 9 } }),
        )
        .await;
    assert_eq!(error_code(&gate), "FORBIDDEN", "{gate}");
    let weight = s
        .gql_as(
            Some(&acme),
            "mutation { configureReviewWeight(agentRole: \"tester\", weight: 9) { weight } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&weight), "FORBIDDEN", "{weight}");
    // A fleet task's review is invisible to the tenant; a tenant task's panel is the
    // tenant's own agents.
    agent(s, "fleet-critic", "reviewer").await;
    let fleet = reviewing(s, "fleet work", "fleet-author").await;
    let review = s
        .ok(START, json!({ "t": fleet, "r": "fleet-review" }))
        .await["startPeerReview"]["id"]
        .clone();
    let hidden = s
        .gql_as(
            Some(&acme),
            "query($id: ID!) { peerReview(id: $id) { id } }",
            json!({ "id": review }),
        )
        .await;
    assert_eq!(error_code(&hidden), "NOT_FOUND", "{hidden}");
    let report_other = s
        .gql_as(
            Some(&acme),
            REPORT,
            json!({ "t": fleet, "g": "has_tests", "p": true }),
        )
        .await;
    assert_eq!(error_code(&report_other), "NOT_FOUND", "{report_other}");
    let as_acme = |q: &'static str, v: Value| {
        let acme = acme.clone();
        async move { s.gql_as(Some(&acme), q, v).await["data"].clone() }
    };
    let mine = as_acme(
        "mutation { createTask(input: { title: \"acme work\" }) { id } }",
        json!({}),
    )
    .await["createTask"]["id"]
        .clone();
    let a = as_acme(
        "mutation { registerAgent(input: { name: \"acme-author\", role: \"developer\" }) { id } }",
        json!({}),
    )
    .await["registerAgent"]["id"]
        .clone();
    as_acme(
        "mutation { registerAgent(input: { name: \"acme-critic\", role: \"security\" }) { id } }",
        json!({}),
    )
    .await;
    as_acme(
        "mutation($t: ID!, $a: ID!) { assignTask(taskId: $t, agentId: $a) { id } }",
        json!({ "t": mine, "a": a }),
    )
    .await;
    as_acme(MOVE, json!({ "id": mine, "s": "IN_PROGRESS" })).await;
    for gate in ["code_quality", "has_documentation", "performance_ok"] {
        as_acme(REPORT, json!({ "t": mine, "g": gate, "p": true })).await;
    }
    as_acme(MOVE, json!({ "id": mine, "s": "REVIEWING" })).await;
    let started = s
        .gql_as(Some(&acme), START, json!({ "t": mine, "r": "acme-review" }))
        .await;
    assert_eq!(
        started["data"]["startPeerReview"]["voters"],
        json!([{ "label": "acme-critic", "role": "security", "weight": 1.5 }]),
        "{started}"
    );
    env.finish().await;
}

both_profiles!(
    gates_plans_and_the_fallback,
    repeated_refusals_escalate,
    weighted_review_passes_and_the_task_moves_on,
    tenants_keep_to_their_own,
);
