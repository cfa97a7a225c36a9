//! The edge limit: requests per client address on `/graphql`, per replica, refused before any
//! other work. It is tower-governor's layer (governor's keyed GCRA) keyed by [`ClientKey`],
//! which applies our trusted-proxy rule. Governor's error handler sees only the error, not the
//! request, so it marks the refusal and [`EdgeLimitService`] completes it into the coded
//! answer every other refusal gets: 429, `Retry-After`, `RATE_LIMITED` with `retryAfter` and
//! the request id.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, HeaderValue, Request, Response},
};
use futures::future::BoxFuture;
use governor::middleware::NoOpMiddleware;
use ipnet::IpNet;
use tower_governor::{
    GovernorError, GovernorLayer,
    governor::{Governor, GovernorConfig, GovernorConfigBuilder},
    key_extractor::KeyExtractor,
};

use crate::{error::AppError, telemetry::RequestIdExt};

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` address that is not itself a trusted proxy (addresses left of it were
/// written by the client and prove nothing). No trusted proxies = the header is ignored.
/// `None` when the server was not started with connect info.
pub fn client_ip<B>(request: &Request<B>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    Some(forwarded_client(peer, request.headers(), trusted))
}

fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let values: Vec<&HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
    let mut client = peer;
    for value in values.into_iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for hop in value.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return client;
            };
            client = ip;
            if !is_trusted(&ip) {
                return ip;
            }
        }
    }
    client
}

/// tower-governor's key: [`client_ip`] under the configured trusted proxies.
#[derive(Clone)]
pub struct ClientKey {
    trusted: Arc<[IpNet]>,
}

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        client_ip(request, &self.trusted).ok_or(GovernorError::UnableToExtractKey)
    }
}

/// What governor's error handler leaves in its (empty) response for [`EdgeLimitService`].
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Limited {
        retry_after_secs: u64,
    },
    /// No client address: the server was started without connect info (a wiring bug).
    NoClientAddress,
}

fn mark_refusal(error: GovernorError) -> Response<Body> {
    let refusal = match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            metrics::counter!("aurum_rate_limited_total", "action" => "http").increment(1);
            // Whole seconds, rounded down by governor: never tell a client to retry at once.
            Refusal::Limited {
                retry_after_secs: wait_time.max(1),
            }
        }
        GovernorError::UnableToExtractKey | GovernorError::Other { .. } => Refusal::NoClientAddress,
    };
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(refusal);
    response
}

/// The client-visible refusal, as coded as any other.
fn complete(refusal: Refusal, request_id: &str) -> Response<Body> {
    let error = match refusal {
        Refusal::Limited { retry_after_secs } => AppError::RateLimited { retry_after_secs },
        Refusal::NoClientAddress => AppError::Internal(anyhow::anyhow!(
            "edge limit: no client address (serve with connect info)"
        )),
    };
    error.http_response(request_id)
}

/// Requests per client address: the limiter, shared by every clone.
#[derive(Clone)]
pub struct EdgeLimit {
    config: Arc<GovernorConfig<ClientKey, NoOpMiddleware>>,
}

impl EdgeLimit {
    /// `per_second` sustained, `burst` at once, per [`client_ip`] under `trusted` proxies.
    pub fn new(per_second: u64, burst: u32, trusted: &[IpNet]) -> anyhow::Result<Self> {
        let period = Duration::from_nanos((1_000_000_000 / per_second.max(1)).max(1));
        let config = GovernorConfigBuilder::default()
            .key_extractor(ClientKey {
                trusted: trusted.into(),
            })
            .period(period)
            .burst_size(burst.max(1))
            .finish()
            .ok_or_else(|| {
                anyhow::anyhow!("AURUM_HTTP_RATE_PER_SECOND / AURUM_HTTP_RATE_BURST: zero")
            })?;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The layer that applies this limit to a route.
    pub fn layer(&self) -> EdgeLimitLayer {
        EdgeLimitLayer {
            governor: GovernorLayer::new(Arc::clone(&self.config)).error_handler(mark_refusal),
        }
    }

    /// Forgets addresses whose allowance is full again (call now and then: memory stays
    /// proportional to recently active clients).
    pub fn forget_idle(&self) {
        let limiter = self.config.limiter();
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

/// Layer of [`EdgeLimitService`].
#[derive(Clone)]
pub struct EdgeLimitLayer {
    governor: GovernorLayer<ClientKey, NoOpMiddleware, Body>,
}

impl<S> tower::Layer<S> for EdgeLimitLayer {
    type Service = EdgeLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeLimitService {
            inner: self.governor.layer(inner),
        }
    }
}

/// tower-governor's service, with its refusals completed (see the module doc).
#[derive(Clone)]
pub struct EdgeLimitService<S> {
    inner: Governor<ClientKey, NoOpMiddleware, S, Body>,
}

impl<S> tower::Service<Request<Body>> for EdgeLimitService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let request_id = request.request_id();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match response.extensions().get::<Refusal>() {
                Some(refusal) => complete(*refusal, &request_id),
                None => response,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append("x-forwarded-for", v);
            }
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = ["10.0.0.0/8", "192.168.1.1/32"]
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let spoofed = headers(&["6.6.6.6"]);
        // An untrusted peer's header is ignored.
        assert_eq!(
            forwarded_client(ip("8.8.8.8"), &spoofed, &trusted),
            ip("8.8.8.8")
        );
        // No trusted proxies: the header is always ignored.
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &spoofed, &[]),
            ip("10.0.0.5")
        );
        // Trusted peer: the right-most address that is not a trusted proxy; what the client
        // wrote to the left is ignored.
        let chain = headers(&["6.6.6.6, 1.2.3.4, 192.168.1.1"]);
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &chain, &trusted),
            ip("1.2.3.4")
        );
        // Several headers are one list, in order.
        let split = headers(&["6.6.6.6", "1.2.3.4", "10.1.1.1"]);
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &split, &trusted),
            ip("1.2.3.4")
        );
        // Garbage stops the walk at the last good hop.
        let bad = headers(&["not-an-ip, 10.2.2.2"]);
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &bad, &trusted),
            ip("10.2.2.2")
        );
        // No header: the proxy itself.
        assert_eq!(
            forwarded_client(ip("10.0.0.5"), &HeaderMap::new(), &trusted),
            ip("10.0.0.5")
        );
    }

    #[tokio::test]
    async fn burst_then_coded_refusal_per_address() {
        use tower::{Layer, Service};
        let edge = EdgeLimit::new(1, 3, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut service = edge
            .layer()
            .layer(tower::service_fn(|_: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
            }));
        let mut send = |from: [u8; 4]| {
            let mut request = Request::new(Body::empty());
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((from, 1234))));
            service.call(request)
        };
        for _ in 0..3 {
            assert_eq!(
                send([10, 0, 0, 1]).await.map(|r| r.status().as_u16()),
                Ok(200)
            );
        }
        let refused = send([10, 0, 0, 1]).await.unwrap_or_else(|e| match e {});
        assert_eq!(refused.status(), 429);
        let retry = refused
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .cloned();
        let body = axum::body::to_bytes(refused.into_body(), 4096)
            .await
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let extensions = &body["errors"][0]["extensions"];
        assert_eq!(extensions["code"], "RATE_LIMITED");
        let after = extensions["retryAfter"].as_u64().unwrap_or_default();
        assert!(after >= 1);
        assert_eq!(retry, Some(HeaderValue::from(after)));
        assert_eq!(
            send([10, 0, 0, 2]).await.map(|r| r.status().as_u16()),
            Ok(200)
        );
    }
}
