//! Users and sessions: the first-admin bootstrap, login, token refresh, logout and turning a
//! bearer token into a `Caller`. Unknown users and wrong passwords answer identically and cost
//! the same argon2 verification. API keys live in `api_keys`.

use std::sync::Arc;

use chrono::Duration as ChronoDuration;
use entity::{login_failure, refresh_token, revoked_token, user};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::Expr,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

mod api_keys;

pub use api_keys::{API_KEY_PREFIX, NewApiKey};

use super::{
    Caller, Principal, RequestMeta, cache::AuthCache, password, permission::Role, token::TokenKeys,
};
use crate::{
    audit::{self, AuditEntry},
    clock,
    error::{AppError, AppResult},
    events::{Bus, DomainEvent},
    infra::db,
    pagination::{Page, PageRequest, keyset_page},
};

/// Input of `createUser`, before validation.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub password: SecretString,
    pub role: Role,
    pub tenant: Option<String>,
}

/// Published when credentials stop being valid: every replica closes the WebSockets they
/// opened.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdentityEvent {
    /// The user or API key.
    pub subject: Uuid,
    /// Only this access token (logout); `None` = every session of the subject.
    pub jti: Option<String>,
}

fn check_username(name: &str) -> AppResult<String> {
    let ok = (3..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(AppError::bad_field(
            "username",
            "use 3-64 characters from [a-z0-9._-]",
        ))
    }
}

fn check_tenant(tenant: Option<&str>) -> AppResult<Option<String>> {
    match tenant.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t)
            if t.len() <= 64
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
        {
            Ok(Some(t.to_owned()))
        }
        Some(_) => Err(AppError::bad_field(
            "tenantId",
            "use 1-64 characters from [A-Za-z0-9._-]",
        )),
    }
}

fn assignable(role: Role) -> AppResult<Role> {
    if role == Role::Anonymous {
        Err(AppError::bad_field("role", "ANONYMOUS cannot be assigned"))
    } else {
        Ok(role)
    }
}

/// Username of the first administrator.
pub const FIRST_ADMIN: &str = "admin";

/// What `ensure_first_admin` did.
#[derive(Debug)]
pub enum Bootstrap {
    /// Users already existed; nothing was created.
    AlreadyInitialised,
    /// `admin` was created with the configured password.
    Created,
    /// `admin` was created with this generated password, to print once.
    CreatedWithGenerated(SecretString),
}

/// A successful login or refresh.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub refresh_token: String,
    /// Access token expiry, seconds since the epoch.
    pub expires_at: u64,
    pub user: user::Model,
}

/// Users and sessions.
#[derive(Clone)]
pub struct UserService {
    db: DatabaseConnection,
    keys: Arc<TokenKeys>,
    refresh_ttl: ChronoDuration,
    bus: Bus,
    max_failures: u32,
    hashing: password::Hashing,
    cache: Arc<AuthCache>,
    /// A hash of a random password with the current parameters (made on first use).
    dummy: Arc<tokio::sync::OnceCell<String>>,
}

fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn invalid_credentials() -> AppError {
    AppError::Unauthenticated
}

impl UserService {
    pub fn new(
        db: DatabaseConnection,
        keys: Arc<TokenKeys>,
        refresh_ttl_secs: u64,
        bus: Bus,
    ) -> Self {
        Self {
            db,
            keys,
            refresh_ttl: ChronoDuration::seconds(
                i64::try_from(refresh_ttl_secs).unwrap_or(604_800),
            ),
            bus,
            max_failures: 5,
            hashing: password::Hashing::default(),
            cache: Arc::new(AuthCache::new(std::time::Duration::ZERO)),
            dummy: Arc::default(),
        }
    }

    /// Keeps authenticated callers for `ttl` (zero = off); see [`AuthCache`].
    #[must_use]
    pub fn with_auth_cache(mut self, ttl: std::time::Duration) -> Self {
        self.cache = Arc::new(AuthCache::new(ttl));
        self
    }

