//! Docker engine client (sandbox runs). Unreachable at start = sandbox disabled, and `/ready`
//! says why; nothing else in the service depends on it.

use std::time::Duration;

use bollard::Docker;

use super::{
    DependencyStatus,
    guard::{Guard, guarded},
};

/// Where the Docker engine was looked for and whether it answered.
pub enum DockerState {
    Connected(Docker),
    /// Configured explicitly but not answering: reported as `down`.
    Unavailable(String),
    /// Not configured and not found at the default socket: the sandbox is off.
    Disabled(String),
}

/// Connects to `host` (or `DOCKER_HOST`, or the default socket) and checks it answers.
pub async fn connect(host: Option<&str>) -> DockerState {
    let host = host
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok());
    let configured = host.is_some();
    let unavailable = |reason: String| {
        if configured {
            DockerState::Unavailable(reason)
        } else {
            DockerState::Disabled(format!("no Docker engine at the default socket ({reason})"))
        }
    };
    let client = match host.as_deref() {
        Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
            Docker::connect_with_socket(h, 5, bollard::API_DEFAULT_VERSION)
        }
        Some(h) => Docker::connect_with_http(h, 5, bollard::API_DEFAULT_VERSION),
        None => Docker::connect_with_local_defaults(),
    };
    let docker = match client {
        Ok(d) => d,
        Err(e) => return unavailable(e.to_string()),
    };
    match tokio::time::timeout(Duration::from_secs(2), docker.ping()).await {
        Ok(Ok(_)) => DockerState::Connected(docker),
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(_) => unavailable("ping timed out after 2 s".into()),
    }
}

/// Readiness probe: `GET /_ping` within a second, through the `docker` breaker: while it is
/// open the probe reports that instead of waiting on an engine known to be failing.
pub async fn check(state: &DockerState, guard: Option<&Guard>) -> DependencyStatus {
    match state {
        DockerState::Unavailable(reason) => DependencyStatus::down(reason),
        DockerState::Disabled(reason) => DependencyStatus::Disabled {
            reason: Some(reason.clone()),
        },
        DockerState::Connected(docker) => {
            let ping = async {
                match tokio::time::timeout(Duration::from_secs(1), docker.ping()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("ping timed out after 1 s".to_owned()),
                }
            };
            match guarded(guard, ping).await {
                Ok(Ok(())) => DependencyStatus::Ok,
                Ok(Err(reason)) => DependencyStatus::down(reason),
                Err(refused) => DependencyStatus::down(refused),
            }
        }
    }
}
