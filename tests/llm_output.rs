//! LLM output through the API, on both profiles: `validateLlmOutput` on model-like texts
//! (extraction, normalisation, repair with every fix listed), output kinds registered by an
//! administrator, and `submitTaskOutput`: a valid (or repaired) output completes its task,
//! one that stays invalid blocks it and opens an escalation carrying the errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, Profile, TestServer, error_code};
use serde_json::{Value, json};

const VALIDATE: &str = "query($k: String!, $t: String!) { validateLlmOutput(kind: $k, text: $t) { kind valid value errors { pointer message } fixes { pointer kind message from to } repaired source start end } }";
const SUBMIT: &str = "mutation($task: ID!, $k: String!, $t: String!, $r: String!) { submitTaskOutput(input: { taskId: $task, kind: $k, text: $t, requestId: $r }) { task { id state } output { id kind valid value errors { pointer message } fixes { kind } escalationId } escalation { id reason status } } }";

async fn validate(s: &TestServer, kind: &str, text: &str) -> Value {
    s.ok(VALIDATE, json!({ "k": kind, "t": text })).await["validateLlmOutput"].clone()
}

fn fix_kinds(v: &Value) -> Vec<String> {
    v["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn started_task(s: &TestServer, title: &str) -> Value {
    let id = s
        .ok(
            "mutation($t: String!) { createTask(input: { title: $t }) { id } }",
            json!({ "t": title }),
        )
        .await["createTask"]["id"]
        .clone();
    s.ok(
        "mutation($id: ID!) { updateTaskState(id: $id, state: IN_PROGRESS) { state } }",
        json!({ "id": id }),
    )
    .await;
    id
}

const SYNTHESIS_WITH_FAULTS: &str = "Here is my synthesis of the review round.\n\n```json\n{\n  \"reasoning\": \"  The tests fail because the fixture { and } handling is off.  \",\n  \"action_plan\": [\n    { \"priority\": \"150\", \"type\": \"FIX\", \"issue\": \"fixture parser drops braces\", \"agent\": \"developer\" },\n    { \"priority\": 3, \"type\": \"test\", \"issue\": \"add a regression test\", \"agent\": \"tester\" }\n  ]\n}\n```\n\nLet me know if you need more.";

async fn validation_and_kinds(profile: Profile, name: &str) {
    // A body cap above the text limit, so an oversized text reaches the resolver.
    let Some(env) = Env::with(profile, name, |c| c.max_body_bytes = 4 << 20).await else {
        return;
    };
    let s = &env.server;

    // Renamed, coerced, clamped, lowercased and trimmed; every fix listed.
    let v = validate(s, "SYNTHESIS", SYNTHESIS_WITH_FAULTS).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["repaired"], true, "{v}");
    assert_eq!(v["source"], "FENCE");
    let plan = &v["value"]["action_plan"][0];
    assert_eq!(plan["priority"], 100, "{v}");
    assert_eq!(plan["type"], "fix");
    assert_eq!(
        v["value"]["synthesis_reasoning"],
        "The tests fail because the fixture { and } handling is off."
    );
    let kinds = fix_kinds(&v);
    for k in ["RENAMED", "COERCED", "CLAMPED", "LOWERCASED", "TRIMMED"] {
        assert!(kinds.contains(&k.to_owned()), "{k} missing from {kinds:?}");
    }
    // The span points into the text as sent: the text was never rewritten.
    let (start, end) = (
        v["start"].as_u64().unwrap() as usize,
        v["end"].as_u64().unwrap() as usize,
    );
    let raw: Value = serde_json::from_str(&SYNTHESIS_WITH_FAULTS[start..end]).unwrap();
    assert_eq!(raw["action_plan"][0]["priority"], "150");

    // A pattern list with a missing optional field gets its default.
    let v = validate(
        s,
        "PATTERN",
        "Patterns found: [{\"pattern_type\": \"skill_gap\", \"root_cause\": \"no retries\", \"suggested_fix\": \"teach retries\", \"agents_involved\": [\"dev-1\"]}]",
    )
    .await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["source"], "ARRAY");
    assert_eq!(v["value"][0]["confidence"], 0.5);
    assert!(fix_kinds(&v).contains(&"DEFAULTED".to_owned()), "{v}");

    // Unfixable: errors with pointers, no value invented.
    let v = validate(
        s,
        "CONSENSUS",
        "{\"decision\": \"maybe\", \"confidence\": 0.4, \"reasoning\": \"unsure\", \"concerns\": []}",
    )
    .await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["errors"][0]["pointer"], "/decision", "{v}");
    let v = validate(s, "CONSENSUS", "I am sorry, I cannot answer that.").await;
    assert_eq!(v["valid"], false);
    assert_eq!(v["value"], Value::Null);
    assert_eq!(v["errors"][0]["pointer"], "");

    // Unknown kinds and oversized texts are input errors.
    let res = s.gql(VALIDATE, json!({ "k": "NOPE", "t": "{}" })).await;
    assert_eq!(error_code(&res), "BAD_USER_INPUT", "{res}");
    let res = s
        .gql(
            VALIDATE,
            json!({ "k": "CONSENSUS", "t": "x".repeat((1 << 20) + 1) }),
        )
        .await;
    assert_eq!(error_code(&res), "BAD_USER_INPUT", "{res}");
    assert_eq!(res["errors"][0]["extensions"]["field"], "text");

    // Administrators register kinds with their own schema.
    const REGISTER: &str = "mutation($n: String!, $s: JSON!) { registerLlmOutputKind(name: $n, description: \"a support ticket\", schema: $s) { name builtin } }";
    let bad = s
        .gql(REGISTER, json!({ "n": "TICKET", "s": { "type": 12 } }))
        .await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT", "{bad}");
    assert_eq!(bad["errors"][0]["extensions"]["field"], "schema");
    let schema = json!({
        "type": "object",
        "required": ["title", "urgent"],
        "properties": {
            "title": { "type": "string", "minLength": 3, "x-aurum-trim": true },
            "urgent": { "type": "boolean" }
        }
    });
    let made = s.ok(REGISTER, json!({ "n": "TICKET", "s": schema })).await;
    assert_eq!(made["registerLlmOutputKind"]["builtin"], false);
    let again = s.gql(REGISTER, json!({ "n": "TICKET", "s": schema })).await;
    assert_eq!(error_code(&again), "CONFLICT", "{again}");
    let builtin = s
        .gql(REGISTER, json!({ "n": "SYNTHESIS", "s": schema }))
        .await;
    assert_eq!(error_code(&builtin), "CONFLICT", "{builtin}");
    let v = validate(
        s,
        "TICKET",
        "{\"title\": \" Disk full \", \"urgent\": \"TRUE\"}",
    )
    .await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["value"], json!({ "title": "Disk full", "urgent": true }));
    let kinds = s.ok("{ llmOutputKinds { name builtin } }", json!({})).await;
    let names: Vec<&str> = kinds["llmOutputKinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["SYNTHESIS", "PATTERN", "CONSENSUS", "TICKET"]);
    let m = s.metrics().await;
    for (series, at_least) in [
        ("kind=\"SYNTHESIS\",outcome=\"repaired\"", 1.0),
        ("kind=\"CONSENSUS\",outcome=\"invalid\"", 2.0),
        ("kind=\"TICKET\",outcome=\"repaired\"", 1.0),
    ] {
        let name = format!("aurum_llm_validations_total{{{series}}}");
        assert!(common::metric_value(&m, &name) >= at_least, "{name}");
    }
    env.finish().await;
}

