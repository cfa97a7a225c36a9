//! The axum router and its layers. Handlers live with what they serve (`graphql::http`,
//! `graphql::graphiql`, `ops`).

use axum::{Router, middleware, routing::get};
use tower_http::compression::CompressionLayer;

use crate::{app::AppState, graphql, ops, telemetry};

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/graphql",
            get(graphql::http::get).post(graphql::http::post),
        )
        .route("/graphiql/assets/{name}", get(graphql::graphiql::asset))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn(telemetry::request_context))
        .with_state(state)
}
