//! Redis connection (per-caller rate-limit buckets shared by the replicas). It carries nothing
//! that a replica cannot do without.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::DependencyStatus;
use crate::config::ServiceUrl;

/// Connects with bounded timeouts. A malformed URL stops start-up, naming the setting; a
/// Redis that does not answer does not: Redis only holds what the replica can do without
/// (shared rate-limit buckets), so the replica starts, `/ready` reports Redis down, limits
/// are enforced per replica, and the manager keeps reconnecting (at most 2 s apart) until
/// Redis answers. A replica that refused to start would instead crash-loop through a Redis
/// outage and come back later than Redis does.
pub async fn connect(url: &ServiceUrl) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url.expose())
        .map_err(|e| anyhow::anyhow!("AURUM_REDIS_URL ({url}): {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_max_delay(Duration::from_secs(2));
    // The manager retries a refused first connection for several seconds; start-up waits
    // for it at most this long.
    let first = ConnectionManager::new_with_config(client.clone(), config.clone());
    match tokio::time::timeout(Duration::from_secs(3), first).await {
        Ok(Ok(manager)) => Ok(manager),
        failed => {
            let reason = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no connection within 3 s".to_owned(),
            };
            tracing::warn!(
                error = %reason,
                redis = %url,
                "AURUM_REDIS_URL does not answer at start; serving without it (per-replica rate limits, /ready reports it down) and reconnecting"
            );
            ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| anyhow::anyhow!("AURUM_REDIS_URL ({url}): {e}"))
        }
    }
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
