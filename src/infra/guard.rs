//! `CallGuard`: what an adapter asks before calling its service and tells after, so a breaker
//! can stop calls to a service that is down. Adapters see only this trait; the breakers
//! (`crate::breaker`) implement it, so infra stays free of any domain.

use std::{sync::Arc, time::Duration};

/// A refused call: which guard refused it, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker `{breaker}` is open; retry after {retry_after:?}")]
pub struct Refused {
    pub breaker: &'static str,
    pub retry_after: Duration,
}

/// Admission and outcome reports for calls to one service.
pub trait CallGuard: Send + Sync {
    /// May a call go now? `Ok(ticket)` to report with, or why not.
    fn admit(&self) -> Result<u64, Refused>;
    /// How the admitted call went: `ok` = the service answered (whatever it answered).
    fn report(&self, ticket: u64, ok: bool, elapsed: Duration);
}

/// A guard shared by the adapters that call the same service.
pub type Guard = Arc<dyn CallGuard>;

/// Runs `call` under `guard`: refused at once while the guard is open, else timed and
/// reported (`Err` = the service failed). Without a guard the call just runs.
pub async fn guarded<T, E, F>(guard: Option<&Guard>, call: F) -> Result<Result<T, E>, Refused>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let Some(guard) = guard else {
        return Ok(call.await);
    };
    let ticket = guard.admit()?;
    let started = std::time::Instant::now();
    let result = call.await;
    guard.report(ticket, result.is_ok(), started.elapsed());
    Ok(result)
}

/// Like [`guarded`] for a call that may wait on purpose (a long poll): `waited` is taken off
/// its time, so waiting for work is not mistaken for a slow service.
pub async fn guarded_poll<T, F>(
    guard: Option<&Guard>,
    waited: std::time::Duration,
    call: F,
) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let Some(guard) = guard else {
        return call.await;
    };
    let ticket = guard.admit()?;
    let started = std::time::Instant::now();
    let result = call.await;
    guard.report(
        ticket,
        result.is_ok(),
        started.elapsed().saturating_sub(waited),
    );
    result
}
