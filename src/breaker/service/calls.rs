//! The hot path: acquiring permits and recording outcomes, on the shared state in Redis or,
//! without it, on this replica's own window.

use std::sync::atomic::Ordering;

use super::{BreakerService, Entry, PERMIT_TTL_MS, REDIS_TIMEOUT, read, write};
use crate::{
    breaker::{
        Dependency,
        local::now_ms,
        model::{Grant, PermitId, Recorded},
        rules::{Cause, Config, Counts, Decision, Outcome, State, Transition},
        shared::{Answer, Op, Reply},
    },
    error::{AppError, AppResult},
    infra::guard::CallGuard,
};

impl BreakerService {
    /// Runs `op` on the shared state of `entry`; `None` when it cannot (no Redis, the
    /// `redis` breaker refuses, the call fails): the caller falls back to its own window.
    pub(super) async fn shared(&self, entry: &Entry, op: Op<'_>) -> Option<Answer> {
        let (conn, prefix) = self.inner.redis.as_ref()?;
        let guard = &self.inner.guards[Dependency::Redis as usize];
        let Ok(ticket) = guard.admit() else {
            self.set_shared(false);
            return None;
        };
        let started = std::time::Instant::now();
        let mut conn = conn.clone();
        let call = self.inner.script.call(
            &mut conn,
            prefix,
            &entry.row.name,
            &entry.config,
            entry.persisted(),
            op,
            0,
        );
        let result = tokio::time::timeout(REDIS_TIMEOUT, call).await;
        let answered = matches!(result, Ok(Ok(_)));
        guard.report(ticket, answered, started.elapsed());
        self.set_shared(answered);
        match result {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, breaker = %entry.row.name, "shared breaker call failed; deciding locally");
                None
            }
            Err(_) => None,
        }
    }

    pub(super) fn set_shared(&self, ok: bool) {
        let was = self.inner.shared_ok.swap(ok, Ordering::AcqRel);
        if was != ok {
            if ok {
                tracing::info!("Redis answers again: circuit breakers are shared");
                self.inner.local.forget();
            } else {
                tracing::warn!(
                    "Redis does not answer: circuit breakers decide on this replica's own windows"
                );
            }
            metrics::gauge!("aurum_circuit_breaker_shared").set(if ok { 1.0 } else { 0.0 });
        }
    }

    /// Notes a newer live state learned from Redis (most calls bring none: they only read).
    pub(super) fn note_live(&self, name: &str, reply: &Reply) {
        let newer = read(&self.inner.cache)
            .get(name)
            .is_some_and(|e| reply.epoch > e.live.1);
        if !newer {
            return;
        }
        let mut cache = write(&self.inner.cache);
        if let Some(e) = cache.get_mut(name)
            && reply.epoch > e.live.1
        {
            e.live = (reply.state, reply.epoch, reply.since_ms);
        }
    }

    /// Asks to make a call through breaker `name`.
    pub async fn acquire(&self, name: &str) -> AppResult<Grant> {
        let entry = self.entry(name).await?;
        if entry.row.dependency {
            return Err(AppError::bad_field(
                "name",
                format!("`{name}` guards Aurum's own calls; agents use breakers of their own"),
            ));
        }
        let random = uuid::Uuid::new_v4().simple().to_string();
        let acquired_ms = now_ms();
        let permit_for = |epoch: u64| PermitId {
            name: name.to_owned(),
            epoch,
            acquired_ms,
            random: random.clone(),
        };
        // The epoch is not known before the script runs, so the shared permit's key is its
        // random part alone; the id handed out names breaker and epoch as well.
        let shared = self
            .shared(
                &entry,
                Op::Acquire {
                    permit: &random,
                    ttl_ms: PERMIT_TTL_MS,
                },
            )
            .await;
        let (decision, state, transition) = match shared {
            Some(Answer::Done(reply)) => {
                self.note_live(name, &reply);
                let decision = if reply.permitted {
                    Decision::Permitted { epoch: reply.epoch }
                } else {
                    Decision::Refused {
                        retry_after_ms: reply.retry_after_ms,
                    }
                };
                let t = reply.transition.map(|(from, cause, counts)| {
                    shared_transition(&entry.config, &reply, from, cause, counts)
                });
                (decision, reply.state, t)
            }
            _ => {
                let (decision, t, state) = self.inner.local.with(name, entry.live, |m| {
                    let (d, t) = m.acquire(&entry.config, now_ms());
                    (d, t, m.state)
                });
                if let Decision::Permitted { .. } = decision {
                    self.inner.local.issue(&random, PERMIT_TTL_MS);
                }
                (decision, state, t)
            }
        };
        if let Some(t) = transition {
            self.persist(name, t).await;
        }
        Ok(match decision {
            Decision::Permitted { epoch } => Grant {
                permit: Some(permit_for(epoch)),
                state,
                retry_after_ms: 0,
            },
            Decision::Refused { retry_after_ms } => {
                entry.counters.refused();
                Grant {
                    permit: None,
                    state,
                    retry_after_ms,
                }
            }
        })
    }

    /// Reports the outcome of a permitted call, once.
    pub async fn record(
        &self,
        permit: &PermitId,
        outcome: Outcome,
        duration_ms: Option<u64>,
    ) -> AppResult<Recorded> {
        let entry = self
            .entry(&permit.name)
            .await
            .ok()
            .filter(|e| !e.row.dependency)
            .ok_or_else(unknown_permit)?;
        let duration_ms =
            duration_ms.unwrap_or_else(|| now_ms().saturating_sub(permit.acquired_ms));
        let code = match outcome {
            Outcome::Success => 'S',
            Outcome::Failure => 'F',
            Outcome::Ignored => 'I',
        };
        // A permit issued here (while Redis was away) is decided here; any other is the
        // shared store's, unless Redis does not answer: then it is accepted once here, as
        // far as its id shows it could be real.
        match self.inner.local.report(&permit.random) {
            Some(false) => return Err(AppError::PermitAlreadyRecorded),
            Some(true) => {}
            None => match self
                .shared(
                    &entry,
                    Op::Record {
                        permit: &permit.random,
                        outcome: code,
                        duration_ms,
                    },
                )
                .await
            {
                Some(Answer::UnknownPermit) => return Err(unknown_permit()),
                Some(Answer::PermitUsed) => return Err(AppError::PermitAlreadyRecorded),
                Some(Answer::Done(reply)) => {
                    self.note_live(&permit.name, &reply);
                    let t = reply.transition.map(|(from, cause, counts)| {
                        shared_transition(&entry.config, &reply, from, cause, counts)
                    });
                    entry.counters.outcome(outcome);
                    if let Some(t) = t {
                        self.persist(&permit.name, t).await;
                    }
                    return Ok(Recorded {
                        counted: reply.counted,
                        state: reply.state,
                    });
                }
                None => {
                    let now = now_ms();
                    if permit.acquired_ms.saturating_add(PERMIT_TTL_MS) <= now {
                        return Err(unknown_permit());
                    }
                    self.inner.local.mark_used(&permit.random, PERMIT_TTL_MS);
                }
            },
        }
        let (counted, state, transition) = self.inner.local.with(&permit.name, entry.live, |m| {
            let (counted, t) =
                m.record(&entry.config, permit.epoch, outcome, duration_ms, now_ms());
            (counted, m.state, t)
        });
        entry.counters.outcome(outcome);
        if let Some(t) = transition {
            self.persist(&permit.name, t).await;
        }
        Ok(Recorded { counted, state })
    }
}

pub(super) fn shared_transition(
    config: &Config,
    reply: &Reply,
    from: State,
    cause: Cause,
    counts: Counts,
) -> Transition {
    let min = if from == State::HalfOpen {
        config.half_open_calls
    } else {
        config.min_calls()
    };
    Transition {
        from,
        to: reply.state,
        epoch: reply.epoch,
        at_ms: reply.now_ms,
        cause,
        rates: counts.rates(min),
    }
}

pub(super) fn unknown_permit() -> AppError {
    AppError::not_found("CircuitBreakerPermit", "(the permit given)")
}
