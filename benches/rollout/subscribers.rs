//! The WebSocket subscribers (graphql-transport-ws) of the watched budget's `budgetChanged`:
//! they connect through the balancer, reconnect as graphql-ws' client does (randomised
//! backoff) and resume with `after: <last cursor>`, recording reconnects, first events after
//! them, how sockets ended, and events replayed or lagged.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use hyper::header::HeaderValue;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::{
    SUBSCRIBERS, TENANT, WATCHED,
    common::Ws,
    state::{Reconnect, Shared},
};

const SUBSCRIPTION: &str = "subscription($t: String!, $p: String, $a: String) { budgetChanged(tenantId: $t, projectId: $p, after: $a) { cursor kind state { used reserved } } }";

async fn send_json(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .map_err(|e| e.to_string())
}

/// A WebSocket through the balancer, past `connection_init` / `connection_ack`.
async fn open_socket(url: &str, token: &str) -> Result<Ws, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => format!("HTTP {}", r.status()),
            e => format!("connect: {e}"),
        })?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    send_json(&mut ws, init).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                match v["type"].as_str() {
                    Some("connection_ack") => return Ok(ws),
                    Some("ping") => send_json(&mut ws, json!({ "type": "pong" })).await?,
                    _ => return Err(format!("before the ack: {v}")),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!(
                    "closed before the ack ({})",
                    frame.map_or("no code".into(), |f| u16::from(f.code).to_string())
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("before the ack: {e}")),
            None => return Err("ended before the ack".into()),
        }
    }
}

/// What one subscription on an open socket ended with.
struct SocketEnd {
    /// How the socket ended: a close code, or how it broke without one.
    how: String,
    /// Whether the subscription had delivered an event.
    delivered: bool,
}

/// Per-subscriber state across its sockets.
struct Subscriber {
    shared: Arc<Shared>,
    cursor: Option<String>,
    last_position: u64,
    /// When it lost its socket (and in which phase), until it has subscribed again.
    down_since: Option<(Instant, u8)>,
    /// When it subscribed again (and the phase of the disconnect), until the first event.
    awaiting_event: Option<(Instant, u8)>,
    operations: u64,
}

impl Subscriber {
    async fn subscribe(&mut self, ws: &mut Ws) -> Result<String, String> {
        self.operations += 1;
        let id = self.operations.to_string();
        let msg = json!({ "id": id, "type": "subscribe", "payload": { "query": SUBSCRIPTION, "variables": { "t": TENANT, "p": WATCHED, "a": self.cursor } } });
        send_json(ws, msg).await?;
        Ok(id)
    }

    /// Reads `ws` until it ends (or the run stops the subscribers).
    async fn follow(&mut self, ws: &mut Ws) -> SocketEnd {
        let stop = self.shared.stop_subs.clone();
        let mut delivered = false;
        let end = |how: String, delivered: bool| SocketEnd { how, delivered };
        let mut id = match self.subscribe(ws).await {
            Ok(id) => id,
            Err(e) => return end(format!("send failed: {e}"), false),
        };
        if let Some((since, phase)) = self.down_since.take() {
            self.shared.subs.lock().unwrap().reconnects.push(Reconnect {
                phase,
                resubscribed: since.elapsed(),
            });
            self.awaiting_event = Some((Instant::now(), phase));
        }
        loop {
            let msg = tokio::select! {
                msg = ws.next() => msg,
                () = stop.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return end("stopped".into(), delivered);
                }
            };
            let text = match msg {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    let how = frame.map_or("close frame without code".into(), |f| {
                        u16::from(f.code).to_string()
                    });
                    return end(how, delivered);
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return end(format!("no close frame ({e})"), delivered),
                None => return end("no close frame (ended)".into(), delivered),
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            match v["type"].as_str() {
                Some("ping") => {
                    let _ = send_json(ws, json!({ "type": "pong" })).await;
                }
                Some("next") if v["id"] == id.as_str() => {
                    let payload = &v["payload"];
                    if let Some(error) = payload["errors"].get(0) {
                        let ext = &error["extensions"];
                        if ext["code"] == "SUBSCRIPTION_LAGGED" {
                            // Fell behind: resume from where the server says.
                            let last = match &ext["lastCursor"] {
                                Value::String(s) => Some(s.clone()),
                                Value::Number(n) => Some(n.to_string()),
                                _ => None,
                            };
                            if last.is_some() {
                                self.cursor = last;
                            }
                            self.shared.subs.lock().unwrap().lagged += 1;
                            match self.subscribe(ws).await {
                                Ok(next) => id = next,
                                Err(e) => return end(format!("send failed: {e}"), delivered),
                            }
                            continue;
                        }
                        self.shared
                            .subs
                            .lock()
                            .unwrap()
                            .errors
                            .push(error.to_string());
                        return end("subscription error".into(), delivered);
                    }
                    let event = &payload["data"]["budgetChanged"];
                    let mut log = self.shared.subs.lock().unwrap();
                    if let Some(cursor) = event["cursor"].as_str() {
                        let position = cursor.parse::<u64>().unwrap_or(0);
                        if position <= self.last_position {
                            log.repeated += 1;
                        }
                        self.last_position = self.last_position.max(position);
                        self.cursor = Some(cursor.to_owned());
                    }
                    log.events += 1;
                    if let Some((since, phase)) = self.awaiting_event.take() {
                        log.first_events.push((phase, since.elapsed()));
                    }
                    delivered = true;
                }
                Some("error") if v["id"] == id.as_str() => {
                    self.shared.subs.lock().unwrap().errors.push(v.to_string());
                    return end("subscribe refused".into(), delivered);
                }
                Some("complete") if v["id"] == id.as_str() => {
                    return end("completed by the server".into(), delivered);
                }
                _ => {}
            }
        }
    }
}

