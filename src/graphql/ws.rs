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
    socket: WebSocket,
    state: AppState,
    protocol: WebSocketProtocols,
    request_id: String,
) {
    metrics::gauge!("aurum_websocket_connections").increment(1.0);
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|msg| {
            futures::future::ready(matches!(msg, Ok(m) if !matches!(m, Message::Close(_))))
        })
        .filter_map(|msg| {
            futures::future::ready(match msg {
                Ok(Message::Text(text)) => Some(axum::body::Bytes::from(text)),
                Ok(Message::Binary(bytes)) => Some(bytes),
                _ => None,
            })
        });
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
    let mut ping = tokio::time::interval(state.config.ws_keepalive());
    ping.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = sink.send(close(CLOSE_GOING_AWAY, "server shutting down")).await;
                break;
            }
            msg = output.next() => match msg {
                Some(WsMessage::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let _ = sink.send(close(code, &reason)).await;
                    break;
                }
                None => break,
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(axum::body::Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    // Give the close frame a moment to flush before the socket drops.
    let _ = tokio::time::timeout(Duration::from_millis(100), sink.close()).await;
    metrics::gauge!("aurum_websocket_connections").decrement(1.0);
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
