//! Identity: who is calling (`Caller`), passwords, users. Guards and tokens arrive with the
//! identity issue; until then every caller is anonymous and nothing here grants anything.

pub mod password;
pub mod service;

/// The caller of one request, derived server-side for every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials were presented.
    Anonymous,
    /// A logged-in user.
    User {
        id: uuid::Uuid,
        username: String,
        role: String,
        tenant: Option<String>,
    },
    /// The service itself (start-up, sweepers).
    System,
}

impl Caller {
    /// How the audit log names this caller.
    pub fn audit_label(&self) -> String {
        match self {
            Self::Anonymous => "anonymous".into(),
            Self::User { username, .. } => format!("user:{username}"),
            Self::System => "system".into(),
        }
    }

    /// Callers with the same key see exactly the same data (same role, same tenant), so they
    /// may share one execution of a subscription.
    pub fn visibility_key(&self) -> String {
        match self {
            Self::Anonymous => "anonymous".into(),
            Self::System => "system".into(),
            Self::User { role, tenant, .. } => {
                format!("{role}/{}", tenant.as_deref().unwrap_or(""))
            }
        }
    }

    /// The tenant the caller is confined to, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::User { tenant, .. } => tenant.as_deref(),
            Self::Anonymous | Self::System => None,
        }
    }
}

/// What a service needs to know about the request behind a mutation: who, and its id for the
/// audit log.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub caller: Caller,
    pub request_id: String,
}

impl RequestMeta {
    pub fn system(request_id: impl Into<String>) -> Self {
        Self {
            caller: Caller::System,
            request_id: request_id.into(),
        }
    }
}