/// A subscriber until `stop_subs`: connects through the balancer, subscribes, and on every
/// disconnect reconnects after a randomised backoff (100-500 ms, then exponential up to 2 s).
async fn subscriber(shared: Arc<Shared>, url: String, token: String, start_after: Duration) {
    let mut rng = StdRng::from_os_rng();
    let stop = shared.stop_subs.clone();
    tokio::time::sleep(start_after).await;
    let mut sub = Subscriber {
        shared: shared.clone(),
        cursor: None,
        last_position: 0,
        down_since: None,
        awaiting_event: None,
        operations: 0,
    };
    let mut connected_once = false;
    let mut delivered_last = false;
    let mut attempt = 0u32;
    while !stop.is_cancelled() {
        match tokio::time::timeout(Duration::from_secs(5), open_socket(&url, &token)).await {
            Ok(Ok(mut ws)) => {
                connected_once = true;
                attempt = 0;
                shared.live_subs.fetch_add(1, Ordering::Relaxed);
                let end = sub.follow(&mut ws).await;
                shared.live_subs.fetch_sub(1, Ordering::Relaxed);
                delivered_last = end.delivered;
                if end.how == "stopped" {
                    break;
                }
                let phase = shared.phase();
                *shared
                    .subs
                    .lock()
                    .unwrap()
                    .closes
                    .entry((phase, end.how))
                    .or_default() += 1;
                sub.down_since = Some((Instant::now(), phase));
                sub.awaiting_event = None;
            }
            failed => {
                let what = match failed {
                    Ok(Err(e)) => e,
                    _ => "timed out".into(),
                };
                *shared
                    .subs
                    .lock()
                    .unwrap()
                    .connect_failures
                    .entry(what)
                    .or_default() += 1;
            }
        }
        attempt += 1;
        let backoff = if attempt == 1 {
            Duration::from_millis(rng.random_range(100..=500))
        } else {
            let base = (250u64 << (attempt - 1).min(3)).min(2_000);
            Duration::from_millis(base + rng.random_range(0..=250))
        };
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => {}
        }
    }
    let mut log = shared.subs.lock().unwrap();
    if !connected_once {
        log.never_connected += 1;
    } else if !delivered_last {
        log.deaf_at_end += 1;
    }
}

/// Starts the [`SUBSCRIBERS`] subscribers through the balancer at `addr`, 5 ms apart.
pub(crate) fn spawn_all(shared: &Arc<Shared>, addr: &str, token: &str) -> Vec<JoinHandle<()>> {
    let ws_url = format!("ws://{addr}/graphql");
    let mut sub_tasks = Vec::new();
    for i in 0..SUBSCRIBERS {
        sub_tasks.push(tokio::spawn(subscriber(
            shared.clone(),
            ws_url.clone(),
            token.to_owned(),
            Duration::from_millis(5 * i as u64),
        )));
    }
    sub_tasks
}
