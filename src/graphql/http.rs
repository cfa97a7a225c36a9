//! `/graphql` over HTTP: POST runs operations (JSON only, body capped, batches capped), GET
//! serves GraphiQL or upgrades to a WebSocket.

use async_graphql::{BatchRequest, BatchResponse, Executor};
use axum::{
    body::Bytes,
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use std::net::IpAddr;

use super::{
    context::{ClientAddr, RequestId},
    graphiql, ws,
};
use crate::{app::AppState, auth::Caller, error::AppError, telemetry::RequestIdExt};

/// Largest number of operations in one batched POST.
pub const MAX_BATCH: usize = 10;

/// A request refused before any operation ran: the error's HTTP status, a GraphQL-shaped
/// body with its code, extensions and the request id, and `Retry-After` for rate limits.
pub fn refusal(err: &AppError, request_id: &str) -> Response {
    let mut gql = async_graphql::ErrorExtensions::extend(err);
    gql.extensions
        .get_or_insert_with(Default::default)
        .set("requestId", request_id);
    let body = json!({ "errors": [gql.into_server_error(async_graphql::Pos::default())] });
    let mut response = (
        err.status(),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let AppError::RateLimited { retry_after_secs } = err
        && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Same origin as the request's `Host`, or one of the configured origins.
fn origin_allowed(origin: &str, headers: &HeaderMap, configured: &[String]) -> bool {
    if configured.iter().any(|o| o == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false)
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` address that is not itself a trusted proxy (addresses left of it were
/// written by the client and prove nothing). No trusted proxies = the header is ignored.
pub fn client_ip(request: &Request, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())?;
    Some(forwarded_client(peer, request.headers(), trusted))
}

fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
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

/// The edge rate limit on the client's address.
fn over_limit(state: &AppState, ip: Option<IpAddr>, request_id: &str) -> Option<Response> {
    let retry = state.edge.check(ip?).err()?;
    Some(refusal(
        &AppError::RateLimited {
            retry_after_secs: retry,
        },
        request_id,
    ))
}

/// `retryAfter` of a response refused whole by a per-caller limit (no data, one
/// `RATE_LIMITED` error): such a response goes out as HTTP 429 with `Retry-After`.
fn refused_retry_after(response: &BatchResponse) -> Option<u64> {
    let BatchResponse::Single(r) = response else {
        return None;
    };
    if !matches!(r.data, async_graphql::Value::Null) || r.errors.len() != 1 {
        return None;
    }
    let ext = r.errors[0].extensions.as_ref()?;
    let rate_limited = AppError::RateLimited {
        retry_after_secs: 0,
    };
    if ext.get("code") != Some(&async_graphql::Value::from(rate_limited.code())) {
        return None;
    }
    match ext.get("retryAfter") {
        Some(async_graphql::Value::Number(n)) => n.as_u64(),
        _ => None,
    }
}

/// A single operation or a batch. Decoded by the body's first character: `BatchRequest`'s
/// untagged decoding buffers the whole body into an intermediate tree first.
fn parse_batch(bytes: &[u8]) -> serde_json::Result<BatchRequest> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(bytes).map(BatchRequest::Batch),
        _ => serde_json::from_slice(bytes).map(BatchRequest::Single),
    }
}

/// `POST /graphql`.
pub async fn post(State(state): State<AppState>, request: Request) -> Response {
    let request_id = request.request_id();
    let ip = client_ip(&request, &state.config.trusted_proxies);
    if let Some(refused) = over_limit(&state, ip, &request_id) {
        return refused;
    }
    let client = ClientAddr(ip.map_or_else(|| "unknown".into(), |ip| ip.to_string()));
    let (parts, body) = request.into_parts();
    // Only JSON: `text/plain` and form types can be sent cross-site without a CORS preflight.
    if !is_json(&parts.headers) {
        return refusal(&AppError::UnsupportedMediaType, &request_id);
    }
    let limit = usize::try_from(state.config.max_body_bytes).unwrap_or(usize::MAX);
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return refusal(&AppError::PayloadTooLarge { limit }, &request_id),
    };
    let batch = match parse_batch(&bytes) {
        Ok(b) => b,
        Err(e) => {
            return refusal(
                &AppError::BadRequest(format!("the body is not a GraphQL request: {e}")),
                &request_id,
            );
        }
    };
    if let BatchRequest::Batch(items) = &batch
        && (items.is_empty() || items.len() > MAX_BATCH)
    {
        return refusal(&AppError::BatchTooLarge { max: MAX_BATCH }, &request_id);
    }
    let caller = match bearer(&parts.headers) {
        None => Caller::Anonymous,
        // Boxed: the lookup's future is large and most requests of a client carry a token,
        // but keeping it out of this handler's state keeps every request's future small.
        Some(token) => match Box::pin(state.services.users.authenticate(token)).await {
            Ok(caller) => caller,
            Err(err) => return refusal(&err, &request_id),
        },
    };
    // The operations take the request id with them; a failure to encode their answer still
    // needs it.
    let answer_id = request_id.clone();
    if !matches!(caller, Caller::Anonymous) {
        crate::telemetry::record_caller(&caller.audit_label());
    }
    let response: BatchResponse = match batch {
        BatchRequest::Single(request) => BatchResponse::Single(
            Box::pin(
                state.schema.execute(
                    request
                        .data(caller)
                        .data(RequestId(request_id))
                        .data(client),
                ),
            )
            .await,
        ),
        batch @ BatchRequest::Batch(_) => {
            let batch = batch.data(caller).data(RequestId(request_id)).data(client);
            Box::pin(state.schema.execute_batch(batch)).await
        }
    };
    let refused = refused_retry_after(&response);
    let status = match refused {
        Some(_) => StatusCode::TOO_MANY_REQUESTS,
        None => StatusCode::OK,
    };
    match serde_json::to_vec(&response) {
        Ok(body) => {
            let mut http = (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            if let Some(retry) = refused
                && let Ok(v) = HeaderValue::from_str(&retry.to_string())
            {
                http.headers_mut().insert(header::RETRY_AFTER, v);
            }
            http
        }
        Err(e) => refusal(
            &AppError::Internal(anyhow::anyhow!("encoding a GraphQL response: {e}")),
            &answer_id,
        ),
    }
}

/// `GET /graphql`: a WebSocket upgrade, or the GraphiQL page.
pub async fn get(State(state): State<AppState>, request: Request) -> Response {
    let request_id = request.request_id();
    let ip = client_ip(&request, &state.config.trusted_proxies);
    if let Some(refused) = over_limit(&state, ip, &request_id) {
        return refused;
    }
    let wants_upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_upgrade {
        return graphiql::page(&state);
    }
    // Browsers always send Origin on WebSocket upgrades and CORS does not apply to them:
    // refuse cross-site pages unless their origin is configured.
    if let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        && !origin_allowed(origin, request.headers(), &state.config.cors_origins)
    {
        return refusal(&AppError::ForbiddenOrigin, &request_id);
    }
    let address_slot = match ip {
        Some(ip) => match state.ws_per_address.take(ip) {
            Some(slot) => Some(slot),
            None => return refusal(&AppError::TooManyConnections, &request_id),
        },
        None => None,
    };
    let (mut parts, _) = request.into_parts();
    match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => {
            let client = ClientAddr(ip.map_or_else(|| "unknown".into(), |ip| ip.to_string()));
            ws::upgrade(state, upgrade, request_id, client, address_slot)
        }
        Err(rejection) => rejection.into_response(),
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
        let trusted: Vec<ipnet::IpNet> = ["10.0.0.0/8", "192.168.1.1/32"]
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
}
