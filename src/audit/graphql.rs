//! GraphQL surface of the audit log: the `auditLog` connection and the `auditLogAdded`
//! subscription, both behind `audit.view`. Thin: tenant scoping and filtering are the
//! service's (list) and the model's (live delivery) rules.

use async_graphql::{
    Context, ErrorExtensions, ID, InputObject, Json, Object, Result, SimpleObject, Subscription,
    connection::Connection,
};
use chrono::{DateTime, Utc};
use entity::audit_log;
use futures::Stream;

use super::model::{AuditFilter, visible_to};
use crate::{
    auth::{guard::Require, permission::Permission},
    error::AppError,
    events::DomainEvent,
    graphql::context::{
        ConnectionFields, caller, connection, page_cost, page_request, services, wants_total,
    },
};

/// One recorded change: who did what to which object, when, and in which request.
pub struct AuditLogEntry(pub audit_log::Model);

#[Object]
impl AuditLogEntry {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Who acted: `user:<name>` (a person or an API key's owner), `system` or `anonymous`.
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    /// Dotted action name, `<domain>.<verb>` (`task.create`, `user.login`, `budget.reserve`).
    async fn action(&self) -> &str {
        &self.0.action
    }
    /// Kind of object changed (`task`, `agent`, `escalation`, `user`, `api_key`, `budget` …).
    async fn resource_type(&self) -> &str {
        &self.0.entity_type
    }
    /// Id of the object changed.
    async fn resource_id(&self) -> Option<&str> {
        self.0.entity_id.as_deref()
    }
    /// Tenant of the object changed (or of the actor); null for untenanted objects.
    async fn tenant_id(&self) -> Option<&str> {
        self.0.tenant_id.as_deref()
    }
    /// The request that made the change (`x-request-id`, `extensions.requestId`).
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }
    /// What changed, as the action recorded it.
    async fn details(&self) -> Json<serde_json::Value> {
        Json(self.0.details.clone())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Selects audit entries: every given field must match.
#[derive(InputObject, Default)]
pub struct AuditLogFilter {
    /// Who acted, exactly as recorded (`user:alice`, `system`).
    pub actor: Option<String>,
    /// Dotted action name (`task.create`).
    pub action: Option<String>,
    /// Kind of object changed (`task`).
    pub resource_type: Option<String>,
    /// Id of the object changed.
    pub resource_id: Option<String>,
    /// Entries created at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Entries created strictly before this instant.
    pub to: Option<DateTime<Utc>>,
}

impl From<AuditLogFilter> for AuditFilter {
    fn from(f: AuditLogFilter) -> Self {
        Self {
            actor: f.actor,
            action: f.action,
            resource_type: f.resource_type,
            resource_id: f.resource_id,
            from: f.from,
            to: f.to,
        }
    }
}

type AuditLogConnection = Connection<String, AuditLogEntry, ConnectionFields>;

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Audit entries visible to the caller (a tenant-scoped caller sees only its tenant's),
    /// newest first; `after` is the cursor of the last entry seen.
    #[graphql(
        guard = "Require(Permission::AuditView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditLogFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AuditLogConnection> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let filter = AuditFilter::from(filter.unwrap_or_default());
        let scope = caller(ctx).tenant();
        let rows = svc.audit.list(scope, &filter, page).await?;
        let total = if wants_total(ctx) {
            svc.audit.count(scope, &filter).await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |e| e.id, AuditLogEntry))
    }
}

/// An audit entry, as delivered to `auditLogAdded` subscribers.
#[derive(SimpleObject)]
pub struct AuditLogAddedEvent {
    /// Where this event sits in the feed: pass it as `after` to resume after it.
    pub cursor: String,
    pub entry: AuditLogEntry,
}

#[derive(Default)]
pub struct AuditSubscription;

#[Subscription]
impl AuditSubscription {
    /// Every audit entry committed from now on that the caller may see (a tenant-scoped
    /// caller: only its tenant's) and that matches `filter`. With `after` (the `cursor` of the
    /// last event received), first the entries since then that are still held
    /// (`CURSOR_EXPIRED` when they are not), then live ones. A subscriber that falls behind
    /// receives a `SUBSCRIPTION_LAGGED` error carrying `lastCursor` and is closed.
    #[graphql(guard = "Require(Permission::AuditView)")]
    async fn audit_log_added(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditLogFilter>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<AuditLogAddedEvent>> + use<>> {
        let filter = AuditFilter::from(filter.unwrap_or_default());
        filter
            .validate()
            .map_err(|(field, message)| AppError::bad_field(field, message).extend())?;
        let scope = caller(ctx).tenant().map(str::to_owned);
        crate::graphql::events::subscribe(ctx, after, move |cursor, event| match event {
            DomainEvent::Audit(e)
                if visible_to(scope.as_deref(), &e.entry) && filter.matches(&e.entry) =>
            {
                Some(AuditLogAddedEvent {
                    cursor,
                    entry: AuditLogEntry(e.entry.clone()),
                })
            }
            _ => None,
        })
        .await
    }
}
