//! GraphQL over WebSocket on `/graphql`: `graphql-transport-ws` and the legacy `graphql-ws`
//! protocol. Each connection has a small read buffer, a message size cap and server pings,
//! and is closed with 1001 when the server shuts down.

use std::time::Duration;

use async_graphql::{
    Data,
    http::{ALL_WEBSOCKET_PROTOCOLS, WebSocket as GqlWebSocket, WebSocketProtocols, WsMessage},
};
use axum::{
    extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};

use super::context::RequestId;
use crate::{app::AppState, auth::Caller};

/// Close code sent to every open socket when the server shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Accepts the upgrade and hands the socket to `serve`.
pub fn upgrade(state: AppState, ws: WebSocketUpgrade, request_id: String) -> Response {
    let ws = ws.protocols(ALL_WEBSOCKET_PROTOCOLS);
    let Some(protocol) = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .and_then(|p| p.parse::<WebSocketProtocols>().ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must be graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    let config = &state.config;
    let read_buffer = usize::try_from(config.ws_read_buffer_bytes).unwrap_or(4096);
    let max_message = usize::try_from(config.ws_max_message_bytes).unwrap_or(65_536);
    let tracked = state.ws_tracker.token();
    ws.read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            serve(socket, state, protocol, request_id).await;
            drop(tracked);
        })
}

async fn serve(
    mut socket: WebSocket,
    state: AppState,
    protocol: WebSocketProtocols,
    request_id: String,
) {
    metrics::gauge!("aurum_websocket_connections").increment(1.0);
    // The socket stays owned by this loop (no split, no lock per frame): client frames are
    // handed to the protocol engine through a small channel, its output is written here.
    let (to_engine, from_client) = tokio::sync::mpsc::channel::<axum::body::Bytes>(16);
    let input = tokio_stream::wrappers::ReceiverStream::new(from_client);
    let mut data = Data::default();
    data.insert(RequestId(request_id));
    let output = GqlWebSocket::new(state.schema.clone(), input, protocol)
        .connection_data(data)
        .on_connection_init(|_payload| async move {
            let mut data = Data::default();
            data.insert(Caller::Anonymous);
            Ok(data)
        });
    futures::pin_mut!(output);
    let shutdown = state.shutdown.clone();
    let keepalive = state.config.ws_keepalive();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = socket.send(close(CLOSE_GOING_AWAY, "server shutting down")).await;
                break;
            }
            msg = output.next() => match msg {
                Some(WsMessage::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let _ = socket.send(close(code, &reason)).await;
                    break;
                }
                None => break,
            },
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if to_engine.send(axum::body::Bytes::from(text)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if to_engine.send(bytes).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // The client closed or the connection failed.
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(axum::body::Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    // Give the close frame a moment to flush before the socket drops.
    let _ = tokio::time::timeout(Duration::from_millis(100), socket.close()).await;
    metrics::gauge!("aurum_websocket_connections").decrement(1.0);
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
