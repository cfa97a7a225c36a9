//! GraphQL surface of subscription admin, behind `system.admin`: `activeSubscriptions` and
//! `closeSubscription` / `closeSubscriptionsOf`. Thin: the service gathers from and closes on
//! every replica.

use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};

use super::model;
use crate::{
    auth::{guard::Require, permission::Permission},
    graphql::context::{meta, parse_id, services},
};

/// A live GraphQL subscription on some replica.
pub struct ActiveSubscription(pub model::ActiveSubscription);

#[Object]
impl ActiveSubscription {
    /// Pass it to `closeSubscription`.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The replica serving it.
    async fn replica(&self) -> &str {
        &self.0.replica
    }
    /// Who subscribed, as the audit log names callers.
    async fn caller(&self) -> &str {
        &self.0.caller
    }
    /// The user's id, or the API key's (see `apiKey`); null for anonymous callers.
    async fn user_id(&self) -> Option<ID> {
        self.0.user_id.map(|id| ID(id.to_string()))
    }
    /// The caller is an agent's API key.
    async fn api_key(&self) -> bool {
        self.0.api_key
    }
    /// The operation's name; empty for anonymous operations.
    async fn operation_name(&self) -> &str {
        &self.0.operation_name
    }
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    /// Events sent to the client so far.
    async fn events_delivered(&self) -> u64 {
        self.0.delivered
    }
    /// Events produced for it that it has not taken yet.
    async fn lag(&self) -> u64 {
        self.0.lag
    }
    /// The client's address (as the edge sees it, behind trusted proxies).
    async fn client_address(&self) -> &str {
        &self.0.client_address
    }
}

#[derive(Default)]
pub struct SubscriptionAdminQuery;

#[Object]
impl SubscriptionAdminQuery {
    /// Every live subscription on every replica that answers within 300 ms, oldest first.
    #[graphql(guard = "Require(Permission::SystemAdmin)")]
    async fn active_subscriptions(&self, ctx: &Context<'_>) -> Result<Vec<ActiveSubscription>> {
        Ok(services(ctx)?
            .subscriptions
            .list()
            .await?
            .into_iter()
            .map(ActiveSubscription)
            .collect())
    }
}

#[derive(Default)]
pub struct SubscriptionAdminMutation;

#[Object]
impl SubscriptionAdminMutation {
    /// Closes one subscription wherever it runs: its client receives a `SUBSCRIPTION_CLOSED`
    /// error, then `complete`. Audited. `NOT_FOUND` when no replica serves it.
    #[graphql(guard = "Require(Permission::SystemAdmin)")]
    async fn close_subscription(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let id = parse_id("id", &id)?;
        services(ctx)?
            .subscriptions
            .close_one(&meta(ctx), id)
            .await?;
        Ok(true)
    }

    /// Closes every subscription of a user (or API key) on every replica; returns how many.
    /// Audited when any closed. Their sockets stay open: to keep the user out, disable it.
    #[graphql(guard = "Require(Permission::SystemAdmin)")]
    async fn close_subscriptions_of(&self, ctx: &Context<'_>, user_id: ID) -> Result<u64> {
        let user = parse_id("userId", &user_id)?;
        Ok(services(ctx)?
            .subscriptions
            .close_of(&meta(ctx), user)
            .await?)
    }
}
