//! The baselines' servers: this binary started again as a bare fan-out (b) or a bare axum
//! HTTP server (a), with no GraphQL, protocol or database.

use std::process::Child;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    common::{self, Ws},
    subscribers::ws_config,
};

/// The flag that makes this binary the bare fan-out server of (b)'s baseline.
pub(crate) const BARE_FANOUT_FLAG: &str = "--bare-fanout-server";

/// The flag that makes this binary the bare HTTP server of (a)'s floor.
pub(crate) const BARE_HTTP_FLAG: &str = "--bare-http-server";

/// This benchmark binary started again as a separate process, as a bare server:
///
/// - with `BARE_FANOUT_FLAG`, (b)'s baseline: WebSockets with what every fan-out over tokio
///   needs and nothing else (no GraphQL, protocol, authentication or database): one task per
///   socket, fed by one broadcast channel. Its latency is the machine's floor for sending one
///   message to each of n sockets from a second process over loopback TCP;
/// - with `BARE_HTTP_FLAG`, (a)'s floor: the same HTTP stack as Aurum (axum on hyper, TCP_NODELAY)
///   with two routes and nothing else: `GET /health` as Aurum answers it, and `POST /graphql`,
///   which decodes its JSON body and answers what Aurum answers `{ __typename }`. Its POST/GET
///   ratio is the most any JSON-over-POST endpoint gets on this stack and machine.
pub(crate) struct Bare {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Bare {
    /// Starts this binary with `flag` (`BARE_FANOUT_FLAG` or `BARE_HTTP_FLAG`).
    pub(crate) fn start(flag: &str) -> Self {
        let (child, addr) = common::spawn_bare(&[flag]);
        Self { child, addr }
    }

    pub(crate) async fn connect(&self, role: &str) -> Ws {
        let config = ws_config();
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("ws://{}/", self.addr),
            Some(config),
            true,
        )
        .await
        .unwrap();
        ws.send(Message::Text(role.into())).await.unwrap();
        // The server answers once the socket has its place.
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "ready" => ws,
            other => panic!("bare fan-out server: {other:?}"),
        }
    }

    pub(crate) async fn subscriber(&self) -> Ws {
        self.connect("subscribe").await
    }

    pub(crate) async fn publisher(&self) -> Ws {
        self.connect("publish").await
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bare fan-out server's process.
pub(crate) fn bare_fanout_server() {
    common::bare_process(|listener| async move {
        let (tx, _) =
            tokio::sync::broadcast::channel::<tokio_tungstenite::tungstenite::Utf8Bytes>(4096);
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let config = ws_config();
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                else {
                    return;
                };
                let Some(Ok(Message::Text(role))) = ws.next().await else {
                    return;
                };
                let mut rx = tx.subscribe();
                if ws.send(Message::Text("ready".into())).await.is_err() {
                    return;
                }
                if role.as_str() == "publish" {
                    drop(rx);
                    while let Some(Ok(Message::Text(text))) = ws.next().await {
                        let _ = tx.send(text);
                    }
                    return;
                }
                loop {
                    tokio::select! {
                        item = rx.recv() => match item {
                            Ok(text) => {
                                if ws.send(Message::Text(text)).await.is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        },
                        frame = ws.next() => match frame {
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                    }
                }
            });
        }
    });
}

/// The bare HTTP server's process.
pub(crate) fn bare_http_server() {
    async fn answer(body: axum::body::Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        match serde_json::from_slice::<Value>(&body) {
            Ok(request) if request["query"].is_string() => {
                axum::Json(json!({"data": {"__typename": "Query"}})).into_response()
            }
            _ => axum::http::StatusCode::BAD_REQUEST.into_response(),
        }
    }
    common::bare_process(|listener| async move {
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            tcp.set_nodelay(true).unwrap();
        });
        let app = axum::Router::new()
            .route(
                "/health",
                axum::routing::get(|| async { axum::Json(json!({ "status": "ok" })) }),
            )
            .route("/graphql", axum::routing::post(answer));
        axum::serve(listener, app).await.unwrap();
    });
}
