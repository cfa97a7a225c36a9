//! The audit log: every mutation appends one row in the same transaction as its change, so
//! a change without its audit entry (or the reverse) cannot be committed.

use entity::audit_log;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

use crate::{auth::RequestMeta, clock};

/// One audit entry, before it is written.
pub struct AuditEntry<'a> {
    /// Dotted action name, `<domain>.<verb>` (`task.create`).
    pub action: &'static str,
    pub entity_type: &'static str,
    pub entity_id: Option<String>,
    pub tenant_id: Option<&'a str>,
    pub details: serde_json::Value,
}

/// Appends `entry` through `conn`, which must be the mutation's own transaction.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    meta: &RequestMeta,
    entry: AuditEntry<'_>,
) -> Result<(), sea_orm::DbErr> {
    let row = audit_log::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        actor: Set(meta.caller.audit_label()),
        action: Set(entry.action.into()),
        entity_type: Set(entry.entity_type.into()),
        entity_id: Set(entry.entity_id),
        tenant_id: Set(entry.tenant_id.map(str::to_owned)),
        request_id: Set(Some(meta.request_id.clone())),
        details: Set(entry.details),
        created_at: Set(clock::now()),
    };
    audit_log::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}
