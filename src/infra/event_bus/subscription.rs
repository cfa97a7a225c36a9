//! One subscriber's view of the bus: a replay (when resuming), then the live events past it,
//! and how it ends early.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt, stream::BoxStream};
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use super::{Delivered, ResumeError};

/// Why a subscription ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// It fell `skipped` events behind the live feed.
    Lagged { skipped: u64, last: u64 },
    /// Its replay could not be read to the end.
    ReplayFailed { last: u64 },
}

/// One subscriber's view of the bus: a replay (when resuming), then live events past it.
pub struct Subscription<E> {
    replay: Option<BoxStream<'static, Result<Arc<Delivered<E>>, ResumeError>>>,
    live: BroadcastStream<Arc<Delivered<E>>>,
    /// The position of the last event yielded (or the starting point).
    last: u64,
    done: bool,
}

impl<E: Send + Sync + 'static> Subscription<E> {
    pub(super) fn new(
        replay: Option<BoxStream<'static, Result<Arc<Delivered<E>>, ResumeError>>>,
        live: BroadcastStream<Arc<Delivered<E>>>,
        last: u64,
    ) -> Self {
        Self {
            replay,
            live,
            last,
            done: false,
        }
    }

    /// The position of the last event yielded, or where the subscription started.
    pub fn last(&self) -> u64 {
        self.last
    }
}

impl<E: Send + Sync + 'static> Stream for Subscription<E> {
    type Item = Result<Arc<Delivered<E>>, Interrupted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(replay) = this.replay.as_mut() {
            match futures::ready!(replay.poll_next_unpin(cx)) {
                Some(Ok(event)) => {
                    this.last = event.position;
                    metrics::counter!("aurum_events_replayed_total").increment(1);
                    return Poll::Ready(Some(Ok(event)));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "replaying events failed");
                    this.done = true;
                    return Poll::Ready(Some(Err(Interrupted::ReplayFailed { last: this.last })));
                }
                None => this.replay = None,
            }
        }
        loop {
            match futures::ready!(this.live.poll_next_unpin(cx)) {
                // Already replayed (or from before the start).
                Some(Ok(event)) if event.position <= this.last => continue,
                Some(Ok(event)) => {
                    this.last = event.position;
                    return Poll::Ready(Some(Ok(event)));
                }
                Some(Err(BroadcastStreamRecvError::Lagged(skipped))) => {
                    this.done = true;
                    metrics::counter!("aurum_subscribers_lagged_total").increment(1);
                    return Poll::Ready(Some(Err(Interrupted::Lagged {
                        skipped,
                        last: this.last,
                    })));
                }
                None => return Poll::Ready(None),
            }
        }
    }
}