    /// The cache of authenticated callers (the revocation listener evicts from it).
    pub fn auth_cache(&self) -> Arc<AuthCache> {
        Arc::clone(&self.cache)
    }

    /// The argon2id parameters of new hashes.
    #[must_use]
    pub fn with_hashing(mut self, hashing: password::Hashing) -> Self {
        self.hashing = hashing;
        self.dummy = Arc::default();
        self
    }

    /// A valid hash of a random password with the current parameters: verifying against it
    /// when the user does not exist makes "unknown user" cost what "wrong password" costs.
    async fn dummy_hash(&self) -> AppResult<String> {
        self.dummy
            .get_or_try_init(|| self.hashing.hash(password::generate()))
            .await
            .cloned()
            .map_err(AppError::Internal)
    }

    /// Failed logins allowed per (username, client) before lockouts start.
    #[must_use]
    pub fn with_max_failures(mut self, max_failures: u32) -> Self {
        self.max_failures = max_failures.max(1);
        self
    }

    /// Writes the revocation's event through `txn`, the transaction making the change, for
    /// every replica to close the sockets and forget the cached callers it names.
    async fn announce_revocation(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        subject: Uuid,
        jti: Option<String>,
    ) -> AppResult<()> {
        self.bus
            .append(txn, &DomainEvent::Identity(IdentityEvent { subject, jti }))
            .await?;
        Ok(())
    }

    /// After the commit of a revocation: this replica forgets at once, the others when the
    /// event reaches them.
    fn revoked(&self, subject: Uuid, jti: Option<&str>) {
        self.cache.forget(subject, jti);
        self.bus.wake();
    }

