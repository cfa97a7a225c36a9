//! The checks at the end of the run, read from PostgreSQL: the budget invariants (`0 <= used`,
//! `0 <= reserved`, `used + reserved <= total`, each ledger replays to its row), exactly one
//! ledger effect per request id the clients completed (none missing, none twice, none
//! unknown), and each budget's `used` equal to what the clients committed.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::{KILL, ROLLING, TENANT, haproxy::Counters, state::HttpLog};

/// What the checks found.
pub(crate) struct Checks {
    /// Budgets breaking `0 <= used`, `0 <= reserved`, `used + reserved <= total`.
    pub(crate) violations: i64,
    /// Budgets whose ledger does not replay to their row.
    pub(crate) unreplayable: i64,
    /// Request ids shared by more than one reservation row.
    pub(crate) twice_reserved: i64,
    /// Request ids the clients completed without a ledger effect.
    pub(crate) missing: usize,
    /// Request ids with more than one ledger effect.
    pub(crate) twice: usize,
    /// Ledger effects of this run the clients did not complete.
    pub(crate) unknown: usize,
    /// Whether each budget's `used` equals what the clients committed on it.
    pub(crate) used_matches: bool,
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Prints the invariants section: reads the database `db_url` and compares it with what the
/// clients recorded in `log` (request ids under `run_key`); `lb_end` are the balancer's
/// counters at the end of the load.
pub(crate) async fn check(db_url: &str, run_key: &str, log: &HttpLog, lb_end: Counters) -> Checks {
    println!("\n== invariants (read from PostgreSQL) ==");
    let db = sea_orm::Database::connect(db_url).await.unwrap();
    let violations = count(
        &db,
        "SELECT count(*) AS n FROM budgets WHERE used < 0 OR reserved < 0 OR used + reserved > total",
    )
    .await;
    let unreplayable = count(
        &db,
        "SELECT count(*) AS n FROM budgets b LEFT JOIN (SELECT budget_id, sum(delta_total) t, \
         sum(delta_used) u, sum(delta_reserved) r, count(*) c FROM budget_transactions \
         GROUP BY budget_id) l ON l.budget_id = b.id LEFT JOIN (SELECT budget_id, sum(amount) a \
         FROM budget_reservations WHERE status = 'reserved' GROUP BY budget_id) live \
         ON live.budget_id = b.id WHERE l.t <> b.total OR l.u <> b.used OR l.r <> b.reserved \
         OR l.c <> b.version OR coalesce(live.a, 0) <> b.reserved",
    )
    .await;
    println!(
        "  budgets breaking 0 <= used, 0 <= reserved, used + reserved <= total: {violations}; budgets whose ledger does not replay to their row: {unreplayable}"
    );
    let twice_reserved = count(
        &db,
        "SELECT count(*) AS n FROM (SELECT request_id FROM budget_reservations GROUP BY request_id HAVING count(*) > 1) d",
    )
    .await;
    // Ledger effects per request id of this run.
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT request_id, kind, count(*) AS n FROM budget_transactions \
                 WHERE request_id LIKE '{run_key}-%' GROUP BY request_id, kind"
            ),
        ))
        .await
        .unwrap();
    let mut effects: HashMap<(String, String), i64> = HashMap::new();
    for r in rows {
        let id: String = r.try_get("", "request_id").unwrap();
        let kind: String = r.try_get("", "kind").unwrap();
        let n: i64 = r.try_get("", "n").unwrap();
        effects.insert((id, kind), n);
    }
    let done: HashSet<(String, String)> = log
        .done
        .iter()
        .map(|(id, kind)| (id.clone(), (*kind).to_owned()))
        .collect();
    let missing = done.iter().filter(|k| !effects.contains_key(*k)).count();
    let twice = effects.values().filter(|n| **n != 1).count();
    let unknown = effects.keys().filter(|k| !done.contains(*k)).count();
    println!(
        "  request ids the clients completed: {} ({} reservations, {} commits); without a ledger effect: {missing}; with more than one: {twice}; effects the clients did not complete: {unknown}; reservation rows sharing a request id: {twice_reserved}",
        done.len(),
        log.done.iter().filter(|(_, k)| *k == "reserve").count(),
        log.done.iter().filter(|(_, k)| *k == "commit").count(),
    );
    let retried: Vec<&(u8, String)> = log.retried.iter().collect();
    let retried_ok = retried
        .iter()
        .filter(|(_, id)| {
            let kind = if id.ends_with("-r") {
                "reserve"
            } else {
                "commit"
            };
            effects.get(&(id.clone(), kind.to_owned())) == Some(&1)
        })
        .count();
    let retried_by_phase = |p: u8| retried.iter().filter(|(q, _)| *q == p).count();
    println!(
        "  request ids the clients sent again after a client-visible failure: {} (rolling restart {}, kill -9 {}); with exactly one effect: {retried_ok}; HAProxy retries + redispatches (same body, same requestId) over the run: {}",
        retried.len(),
        retried_by_phase(ROLLING),
        retried_by_phase(KILL),
        lb_end.retries + lb_end.redispatches,
    );
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT project_id, used, reserved FROM budgets WHERE tenant_id = '{TENANT}' ORDER BY project_id"
            ),
        ))
        .await
        .unwrap();
    let mut used_matches = true;
    for r in rows {
        let project: String = r.try_get("", "project_id").unwrap();
        let used: i64 = r.try_get("", "used").unwrap();
        let reserved: i64 = r.try_get("", "reserved").unwrap();
        let committed = log.committed.get(&project).copied().unwrap_or(0);
        used_matches &= used == committed;
        println!(
            "  {TENANT}/{project}: used {used}, clients committed {committed} ({}), reserved {reserved}",
            if used == committed {
                "equal"
            } else {
                "DIFFERENT"
            }
        );
    }
    db.close().await.ok();
    println!(
        "  IDEMPOTENCY_IN_PROGRESS answers (a retry overtaking its first attempt; sent again): {}",
        log.in_progress
    );
    if !log.errors.is_empty() {
        println!("  unexpected answers: {}", log.errors.len());
        for e in log.errors.iter().take(5) {
            println!("    {}", e.chars().take(300).collect::<String>());
        }
    }
    Checks {
        violations,
        unreplayable,
        twice_reserved,
        missing,
        twice,
        unknown,
        used_matches,
    }
}
