//! Budgets: an exactly-once token ledger. Agents reserve tokens before an LLM call and
//! commit the real usage (or release) after it. `model` holds the pure rules, `service` the
//! operations clients call, `ledger` the statements on budget rows they share, `reads` the
//! queries, `graphql` the thin resolvers, `events` what each change writes into the event
//! outbox and `sweeper` the background expiry every replica runs.
//!
//! # Invariants
//! At every instant `0 ≤ used`, `0 ≤ reserved`, `used + reserved ≤ total` (conditional
//! UPDATEs, backed by CHECK constraints), `reserved = Σ live reservations`, and the ledger
//! (`budget_transactions`, one row per budget version) replays to the budget row.
//!
//! # Idempotency (exactly once under retries and `kill -9`)
//! `reserveBudget`, `commitBudget` and `releaseBudget` carry a `requestId`, scoped per caller,
//! and claim it through the shared `crate::idempotency` module inside their own transaction
//! (its documentation states the contract: replay, `IDEMPOTENCY_KEY_REUSED`,
//! `IDEMPOTENCY_IN_PROGRESS`, retention). A reserve's answer is known before its transaction
//! starts, so it is stored with the claim; commit and release store theirs once the
//! reservation row has been updated. Nothing is stored for calls that change nothing:
//! validation errors, `NOT_FOUND`, `BUDGET_EXCEEDED` (a later retry with the same key may
//! succeed once budget is free), `ALREADY_*` and `RESERVATION_EXPIRED` (whose expiry commits,
//! with the key given back). There is no Redis fast path, so losing Redis changes nothing here.
//!
//! # Lock window
//! The budget row's lock (taken by the conditional UPDATE) is what serialises all writers of
//! a hot budget, so it is taken as late as possible and held for as few round trips to the
//! client as possible: a reserve claims its key (with its result) and writes its audit row
//! first, knowing its budget's id from a per-process cache (ids and keys of budgets never
//! change; budgets are never deleted), then UPDATEs the budget and inserts the ledger and
//! reservation rows. A commit or release updates the reservation row, writes its audit row and
//! stored result, then settles the budget and appends the ledger row. On PostgreSQL the
//! UPDATE and the rows that follow it are one statement (a data-modifying CTE that reads the
//! UPDATE's `RETURNING`), so the lock is held for that statement, the INSERT of its events
//! into the outbox (they carry the row as updated) and the COMMIT; SQLite
//! runs them as separate statements under its single writer lock. The rows referencing the
//! budget are never inserted before its UPDATE: their foreign key's KEY SHARE lock on a row
//! other transactions are updating makes PostgreSQL create a multixact per UPDATE (measured
//! again this way: twice the database CPU per pair on a hot budget).
//!
//! # Expiry and periods
//! Reservations live `ttlSeconds` (default 300 s). The sweeper expires them on every
//! replica with `FOR UPDATE SKIP LOCKED` and a conditional status change, so no reservation
//! is released twice; a commit or release that finds its reservation past the TTL expires it
//! itself and answers `RESERVATION_EXPIRED` — it is never committed.
//! When a budget's period window ends, the next touch (or the sweeper) starts the new
//! window: `used` goes to 0 with a `reset` ledger row, announced thresholds are cleared, and
//! `reserved` stays — live reservations survive the reset, and a reservation made in the old
//! window that is committed in the new one counts in the new window's `used`.
//! Threshold events (`50/80/100 %` of the total by default) fire once per threshold per
//! window, recorded in `alerts_sent` in the transaction that crossed them. A change of the
//! total or thresholds arms again those `used` no longer reaches (raised from 100 to 200 at
//! 61 used, 50 % fires again at 100).

pub mod events;
pub mod graphql;
mod ledger;
pub mod model;
pub mod reads;
pub mod service;
pub mod sweeper;