async fn task_outputs(profile: Profile, name: &str) {
    let Some(env) = Env::new(profile, name).await else {
        return;
    };
    let s = &env.server;

    // Repairable output completes the task; a replay answers the same.
    let task = started_task(s, "synthesise the review").await;
    let vars = json!({ "task": task, "k": "SYNTHESIS", "t": SYNTHESIS_WITH_FAULTS, "r": "out-1" });
    let done = s.ok(SUBMIT, vars.clone()).await["submitTaskOutput"].clone();
    assert_eq!(done["task"]["state"], "COMPLETED", "{done}");
    assert_eq!(done["output"]["valid"], true);
    assert_eq!(done["output"]["value"]["action_plan"][0]["priority"], 100);
    assert!(done["escalation"].is_null());
    let replay = s.ok(SUBMIT, vars).await["submitTaskOutput"].clone();
    assert_eq!(replay["output"]["id"], done["output"]["id"]);
    // A finished task takes no more output.
    let late = s
        .gql(
            SUBMIT,
            json!({ "task": task, "k": "SYNTHESIS", "t": SYNTHESIS_WITH_FAULTS, "r": "out-2" }),
        )
        .await;
    assert_eq!(error_code(&late), "CONFLICT", "{late}");

    // Output that stays invalid blocks the task and escalates with the errors.
    let task = started_task(s, "decide on the merge").await;
    let bad = s
        .ok(
            SUBMIT,
            json!({ "task": task, "k": "CONSENSUS", "t": "Verdict: {\"decision\": \"maybe\", \"confidence\": 2}", "r": "out-3" }),
        )
        .await["submitTaskOutput"]
        .clone();
    assert_eq!(bad["task"]["state"], "BLOCKED", "{bad}");
    assert_eq!(bad["output"]["valid"], false);
    let escalation = &bad["escalation"];
    assert_eq!(escalation["status"], "OPEN");
    assert_eq!(bad["output"]["escalationId"], escalation["id"]);
    let reason = escalation["reason"].as_str().unwrap();
    assert!(
        reason.contains("CONSENSUS") && reason.contains("/decision"),
        "{reason}"
    );
    let listed = s
        .ok(
            "query($t: ID!) { taskOutputs(taskId: $t) { id valid } tasks(state: BLOCKED) { totalCount } }",
            json!({ "t": task }),
        )
        .await;
    assert_eq!(listed["taskOutputs"][0]["id"], bad["output"]["id"]);
    assert_eq!(listed["tasks"]["totalCount"], 1);
    // Every submission is audited.
    let audit = s
        .ok(
            "{ auditLog(filter: { action: \"task.submit_output\" }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(audit["auditLog"]["totalCount"], 2, "{audit}");
    env.finish().await;
}

both_profiles!(validation_and_kinds, task_outputs);