    /// Creates a user (admin work).
    pub async fn create_user(&self, meta: &RequestMeta, input: NewUser) -> AppResult<user::Model> {
        let username = check_username(input.username.trim())?;
        if input.password.expose_secret().chars().count() < 12 {
            return Err(AppError::bad_field(
                "password",
                "use at least 12 characters",
            ));
        }
        let role = assignable(input.role)?;
        let tenant = check_tenant(input.tenant.as_deref())?;
        let hash = self
            .hashing
            .hash(input.password)
            .await
            .map_err(AppError::Internal)?;
        let now = clock::now();
        let model = user::Model {
            id: Uuid::now_v7(),
            username,
            password_hash: hash,
            role: role.into(),
            tenant_id: tenant,
            disabled: false,
            created_at: now,
            updated_at: now,
        };
        let txn = db::begin_write(&self.db).await?;
        user::Entity::insert(user::ActiveModel::from(model.clone()))
            .exec_without_returning(&txn)
            .await
            .map_err(|e| match AppError::from(e) {
                AppError::Conflict(_) => {
                    AppError::Conflict(format!("user `{}` already exists", model.username))
                }
                other => other,
            })?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "user.create",
                entity_type: "user",
                entity_id: Some(model.id.to_string()),
                tenant_id: model.tenant_id.as_deref(),
                details: serde_json::json!({ "username": model.username, "role": model.role }),
            },
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(model)
    }

    /// Changes a user's role; their open sockets close, their next request has the new role.
    pub async fn set_role(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        role: Role,
    ) -> AppResult<user::Model> {
        let role = assignable(role)?;
        let details = serde_json::json!({ "role": role.name() });
        self.update_user(meta, id, "user.set_role", details, |m| {
            m.role = Set(role.into());
        })
        .await
    }

    /// Disables or re-enables a user; disabling closes their sockets and refuses their tokens.
    pub async fn set_disabled(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        disabled: bool,
    ) -> AppResult<user::Model> {
        if let Caller::User { id: me, .. } = &meta.caller
            && *me == id
            && disabled
        {
            return Err(AppError::bad_field("id", "you cannot disable yourself"));
        }
        let details = serde_json::json!({ "disabled": disabled });
        self.update_user(meta, id, "user.set_disabled", details, |m| {
            m.disabled = Set(disabled);
        })
        .await
    }

    async fn update_user(
        &self,
        meta: &RequestMeta,
        id: Uuid,
        action: &'static str,
        details: serde_json::Value,
        change: impl FnOnce(&mut user::ActiveModel),
    ) -> AppResult<user::Model> {
        use sea_orm::ActiveModelTrait;
        let txn = db::begin_write(&self.db).await?;
        let current = user::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| AppError::not_found("User", id))?;
        let mut active: user::ActiveModel = current.into();
        change(&mut active);
        active.updated_at = Set(clock::now());
        let updated = active.update(&txn).await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action,
                entity_type: "user",
                entity_id: Some(id.to_string()),
                tenant_id: updated.tenant_id.as_deref(),
                details,
            },
        )
        .await?;
        self.announce_revocation(&txn, id, None).await?;
        txn.commit().await?;
        self.revoked(id, None);
        Ok(updated)
    }

    /// Users, oldest first.
    pub async fn list_users(&self, page: PageRequest) -> AppResult<Page<user::Model>> {
        Ok(keyset_page(user::Entity::find(), user::Column::Id, page, &self.db).await?)
    }

    pub async fn count_users(&self) -> AppResult<u64> {
        Ok(user::Entity::find().count(&self.db).await?)
    }

    /// Creates `admin` when the user table is empty. Replicas starting together race on the
    /// unique username; the loser sees the winner's row and reports `AlreadyInitialised`.
    pub async fn ensure_first_admin(
        &self,
        configured: Option<&SecretString>,
    ) -> anyhow::Result<Bootstrap> {
        if user::Entity::find().count(&self.db).await? > 0 {
            return Ok(Bootstrap::AlreadyInitialised);
        }
        let (secret, generated) = match configured {
            Some(p) => (SecretString::from(p.expose_secret().to_owned()), false),
            None => (password::generate(), true),
        };
        let hash = self
            .hashing
            .hash(SecretString::from(secret.expose_secret().to_owned()))
            .await?;
        let now = clock::now();
        let row = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            username: Set(FIRST_ADMIN.into()),
            password_hash: Set(hash),
            role: Set(Role::Admin.into()),
            tenant_id: Set(None),
            disabled: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
        };
        match user::Entity::insert(row).exec(&self.db).await {
            Ok(_) if generated => Ok(Bootstrap::CreatedWithGenerated(secret)),
            Ok(_) => Ok(Bootstrap::Created),
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                Ok(Bootstrap::AlreadyInitialised)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Looks a user up by name.
    pub async fn find_by_username(&self, username: &str) -> AppResult<Option<user::Model>> {
        Ok(user::Entity::find()
            .filter(user::Column::Username.eq(username))
            .one(&self.db)
            .await?)
    }

    /// Checks a password and opens a session.
    pub async fn login(
        &self,
        meta: &RequestMeta,
        username: &str,
        password: &str,
    ) -> AppResult<Session> {
        let lock_key = (
            username.chars().take(128).collect::<String>(),
            meta.client.clone().unwrap_or_else(|| "unknown".into()),
        );
        // The two reads are independent: one round trip's wait instead of two.
        let (failures, found) = tokio::join!(
            login_failure::Entity::find_by_id(lock_key.clone()).one(&self.db),
            self.find_by_username(username),
        );
        let failures = failures?;
        if let Some(row) = &failures
            && let Some(until) = row.locked_until
        {
            let left = (until - clock::now()).num_seconds();
            if left >= 0 {
                metrics::counter!("aurum_rate_limited_total", "action" => "login").increment(1);
                return Err(AppError::RateLimited {
                    retry_after_secs: u64::try_from(left).unwrap_or(0) + 1,
                });
            }
        }
        let found = found?;
        let stored = match &found {
            Some(u) => u.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let verdict = self
            .hashing
            .verify(SecretString::from(password.to_owned()), stored)
            .await
            .map_err(AppError::Internal)?;
        let user = match found {
            Some(u) if verdict.matches && !u.disabled => u,
            _ => {
                self.record_failure(lock_key).await?;
                return Err(invalid_credentials());
            }
        };
        if failures.is_some() {
            login_failure::Entity::delete_by_id(lock_key)
                .exec(&self.db)
                .await?;
        }
        // Made with older parameters: store a hash with the current ones (the password is
        // known to be right, so this is the only moment it can be done).
        let rehashed = if verdict.needs_rehash {
            Some(
                self.hashing
                    .hash(SecretString::from(password.to_owned()))
                    .await
                    .map_err(AppError::Internal)?,
            )
        } else {
            None
        };
        let txn = db::begin_write(&self.db).await?;
        if let Some(hash) = rehashed {
            user::Entity::update_many()
                .col_expr(user::Column::PasswordHash, Expr::value(hash))
                .filter(user::Column::Id.eq(user.id))
                .filter(user::Column::PasswordHash.eq(user.password_hash.as_str()))
                .exec(&txn)
                .await?;
        }
        let session = self.open_session(&txn, user).await?;
        let login_meta = RequestMeta {
            caller: Caller::User {
                id: session.user.id,
                username: session.user.username.clone(),
                role: session.user.role.into(),
                tenant: session.user.tenant_id.clone(),
                token: None,
                principal: Principal::Person,
            },
            request_id: meta.request_id.clone(),
            client: meta.client.clone(),
        };
        audit::record(
            &txn,
            &login_meta,
            AuditEntry {
                action: "user.login",
                entity_type: "user",
                entity_id: Some(session.user.id.to_string()),
                tenant_id: session.user.tenant_id.as_deref(),
                details: serde_json::json!({}),
            },
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(session)
    }

    async fn record_failure(&self, key: (String, String)) -> AppResult<()> {
        use sea_orm::sea_query::OnConflict;
        let now = clock::now();
        login_failure::Entity::insert(login_failure::ActiveModel {
            username: Set(key.0.clone()),
            client: Set(key.1.clone()),
            failures: Set(1),
            locked_until: Set(None),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                login_failure::Column::Username,
                login_failure::Column::Client,
            ])
            .value(
                login_failure::Column::Failures,
                sea_orm::sea_query::ExprTrait::add(
                    Expr::col((login_failure::Entity, login_failure::Column::Failures)),
                    1,
                ),
            )
            .value(login_failure::Column::UpdatedAt, now)
            .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        let Some(row) = login_failure::Entity::find_by_id(key.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(());
        };
        let over = i64::from(row.failures) - i64::from(self.max_failures);
        if over >= 0 {
            let secs = 1i64 << over.min(10);
            let until = now + ChronoDuration::seconds(secs.min(900));
            login_failure::Entity::update_many()
                .col_expr(login_failure::Column::LockedUntil, Expr::value(until))
                .filter(login_failure::Column::Username.eq(key.0))
                .filter(login_failure::Column::Client.eq(key.1))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    async fn open_session<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        user: user::Model,
    ) -> AppResult<Session> {
        let issued = self
            .keys
            .issue(user.id)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("issuing token: {e}")))?;
        let refresh = random_token();
        let now = clock::now();
        refresh_token::Entity::insert(refresh_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user.id),
            token_hash: Set(sha256_hex(&refresh)),
            expires_at: Set(now + self.refresh_ttl),
            used_at: Set(None),
            created_at: Set(now),
        })
        .exec_without_returning(conn)
        .await?;
        Ok(Session {
            token: issued.token,
            refresh_token: refresh,
            expires_at: issued.expires_at,
            user,
        })
    }

    /// Exchanges a refresh token (once) for a new session.
    pub async fn refresh(&self, refresh: &str) -> AppResult<Session> {
        let txn = db::begin_write(&self.db).await?;
        let now = clock::now();
        let hash = sha256_hex(refresh);
        let row = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(hash.as_str()))
            .one(&txn)
            .await?
            .ok_or_else(invalid_credentials)?;
        let used = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::Id.eq(row.id))
            .filter(refresh_token::Column::UsedAt.is_null())
            .filter(refresh_token::Column::ExpiresAt.gt(now))
            .exec(&txn)
            .await?;
        if used.rows_affected != 1 {
            return Err(invalid_credentials());
        }
        let user = user::Entity::find_by_id(row.user_id)
            .one(&txn)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(invalid_credentials)?;
        let session = self.open_session(&txn, user).await?;
        txn.commit().await?;
        Ok(session)
    }

    /// Revokes the caller's access token and, when given, a refresh token of theirs.
    pub async fn logout(&self, meta: &RequestMeta, refresh: Option<&str>) -> AppResult<()> {
        let Caller::User {
            id, token, tenant, ..
        } = &meta.caller
        else {
            return Err(AppError::Unauthenticated);
        };
        let txn = db::begin_write(&self.db).await?;
        if let Some((jti, exp)) = token {
            let expires_at = chrono::DateTime::from_timestamp(i64::try_from(*exp).unwrap_or(0), 0)
                .unwrap_or_else(clock::now);
            revoked_token::Entity::insert(revoked_token::ActiveModel {
                jti: Set(jti.clone()),
                user_id: Set(*id),
                expires_at: Set(expires_at),
            })
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(revoked_token::Column::Jti)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        }
        if let Some(refresh) = refresh {
            refresh_token::Entity::update_many()
                .col_expr(refresh_token::Column::UsedAt, Expr::value(clock::now()))
                .filter(refresh_token::Column::TokenHash.eq(sha256_hex(refresh)))
                .filter(refresh_token::Column::UserId.eq(*id))
                .filter(refresh_token::Column::UsedAt.is_null())
                .exec(&txn)
                .await?;
        }
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action: "user.logout",
                entity_type: "user",
                entity_id: Some(id.to_string()),
                tenant_id: tenant.as_deref(),
                details: serde_json::json!({}),
            },
        )
        .await?;
        let jti = token.as_ref().map(|(jti, _)| jti.clone());
        self.announce_revocation(&txn, *id, jti.clone()).await?;
        txn.commit().await?;
        self.revoked(*id, jti.as_deref());
        Ok(())
    }

    /// Turns a bearer token (an access token or an API key) into the caller it names, with
    /// the role and state read now.
    pub async fn authenticate(&self, bearer: &str) -> AppResult<Caller> {
        if let Some(caller) = self.cache.caller(bearer) {
            return Ok(caller);
        }
        if bearer.starts_with(API_KEY_PREFIX) {
            return self.authenticate_key(bearer).await;
        }
        let claims = self.keys.verify(bearer).map_err(|e| {
            tracing::info!(auth.reason = %e, "token refused");
            AppError::Unauthenticated
        })?;
        let id = Uuid::parse_str(&claims.sub).map_err(|_| AppError::Unauthenticated)?;
        let revoked = revoked_token::Entity::find_by_id(claims.jti.clone())
            .one(&self.db)
            .await?
            .is_some();
        if revoked {
            return Err(AppError::Unauthenticated);
        }
        let user = user::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(AppError::Unauthenticated)?;
        let role = Role::from(user.role);
        self.cache.put_user(&user);
        let caller = Caller::User {
            id: user.id,
            username: user.username,
            role,
            tenant: user.tenant_id,
            token: Some((claims.jti.clone(), claims.exp)),
            principal: Principal::Person,
        };
        let expires = chrono::DateTime::from_timestamp(i64::try_from(claims.exp).unwrap_or(0), 0);
        self.cache
            .put_caller(bearer.to_owned(), id, &caller, expires);
        Ok(caller)
    }

    /// A user by id (the row `authenticate` just read, when it is still cached).
    pub async fn user(&self, id: Uuid) -> AppResult<user::Model> {
        if let Some(model) = self.cache.user(id) {
            return Ok(model);
        }
        user::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::not_found("User", id))
    }
}
