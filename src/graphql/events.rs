//! What every subscription shares: the `after` cursor, replay then live events, the cursor
//! each delivered event exposes, and the errors that end a subscription early (an expired
//! cursor, falling behind). Authorization and tenant scoping live in each subscription's
//! `select`, which sees replayed and live events alike.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use async_graphql::{Context, ErrorExtensions, Result};
use futures::{Stream, StreamExt};

use super::context::services;
use crate::{
    error::AppError,
    events::DomainEvent,
    infra::event_bus::{Interrupted, ResumeError},
};

/// Request data of a shared subscription execution: the position of the last event its
/// subscription processed, read by the WebSocket feed next to each response it fans out (so a
/// subscriber that falls behind the feed learns where to resume).
#[derive(Clone, Default)]
pub struct CursorSlot(pub Arc<AtomicU64>);

impl CursorSlot {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A cursor as clients see it: opaque text (today the event's position, in decimal).
pub fn cursor_text(position: u64) -> String {
    position.to_string()
}

/// Reads an `after` argument.
pub fn parse_cursor(after: Option<&str>) -> Result<Option<u64>, AppError> {
    after
        .map(|text| {
            text.trim()
                .parse::<u64>()
                .map_err(|_| AppError::bad_field("after", "not a cursor this server gave out"))
        })
        .transpose()
}

/// The events a subscription delivers: those after `after` (when given) that the bus still
/// holds, then live ones, each passed to `select` with its cursor. The stream ends with one
/// `SUBSCRIPTION_LAGGED` error carrying `lastCursor` when the subscriber falls behind.
pub async fn subscribe<T, F>(
    ctx: &Context<'_>,
    after: Option<String>,
    mut select: F,
) -> Result<impl Stream<Item = Result<T>> + use<T, F>>
where
    T: Send + 'static,
    F: FnMut(String, &DomainEvent) -> Option<T> + Send + 'static,
{
    let after = parse_cursor(after.as_deref())?;
    let slot = ctx.data_opt::<CursorSlot>().cloned();
    let events = services(ctx)?
        .bus
        .subscribe_after(after)
        .await
        .map_err(|e| match e {
            ResumeError::Expired { cursor, first, .. } => AppError::CursorExpired {
                cursor,
                oldest: first.saturating_sub(1),
            },
            ResumeError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "resuming a subscription failed");
                AppError::ServiceUnavailable {
                    dependency: "event stream",
                }
            }
        })?;
    if let Some(slot) = &slot {
        slot.0.store(events.last(), Ordering::Release);
    }
    Ok(events.filter_map(move |item| {
        let out = match item {
            Ok(delivered) => {
                if let Some(slot) = &slot {
                    slot.0.store(delivered.position, Ordering::Release);
                }
                select(cursor_text(delivered.position), &delivered.event).map(Ok)
            }
            Err(Interrupted::Lagged { skipped, last }) => Some(Err(AppError::SubscriptionLagged {
                skipped,
                last_cursor: Some(last),
            }
            .extend())),
            Err(Interrupted::ReplayFailed { last }) => Some(Err(AppError::SubscriptionLagged {
                skipped: 0,
                last_cursor: Some(last),
            }
            .extend())),
        };
        futures::future::ready(out)
    }))
}
