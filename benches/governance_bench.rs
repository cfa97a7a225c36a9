//! Governance and LLM-output benchmark: `cargo bench --bench governance-bench` (optimised
//! build). Needs PostgreSQL (`AURUM_BENCH_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432`): it creates a fresh database, runs the real `aurum`
//! binary on it as a separate process, and measures, against a baseline taken in the same
//! run:
//!
//! a) `proposeLearningUpdate` per second through GraphQL (one keep-alive connection per
//!    client) against the same transaction — the same `GovernanceService::propose` — called
//!    in-process on the same database at the same concurrency; once on one hot role and once
//!    spread over 200 roles. The roles require approval, so every proposal is written (role
//!    lock, history, idempotency key, update row, audit row, event) and none is refused by
//!    the daily limit however many run.
//! b) `validateLlmOutput` throughput (MB of model text per second) through GraphQL against
//!    parsing (serde_json) and validating (jsonschema, the same compiled schema) the same
//!    documents in-process; and, for scale, Aurum's whole in-process path (extraction,
//!    normalisation, validation) on them, and the ceiling of the ratio here: the same
//!    requests through GraphQL with a malformed kind name, refused before the text is
//!    read (the cost of carrying the text: HTTP, the JSON body, the GraphQL request).
//!
//! The sides take turns over several rounds after a warm-up; ratios are of mean rates, with
//! each round's ratio as a range. Any response with errors fails the run. Goals (issue #18):
//! (a) ≥ 0.7×, (b) ≥ 0.8×.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aurum::{
    auth::{Caller, Principal, RequestMeta, permission::Role},
    events::Bus,
    governance::service::{GovernanceService, Proposal},
    llm::{check, service::validate_with},
};
use common::{Sender, connect, login, spawn_server};
use serde_json::{Value, json};

const CLIENTS: usize = 4;
const PHASE: Duration = Duration::from_secs(3);
const WARM_UP: Duration = Duration::from_secs(1);
const ROUNDS: usize = 4;
const ROLES: usize = 200;

const PROPOSE: &str = "mutation($role: String!, $text: String!, $r: String!) { proposeLearningUpdate(input: { agentRole: $role, promptUpdate: $text, rationale: \"benchmark\", requestId: $r }) { id status } }";
const VALIDATE: &str =
    "query($t: String!) { validateLlmOutput(kind: \"SYNTHESIS\", text: $t) { valid } }";
const CARRY: &str = "query($t: String!) { validateLlmOutput(kind: \"-\", text: $t) { valid } }";

struct Aurum {
    addr: String,
    auth: hyper::header::HeaderValue,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Graphql,
    Direct,
    /// (b) only: Aurum's own extraction + normalisation + validation, in-process.
    Pipeline,
    /// (b) only: the same request through GraphQL with a malformed kind name, refused
    /// before the text is read: what carrying the text costs (the ceiling of (b) here).
    Transport,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    HotRole,
    Spread,
    Validate,
}

#[derive(Clone)]
struct Ctx {
    s: Arc<Aurum>,
    svc: GovernanceService,
    meta: Arc<RequestMeta>,
    doc: Arc<String>,
    failed: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
}

fn role(load: Load, n: u64) -> String {
    match load {
        Load::Spread => format!("bench-{}", n % ROLES as u64),
        _ => "bench-hot".into(),
    }
}

