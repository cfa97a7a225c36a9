//! The replica's registry of live subscriptions, and listing and closing them on every
//! replica: a request on `<prefix>.admin.subscriptions.list` (or `.close`) is answered by each
//! replica's responder, and the asking replica gathers the answers for [`GATHER`]. Without
//! NATS there is one replica, and its registry is the answer.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::infra::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::model::{ActiveSubscription, CloseTarget};
use crate::{
    audit::{self, AuditEntry},
    auth::{Caller, Principal, RequestMeta},
    error::{AppError, AppResult},
    events::Bus,
    infra::db,
};

/// How long a list or close waits for the replicas' answers.
pub const GATHER: Duration = Duration::from_millis(300);

/// One live subscription, shared by the transport that serves it (which counts what it
/// delivers and watches `closed`) and the registry (which reads it).
pub struct Tracked {
    pub id: Uuid,
    pub caller: String,
    pub user_id: Option<Uuid>,
    pub api_key: bool,
    pub operation_name: String,
    pub started_at: DateTime<Utc>,
    pub client_address: String,
    delivered: AtomicU64,
    /// The shared feed's count of produced events, and its value when this subscriber joined.
    feed: OnceLock<(Arc<AtomicU64>, u64)>,
    closed: CancellationToken,
}

impl Tracked {
    /// One event taken from the feed and sent to the client.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// The subscription reads a shared feed that counts what it produces in `produced`.
    pub fn reads(&self, produced: Arc<AtomicU64>) {
        let base = produced.load(Ordering::Acquire);
        let _ = self.feed.set((produced, base));
    }

    /// Cancelled when an administrator closes the subscription.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    fn lag(&self) -> u64 {
        self.feed.get().map_or(0, |(produced, base)| {
            produced
                .load(Ordering::Acquire)
                .saturating_sub(*base)
                .saturating_sub(self.delivered.load(Ordering::Relaxed))
        })
    }

    fn snapshot(&self, replica: &str) -> ActiveSubscription {
        ActiveSubscription {
            id: self.id,
            replica: replica.to_owned(),
            caller: self.caller.clone(),
            user_id: self.user_id,
            api_key: self.api_key,
            operation_name: self.operation_name.clone(),
            started_at: self.started_at,
            delivered: self.delivered.load(Ordering::Relaxed),
            lag: self.lag(),
            client_address: self.client_address.clone(),
        }
    }
}

/// This replica's live subscriptions.
pub struct Registry {
    replica: String,
    live: Mutex<HashMap<Uuid, Arc<Tracked>>>,
}

/// Keeps a subscription listed while it is held.
pub struct Registration {
    registry: Arc<Registry>,
    pub tracked: Arc<Tracked>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.entries().remove(&self.tracked.id);
    }
}

