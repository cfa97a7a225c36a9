//! Identity and access: who is calling (`Caller`), what their role lets them do
//! (`permission`), how they prove it (`token`, `password`), the guard every field uses
//! (`guard`), and the user/session operations (`service`, `graphql`).

pub mod cache;
pub mod graphql;
pub mod guard;
pub mod password;
pub mod permission;
pub mod service;
pub mod sessions;
pub mod token;

use permission::{Permission, Role};

/// The caller of one request, derived server-side for every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials were presented.
    Anonymous,
    /// A logged-in user or an agent's API key, with the role read from the database for this
    /// request.
    User {
        /// The user's id, or the API key's.
        id: uuid::Uuid,
        /// The username, or `apikey:<name>`.
        username: String,
        role: Role,
        tenant: Option<String>,
        /// The access token's id and expiry (seconds since the epoch); `None` for API keys.
        token: Option<(String, u64)>,
        principal: Principal,
    },
    /// The service itself (start-up, sweepers).
    System,
}

impl Caller {
    /// Whose bucket a per-caller limit charges: the user or API key, else the client address.
    /// `None` for the service itself.
    pub fn limit_key(&self, client: Option<&str>) -> Option<String> {
        match self {
            Self::User { id, .. } => Some(format!("u:{id}")),
            Self::Anonymous => Some(format!("ip:{}", client.unwrap_or("unknown"))),
            Self::System => None,
        }
    }

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
                format!("{}/{}", role.name(), tenant.as_deref().unwrap_or(""))
            }
        }
    }

    /// The caller's role; the service itself acts as admin.
    pub fn role(&self) -> Role {
        match self {
            Self::Anonymous => Role::Anonymous,
            Self::User { role, .. } => *role,
            Self::System => Role::Admin,
        }
    }

    /// Whether the caller holds `permission`.
    pub fn can(&self, permission: Permission) -> bool {
        self.role().grants(permission)
    }

    /// The tenant the caller is confined to, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::User { tenant, .. } => tenant.as_deref(),
            Self::Anonymous | Self::System => None,
        }
    }
}

/// What kind of credential a caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A person's access token.
    Person,
    /// An agent's API key.
    ApiKey,
}

/// What a service needs to know about the request behind a mutation: who, and its id for the
/// audit log.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub caller: Caller,
    pub request_id: String,
    /// The client's address, when known: the TCP peer, or the `X-Forwarded-For` client when
    /// the peer is a trusted proxy (`AURUM_TRUSTED_PROXIES`).
    pub client: Option<String>,
}

impl RequestMeta {
    pub fn system(request_id: impl Into<String>) -> Self {
        Self {
            caller: Caller::System,
            request_id: request_id.into(),
            client: None,
        }
    }
}
