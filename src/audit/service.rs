//! Writing and reading the audit log. Writers call [`record`] inside their own transaction:
//! it writes the entry and its `auditLogAdded` event (into the outbox) there, so both exist
//! exactly when the change does. [`AuditService`] serves the reads. It must not write entries
//! of its own: every entry belongs to some other change.

use entity::audit_log;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter,
};

use super::{events::AuditEvent, model::AuditFilter};
use crate::{
    auth::RequestMeta,
    clock,
    error::{AppError, AppResult},
    events::DomainEvent,
    infra::{db::tenant_condition, outbox},
    pagination::{Page, PageRequest, keyset_page_newest_first},
};

/// One audit entry, before it is written.
pub struct AuditEntry<'a> {
    /// Dotted action name, `<domain>.<verb>` (`task.create`).
    pub action: &'static str,
    /// Kind of object changed (`task`); read back as `resourceType`.
    pub entity_type: &'static str,
    /// Id of the object changed; read back as `resourceId`.
    pub entity_id: Option<String>,
    /// The tenant of the object changed, else the caller's: it decides who may read the entry.
    pub tenant_id: Option<&'a str>,
    pub details: serde_json::Value,
}

/// Appends `entry` and its event through `conn`, which must be the mutation's own
/// transaction. The event leaves the outbox once that transaction commits (at once when the
/// writer wakes the bus after commit).
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    meta: &RequestMeta,
    entry: AuditEntry<'_>,
) -> Result<(), sea_orm::DbErr> {
    let row = audit_log::Model {
        id: uuid::Uuid::now_v7(),
        actor: meta.caller.audit_label(),
        action: entry.action.into(),
        entity_type: entry.entity_type.into(),
        entity_id: entry.entity_id,
        tenant_id: entry.tenant_id.map(str::to_owned),
        request_id: Some(meta.request_id.clone()),
        details: entry.details,
        created_at: clock::now(),
    };
    audit_log::Entity::insert(audit_log::ActiveModel::from(row.clone()))
        .exec_without_returning(conn)
        .await?;
    outbox::append(conn, &DomainEvent::Audit(AuditEvent { entry: row })).await
}

/// Reads of the audit log.
#[derive(Clone)]
pub struct AuditService {
    db: DatabaseConnection,
}

impl AuditService {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The SQL form of [`AuditFilter::matches`] within what `scope` may see.
    fn condition(scope: Option<&str>, filter: &AuditFilter) -> AppResult<Condition> {
        filter
            .validate()
            .map_err(|(field, message)| AppError::bad_field(field, message))?;
        let mut cond = tenant_condition(audit_log::Column::TenantId, scope);
        if let Some(actor) = &filter.actor {
            cond = cond.add(audit_log::Column::Actor.eq(actor.as_str()));
        }
        if let Some(action) = &filter.action {
            cond = cond.add(audit_log::Column::Action.eq(action.as_str()));
        }
        if let Some(kind) = &filter.resource_type {
            cond = cond.add(audit_log::Column::EntityType.eq(kind.as_str()));
        }
        if let Some(id) = &filter.resource_id {
            cond = cond.add(audit_log::Column::EntityId.eq(id.as_str()));
        }
        if let Some(from) = filter.from {
            cond = cond.add(audit_log::Column::CreatedAt.gte(from));
        }
        if let Some(to) = filter.to {
            cond = cond.add(audit_log::Column::CreatedAt.lt(to));
        }
        Ok(cond)
    }

    /// One entry visible to `scope`.
    pub async fn entry(&self, scope: Option<&str>, id: uuid::Uuid) -> AppResult<audit_log::Model> {
        audit_log::Entity::find_by_id(id)
            .filter(tenant_condition(audit_log::Column::TenantId, scope))
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("AuditLogEntry", id))
    }

    /// Entries visible to `scope` that match `filter`, newest first.
    pub async fn list(
        &self,
        scope: Option<&str>,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> AppResult<Page<audit_log::Model>> {
        let select = audit_log::Entity::find().filter(Self::condition(scope, filter)?);
        Ok(keyset_page_newest_first(select, audit_log::Column::Id, page, &self.db).await?)
    }

    /// How many entries `list` would return over all pages.
    pub async fn count(&self, scope: Option<&str>, filter: &AuditFilter) -> AppResult<u64> {
        Ok(audit_log::Entity::find()
            .filter(Self::condition(scope, filter)?)
            .count(&self.db)
            .await?)
    }
}
