//! The service's notion of "now": UTC truncated to microseconds, the precision PostgreSQL
//! stores, so a value returned by a mutation equals the same value read back later.

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at database precision.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
