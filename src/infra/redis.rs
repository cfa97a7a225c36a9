//! Redis connection (rate limits, lockouts and idempotency fast paths). It carries nothing
//! that cannot be rebuilt from the database.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::DependencyStatus;
use crate::config::ServiceUrl;

/// Connects with bounded timeouts, naming the setting in the error.
pub async fn connect(url: &ServiceUrl) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url.expose())
        .map_err(|e| anyhow::anyhow!("AURUM_REDIS_URL ({url}): {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| anyhow::anyhow!("AURUM_REDIS_URL ({url}): {e}"))
}

/// Readiness probe: `PING` within a second.
pub async fn check(conn: &ConnectionManager) -> DependencyStatus {
    let mut conn = conn.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    match tokio::time::timeout(Duration::from_secs(1), ping).await {
        Ok(Ok(_)) => DependencyStatus::Ok,
        Ok(Err(e)) => DependencyStatus::down(e),
        Err(_) => DependencyStatus::down("PING timed out after 1 s"),
    }
}
