//! `/graphql` over HTTP: POST runs operations (JSON only, body capped, batches capped), GET
//! serves GraphiQL or upgrades to a WebSocket.

use super::{AppState, graphiql, ws};
use crate::{
    auth::Caller,
    error::AppError,
    graphql::context::{ClientAddr, RequestId},
    rate_limit::edge::client_ip,
    telemetry::RequestIdExt,
};
use async_graphql::{BatchRequest, BatchResponse, Executor};
use axum::{
    body::Bytes,
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Largest number of operations in one batched POST.
pub const MAX_BATCH: usize = 10;

/// A request refused before any operation ran (see [`AppError::http_response`]).
pub fn refusal(err: &AppError, request_id: &str) -> Response {
    err.http_response(request_id)
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
