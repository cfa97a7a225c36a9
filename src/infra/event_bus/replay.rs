//! Replays for subscriptions resuming from a cursor: the held events after it, from the
//! table (database bus) or from a JetStream consumer of their own, up to the end seen when the
//! replay started.

use std::sync::Arc;

use async_nats::jetstream;
use futures::{StreamExt, stream::BoxStream};

use super::{Backend, BusEvent, Delivered, REPLAY_PAGE, ResumeError, Shared, check_cursor};
use crate::infra::outbox;

impl<E: BusEvent> Shared<E> {
    /// Database bus: the held events after `cursor`, page by page.
    pub(super) async fn replay_database(
        self: &Arc<Self>,
        cursor: u64,
    ) -> Result<BoxStream<'static, Result<Arc<Delivered<E>>, ResumeError>>, ResumeError> {
        let last = u64::try_from(outbox::last_position(&self.db).await?).unwrap_or(0);
        let first = outbox::first_position(&self.db)
            .await?
            .and_then(|f| u64::try_from(f).ok())
            .unwrap_or(last + 1);
        check_cursor(cursor, first, last)?;
        let shared = Arc::clone(self);
        let pages = futures::stream::unfold(Some(cursor), move |from| {
            let shared = Arc::clone(&shared);
            async move {
                let from = from?;
                if from >= last {
                    return None;
                }
                let at = i64::try_from(from).unwrap_or(i64::MAX);
                match outbox::after(&shared.db, at, REPLAY_PAGE).await {
                    Ok(rows) if rows.is_empty() => None,
                    Ok(rows) => {
                        let mut end = from;
                        let items: Vec<_> = rows
                            .into_iter()
                            .filter_map(|row| {
                                let position = u64::try_from(row.position?).ok()?;
                                end = position;
                                let event = serde_json::from_str::<E>(&row.payload).ok()?;
                                Some(Ok(Arc::new(Delivered { position, event })))
                            })
                            .collect();
                        Some((futures::stream::iter(items), Some(end)))
                    }
                    Err(e) => Some((futures::stream::iter(vec![Err(e.into())]), None)),
                }
            }
        });
        Ok(pages.flatten().boxed())
    }

    /// JetStream bus: the held events after `cursor`, from a consumer of their own.
    pub(super) async fn replay_jetstream(
        &self,
        cursor: u64,
    ) -> Result<BoxStream<'static, Result<Arc<Delivered<E>>, ResumeError>>, ResumeError> {
        let Backend::JetStream { js, stream, .. } = &self.backend else {
            return Err(ResumeError::Unavailable("not a JetStream bus".into()));
        };
        let unavailable = |e: &dyn std::fmt::Display| ResumeError::Unavailable(e.to_string());
        let mut handle = js.get_stream(stream).await.map_err(|e| unavailable(&e))?;
        let state = handle
            .info()
            .await
            .map_err(|e| unavailable(&e))?
            .state
            .clone();
        check_cursor(cursor, state.first_sequence, state.last_sequence)?;
        if cursor >= state.last_sequence {
            return Ok(futures::stream::empty().boxed());
        }
        let consumer = handle
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: cursor + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        let last = state.last_sequence;
        // Up to the end as it was when the replay started (live events take over there); the
        // stream is not read past it, so the replay ends without waiting for a new event.
        let replay = futures::stream::unfold(Some(messages), move |messages| async move {
            let mut messages = messages?;
            let item = match messages.next().await? {
                Ok(message) => message
                    .info()
                    .map(|info| info.stream_sequence)
                    .map_err(|e| ResumeError::Unavailable(e.to_string()))
                    .map(|position| (position, serde_json::from_slice::<E>(&message.payload).ok())),
                Err(e) => Err(ResumeError::Unavailable(e.to_string())),
            };
            let more = matches!(item, Ok((position, _)) if position < last);
            Some((item, more.then_some(messages)))
        })
        .filter_map(|item| {
            futures::future::ready(match item {
                Ok((position, Some(event))) => Some(Ok(Arc::new(Delivered { position, event }))),
                // Undecodable: skipped, as live delivery skips it.
                Ok((_, None)) => None,
                Err(e) => Some(Err(e)),
            })
        });
        Ok(replay.boxed())
    }
}
