//! API keys: created with their secret shown once (only its hash is kept), revoked at once on
//! every replica, and turned back into a `Caller` when one arrives as a bearer token.

use entity::api_key;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use super::{UserService, assignable, check_tenant, random_token, sha256_hex};
use crate::{
    audit::{self, AuditEntry},
    auth::{Caller, Principal, RequestMeta, permission::Role},
    clock,
    error::{AppError, AppResult},
    infra::db,
    pagination::{Page, PageRequest, keyset_page},
};

/// Every API key starts with this, so a bearer token's kind is known before any lookup.
pub const API_KEY_PREFIX: &str = "ak_";

/// Input of `createApiKey`, before validation.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl UserService {
    /// Creates an API key; the secret is returned once and only its hash is kept.
    pub async fn create_api_key(
        &self,
        meta: &RequestMeta,
        input: NewApiKey,
    ) -> AppResult<(api_key::Model, String)> {
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 128 {
            return Err(AppError::bad_field("name", "use 1-128 characters"));
        }
        let role = assignable(input.role)?;
        let tenant = check_tenant(input.tenant.as_deref())?;
        let now = clock::now();
        if input.expires_at.is_some_and(|e| e <= now) {
            return Err(AppError::bad_field("expiresAt", "must be in the future"));
        }
        let secret = format!("{API_KEY_PREFIX}{}", random_token());
        let model = api_key::Model {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            secret_hash: sha256_hex(&secret),
            role: role.into(),
            tenant_id: tenant,
            created_by: meta.caller.audit_label(),
            expires_at: input.expires_at,
            revoked_at: None,
            created_at: now,
        };
        let txn = db::begin_write(&self.db).await?;
        api_key::Entity::insert(api_key::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "api_key.create",
                entity_type: "api_key",
                entity_id: Some(model.id.to_string()),
                tenant_id: model.tenant_id.as_deref(),
                details: serde_json::json!({ "name": model.name, "role": model.role }),
            },
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok((model, secret))
    }

    /// Revokes an API key at once, on every replica.
    pub async fn revoke_api_key(&self, meta: &RequestMeta, id: Uuid) -> AppResult<api_key::Model> {
        let txn = db::begin_write(&self.db).await?;
        let mut current = api_key::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("ApiKey", id))?;
        let now = clock::now();
        let res = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(AppError::Conflict("the API key is already revoked".into()));
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "api_key.revoke",
                entity_type: "api_key",
                entity_id: Some(id.to_string()),
                tenant_id: current.tenant_id.as_deref(),
                details: serde_json::json!({ "name": current.name }),
            },
        )
        .await?;
        self.announce_revocation(&txn, id, None).await?;
        txn.commit().await?;
        current.revoked_at = Some(now);
        self.revoked(id, None);
        Ok(current)
    }

    /// API keys, oldest first.
    pub async fn list_api_keys(&self, page: PageRequest) -> AppResult<Page<api_key::Model>> {
        Ok(keyset_page(api_key::Entity::find(), api_key::Column::Id, page, &self.db).await?)
    }

    /// One API key (never its secret) by id.
    pub async fn api_key(&self, id: Uuid) -> AppResult<api_key::Model> {
        api_key::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("ApiKey", id))
    }

    pub async fn count_api_keys(&self) -> AppResult<u64> {
        Ok(api_key::Entity::find().count(&self.db).await?)
    }

    pub(super) async fn authenticate_key(&self, secret: &str) -> AppResult<Caller> {
        let key = api_key::Entity::find()
            .filter(api_key::Column::SecretHash.eq(sha256_hex(secret)))
            .one(&self.db)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        let now = clock::now();
        if key.revoked_at.is_some() || key.expires_at.is_some_and(|e| e <= now) {
            return Err(AppError::Unauthenticated);
        }
        let role = Role::from(key.role);
        let caller = Caller::User {
            id: key.id,
            username: format!("apikey:{}", key.name),
            role,
            tenant: key.tenant_id,
            token: None,
            principal: Principal::ApiKey,
        };
        self.cache
            .put_caller(secret.to_owned(), key.id, &caller, key.expires_at);
        Ok(caller)
    }
}
