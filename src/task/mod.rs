//! Tasks, agents and escalations: the first domain, and the pattern the others follow.
//! `model` holds the pure rules, `service` the transactions, `graphql` the thin resolvers,
//! `events` what each change writes into the event outbox (relayed after commit).

pub mod events;
pub mod graphql;
pub mod loaders;
pub mod model;
pub mod service;
