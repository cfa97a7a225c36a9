//! Events the audit domain writes into the outbox with each entry (relayed after the commit
//! of the transaction that wrote it); subject `audit.<entryId>.added`. They travel over NATS between replicas, so they
//! carry the plain row.

use serde::{Deserialize, Serialize};

/// An audit entry was committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEvent {
    pub entry: entity::audit_log::Model,
}
