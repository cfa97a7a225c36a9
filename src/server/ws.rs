//! GraphQL over WebSocket on `/graphql`, speaking `graphql-transport-ws` and the legacy
//! `graphql-ws` protocol, implemented here (rather than by async-graphql's engine) so that the
//! protocol's close codes, caps and shutdown behaviour are ours:
//!
//! - 4400 for a malformed message, 4401 for `subscribe` before `connection_ack`, 4403 for a
//!   refused token in `connection_init`, 4408 when no
//!   `connection_init` arrives in time, 4409 for a duplicate operation id, 4429 for a second
//!   `connection_init` or past the per-connection operation cap, 1001 on server shutdown;
//! - a small read buffer and a message size cap per connection, and server pings.
//!
//! Subscriptions run on shared executions (`feed`) and are listed in subscription admin for
//! as long as they run; an administrator's close ends one with a `SUBSCRIPTION_CLOSED` error
//! and `complete`.

use std::{sync::Arc, time::Duration};

use async_graphql::{
    Data, Executor, Request, Response,
    http::{ALL_WEBSOCKET_PROTOCOLS, ClientMessage, WebSocketProtocols},
};
use axum::{
    extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    response::Response as HttpResponse,
};
use futures::{SinkExt, Stream, StreamExt, stream::BoxStream};
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

use super::{
    AppState,
    feed::{FeedKey, clone_session, error_payload, serialize, subscriber_stream},
};
use crate::{
    auth::Caller,
    error::AppError,
    graphql::{
        context::{ClientAddr, RequestId},
        executor::data_of,
    },
};

/// Open WebSockets of this replica: the HorizontalPodAutoscaler's custom metric (k8s/hpa.yaml).
pub const CONNECTIONS_GAUGE: &str = "aurum_websocket_connections";

/// Registers the transport's gauge at 0, so `/metrics` has the series (and the autoscaler a
/// value) before the first socket opens.
pub fn register_metrics() {
    metrics::gauge!(CONNECTIONS_GAUGE).increment(0.0);
}

/// Close code sent to every open socket when the server shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_BAD_MESSAGE: u16 = 4400;
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_FORBIDDEN: u16 = 4403;
const CLOSE_INIT_TIMEOUT: u16 = 4408;
const CLOSE_DUPLICATE_ID: u16 = 4409;
const CLOSE_TOO_MANY: u16 = 4429;

/// Accepts the upgrade and hands the socket to `serve`.
pub fn upgrade(
    state: AppState,
    ws: WebSocketUpgrade,
    request_id: String,
    client: ClientAddr,
    address_slot: Option<super::ws_caps::Slot<std::net::IpAddr>>,
) -> HttpResponse {
    let ws = ws.protocols(ALL_WEBSOCKET_PROTOCOLS);
    let Some(protocol) = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .and_then(|p| p.parse::<WebSocketProtocols>().ok())
    else {
        return super::http::refusal(
            &AppError::BadRequest(
                "Sec-WebSocket-Protocol must be graphql-transport-ws or graphql-ws".into(),
            ),
            &request_id,
        );
    };
    let config = &state.config;
    let read_buffer = usize::try_from(config.ws_read_buffer_bytes).unwrap_or(512);
    let max_message = usize::try_from(config.ws_max_message_bytes).unwrap_or(65_536);
    let tracked = state.ws_tracker.token();
    // The connection's span: every line logged while it runs (and, through their own child
    // spans, while its operations run) carries the upgrade's request id and, once
    // `connection_init` authenticated it, the caller.
    let span = tracing::info_span!(
        "websocket",
        request.id = %request_id,
        caller = tracing::field::Empty,
    );
    ws.read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            tracing::Instrument::instrument(
                async move {
                    metrics::gauge!(CONNECTIONS_GAUGE).increment(1.0);
                    Connection::new(state, protocol, request_id, client)
                        .serve(socket)
                        .await;
                    metrics::gauge!(CONNECTIONS_GAUGE).decrement(1.0);
                    drop(address_slot);
                    drop(tracked);
                },
                span,
            )
        })
}

/// Why a connection ends.
enum End {
    Close(u16, String),
    /// The client went away (or the socket failed): nothing left to send.
    Gone,
}

