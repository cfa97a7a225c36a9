//! GraphQL surface of identity: `login`, `refreshToken`, `logout`, `me`, and user and API
//! key administration.

use async_graphql::{
    Context, ID, InputObject, Object, Result, SimpleObject, connection::Connection,
};
use chrono::{DateTime, Utc};
use entity::{api_key, user};
use secrecy::SecretString;

use super::{
    Caller,
    guard::{Authenticated, Require},
    permission::{Permission, Role},
    service::{NewApiKey, NewUser},
};
use crate::{
    error::AppError,
    graphql::context::{
        ConnectionFields, caller, connection, meta, page_request, parse_id, services, wants_total,
    },
    rate_limit::LimitedAction,
};

/// A person or agent account.
pub struct User(pub user::Model);

#[Object]
impl User {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn username(&self) -> &str {
        &self.0.username
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    /// The dotted names of the permissions the role grants (`task.view`, …): what a client
    /// such as the console offers this user. The server checks every request against the
    /// same table.
    async fn permissions(&self) -> Vec<&'static str> {
        Role::from(self.0.role)
            .permissions()
            .iter()
            .map(|p| p.name())
            .collect()
    }
    async fn tenant_id(&self) -> Option<&str> {
        self.0.tenant_id.as_deref()
    }
    async fn disabled(&self) -> bool {
        self.0.disabled
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// An agent's credential. The secret is shown once, by `createApiKey`.
pub struct ApiKey(pub api_key::Model);

#[Object]
impl ApiKey {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    async fn tenant_id(&self) -> Option<&str> {
        self.0.tenant_id.as_deref()
    }
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}

/// A new API key and its secret (`ak_…`), which is not stored and cannot be shown again.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    /// Send it as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// Input of `createUser`.
#[derive(InputObject)]
pub struct CreateUserInput {
    /// 3-64 characters from [a-z0-9._-].
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    pub role: Role,
    /// Confines the user to one tenant.
    pub tenant_id: Option<String>,
}

/// Input of `createApiKey`.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// A label, 1-128 characters.
    pub name: String,
    pub role: Role,
    pub tenant_id: Option<String>,
    /// Unset = never expires (until revoked).
    pub expires_at: Option<DateTime<Utc>>,
}

/// The result of `login` and `refreshToken`.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// The access token (JWT): send it as `Authorization: Bearer …`.
    pub token: String,
    /// Exchange it once for a new pair with `refreshToken`.
    pub refresh_token: String,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

impl From<super::service::Session> for AuthPayload {
    fn from(s: super::service::Session) -> Self {
        Self {
            token: s.token,
            refresh_token: s.refresh_token,
            expires_at: DateTime::from_timestamp(i64::try_from(s.expires_at).unwrap_or(0), 0)
                .unwrap_or_default(),
            user: User(s.user),
        }
    }
}

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// Every user, oldest first.
    #[graphql(guard = "Require(Permission::UserManage)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, User, ConnectionFields>> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let rows = svc.users.list_users(page).await?;
        let total = if wants_total(ctx) {
            svc.users.count_users().await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |u| u.id, User))
    }

    /// Every API key (never its secret), oldest first.
    #[graphql(guard = "Require(Permission::UserManage)")]
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, ApiKey, ConnectionFields>> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let rows = svc.users.list_api_keys(page).await?;
        let total = if wants_total(ctx) {
            svc.users.count_api_keys().await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |k| k.id, ApiKey))
    }

    /// The calling user.
    #[graphql(guard = "Authenticated")]
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        let Caller::User { id, principal, .. } = caller(ctx) else {
            return Err(AppError::Unauthenticated.into());
        };
        if *principal == super::Principal::ApiKey {
            return Err(AppError::bad_input("an API key is not a user; see apiKeys").into());
        }
        Ok(User(services(ctx)?.users.user(*id).await?))
    }
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Logs in with a username and password. Wrong names and wrong passwords are refused alike.
    async fn login(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
    ) -> Result<AuthPayload> {
        let services = services(ctx)?;
        let meta = meta(ctx);
        // Attempts per client address, before any password work (the lockout per
        // (username, address) inside `login` is the second line).
        let client = format!("ip:{}", meta.client.as_deref().unwrap_or("unknown"));
        services
            .limits
            .check(LimitedAction::Login, &client, 1)
            .await?;
        let session = services.users.login(&meta, &username, &password).await?;
        Ok(session.into())
    }

    /// Exchanges a refresh token for a new access token and refresh token (once).
    async fn refresh_token(&self, ctx: &Context<'_>, refresh_token: String) -> Result<AuthPayload> {
        Ok(services(ctx)?.users.refresh(&refresh_token).await?.into())
    }

    /// Creates a user.
    #[graphql(guard = "Require(Permission::UserManage)")]
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> Result<User> {
        let new = NewUser {
            username: input.username,
            password: SecretString::from(input.password),
            role: input.role,
            tenant: input.tenant_id,
        };
        Ok(User(
            services(ctx)?.users.create_user(&meta(ctx), new).await?,
        ))
    }

    /// Changes a user's role; their open subscriptions end at once.
    #[graphql(guard = "Require(Permission::UserManage)")]
    async fn set_user_role(&self, ctx: &Context<'_>, id: ID, role: Role) -> Result<User> {
        let id = parse_id("id", &id)?;
        Ok(User(
            services(ctx)?.users.set_role(&meta(ctx), id, role).await?,
        ))
    }

    /// Disables (or re-enables) a user; a disabled user's tokens stop working at once.
    #[graphql(guard = "Require(Permission::UserManage)")]
    async fn set_user_disabled(&self, ctx: &Context<'_>, id: ID, disabled: bool) -> Result<User> {
        let id = parse_id("id", &id)?;
        Ok(User(
            services(ctx)?
                .users
                .set_disabled(&meta(ctx), id, disabled)
                .await?,
        ))
    }

    /// Creates an API key for an agent; its secret is in the answer and nowhere else.
    #[graphql(guard = "Require(Permission::UserManage)")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> Result<CreatedApiKey> {
        let new = NewApiKey {
            name: input.name,
            role: input.role,
            tenant: input.tenant_id,
            expires_at: input.expires_at,
        };
        let (key, secret) = services(ctx)?.users.create_api_key(&meta(ctx), new).await?;
        Ok(CreatedApiKey {
            api_key: ApiKey(key),
            secret,
        })
    }

    /// Revokes an API key on every replica at once.
    #[graphql(guard = "Require(Permission::UserManage)")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<ApiKey> {
        let id = parse_id("id", &id)?;
        Ok(ApiKey(
            services(ctx)?.users.revoke_api_key(&meta(ctx), id).await?,
        ))
    }

    /// Revokes the current access token (and the given refresh token).
    #[graphql(guard = "Authenticated")]
    async fn logout(&self, ctx: &Context<'_>, refresh_token: Option<String>) -> Result<bool> {
        services(ctx)?
            .users
            .logout(&meta(ctx), refresh_token.as_deref())
            .await?;
        Ok(true)
    }
}
