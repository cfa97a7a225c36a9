//! What an administrator sees of one live subscription. Plain serialisable data: replicas
//! send it to each other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One subscription as its replica reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActiveSubscription {
    pub id: Uuid,
    /// The replica serving it (`AURUM_REPLICA_ID`, else the host name).
    pub replica: String,
    /// Who subscribed, as the audit log names callers (`alice`, `apikey:builder`).
    pub caller: String,
    /// The user's id, or the API key's; `None` for anonymous callers.
    pub user_id: Option<Uuid>,
    pub api_key: bool,
    /// The operation's name; empty for anonymous operations.
    pub operation_name: String,
    pub started_at: DateTime<Utc>,
    /// Events sent to the client so far.
    pub delivered: u64,
    /// Events produced for it that it has not taken yet.
    pub lag: u64,
    pub client_address: String,
}

/// A close request as replicas pass it to each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CloseTarget {
    One(Uuid),
    OfUser(Uuid),
}
