//! Audit entries as the domain reads them: the filter of the list and the subscription, and
//! who may see an entry. Pure rules: no database, no GraphQL.

use chrono::{DateTime, Utc};
use entity::audit_log;

/// What to select from the audit log. Every given field must match; none means everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Who acted, exactly as recorded (`user:alice`, `system`).
    pub actor: Option<String>,
    /// Dotted action name (`task.create`).
    pub action: Option<String>,
    /// Kind of object changed (`task`, `user`, `budget` …); the `entity_type` column.
    pub resource_type: Option<String>,
    /// Id of the object changed; the `entity_id` column.
    pub resource_id: Option<String>,
    /// Entries created at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Entries created strictly before this instant.
    pub to: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// Checks the filter's own consistency: the field at fault and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && to < from
        {
            return Err(("to", "to must not be before from".into()));
        }
        Ok(())
    }

    /// Whether `entry` is selected by this filter (the same rule the list's SQL applies).
    pub fn matches(&self, entry: &audit_log::Model) -> bool {
        self.actor.as_ref().is_none_or(|a| *a == entry.actor)
            && self.action.as_ref().is_none_or(|a| *a == entry.action)
            && self
                .resource_type
                .as_ref()
                .is_none_or(|t| *t == entry.entity_type)
            && self
                .resource_id
                .as_ref()
                .is_none_or(|id| entry.entity_id.as_ref() == Some(id))
            && self.from.is_none_or(|from| entry.created_at >= from)
            && self.to.is_none_or(|to| entry.created_at < to)
    }
}

/// Whether a reader scoped to `scope` (a tenant, or none for an untenanted reader) may see
/// `entry`: untenanted readers see everything, scoped ones only their tenant's entries.
pub fn visible_to(scope: Option<&str>, entry: &audit_log::Model) -> bool {
    scope.is_none_or(|tenant| entry.tenant_id.as_deref() == Some(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: Option<&str>) -> audit_log::Model {
        audit_log::Model {
            id: uuid::Uuid::now_v7(),
            actor: "user:alice".into(),
            action: "task.create".into(),
            entity_type: "task".into(),
            entity_id: Some("t-1".into()),
            tenant_id: tenant.map(str::to_owned),
            request_id: None,
            details: serde_json::json!({}),
            created_at: DateTime::from_timestamp(1_000, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn every_field_must_match() {
        let e = entry(None);
        assert!(AuditFilter::default().matches(&e));
        let f = |f: AuditFilter| f.matches(&e);
        assert!(f(AuditFilter {
            actor: Some("user:alice".into()),
            action: Some("task.create".into()),
            resource_type: Some("task".into()),
            resource_id: Some("t-1".into()),
            ..Default::default()
        }));
        assert!(!f(AuditFilter {
            actor: Some("user:bob".into()),
            ..Default::default()
        }));
        assert!(!f(AuditFilter {
            action: Some("task.assign".into()),
            ..Default::default()
        }));
        assert!(!f(AuditFilter {
            resource_type: Some("agent".into()),
            ..Default::default()
        }));
        assert!(!f(AuditFilter {
            resource_id: Some("t-2".into()),
            ..Default::default()
        }));
        let mut none = e.clone();
        none.entity_id = None;
        assert!(
            !AuditFilter {
                resource_id: Some("t-1".into()),
                ..Default::default()
            }
            .matches(&none)
        );
    }

    #[test]
    fn from_is_inclusive_and_to_exclusive() {
        let e = entry(None);
        let at = e.created_at;
        let second = chrono::Duration::seconds(1);
        let window = |from, to| AuditFilter {
            from,
            to,
            ..Default::default()
        };
        assert!(window(Some(at), None).matches(&e));
        assert!(!window(Some(at + second), None).matches(&e));
        assert!(!window(None, Some(at)).matches(&e));
        assert!(window(None, Some(at + second)).matches(&e));
        assert!(window(Some(at), Some(at)).validate().is_ok());
        assert_eq!(
            window(Some(at), Some(at - second))
                .validate()
                .map_err(|e| e.0),
            Err("to")
        );
    }

    #[test]
    fn scoped_readers_see_only_their_tenant() {
        assert!(visible_to(None, &entry(None)));
        assert!(visible_to(None, &entry(Some("acme"))));
        assert!(visible_to(Some("acme"), &entry(Some("acme"))));
        assert!(!visible_to(Some("acme"), &entry(Some("globex"))));
        assert!(!visible_to(Some("acme"), &entry(None)));
    }
}
