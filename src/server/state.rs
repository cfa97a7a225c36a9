//! `AppState`: what a running server holds (configuration, connections, services, the
//! schema, the transports' shared state), built once by `app` and shared by every request.
//! The handlers in this module tree read it; nothing here builds it.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use tokio_util::task::TaskTracker;

use super::{
    console::ConsoleAssets, feed::SubscriptionHub, graphiql::GraphiqlAssets, ws_caps::Slots,
};
use crate::{
    auth::sessions::LiveSessions,
    config::Config,
    graphql::executor::ObservedSchema,
    infra::{db::StatementCounter, docker::DockerState, shutdown::Shutdown},
    rate_limit::EdgeLimit,
    services::Services,
};

/// Everything a running server holds.
pub struct Inner {
    pub config: Config,
    pub db: DatabaseConnection,
    pub statements: StatementCounter,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub nats: Option<async_nats::Client>,
    pub docker: DockerState,
    pub services: Services,
    /// The schema, wrapped so every transport gets coded errors and metrics.
    pub schema: ObservedSchema,
    /// Shared subscription executions of this replica.
    pub subscriptions: Arc<SubscriptionHub>,
    /// Authenticated sockets of this replica, closed on revocation.
    pub sessions: Arc<LiveSessions>,
    /// Requests per client address on `/graphql` (the route's layer).
    pub edge: EdgeLimit,
    /// Open WebSockets per client address.
    pub ws_per_address: Arc<Slots<std::net::IpAddr>>,
    /// Open WebSockets per user or API key.
    pub ws_per_user: Arc<Slots<uuid::Uuid>>,
    pub metrics: PrometheusHandle,
    pub graphiql: GraphiqlAssets,
    pub console: ConsoleAssets,
    /// The process's shutdown: draining (`/ready` 503), then stopped (the listener closes,
    /// WebSockets get 1001, background tasks end and are waited for).
    pub shutdown: Shutdown,
    /// Open WebSocket connections, awaited on shutdown.
    pub ws_tracker: TaskTracker,
}

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Wraps what `app` assembled.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