/// One client connection's protocol state.
struct Connection {
    state: AppState,
    protocol: WebSocketProtocols,
    request_id: String,
    client: ClientAddr,
    session: Option<Arc<Data>>,
    caller: Caller,
    operations: StreamMap<String, BoxStream<'static, String>>,
    /// Keeps this socket in the live-session registry while it is open.
    registration: Option<crate::auth::sessions::Registration>,
    /// This socket's place in its user's cap.
    user_slot: Option<super::ws_caps::Slot<uuid::Uuid>>,
    /// Set by `connection_init`: cancelled when the credentials are revoked, and when the
    /// access token expires.
    pending_watch: Option<(CancellationToken, Option<tokio::time::Instant>)>,
}

impl Connection {
    fn new(
        state: AppState,
        protocol: WebSocketProtocols,
        request_id: String,
        client: ClientAddr,
    ) -> Self {
        Self {
            state,
            protocol,
            request_id,
            client,
            session: None,
            caller: Caller::Anonymous,
            operations: StreamMap::new(),
            registration: None,
            user_slot: None,
            pending_watch: None,
        }
    }

    fn legacy(&self) -> bool {
        self.protocol == WebSocketProtocols::SubscriptionsTransportWS
    }

    async fn serve(mut self, mut socket: WebSocket) {
        // Every wake-up of this loop polls the futures below. They are made once, not per
        // turn (a cancellation future registers with its token's lock when first polled and
        // again on drop), and the shutdown signal arrives through a token of this
        // connection's own: polling the server-wide one from every socket on every message
        // made all connections take one shared lock, several times per delivered event.
        let shutdown = self.state.shutdown.child_token();
        let stopped = shutdown.cancelled();
        tokio::pin!(stopped);
        let mut revoked = Box::pin(CancellationToken::new().cancelled_owned());
        let keepalive = self.state.config.ws_keepalive();
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let init_deadline = tokio::time::sleep(self.state.config.ws_init_timeout());
        tokio::pin!(init_deadline);
        // Far future until a token with an expiry arrives.
        let expiry = tokio::time::sleep(Duration::from_secs(10 * 365 * 24 * 3600));
        tokio::pin!(expiry);
        let end = loop {
            if let Some((token, expires)) = self.pending_watch.take() {
                revoked = Box::pin(token.cancelled_owned());
                if let Some(at) = expires {
                    expiry.as_mut().reset(at);
                }
            }
            tokio::select! {
                () = &mut revoked => {
                    break End::Close(CLOSE_FORBIDDEN, "Credentials revoked".into());
                }
                () = &mut expiry => {
                    break End::Close(CLOSE_FORBIDDEN, "Token expired".into());
                }
                () = &mut stopped => {
                    break End::Close(CLOSE_GOING_AWAY, "server shutting down".into());
                }
                () = &mut init_deadline, if self.session.is_none() => {
                    break End::Close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout".into());
                }
                Some((_, text)) = self.operations.next(), if !self.operations.is_empty() => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break End::Gone;
                    }
                }
                frame = socket.recv() => {
                    let bytes = match frame {
                        Some(Ok(Message::Text(text))) => axum::body::Bytes::from(text),
                        Some(Ok(Message::Binary(bytes))) => bytes,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break End::Gone,
                    };
                    match self.handle(&bytes).await {
                        Ok(replies) => {
                            let mut gone = false;
                            for reply in replies {
                                if socket.send(Message::Text(reply.into())).await.is_err() {
                                    gone = true;
                                    break;
                                }
                            }
                            if gone {
                                break End::Gone;
                            }
                        }
                        Err(end) => break end,
                    }
                }
                _ = ping.tick() => {
                    let frame = if self.legacy() && self.session.is_some() {
                        Message::Text(r#"{"type":"ka"}"#.into())
                    } else {
                        Message::Ping(axum::body::Bytes::new())
                    };
                    if socket.send(frame).await.is_err() {
                        break End::Gone;
                    }
                }
            }
        };
        if let End::Close(code, mut reason) = end {
            // A close reason may hold at most 123 bytes.
            if reason.len() > 123 {
                let mut cut = 123;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
            }
            let frame = Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            let _ = socket.send(frame).await;
            // Give the close frame a moment to flush before the socket drops.
            let _ = tokio::time::timeout(Duration::from_millis(100), socket.close()).await;
        }
    }

    /// Handles one client message; returns the replies to send, or how to end.
    async fn handle(&mut self, bytes: &[u8]) -> Result<Vec<String>, End> {
        let message = ClientMessage::from_bytes(bytes)
            .map_err(|e| End::Close(CLOSE_BAD_MESSAGE, format!("Invalid message: {e}")))?;
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.session.is_some() {
                    return Err(End::Close(
                        CLOSE_TOO_MANY,
                        "Too many initialisation requests".into(),
                    ));
                }
                if let Some(token) = init_token(payload.as_ref()) {
                    match self.state.services.users.authenticate(&token).await {
                        Ok(caller) => {
                            if let Caller::User { id, token, .. } = &caller {
                                let Some(slot) = self.state.ws_per_user.take(*id) else {
                                    return Err(End::Close(
                                        CLOSE_TOO_MANY,
                                        "Too many connections for this user".into(),
                                    ));
                                };
                                self.user_slot = Some(slot);
                                let jti = token.as_ref().map(|(jti, _)| jti.clone());
                                let (registration, cancel) = self.state.sessions.register(*id, jti);
                                let expires = token.as_ref().map(|(_, exp)| expiry_instant(*exp));
                                self.registration = Some(registration);
                                self.pending_watch = Some((cancel, expires));
                            }
                            if !matches!(caller, Caller::Anonymous) {
                                crate::telemetry::record_caller(&caller.audit_label());
                            }
                            self.caller = caller;
                        }
                        Err(_) => return Err(End::Close(CLOSE_FORBIDDEN, "Forbidden".into())),
                    }
                }
                let mut data = Data::default();
                data.insert(self.caller.clone());
                data.insert(RequestId(self.request_id.clone()));
                data.insert(self.client.clone());
                self.session = Some(Arc::new(data));
                let mut replies = vec![r#"{"type":"connection_ack"}"#.to_owned()];
                if self.legacy() {
                    replies.push(r#"{"type":"ka"}"#.to_owned());
                }
                Ok(replies)
            }
            ClientMessage::Start { id, payload } => {
                let Some(session) = self.session.clone() else {
                    return Err(End::Close(CLOSE_UNAUTHORIZED, "Unauthorized".into()));
                };
                if self.operations.contains_key(&id) {
                    return Err(End::Close(
                        CLOSE_DUPLICATE_ID,
                        format!("Subscriber for {id} already exists"),
                    ));
                }
                let cap =
                    usize::try_from(self.state.config.ws_max_operations).unwrap_or(usize::MAX);
                if self.operations.len() >= cap {
                    return Err(End::Close(
                        CLOSE_TOO_MANY,
                        format!("At most {cap} operations per connection"),
                    ));
                }
                // Every operation's stream ends with its `complete` message; the map drops
                // finished streams by itself.
                let done = futures::stream::once(futures::future::ready(envelope_complete(&id)));
                // The operation's span, a child of the connection's: its lines carry the
                // connection's request id and caller, the operation's id and what it runs.
                let span = tracing::info_span!(
                    "operation",
                    operation.id = %id,
                    operation.kind = tracing::field::Empty,
                    operation.name = tracing::field::Empty,
                );
                let stream = span.in_scope(|| self.start(id.clone(), payload, session));
                let stream = InSpan {
                    inner: stream.chain(done),
                    span,
                }
                .boxed();
                self.operations.insert(id, stream);
                Ok(Vec::new())
            }
            ClientMessage::Stop { id } => {
                // Removing drops the operation (and leaves its shared feed).
                if self.operations.remove(&id).is_some() && self.legacy() {
                    return Ok(vec![envelope_complete(&id)]);
                }
                Ok(Vec::new())
            }
            ClientMessage::ConnectionTerminate => Err(End::Close(1000, "terminated".into())),
            ClientMessage::Ping { payload } => Ok(vec![match payload {
                Some(p) => format!(r#"{{"type":"pong","payload":{p}}}"#),
                None => r#"{"type":"pong"}"#.to_owned(),
            }]),
            ClientMessage::Pong { .. } => Ok(Vec::new()),
        }
    }

    /// The stream of complete outgoing messages for operation `id`.
    fn start(
        &self,
        id: String,
        request: Request,
        session: Arc<Data>,
    ) -> BoxStream<'static, String> {
        let next = if self.legacy() { "data" } else { "next" };
        let id_json = serde_json::to_string(&id).unwrap_or_else(|_| "\"\"".into());
        let wrap = move |payload: &str| {
            format!(r#"{{"type":"{next}","id":{id_json},"payload":{payload}}}"#)
        };
        let hub = self.state.subscriptions.clone();
        let mut request = request;
        let parsed = hub.schema.operation(&mut request);
        if let Ok(op) = &parsed {
            crate::telemetry::record_operation(op.kind, &op.name);
        }
        match parsed {
            Ok(op) if op.kind == "subscription" => {
                // Charged per subscriber (joining a shared feed costs the same), before it
                // joins: a refused subscription gets one error and completes.
                let key = FeedKey::new(&request, &self.caller, op.resumes);
                let caller = self.caller.clone();
                let client = self.client.0.clone();
                let charged = async move {
                    let charge = hub.schema.charge(&op, &caller, Some(&client)).await;
                    (hub, charge, op, caller, client)
                };
                futures::FutureExt::flatten_stream(async move {
                    let (hub, charge, op, caller, client) = charged.await;
                    match charge {
                        Ok(()) => {
                            let registration = hub.registry.register(&caller, &op.name, &client);
                            let tracked = Arc::clone(&registration.tracked);
                            let closed = tracked.closed();
                            let request_id = data_of::<RequestId>(&session).map(|id| id.0.clone());
                            let notice = wrap(&error_payload(
                                &AppError::SubscriptionClosed,
                                request_id.as_deref(),
                            ));
                            let events =
                                subscriber_stream(&hub, key, request, session, wrap, tracked)
                                    .take_until(closed.clone().cancelled_owned());
                            // After an administrator's close: its error, then (as after every
                            // operation) `complete`. The registration ends with the stream.
                            let notice = futures::stream::once(async move {
                                let _listed = registration;
                                closed.is_cancelled().then_some(notice)
                            })
                            .filter_map(futures::future::ready);
                            events.chain(notice).boxed()
                        }
                        Err(err) => {
                            let mut response = Response::from_errors(vec![err]);
                            if let Some(id) = data_of::<RequestId>(&session) {
                                for e in &mut response.errors {
                                    e.extensions
                                        .get_or_insert_with(Default::default)
                                        .set("requestId", id.0.clone());
                                }
                            }
                            let payload = wrap(&serialize(&response));
                            futures::stream::once(futures::future::ready(payload)).boxed()
                        }
                    }
                })
                .boxed()
            }
            // Queries, mutations and unparseable documents: executed for this client alone.
            _ => {
                let schema = hub.schema.clone();
                let mut request = request;
                request.data = clone_session(&session);
                futures::stream::once(async move {
                    let response = schema.execute(request).await;
                    wrap(&serialize(&response))
                })
                .boxed()
            }
        }
    }
}

/// A stream polled inside `span`: the WebSocket operations' streams are polled by their
/// connection's loop, so their lines would otherwise carry only the connection's fields.
struct InSpan<S> {
    inner: S,
    span: tracing::Span,
}

impl<S: Stream + Unpin> Stream for InSpan<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        this.inner.poll_next_unpin(cx)
    }
}

/// The monotonic instant at which a token expiring at `exp` (seconds since the epoch) expires.
fn expiry_instant(exp: u64) -> tokio::time::Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now))
}

/// The bearer token of a `connection_init` payload: `{"Authorization": "Bearer …"}` (any case
/// of the key; the `Bearer ` prefix is optional).
fn init_token(payload: Option<&serde_json::Value>) -> Option<String> {
    let object = payload?.as_object()?;
    let value = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))?
        .1
        .as_str()?;
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest,
        _ => value,
    };
    Some(token.trim().to_owned())
}

fn envelope_complete(id: &str) -> String {
    let id_json = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into());
    format!(r#"{{"type":"complete","id":{id_json}}}"#)
}
