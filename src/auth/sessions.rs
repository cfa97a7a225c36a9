//! Live sessions: the WebSockets open on this replica, by the user or API key that opened
//! them. A revocation (logout, role change, disabling, revoking a key) published on the event
//! bus reaches every replica, and each closes the matching sockets at once.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::infra::shutdown::Shutdown;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::cache::AuthCache;
use crate::events::{Bus, DomainEvent};

struct Entry {
    key: u64,
    jti: Option<String>,
    cancel: CancellationToken,
}

/// The registry of this replica's authenticated sockets.
#[derive(Default)]
pub struct LiveSessions {
    by_subject: Mutex<HashMap<Uuid, Vec<Entry>>>,
    next: AtomicU64,
}

/// Removes its socket from the registry when dropped.
pub struct Registration {
    sessions: Arc<LiveSessions>,
    subject: Uuid,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut map) = self.sessions.by_subject.lock()
            && let Some(entries) = map.get_mut(&self.subject)
        {
            entries.retain(|e| e.key != self.key);
            if entries.is_empty() {
                map.remove(&self.subject);
            }
        }
    }
}

impl LiveSessions {
    /// Registers a socket of `subject` (with its token id); the token is cancelled when its
    /// credentials are revoked.
    pub fn register(
        self: &Arc<Self>,
        subject: Uuid,
        jti: Option<String>,
    ) -> (Registration, CancellationToken) {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        if let Ok(mut map) = self.by_subject.lock() {
            map.entry(subject).or_default().push(Entry {
                key,
                jti,
                cancel: cancel.clone(),
            });
        }
        let registration = Registration {
            sessions: Arc::clone(self),
            subject,
            key,
        };
        (registration, cancel)
    }

    /// Closes the sockets of `subject` (only those of token `jti` when given).
    pub fn revoke(&self, subject: Uuid, jti: Option<&str>) {
        if let Ok(map) = self.by_subject.lock()
            && let Some(entries) = map.get(&subject)
        {
            for e in entries {
                if jti.is_none() || e.jti.as_deref() == jti {
                    e.cancel.cancel();
                }
            }
        }
    }

    fn revoke_all(&self) {
        if let Ok(map) = self.by_subject.lock() {
            for e in map.values().flatten() {
                e.cancel.cancel();
            }
        }
    }

    /// Applies revocations from the bus until `shutdown`. If it falls behind, it resumes from
    /// the last event it applied; only if that cannot be done (the bus no longer holds it) it
    /// closes every socket, as it cannot know what it missed (clients reconnect and
    /// re-authenticate). Evicts the same subjects from `cache`, so HTTP requests see the
    /// change too.
    pub fn spawn_listener(self: Arc<Self>, bus: Bus, cache: Arc<AuthCache>, shutdown: Shutdown) {
        shutdown.clone().spawn(async move {
            let mut resume: Option<u64> = None;
            loop {
                let mut events = match bus.subscribe_after(resume).await {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation listener cannot resume; closing every socket");
                        cache.clear();
                        self.revoke_all();
                        bus.subscribe()
                    }
                };
                loop {
                    let item = tokio::select! {
                        () = shutdown.cancelled() => return,
                        item = events.next() => item,
                    };
                    match item {
                        Some(Ok(delivered)) => {
                            if let DomainEvent::Identity(e) = &delivered.event {
                                cache.forget(e.subject, e.jti.as_deref());
                                self.revoke(e.subject, e.jti.as_deref());
                            }
                        }
                        Some(Err(interrupted)) => {
                            tracing::warn!(
                                ?interrupted,
                                "revocation listener fell behind; resuming from its last event"
                            );
                            resume = Some(events.last());
                            break;
                        }
                        None => return,
                    }
                }
            }
        });
    }
}
