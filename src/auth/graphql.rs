//! GraphQL surface of identity: `login`, `refreshToken`, `logout`, `me`.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::user;

use super::{Caller, guard::Authenticated, permission::Role};
use crate::{
    error::AppError,
    graphql::context::{caller, meta, services},
};

/// A person or agent account.
pub struct User(pub user::Model);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn username(&self) -> &str {
        &self.0.username
    }
    async fn role(&self) -> Role {
        self.0.role.parse().unwrap_or(Role::Anonymous)
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
    /// The calling user.
    #[graphql(guard = "Authenticated")]
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        let Caller::User { id, .. } = caller(ctx) else {
            return Err(AppError::Unauthenticated.into());
        };
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
        let session = services(ctx)?
            .users
            .login(&meta(ctx), &username, &password)
            .await?;
        Ok(session.into())
    }

    /// Exchanges a refresh token for a new access token and refresh token (once).
    async fn refresh_token(&self, ctx: &Context<'_>, refresh_token: String) -> Result<AuthPayload> {
        Ok(services(ctx)?.users.refresh(&refresh_token).await?.into())
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
