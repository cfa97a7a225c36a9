//! The server side: the axum router and its layers (request context with id, span and
//! metrics; compression, CORS from configuration and security headers), the handlers of every
//! route (`http` for `/graphql` POST and GET, `ws` for GraphQL over WebSocket with its caps in
//! `ws_caps`, `graphiql`, `console` for the ops console, `ops` for `/health`, `/ready`, `/metrics`) and the state they share
//! (`state::AppState`). It runs the schema that `graphql` assembles and never the reverse.

mod assets;
pub mod console;
pub mod feed;
pub mod graphiql;
pub mod http;
pub mod ops;
pub mod state;
pub mod ws;
pub mod ws_caps;

pub use state::{AppState, Inner};

use axum::{
    Router,
    http::{HeaderName, HeaderValue, Method, header},
    routing::get,
};
use tower_http::{
    compression::CompressionLayer,
    cors::{AllowOrigin, CorsLayer},
    set_header::SetResponseHeaderLayer,
};

use crate::telemetry;

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    ws::register_metrics();
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    // The whole stack goes in with one `Router::layer` call: each call wraps every route in
    // another boxed service, and each box is cloned on every request.
    let stack = tower::ServiceBuilder::new()
        .layer(telemetry::RequestContextLayer)
        .layer(cors(&state.config.cors_origins))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ))
        .layer(header(
            header::CONTENT_SECURITY_POLICY,
            "frame-ancestors 'none'",
        ))
        .layer(CompressionLayer::new());
    Router::new()
        .route(
            "/graphql",
            get(http::get)
                .post(http::post)
                .route_layer(state.edge.layer()),
        )
        .route("/graphiql/assets/{name}", get(graphiql::asset))
        .route("/console", get(console::page))
        .route("/console/", get(console::page))
        .route("/console/assets/{name}", get(console::asset))
        .route("/console/{*view}", get(console::page))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .layer(stack)
        .with_state(state)
}

/// CORS for the configured origins only; with none configured, no cross-origin access.
fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600))
}
