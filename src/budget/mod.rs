//! Budgets: an exactly-once token ledger. Agents reserve tokens before an LLM call and
//! commit the real usage (or release) after it. `model` holds the pure rules, `service` the
//! transactions, `graphql` the thin resolvers, `events` what is published after commit and
//! `sweeper` the background expiry every replica runs.
//!
//! # Invariants
//! At every instant `0 ≤ used`, `0 ≤ reserved`, `used + reserved ≤ total` (conditional
//! UPDATEs, backed by CHECK constraints), `reserved = Σ live reservations`, and the ledger
//! (`budget_transactions`, one row per budget version) replays to the budget row.
//!
//! # Idempotency (exactly once under retries and `kill -9`)
//! `reserveBudget`, `commitBudget` and `releaseBudget` carry a `requestId`, scoped per caller
//! (user or API key). The key row (`idempotency_keys`, primary key `(caller, request_id)`)
//! is inserted in the *same* transaction as the effect, first, and the serialised result is
//! stored in it before commit (a reserve's result is known before its transaction starts, so
//! its key row is inserted with it; commit and release store theirs once the reservation row
//! has been updated). So key and effect commit together or not at all: a crash at
//! any point leaves either both or neither, never an in-progress row, and a retry after a
//! lost answer replays the stored result byte for byte.
//! - Same key, same input (SHA-256 fingerprint of the operation and its canonical input):
//!   the stored first result.
//! - Same key, different input: `IDEMPOTENCY_KEY_REUSED`.
//! - Same key while the first call is still running: on PostgreSQL the key insert also takes
//!   a transaction-scoped advisory lock on a hash of the key (`pg_try_advisory_xact_lock`);
//!   a second call that cannot take it answers `IDEMPOTENCY_IN_PROGRESS` at once (retry
//!   shortly; the lock dies with the first transaction, also when its process is killed). On
//!   SQLite every write transaction takes the write lock first (`BEGIN IMMEDIATE`), so the
//!   second call waits for the first and then replays its result.
//! - Nothing is stored for calls that change nothing: validation errors, `NOT_FOUND`,
//!   `BUDGET_EXCEEDED` (a later retry with the same key may succeed once budget is free),
//!   `ALREADY_*` and `RESERVATION_EXPIRED`. The database is the only store; there is no
//!   Redis fast path, so losing Redis changes nothing here.
//! - Keys are kept 25 hours (`model::KEY_RETENTION_HOURS`), then the sweeper deletes them.
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
//! UPDATE's `RETURNING`), so the lock is held for that statement and the COMMIT only; SQLite
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
//! window, recorded in `alerts_sent` in the transaction that crossed them.

pub mod events;
pub mod graphql;
pub mod model;
pub mod service;
pub mod sweeper;
