//! Budget test helpers: the operations the budget tests send, and the ledger replay every
//! scenario ends with.

use std::{collections::HashMap, time::Duration};

use entity::{budget, budget_reservation, budget_transaction};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr,
};
use serde_json::{Value, json};

use super::TestServer;

pub const CREATE: &str = "mutation($t: String!, $p: String!, $total: Int!, $period: BudgetPeriod, $th: [Int!]) { createBudget(input: { tenantId: $t, projectId: $p, total: $total, period: $period, alertThresholds: $th }) { id tenantId projectId total used reserved available period alertThresholds version } }";
pub const RESERVE: &str = "mutation($t: String!, $p: String!, $a: Int!, $r: String!, $ttl: Int, $m: String) { reserveBudget(input: { tenantId: $t, projectId: $p, amount: $a, requestId: $r, ttlSeconds: $ttl, model: $m }) { id budgetId amount actualAmount status expiresAt model requestId createdAt resolvedAt } }";
pub const COMMIT: &str = "mutation($id: ID!, $a: Int!, $r: String!) { commitBudget(input: { reservationId: $id, actualAmount: $a, requestId: $r }) { id amount actualAmount status resolvedAt } }";
pub const RELEASE: &str = "mutation($id: ID!, $r: String!) { releaseBudget(input: { reservationId: $id, requestId: $r }) { id amount status resolvedAt } }";
pub const STATE: &str = "query($t: String!, $p: String!) { budgetState(tenantId: $t, projectId: $p) { budgetId total used reserved available } }";

/// POSTs one operation and returns the raw response body.
pub async fn post_raw(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    query: &str,
    variables: &Value,
) -> Result<String, reqwest::Error> {
    let mut req = client.post(format!("{base}/graphql"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.json(&json!({ "query": query, "variables": variables }))
        .timeout(Duration::from_secs(20))
        .send()
        .await?
        .text()
        .await
}

pub async fn create(s: &TestServer, tenant: &str, project: &str, total: i64) -> String {
    s.ok(CREATE, json!({ "t": tenant, "p": project, "total": total }))
        .await["createBudget"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn state(s: &TestServer, tenant: &str, project: &str) -> Value {
    s.ok(STATE, json!({ "t": tenant, "p": project })).await["budgetState"].clone()
}

pub fn triple(v: &Value) -> (i64, i64, i64) {
    (
        v["total"].as_i64().unwrap(),
        v["used"].as_i64().unwrap(),
        v["reserved"].as_i64().unwrap(),
    )
}

/// Replays the ledger of every budget: versions form one chain from 1, each row's deltas
/// lead from the previous row's state to its own, the last row equals the budget row, and
/// `reserved` equals the sum of live reservations. Returns the budgets.
pub async fn assert_ledger_replays(db: &DatabaseConnection) -> Vec<budget::Model> {
    let budgets = budget::Entity::find().all(db).await.unwrap();
    for b in &budgets {
        let rows = budget_transaction::Entity::find()
            .filter(budget_transaction::Column::BudgetId.eq(b.id))
            .order_by_asc(budget_transaction::Column::Version)
            .all(db)
            .await
            .unwrap();
        let (mut total, mut used, mut reserved) = (0i64, 0i64, 0i64);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(
                row.version,
                i as i64 + 1,
                "ledger of {} forks or skips",
                b.id
            );
            total += row.delta_total;
            used += row.delta_used;
            reserved += row.delta_reserved;
            assert_eq!(
                (total, used, reserved),
                (row.total_after, row.used_after, row.reserved_after),
                "ledger row {} of {} does not follow from its deltas",
                row.version,
                b.id
            );
            assert!(reserved >= 0 && used >= 0 && used + reserved <= total);
        }
        assert_eq!(
            (total, used, reserved, rows.len() as i64),
            (b.total, b.used, b.reserved, b.version),
            "ledger of {} does not replay to its row",
            b.id
        );
        let live: i64 = budget_reservation::Entity::find()
            .filter(budget_reservation::Column::BudgetId.eq(b.id))
            .filter(budget_reservation::Column::Status.eq("reserved"))
            .all(db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.amount)
            .sum();
        assert_eq!(
            b.reserved, live,
            "reserved of {} is not Σ live reservations",
            b.id
        );
    }
    // Each client request id had at most one effect.
    let keyed = budget_transaction::Entity::find()
        .filter(budget_transaction::Column::RequestId.is_not_null())
        .all(db)
        .await
        .unwrap();
    let mut per_key: HashMap<(String, String), usize> = HashMap::new();
    for row in keyed {
        *per_key
            .entry((
                row.caller.unwrap_or_default(),
                row.request_id.unwrap_or_default(),
            ))
            .or_default() += 1;
    }
    let doubled: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "request ids with two effects: {doubled:?}"
    );
    budgets
}

/// Ledger rows of one client request id.
pub async fn effects(db: &DatabaseConnection, request_id: &str) -> usize {
    budget_transaction::Entity::find()
        .filter(budget_transaction::Column::RequestId.eq(request_id))
        .all(db)
        .await
        .unwrap()
        .len()
}

/// Moves the end of a budget's period window into the past.
pub async fn end_period(db: &DatabaseConnection, budget_id: &str) {
    let past = aurum::clock::now() - chrono::Duration::seconds(1);
    budget::Entity::update_many()
        .col_expr(budget::Column::PeriodEnd, Expr::value(Some(past)))
        .filter(budget::Column::Id.eq(uuid::Uuid::parse_str(budget_id).unwrap()))
        .exec(db)
        .await
        .unwrap();
}
