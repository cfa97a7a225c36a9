//! Observability plumbing: JSON logs, the Prometheus recorder, and the request-id and
//! HTTP-metrics middleware. Request ids come from a valid client `x-request-id` or are
//! generated (UUIDv7), and are echoed on every response.
//!
//! Every request runs inside a `request` span holding `request.id`, and, once known,
//! `caller` (set by the transport after authentication) and `operation.kind` /
//! `operation.name` (set by the executor). Every log line written while it runs carries those
//! fields (JSON: the `spans` list), so the `extensions.requestId` a client receives finds the
//! server's lines. WebSocket connections and their operations have spans of their own
//! (`server::ws`).

use std::{
    collections::HashMap,
    sync::{OnceLock, RwLock},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, header::HeaderName},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// The header carrying the request id, both ways.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global tracing subscriber (once; later calls are ignored).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,async_nats=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        // The span list holds the request's fields (request id, caller, operation) on every
        // line logged inside it.
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer()).try_init(),
    };
}

/// The process-wide Prometheus recorder; installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const BUCKETS: [f64; 14] = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// The request id stored in request extensions by `request_id`.
#[derive(Debug, Clone)]
struct RequestIdValue(String);

/// Reads the request id the middleware attached.
pub trait RequestIdExt {
    fn request_id(&self) -> String;
}

impl RequestIdExt for Request {
    fn request_id(&self) -> String {
        self.extensions()
            .get::<RequestIdValue>()
            .map(|r| r.0.clone())
            .unwrap_or_default()
    }
}

/// A client id is kept when it is 1-128 visible ASCII characters; otherwise one is generated.
fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Methods as metric labels; anything unusual is `other` (clients choose methods freely).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The counter and histogram of one label set, registered once and then reused: building the
/// labelled key and looking it up in the recorder on every request costs more than the rest
/// of the middleware.
#[derive(Clone)]
pub struct MetricPair {
    pub count: metrics::Counter,
    pub duration: metrics::Histogram,
}

/// Handles by route (the router's path template, or `unmatched`), then method and status.
type HttpMetrics = HashMap<String, HashMap<(&'static str, u16), MetricPair>>;

fn http_metrics(route: &str, method: &'static str, status: u16) -> MetricPair {
    static CACHE: OnceLock<RwLock<HttpMetrics>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let found = cache.read().ok().and_then(|c| {
        c.get(route)
            .and_then(|by| by.get(&(method, status)))
            .cloned()
    });
    if let Some(pair) = found {
        return pair;
    }
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    let pair = MetricPair {
        count: metrics::counter!("aurum_http_requests_total", &labels),
        duration: metrics::histogram!("aurum_http_request_duration_seconds", &labels),
    };
    if let Ok(mut c) = cache.write() {
        c.entry(route.to_owned())
            .or_default()
            .insert((method, status), pair.clone());
    }
    pair
}

/// Layer of [`RequestContext`].
#[derive(Clone, Copy, Default)]
pub struct RequestContextLayer;

impl<S> tower::Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { inner }
    }
}

/// Records who is calling on the current request's (or operation's) span.
pub fn record_caller(label: &str) {
    tracing::Span::current().record("caller", label);
}

/// Records the operation on the current request's (or WebSocket operation's) span.
pub fn record_operation(kind: &str, name: &str) {
    let span = tracing::Span::current();
    span.record("operation.kind", kind);
    if !name.is_empty() {
        span.record("operation.name", name);
    }
}

/// Middleware: attaches the request id, echoes it, runs the request inside its `request` span
/// and records HTTP metrics. A service of its own rather than `middleware::from_fn`, which
/// clones the whole inner stack on every request.
#[derive(Clone)]
pub struct RequestContext<S> {
    inner: S,
}

impl<S, B> tower::Service<Request> for RequestContext<S>
where
    S: tower::Service<Request, Response = axum::http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = axum::http::Response<B>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let id = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| acceptable(v))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let header = HeaderValue::from_str(&id).ok();
        let span = tracing::info_span!(
            "request",
            request.id = %id,
            caller = tracing::field::Empty,
            operation.kind = tracing::field::Empty,
            operation.name = tracing::field::Empty,
        );
        request.extensions_mut().insert(RequestIdValue(id));
        // The matched path template (bounded by the router), not the request's own path.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = method_label(request.method());
        let started = Instant::now();
        let response = span.in_scope(|| self.inner.call(request));
        Box::pin(tracing::Instrument::instrument(
            async move {
                let mut response = response.await?;
                if let Some(value) = header {
                    response.headers_mut().insert(REQUEST_ID.clone(), value);
                }
                let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
                let metrics = http_metrics(route, method, response.status().as_u16());
                metrics.count.increment(1);
                metrics.duration.record(started.elapsed().as_secs_f64());
                Ok(response)
            },
            span,
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_bounded_and_printable() {
        assert!(super::acceptable("abc-123"));
        assert!(!super::acceptable(""));
        assert!(!super::acceptable("has space"));
        assert!(!super::acceptable(&"x".repeat(129)));
    }
}
