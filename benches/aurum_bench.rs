//! Platform benchmark: `cargo bench --bench aurum-bench` (optimised build of the server and
//! this client). Runs the real `aurum` binary (embedded profile, fresh SQLite) as a separate
//! process and measures, each against a baseline taken in the same run:
//!
//! a) throughput and latency of `{ __typename }` over HTTP vs the plain JSON `/health`
//!    endpoint of the same binary, on the same keep-alive connections, phases interleaved
//!    (a bare hyper HTTP/1.1 client, so the client's own cost does not flatten the ratio);
//!    then the same pair of requests on a bare axum server (this binary in a second process,
//!    no middleware, no GraphQL), whose POST/GET ratio is the ceiling of (a) on this machine;
//! b) latency from sending a mutation to each subscriber receiving its event, at 1, 100,
//!    1,000 and 10,000 WebSocket subscribers on one replica (p50/p99), against the machine's
//!    floor measured right after it: the same subscribers on a bare fan-out server (this
//!    binary in a second process: one tokio task per socket fed by a broadcast channel, no
//!    GraphQL, protocol or database), sent the same message; the subscribers decode and check
//!    every message either way, and the CPU time per delivery of the server and of the
//!    subscribers is shown for both. 10,000 runs on a fresh server, with 10 events; its
//!    sockets fit in this one client process (the open-file limit is checked first, and its
//!    soft value raised to the hard one with `prlimit` when short; without room, 10,000 is
//!    skipped);
//! c) idle RSS, and RSS per idle subscription (RSS growth of the server process divided by
//!    the count, at 1,000 and at 10,000 subscriptions);
//! d) an authenticated `{ me { id } }` vs the same request without a token (which answers
//!    `UNAUTHENTICATED`), same connections, phases interleaved;
//! e) login latency vs a bare argon2id verification with the same parameters in this process;
//! f) `/health` latency while 8 clients log in as fast as they can;
//! g) time to refuse: edge limit, per-caller mutation limit, exponential fragments, depth,
//!    oversized body (a second server with tight limits), and that nothing ran;
//! h) RSS after a burst of hostile requests (bodies near the 1 MiB cap, megabyte strings, wide,
//!    alias-heavy and deep documents, large variables) on a fresh server: idle, peak, right
//!    after, then every second for 30 s after the load stops.
//!
//! Every response body is checked; a response with an unexpected error counts as a failure and
//! fails the run. Targets: issue #2 (a) ≥ 0.8× throughput, p99 ≤ 1.5×; (b) p99 ≤ 10 ms at
//! 1,000; (c) ≤ 20 MB idle, ≤ 16 KiB per idle subscription; issue #3 (d) ≥ 0.9×;
//! (e) ≤ 1.1×; (f) p99 < 10 ms; (g) every refusal < 50 ms; issue #14 (h) ≤ 2× idle RSS
//! 30 s after the burst; issue #21 (b) 10,000 subscribers ≤ 1.2× bare (p50 and p99),
//! (c) ≤ 16 KiB per subscription at 10,000.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "aurum/bare.rs"]
mod bare;
mod common;
#[path = "aurum/http.rs"]
mod http;
#[path = "aurum/protection.rs"]
mod protection;
#[path = "aurum/server.rs"]
mod server;
#[path = "aurum/subscribers.rs"]
mod subscribers;

use bare::{BARE_FANOUT_FLAG, BARE_HTTP_FLAG, bare_fanout_server, bare_http_server};
use http::{authenticated, logins, throughput};
use protection::{burst_memory, refusals};
use server::Server;

/// `cargo bench --bench aurum-bench [-- PARTS]`: PARTS picks letters of the parts to run
/// (`a`…`h`; `b` and `c` share their run); all of them by default.
fn main() {
    if std::env::args().any(|a| a == BARE_FANOUT_FLAG) {
        bare_fanout_server();
        return;
    }
    if std::env::args().any(|a| a == BARE_HTTP_FLAG) {
        bare_http_server();
        return;
    }
    let parts: String = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: char| parts.is_empty() || parts.contains(part);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut all_ok = true;
    runtime.block_on(async {
        if wants('b') || wants('c') {
            all_ok &= subscribers::run().await;
        }
        if ['a', 'd', 'e', 'f'].into_iter().any(wants) {
            let server = Server::start();
            if wants('a') {
                all_ok &= throughput(&server).await;
            }
            if wants('d') {
                all_ok &= authenticated(&server).await;
            }
            if wants('e') || wants('f') {
                all_ok &= logins(&server).await;
            }
        }
        if wants('g') {
            all_ok &= refusals().await;
        }
        if wants('h') {
            all_ok &= burst_memory("embedded profile", &[]).await;
        }
    });
    if !all_ok {
        eprintln!("benchmark saw failed responses");
        std::process::exit(1);
    }
}