/// One client of `side` under `load` until `stop`; counts operations (or bytes, for (b)).
async fn client(ctx: Ctx, side: Side, load: Load, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut sender: Option<Sender> = match side {
        Side::Graphql | Side::Transport => Some(connect(&ctx.s.addr).await),
        _ => None,
    };
    let schema = check::builtin("SYNTHESIS").unwrap();
    let span = aurum::llm::extract::extract(&ctx.doc).unwrap().span;
    while !stop.load(Ordering::Relaxed) {
        let n = ctx.seq.fetch_add(1, Ordering::Relaxed);
        let ok = match (side, load) {
            (Side::Graphql, Load::Validate) => {
                let r = common::post_graphql(
                    sender.as_mut().unwrap(),
                    &ctx.s.addr,
                    &ctx.s.auth,
                    &json!({ "query": VALIDATE, "variables": { "t": *ctx.doc } }),
                )
                .await;
                r["data"]["validateLlmOutput"]["valid"] == true
            }
            (Side::Transport, _) => {
                let r = common::post_graphql(
                    sender.as_mut().unwrap(),
                    &ctx.s.addr,
                    &ctx.s.auth,
                    &json!({ "query": CARRY, "variables": { "t": *ctx.doc } }),
                )
                .await;
                r["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
            }
            (Side::Graphql, _) => {
                let r = common::post_graphql(
                    sender.as_mut().unwrap(),
                    &ctx.s.addr,
                    &ctx.s.auth,
                    &json!({ "query": PROPOSE, "variables": {
                        "role": role(load, n), "text": format!("prompt {n}"), "r": format!("g-{n}")
                    } }),
                )
                .await;
                r["data"]["proposeLearningUpdate"]["status"] == "PENDING_APPROVAL"
            }
            (Side::Direct, Load::Validate) => {
                let value: Value = serde_json::from_str(&ctx.doc[span.clone()]).unwrap();
                let valid = schema.validate(&value).is_empty();
                tokio::task::yield_now().await;
                valid
            }
            (Side::Pipeline, _) => {
                let valid = validate_with("SYNTHESIS", schema, &ctx.doc).valid;
                tokio::task::yield_now().await;
                valid
            }
            (Side::Direct, _) => {
                let p = Proposal {
                    agent_role: role(load, n),
                    agent_id: None,
                    task_id: None,
                    prompt_update: format!("prompt {n}"),
                    rationale: "benchmark".into(),
                    request_id: format!("d-{n}"),
                };
                match ctx.svc.propose(&ctx.meta, p).await {
                    Ok(u) => u.status == entity::learning_update::LearningStatus::PendingApproval,
                    Err(e) => {
                        eprintln!("direct: {e:?}");
                        false
                    }
                }
            }
        };
        if !ok {
            ctx.failed.store(true, Ordering::Relaxed);
            eprintln!("{side:?} failed");
            return;
        }
        done.fetch_add(
            if load == Load::Validate {
                ctx.doc.len() as u64
            } else {
                1
            },
            Ordering::Relaxed,
        );
    }
}

/// Operations (or bytes) per second of `side` under `load` over `length`.
async fn phase(ctx: &Ctx, side: Side, load: Load, length: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client(
                ctx.clone(),
                side,
                load,
                Arc::clone(&stop),
                Arc::clone(&done),
            ))
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Rounds of `sides` taking turns; mean rate of each side and the range of the first side's
/// ratio to the second's.
async fn compare(ctx: &Ctx, load: Load, sides: &[Side]) -> (Vec<f64>, f64, f64) {
    for side in sides {
        phase(ctx, *side, load, WARM_UP).await;
    }
    let mut rates = vec![Vec::new(); sides.len()];
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let mut got = vec![0.0; sides.len()];
        for k in 0..sides.len() {
            let i = (k + round) % sides.len();
            got[i] = phase(ctx, sides[i], load, PHASE).await;
            rates[i].push(got[i]);
        }
        ratios.push(got[0] / got[1]);
    }
    ratios.sort_by(f64::total_cmp);
    let means = rates
        .iter()
        .map(|v| v.iter().sum::<f64>() / v.len() as f64)
        .collect();
    (means, ratios[0], ratios[ratios.len() - 1])
}

