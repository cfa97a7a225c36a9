//! Tasks, agents and escalations: the first domain, and the pattern the others follow.
//! `model` holds the pure rules, `service` the transactions (`escalations` those of
//! escalations), `graphql` the thin resolvers, `output` the outputs agents submit
//! (validated as LLM output), `quality` the gates, remediation plans and peer reviews on
//! the way to review and deployment, `events` what each change writes into the event
//! outbox (relayed after commit).

pub mod escalations;
pub mod events;
pub mod graphql;
pub mod loaders;
pub mod model;
pub mod output;
pub mod output_graphql;
pub mod quality;
pub mod service;
