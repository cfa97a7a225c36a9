//! Sandbox runs: untrusted code in a locked-down container, its output stored by byte offset
//! and streamed live to any replica's subscribers.
//!
//! - `config`: languages, runtime, pool size, default limits and maxima.
//! - `model`: pure rules (limits against maxima, how a container's end maps to a status).
//! - `service`: the runs in the database (queue, cancel, output chunks, leases, outcome).
//! - `container`: what a container is (labels, launcher, isolation settings) and Docker calls
//!   under the breaker.
//! - `runner`: this replica's containers through the Docker API (claim, execute, stream,
//!   kill, sweep).
//! - `events`, `graphql`: what the bus carries; the API.
//!
//! A run: `QUEUED` → (a replica claims it, `FOR UPDATE SKIP LOCKED`) `RUNNING` → one of
//! `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `OOM_KILLED`, `CANCELLED`, `LOST`. A replica that dies
//! stops renewing its lease; another marks the run `LOST` (never re-run: the program may have
//! had effects already, and a retry is the caller's choice with a new `requestId`) and its
//! sweeper removes the container. A replica that shuts down stops claiming when it starts to
//! drain, and at stop kills what still runs and records it `LOST` itself.

pub mod config;
pub mod container;
pub mod events;
pub mod graphql;
pub mod model;
pub mod runner;
pub mod service;
