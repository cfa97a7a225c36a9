//! NATS connection. Core subjects carry cross-replica events; JetStream streams (declared in
//! one place when the DLQ arrives) carry durable task messages.

use std::time::Duration;

use super::DependencyStatus;
use crate::config::ServiceUrl;

/// Connects, failing fast with the setting's name when the server is unreachable.
pub async fn connect(url: &ServiceUrl) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name("aurum")
        .connection_timeout(Duration::from_secs(5))
        .connect(url.expose())
        .await
        .map_err(|e| anyhow::anyhow!("AURUM_NATS_URL ({url}): {e}"))
}

/// Readiness probe: the connection state plus a round trip within a second.
pub async fn check(client: &async_nats::Client) -> DependencyStatus {
    match tokio::time::timeout(Duration::from_secs(1), client.flush()).await {
        Ok(Ok(())) => match client.connection_state() {
            async_nats::connection::State::Connected => DependencyStatus::Ok,
            other => DependencyStatus::down(format!("connection {other:?}")),
        },
        Ok(Err(e)) => DependencyStatus::down(e),
        Err(_) => DependencyStatus::down("flush timed out after 1 s"),
    }
}
