//! Aurum: a control plane for fleets of LLM agents, served as one GraphQL API.
//!
//! Module map (dependencies point down): `app` (assembly, from `config`) → `server`
//! (router, handlers, `AppState`) → `graphql` (schema, executor) → `<domain>::graphql` →
//! `<domain>::service` → `idempotency`, `audit`, `infra`, `entity`. `services` is the leaf the
//! schema reaches the domains through; `error` and `telemetry` are used by every layer.
//! `subscriptions` (subscription admin) is a domain the WebSocket transport reports to.

pub mod app;
pub mod audit;
pub mod auth;
pub mod breaker;
pub mod budget;
pub mod clock;
pub mod config;
pub mod dlq;
pub mod error;
pub mod events;
pub mod governance;
pub mod graphql;
pub mod idempotency;
pub mod infra;
pub mod llm;
pub mod pagination;
pub mod rate_limit;
pub mod sandbox;
pub mod server;
pub mod services;
pub mod subscriptions;
pub mod task;
pub mod telemetry;

use std::{future::Future, net::SocketAddr};

use tokio::net::TcpListener;

pub use server::AppState;

/// Serves `state` on `listener` until `shutdown` resolves, then shuts down in two steps
/// (`infra::shutdown`): drains for `AURUM_SHUTDOWN_DRAIN_SECONDS` (`/ready` answers 503, all
/// else is served), then stops accepting, lets in-flight HTTP requests finish, closes
/// WebSockets with 1001 and waits for them and for the background tasks to end. The process
/// is done `AURUM_SHUTDOWN_TIMEOUT_SECONDS` after the signal at the latest.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let lifecycle = state.shutdown.clone();
    let app = server::router(state.clone());
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "serving");
    let drain = state.config.shutdown_drain()?;
    let signal = {
        let lifecycle = lifecycle.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                () = lifecycle.cancelled() => {}
            }
            lifecycle.drain();
            if !drain.is_zero() && !lifecycle.is_cancelled() {
                tracing::info!(
                    drain_s = drain.as_secs(),
                    "draining: /ready answers 503, requests are still served"
                );
                tokio::select! {
                    () = tokio::time::sleep(drain) => {}
                    () = lifecycle.cancelled() => {}
                }
            }
            tracing::info!("shutting down: no new connections");
            lifecycle.stop();
        }
    };
    let timeout = state.config.shutdown_timeout();
    // Small request/response pairs and WebSocket frames must not wait for Nagle.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal);
    let drained = async {
        serve.await?;
        state.ws_tracker.close();
        state.ws_tracker.wait().await;
        lifecycle.stop();
        lifecycle.wait().await;
        tracing::info!("background tasks stopped");
        anyhow::Ok(())
    };
    // The deadline starts with the signal, not with the server's end.
    let deadline = async {
        lifecycle.drained().await;
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        result = drained => result?,
        () = deadline => tracing::warn!(
            timeout_s = timeout.as_secs(),
            background_tasks = lifecycle.running(),
            "shutdown timed out; dropping open connections and background tasks"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}
