//! Rate limits. The edge limit caps requests per client address (the TCP peer, never a header)
//! on `/graphql`, per replica, with the `governor` crate's keyed GCRA; it is a plain check in
//! the handler rather than a tower layer, so a request that passes pays only the check.

pub mod action;

pub use action::{ActionLimiter, ActionQuotas, LimitedAction};

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

/// Requests per client address.
pub struct EdgeLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl EdgeLimiter {
    /// `per_second` sustained, `burst` at once.
    pub fn new(per_second: u64, burst: u32) -> Self {
        let period = Duration::from_nanos((1_000_000_000 / per_second.max(1)).max(1));
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds to wait)` when `client` is over its limit.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        self.limiter.check_key(&client).map_err(|not_until| {
            metrics::counter!("aurum_rate_limited_total", "action" => "http").increment(1);
            not_until.wait_time_from(self.clock.now()).as_secs().max(1)
        })
    }

    /// Forgets addresses whose allowance is full again (call now and then: memory stays
    /// proportional to recently active clients).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_per_address() {
        let l = EdgeLimiter::new(1, 3);
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
        }
        assert!(matches!(l.check(a), Err(s) if s >= 1));
        assert!(l.check(b).is_ok());
    }
}
