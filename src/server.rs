//! The axum router and its layers: request context (id, metrics), compression, CORS from
//! configuration and security headers. Handlers live with what they serve (`graphql::http`,
//! `graphql::graphiql`, `ops`).

use axum::{
    Router,
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware,
    routing::get,
};
use governor::middleware::NoOpMiddleware;
use tower_governor::{
    GovernorError, GovernorLayer, governor::GovernorConfigBuilder,
    key_extractor::PeerIpKeyExtractor,
};
use tower_http::{
    compression::CompressionLayer,
    cors::{AllowOrigin, CorsLayer},
    set_header::SetResponseHeaderLayer,
};

use crate::{app::AppState, graphql, ops, telemetry};

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let cors = cors(&state.config.cors_origins);
    let security = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
    ];
    let mut router = Router::new()
        .route(
            "/graphql",
            get(graphql::http::get)
                .post(graphql::http::post)
                .layer(edge_limit(&state.config)),
        )
        .route("/graphiql/assets/{name}", get(graphql::graphiql::asset))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .layer(CompressionLayer::new());
    for (name, value) in security {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
        .layer(cors)
        .layer(middleware::from_fn(telemetry::request_context))
        .with_state(state)
}

/// Per-client-address limit at the edge of `/graphql`, keyed by the TCP peer (a header a
/// client can set is never trusted). A refusal is a 429 with `Retry-After` and a coded body.
fn edge_limit(
    config: &crate::config::Config,
) -> GovernorLayer<PeerIpKeyExtractor, NoOpMiddleware, axum::body::Body> {
    let nanos = (1_000_000_000 / config.http_rate_per_second.max(1)).max(1);
    let mut builder = GovernorConfigBuilder::default();
    builder
        .per_nanosecond(nanos)
        .burst_size(config.http_rate_burst.max(1));
    let governor = builder.finish().unwrap_or_default();
    GovernorLayer::new(governor).error_handler(|err| {
        let (status, retry) = match err {
            GovernorError::TooManyRequests { wait_time, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, wait_time.max(1))
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, 1),
        };
        metrics::counter!("aurum_rate_limited_total", "action" => "http").increment(1);
        let body = serde_json::json!({
            "errors": [{ "message": format!("rate limit exceeded; retry after {retry} s"),
                         "extensions": { "code": "RATE_LIMITED", "retryAfter": retry } }]
        });
        let mut response = axum::http::Response::new(axum::body::Body::from(body.to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    })
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
