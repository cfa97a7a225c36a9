//! The process's shutdown, in two steps, and the background tasks it waits for.
//!
//! 1. **Drain** (SIGTERM): `/ready` answers 503 at once so load balancers take the replica out
//!    of rotation, while HTTP and WebSocket traffic is still served; loops that take new work
//!    (the sandbox runner's claims) stop taking it.
//! 2. **Stop** (after the drain delay): the listener closes, WebSockets get 1001, every loop
//!    spawned through [`Shutdown::spawn`] sees [`Shutdown::cancelled`] and ends, and the
//!    process waits for them ([`Shutdown::wait`]) before it exits.
//!
//! Stopping implies draining. Dereferences to the stop token, so `shutdown.cancelled()` is
//! "stopped".

use std::future::Future;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Cheap to clone; every clone sees the same two steps and the same task set.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    draining: CancellationToken,
    stopping: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Step 1: readiness goes down; traffic is still served.
    pub fn drain(&self) {
        self.draining.cancel();
    }

    /// Step 2: everything watching the stop token ends.
    pub fn stop(&self) {
        self.draining.cancel();
        self.stopping.cancel();
    }

    /// Whether step 1 (or 2) has begun: `/ready` answers 503.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Resolves when step 1 (or 2) begins.
    pub async fn drained(&self) {
        self.draining.cancelled().await;
    }

    /// Spawns a background task the process waits for on stop. The task must end once
    /// `cancelled()` resolves.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Waits for every task spawned through [`Shutdown::spawn`] to end (call after `stop`).
    pub async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The stop token itself, for code that only watches it.
    pub fn token(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// How many spawned background tasks are still running.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }
}

impl std::ops::Deref for Shutdown {
    type Target = CancellationToken;
    fn deref(&self) -> &CancellationToken {
        &self.stopping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_drains_and_waits_for_the_tasks() {
        let shutdown = Shutdown::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let watcher = shutdown.clone();
        shutdown.spawn(async move {
            watcher.cancelled().await;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            tx.send(()).ok();
        });
        shutdown.drain();
        assert!(shutdown.is_draining());
        assert!(!shutdown.is_cancelled());
        assert_eq!(shutdown.running(), 1);
        shutdown.stop();
        shutdown.wait().await;
        assert_eq!(shutdown.running(), 0);
        assert!(
            rx.await.is_ok(),
            "the task ran to its end before wait returned"
        );
    }
}
