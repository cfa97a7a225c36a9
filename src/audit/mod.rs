//! The audit log: one row per change, readable by those holding `audit.view`. `model` holds
//! the list filter and who may see an entry, `service` the writer and the reads, `graphql`
//! the `auditLog` connection and the `auditLogAdded` subscription, `events` what is published.
//!
//! # Invariants
//! - An entry is written by [`record`] through the changing service's own transaction, so a
//!   change without its entry (or the reverse) cannot be committed.
//! - Its `auditLogAdded` event is written by the same [`record`] call into the event outbox,
//!   in the same transaction: a rolled-back entry is never announced, a committed one always
//!   is (the relay delivers it after commit, through NATS outages and replica crashes).
//! - Every entry carries the tenant of what it concerns (the object's tenant, else the
//!   caller's); a tenant-scoped reader sees only its tenant's entries, in the list and live.
//!   Untenanted readers (admins) see every entry.
//! - Entries are never updated or deleted through the API.

pub mod events;
pub mod graphql;
pub mod model;
pub mod service;

pub use service::{AuditEntry, AuditService, record};