/// A model answer like the ones agents submit: prose around a fenced SYNTHESIS of 40 items.
fn document() -> String {
    let plan: Vec<Value> = (0..40)
        .map(|i| {
            let kind = ["fix", "improve", "refactor", "test"][i % 4];
            json!({
                "priority": (i % 100) + 1,
                "type": kind,
                "issue": format!("step {i}: the retry loop in module {i} drops the last error {{code}} and \"quotes\"; handle it and add a regression test covering the edge case"),
                "agent": format!("agent-{}", i % 7),
            })
        })
        .collect();
    let value = json!({
        "synthesis_reasoning": "Across the last review round the failures cluster around error handling: retries lose context, and tests do not cover the edge cases. ".repeat(4),
        "action_plan": plan,
    });
    format!(
        "Here is the synthesis you asked for. I looked at every report.\n\n```json\n{}\n```\n\nLet me know if the plan needs another pass.",
        serde_json::to_string_pretty(&value).unwrap()
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if !runtime.block_on(bench()) {
        eprintln!("governance benchmark saw failures");
        std::process::exit(1);
    }
}

async fn bench() -> bool {
    let pg = std::env::var("AURUM_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let (admin, db_url, name) = common::fresh_database(&pg, "aurum_gbench").await;
    let ok = measure(&db_url).await;
    common::drop_database(&admin, &name).await;
    ok
}

async fn measure(db_url: &str) -> bool {
    let (mut child, addr) = spawn_server(
        &[
            ("AURUM_DATABASE_URL", db_url),
            (
                "AURUM_JWT_SECRET",
                "governance-bench-secret-0123456789abcdefgh",
            ),
        ],
        None,
    );
    let token = login(&addr).await;
    let s = Arc::new(Aurum {
        auth: hyper::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        addr,
    });
    let mut sender = connect(&s.addr).await;
    for r in std::iter::once("bench-hot".to_owned()).chain((0..ROLES).map(|i| format!("bench-{i}")))
    {
        let res = common::post_graphql(
            &mut sender,
            &s.addr,
            &s.auth,
            &json!({ "query": "mutation($r: String!) { configureGovernanceRule(input: { agentRole: $r, requireApproval: true }) { version } }", "variables": { "r": r } }),
        )
        .await;
        assert!(res.get("errors").is_none(), "{res}");
    }
    let admin_id: uuid::Uuid = {
        let db = sea_orm::Database::connect(db_url).await.unwrap();
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        entity::user::Entity::find()
            .filter(entity::user::Column::Username.eq("admin"))
            .one(&db)
            .await
            .unwrap()
            .unwrap()
            .id
    };
    // The in-process side opens its pool as the server does (`infra::db::connect`, default
    // configuration) and writes its events through the same outbox.
    let mut config = aurum::config::Config::from_env().unwrap();
    config.database_url = aurum::config::ServiceUrl::new(db_url);
    let (db, _) = aurum::infra::db::connect(&config).await.unwrap();
    let bus = Bus::database(
        db.clone(),
        config.bus_options(),
        aurum::infra::shutdown::Shutdown::new(),
    )
    .await
    .unwrap();
    let ctx = Ctx {
        s,
        svc: GovernanceService::new(db, bus),
        meta: Arc::new(RequestMeta {
            caller: Caller::User {
                id: admin_id,
                username: "admin".into(),
                role: Role::Admin,
                tenant: None,
                token: None,
                principal: Principal::Person,
            },
            request_id: "bench".into(),
            client: None,
        }),
        doc: Arc::new(document()),
        failed: Arc::new(AtomicBool::new(false)),
        seq: Arc::new(AtomicU64::new(0)),
    };

    println!("(a) proposeLearningUpdate, {CLIENTS} clients per side, {ROUNDS} rounds of {PHASE:?}");
    for (load, label) in [(Load::HotRole, "one hot role"), (Load::Spread, "200 roles")] {
        let (m, lo, hi) = compare(&ctx, load, &[Side::Graphql, Side::Direct]).await;
        println!(
            "  {label}: GraphQL {:.0}/s   the same transaction in-process {:.0}/s   ratio {:.3}× (rounds {lo:.3} … {hi:.3}; goal ≥ 0.7×)",
            m[0],
            m[1],
            m[0] / m[1]
        );
    }
    println!(
        "(b) validateLlmOutput, a {} byte SYNTHESIS answer, {CLIENTS} clients per side",
        ctx.doc.len()
    );
    let (m, lo, hi) = compare(
        &ctx,
        Load::Validate,
        &[Side::Graphql, Side::Direct, Side::Pipeline, Side::Transport],
    )
    .await;
    let mb = |b: f64| b / 1e6;
    println!(
        "  GraphQL {:.1} MB/s   serde_json + jsonschema in-process {:.1} MB/s   ratio {:.3}× (rounds {lo:.3} … {hi:.3}; goal ≥ 0.8×)",
        mb(m[0]),
        mb(m[1]),
        m[0] / m[1]
    );
    println!(
        "  Aurum's in-process path (extract + normalise + validate): {:.1} MB/s ({:.3}× of parse + validate)",
        mb(m[2]),
        m[2] / m[1]
    );
    println!(
        "  the same requests refused before the text is read (GraphQL carrying it, nothing else): {:.1} MB/s ({:.3}× of parse + validate; GraphQL validation is {:.3}× of it)",
        mb(m[3]),
        m[3] / m[1],
        m[0] / m[3]
    );
    let _ = child.kill();
    let _ = child.wait();
    !ctx.failed.load(Ordering::Relaxed)
}
