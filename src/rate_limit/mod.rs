//! Rate limits. The edge limit ([`edge`]) caps requests per client address on `/graphql`, per
//! replica, as a tower-governor layer keyed by the client address under the trusted-proxy
//! rule; per-caller limits on named actions ([`action`]) are shared through Redis when configured.

pub mod action;
pub mod edge;

pub use action::{ActionLimiter, ActionQuotas, LimitedAction};
pub use edge::EdgeLimit;