impl Registry {
    pub fn new(replica: String) -> Arc<Self> {
        Arc::new(Self {
            replica,
            live: Mutex::new(HashMap::new()),
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Tracked>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists a subscription that `caller` started from `client_address`.
    pub fn register(
        self: &Arc<Self>,
        caller: &Caller,
        operation_name: &str,
        client_address: &str,
    ) -> Registration {
        let (user_id, api_key) = match caller {
            Caller::User { id, principal, .. } => (Some(*id), *principal == Principal::ApiKey),
            Caller::Anonymous | Caller::System => (None, false),
        };
        let tracked = Arc::new(Tracked {
            id: Uuid::now_v7(),
            caller: caller.audit_label(),
            user_id,
            api_key,
            operation_name: operation_name.to_owned(),
            started_at: crate::clock::now(),
            client_address: client_address.to_owned(),
            delivered: AtomicU64::new(0),
            feed: OnceLock::new(),
            closed: CancellationToken::new(),
        });
        self.entries().insert(tracked.id, Arc::clone(&tracked));
        Registration {
            registry: Arc::clone(self),
            tracked,
        }
    }

    /// This replica's subscriptions, in no particular order (`SubscriptionAdmin::list` orders
    /// what every replica answers).
    pub fn snapshot(&self) -> Vec<ActiveSubscription> {
        self.entries()
            .values()
            .map(|t| t.snapshot(&self.replica))
            .collect()
    }

    /// Closes what `target` names on this replica; returns how many.
    pub fn close(&self, target: &CloseTarget) -> u64 {
        let mut closed = 0;
        for tracked in self.entries().values() {
            let hit = match target {
                CloseTarget::One(id) => tracked.id == *id,
                CloseTarget::OfUser(user) => tracked.user_id == Some(*user),
            };
            if hit && !tracked.closed.is_cancelled() {
                tracked.closed.cancel();
                closed += 1;
            }
        }
        closed
    }
}

/// Listing and closing on every replica.
#[derive(Clone)]
pub struct SubscriptionAdmin {
    registry: Arc<Registry>,
    nats: Option<(async_nats::Client, String)>,
    db: DatabaseConnection,
    bus: Bus,
}

impl SubscriptionAdmin {
    pub fn new(
        registry: Arc<Registry>,
        nats: Option<(async_nats::Client, String)>,
        db: DatabaseConnection,
        bus: Bus,
    ) -> Self {
        Self {
            registry,
            nats,
            db,
            bus,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Answers the other replicas' list and close requests until `shutdown`.
    pub fn spawn_responder(&self, shutdown: Shutdown) {
        let Some((client, prefix)) = self.nats.clone() else {
            return;
        };
        let registry = Arc::clone(&self.registry);
        shutdown.clone().spawn(async move {
            // Retried while NATS is down at start: the client subscribes once it connects.
            let mut requests = loop {
                match client
                    .subscribe(format!("{prefix}.admin.subscriptions.*"))
                    .await
                {
                    Ok(sub) => break sub,
                    Err(e) => {
                        tracing::warn!(error = %e, "subscribing to subscription admin requests failed; retrying");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            };
            loop {
                let request = tokio::select! {
                    () = shutdown.cancelled() => return,
                    request = requests.next() => request,
                };
                let Some(request) = request else { return };
                let Some(reply) = request.reply else { continue };
                let answer = if request.subject.ends_with(".list") {
                    serde_json::to_vec(&registry.snapshot())
                } else {
                    match serde_json::from_slice::<CloseTarget>(&request.payload) {
                        Ok(target) => serde_json::to_vec(&registry.close(&target)),
                        Err(e) => {
                            tracing::warn!(error = %e, "undecodable subscription close request");
                            continue;
                        }
                    }
                };
                if let Ok(answer) = answer {
                    let _ = client.publish(reply, answer.into()).await;
                }
            }
        });
    }

    /// Sends `payload` to every replica's responder and decodes what answers within
    /// [`GATHER`].
    async fn gather<T: serde::de::DeserializeOwned>(
        &self,
        verb: &str,
        payload: Vec<u8>,
    ) -> AppResult<Option<Vec<T>>> {
        let Some((client, prefix)) = &self.nats else {
            return Ok(None);
        };
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "subscription admin request failed");
            AppError::ServiceUnavailable { dependency: "nats" }
        };
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(unavailable(&"not connected"));
        }
        let inbox = client.new_inbox();
        let mut answers = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        client
            .publish_with_reply(
                format!("{prefix}.admin.subscriptions.{verb}"),
                inbox,
                payload.into(),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let mut out = Vec::new();
        let deadline = tokio::time::sleep(GATHER);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                answer = answers.next() => match answer {
                    Some(answer) => match serde_json::from_slice::<T>(&answer.payload) {
                        Ok(v) => out.push(v),
                        Err(e) => tracing::warn!(error = %e, "undecodable subscription admin answer"),
                    },
                    None => break,
                },
            }
        }
        let _ = answers.unsubscribe().await;
        Ok(Some(out))
    }

    /// Every live subscription on every replica that answers, oldest first.
    pub async fn list(&self) -> AppResult<Vec<ActiveSubscription>> {
        let mut all: Vec<ActiveSubscription> = match self
            .gather::<Vec<ActiveSubscription>>("list", Vec::new())
            .await?
        {
            Some(answers) => answers.into_iter().flatten().collect(),
            None => self.registry.snapshot(),
        };
        all.sort_by_key(|s| s.id);
        Ok(all)
    }

    /// Closes what `target` names wherever it runs, audited when anything closed; returns how
    /// many closed.
    async fn close(&self, meta: &RequestMeta, target: CloseTarget) -> AppResult<u64> {
        let payload = serde_json::to_vec(&target).map_err(|e| AppError::Internal(e.into()))?;
        let closed: u64 = match self.gather::<u64>("close", payload).await? {
            Some(counts) => counts.into_iter().sum(),
            None => self.registry.close(&target),
        };
        if closed == 0 {
            // Nothing changed: nothing to audit.
            return Ok(0);
        }
        let (action, entity_type, entity_id) = match &target {
            CloseTarget::One(id) => ("subscription.close", "subscription", id.to_string()),
            CloseTarget::OfUser(user) => ("subscription.close_of", "user", user.to_string()),
        };
        let txn = db::begin_write(&self.db).await?;
        audit::record(
            &txn,
            meta,
            AuditEntry {
                action,
                entity_type,
                entity_id: Some(entity_id),
                tenant_id: meta.caller.tenant(),
                details: serde_json::json!({ "closed": closed }),
            },
        )
        .await?;
        txn.commit().await?;
        self.bus.wake();
        Ok(closed)
    }

    /// Closes one subscription; `NOT_FOUND` when no replica serves it.
    pub async fn close_one(&self, meta: &RequestMeta, id: Uuid) -> AppResult<()> {
        if self.close(meta, CloseTarget::One(id)).await? == 0 {
            return Err(AppError::not_found("Subscription", id));
        }
        Ok(())
    }

    /// Closes every subscription of a user or API key; returns how many.
    pub async fn close_of(&self, meta: &RequestMeta, user: Uuid) -> AppResult<u64> {
        self.close(meta, CloseTarget::OfUser(user)).await
    }
}
