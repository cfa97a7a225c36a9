//! The event bus: one interface over two backends. In-process, `publish` hands the event to a
//! bounded broadcast channel. With NATS, `publish` sends to the event's subject and every replica
//! (this one included) receives it through one NATS subscription per replica, then fans it out
//! to its local subscribers through the same bounded channel. A subscriber that falls behind
//! gets `Lagged` and is dropped by its stream; memory never grows with a slow reader.
//!
//! The bus is generic over the event type: it knows subjects and JSON, not domains.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::{Stream, StreamExt};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

/// What the bus needs to know of an event.
pub trait BusEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Subject below the prefix, `<domain>.<id>.<event>`.
    fn subject(&self) -> String;
}

/// Failure to publish.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("encoding event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("publishing to NATS: {0}")]
    Nats(#[from] async_nats::PublishError),
    #[error("publishing to NATS: its client buffer stayed full for {0:?}")]
    Full(Duration),
}

/// Longest a publish waits for room in the NATS client's buffer, which fills only while NATS
/// is unreachable: the caller's change is committed, and its request must not hang.
const PUBLISH_WAIT: Duration = Duration::from_secs(1);

enum Backend {
    Local,
    Nats {
        client: async_nats::Client,
        prefix: String,
    },
}

/// Handle to the bus; cheap to clone.
pub struct EventBus<E> {
    tx: broadcast::Sender<Arc<E>>,
    backend: Arc<Backend>,
}

impl<E> Clone for EventBus<E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            backend: self.backend.clone(),
        }
    }
}

impl<E: BusEvent> EventBus<E> {
    /// An in-process bus (single replica).
    pub fn local(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self {
            tx,
            backend: Arc::new(Backend::Local),
        }
    }

    /// A NATS-backed bus: subscribes to `<prefix>.>` and forwards what arrives to local
    /// subscribers until `shutdown` is cancelled.
    pub async fn nats(
        client: async_nats::Client,
        prefix: String,
        capacity: usize,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Self, async_nats::SubscribeError> {
        let (tx, _) = broadcast::channel(capacity);
        let mut sub = client.subscribe(format!("{prefix}.>")).await?;
        let forward = tx.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    () = shutdown.cancelled() => break,
                    msg = sub.next() => msg,
                };
                let Some(msg) = msg else {
                    tracing::error!("NATS event subscription ended");
                    break;
                };
                match serde_json::from_slice::<E>(&msg.payload) {
                    // No receivers is normal (nobody subscribed on this replica).
                    Ok(event) => {
                        let _ = forward.send(Arc::new(event));
                    }
                    Err(e) => tracing::warn!(
                        nats.subject = %msg.subject,
                        error = %e,
                        "dropping undecodable event"
                    ),
                }
            }
            let _ = sub.unsubscribe().await;
        });
        Ok(Self {
            tx,
            backend: Arc::new(Backend::Nats { client, prefix }),
        })
    }

    /// Publishes an event to every replica's subscribers.
    pub async fn publish(&self, event: E) -> Result<(), PublishError> {
        match &*self.backend {
            Backend::Local => {
                let _ = self.tx.send(Arc::new(event));
            }
            Backend::Nats { client, prefix } => {
                let subject = format!("{prefix}.{}", event.subject());
                let payload = serde_json::to_vec(&event)?;
                tokio::time::timeout(PUBLISH_WAIT, client.publish(subject, payload.into()))
                    .await
                    .map_err(|_| PublishError::Full(PUBLISH_WAIT))??;
            }
        }
        metrics::counter!("aurum_events_published_total").increment(1);
        Ok(())
    }

    /// A stream of every event from now on. It yields `Err(skipped)` once if the subscriber
    /// fell behind, then ends.
    pub fn subscribe(&self) -> Subscription<E> {
        Subscription {
            inner: BroadcastStream::new(self.tx.subscribe()),
            done: false,
        }
    }

    /// Local subscribers currently attached on this replica.
    pub fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// One subscriber's view of the bus.
pub struct Subscription<E> {
    inner: BroadcastStream<Arc<E>>,
    done: bool,
}

impl<E: Send + Sync + 'static> Stream for Subscription<E> {
    type Item = Result<Arc<E>, u64>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(skipped)))) => {
                self.done = true;
                metrics::counter!("aurum_subscribers_lagged_total").increment(1);
                Poll::Ready(Some(Err(skipped)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    struct Ping(u32);

    impl BusEvent for Ping {
        fn subject(&self) -> String {
            format!("test.{}.ping", self.0)
        }
    }

    #[tokio::test]
    async fn local_bus_delivers_to_every_subscriber() {
        let bus = EventBus::<Ping>::local(16);
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish(Ping(1)).await.ok();
        assert_eq!(a.next().await.and_then(Result::ok).map(|p| p.0), Some(1));
        assert_eq!(b.next().await.and_then(Result::ok).map(|p| p.0), Some(1));
    }

    #[tokio::test]
    async fn slow_subscriber_is_told_it_lagged_and_dropped() {
        let bus = EventBus::<Ping>::local(16);
        let mut slow = bus.subscribe();
        for i in 0..40 {
            bus.publish(Ping(i)).await.ok();
        }
        assert_eq!(slow.next().await, Some(Err(24)));
        assert!(slow.next().await.is_none(), "a lagged subscriber must end");
    }
}
