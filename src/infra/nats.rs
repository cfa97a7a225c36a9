//! NATS connection. Core subjects carry cross-replica events; JetStream streams (declared in
//! one place when the DLQ arrives) carry durable task messages.

use std::time::Duration;

use super::DependencyStatus;
use crate::config::ServiceUrl;

/// How long start-up waits for the first connection before serving without it.
const FIRST_CONNECTION: Duration = Duration::from_secs(3);

/// Connects. A malformed URL stops start-up, naming the setting; a server that does not
/// answer does not: the client keeps connecting in the background (and then subscribes and
/// publishes as usual), while `/ready` reports NATS down, so an orchestrator sends the replica
/// no traffic instead of restarting it in a loop through a NATS outage.
pub async fn connect(url: &ServiceUrl) -> anyhow::Result<async_nats::Client> {
    let client = async_nats::ConnectOptions::new()
        .name("aurum")
        .connection_timeout(Duration::from_secs(2))
        .retry_on_initial_connect()
        .connect(url.expose())
        .await
        .map_err(|e| anyhow::anyhow!("AURUM_NATS_URL ({url}): {e}"))?;
    let deadline = tokio::time::Instant::now() + FIRST_CONNECTION;
    while client.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                nats = %url,
                "AURUM_NATS_URL does not answer at start; serving without it (/ready reports it down, events wait for it) and reconnecting"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(client)
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
