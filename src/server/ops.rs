//! Operational endpoints: `/health` (the process answers), `/ready` (every dependency,
//! checked concurrently) and `/metrics` (Prometheus text).

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    breaker::Dependency,
    infra::{self, DependencyStatus},
    sandbox::service::Availability,
    server::AppState,
};

/// `GET /health`: liveness only; touches no dependency.
pub async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `GET /ready`: one entry per dependency, and where the circuit breakers keep their windows.
/// 503 when the database or NATS (when configured) is down. Redis down is reported
/// (`status: degraded`) but keeps the replica in service: it carries nothing a replica cannot
/// do without (rate limits and breakers fall back to this replica's own), and taking every
/// replica out of service during a Redis outage would turn it into a full one. Docker is
/// reported but only disables sandbox runs; `sandbox` says whether runs can start here (the
/// runtime registered, every language's image present) and why not. From SIGTERM on it
/// answers 503 `{"status":"draining"}` (see `infra::shutdown`).
pub async fn ready(State(state): State<AppState>) -> Response {
    // Shutting down: out of rotation at once, before any dependency is asked.
    if state.shutdown.is_draining() {
        let body = json!({ "status": "draining" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let redis = async {
        match &state.redis {
            Some(conn) => infra::redis::check(conn).await,
            None => DependencyStatus::Disabled { reason: None },
        }
    };
    let nats = async {
        match &state.nats {
            Some(client) => infra::nats::check(client).await,
            None => DependencyStatus::Disabled { reason: None },
        }
    };
    let docker_guard = state.services.breakers.guard(Dependency::Docker);
    let (database, redis, nats, docker) = tokio::join!(
        infra::db::check(&state.db),
        redis,
        nats,
        infra::docker::check(&state.docker, Some(&docker_guard)),
    );
    let sandbox = match state.services.sandbox.availability() {
        _ if matches!(state.docker, infra::docker::DockerState::Disabled(_)) => {
            DependencyStatus::Disabled {
                reason: Some("no Docker engine: sandbox runs are refused".into()),
            }
        }
        Availability::Ready => DependencyStatus::Ok,
        Availability::Unavailable(why) => DependencyStatus::down(why),
        Availability::Partial(missing) => DependencyStatus::down(
            missing
                .into_iter()
                .map(|(_, why)| why)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    let ready = !(database.is_down() || nats.is_down());
    let status = match (ready, redis.is_down()) {
        (false, _) => "unavailable",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    let body = json!({
        "status": status,
        "dependencies": { "database": database, "redis": redis, "nats": nats, "docker": docker, "sandbox": sandbox },
        "circuitBreakers": state.services.breakers.readiness(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: the Prometheus exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!("aurum_event_bus_local_receivers")
        .set(state.services.bus.receiver_count() as f64);
    // Read at scrape time: events committed but not yet on the bus, and how long the oldest
    // has waited (alert on it: a relay that cannot reach the bus shows here first).
    match state.services.bus.backlog().await {
        Ok((rows, age)) => {
            metrics::gauge!("aurum_outbox_depth").set(rows as f64);
            metrics::gauge!("aurum_outbox_oldest_age_seconds").set(age.as_secs_f64());
        }
        Err(e) => tracing::warn!(error = %e, "reading the outbox depth failed"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
