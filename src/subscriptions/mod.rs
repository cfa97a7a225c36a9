//! Subscription admin: every live GraphQL subscription on every replica, listed and closed by
//! a `system.admin`. `model` holds what is shown of one subscription, `service` the replica's
//! registry (which the WebSocket transport fills) and the cross-replica list and close (over
//! NATS request subjects; this replica alone without NATS), `graphql` the
//! `activeSubscriptions` query and the `closeSubscription` / `closeSubscriptionsOf` mutations.
//!
//! # Invariants
//! - A subscription is listed from the moment it starts until it ends, by the replica that
//!   serves it; a replica that does not answer within the gather window is left out.
//! - Closing is audited (`subscription.close`, `subscription.close_of`) and the client is told
//!   why: one `SUBSCRIPTION_CLOSED` error on the operation, then `complete`.

pub mod graphql;
pub mod model;
pub mod service;

pub use service::{Registration, Registry, SubscriptionAdmin, Tracked};
