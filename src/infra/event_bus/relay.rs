//! The relay side of the bus: moving committed outbox rows onto the bus (publishing them to
//! JetStream, or numbering them), fanning out what reached the bus on this replica (the
//! JetStream consumer, or new numbers in the table), and the retention sweep.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use async_nats::jetstream;
use futures::StreamExt;
use sea_orm::{DatabaseBackend, DbErr, TransactionTrait};
use tokio_util::sync::CancellationToken;

use super::{ACK_WAIT, Backend, BusEvent, MAX_BACKOFF, REPLAY_PAGE, SWEEP_EVERY, Shared};
use crate::infra::outbox;

impl<E: BusEvent> Shared<E> {
    pub(super) async fn relay_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let mut swept = tokio::time::Instant::now();
        loop {
            let pause = if failures == 0 {
                self.options.poll
            } else {
                (Duration::from_millis(100) * failures.min(10)).min(MAX_BACKOFF)
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified(), if failures == 0 => {}
                () = tokio::time::sleep(pause) => {}
            }
            match self.relay_all().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(attempts = failures, "event relay recovered");
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Every attempt fails alike during an outage: the first and then one line
                    // in fifty.
                    if failures == 1 || failures.is_multiple_of(50) {
                        tracing::warn!(error = %e, attempts = failures, "event relay failed; events wait in the outbox");
                    }
                }
            }
            if matches!(self.backend, Backend::Database) {
                if let Err(e) = self.fan_out_numbered().await {
                    tracing::warn!(error = %e, "reading numbered events failed");
                }
                if swept.elapsed() >= SWEEP_EVERY {
                    swept = tokio::time::Instant::now();
                    let cutoff = crate::clock::now()
                        - chrono::Duration::from_std(self.options.retention)
                            .unwrap_or(chrono::Duration::zero());
                    if let Err(e) = outbox::sweep(&self.db, cutoff).await {
                        tracing::warn!(error = %e, "dropping events past retention failed");
                    }
                }
            }
        }
    }

    /// Relays until the outbox holds nothing old enough.
    async fn relay_all(&self) -> anyhow::Result<()> {
        loop {
            let relayed = match &self.backend {
                Backend::Database => self.number_batch().await?,
                Backend::JetStream { .. } => self.publish_batch().await?,
            };
            if relayed > 0 {
                metrics::counter!("aurum_events_relayed_total").increment(relayed as u64);
            }
            if (relayed as u64) < outbox::BATCH {
                return Ok(());
            }
        }
    }

    /// Database bus: numbers the oldest unnumbered rows (PostgreSQL; SQLite numbers them as
    /// they are written, see `outbox::append`).
    async fn number_batch(&self) -> Result<usize, DbErr> {
        if self.db.get_database_backend() == DatabaseBackend::Sqlite {
            return Ok(0);
        }
        let txn = crate::infra::db::begin_write(&self.db).await?;
        outbox::lock_relay(&txn).await?;
        let rows = outbox::pending(&txn, false, self.options.relay_delay).await?;
        if !rows.is_empty() {
            let last = outbox::last_position(&txn).await?;
            outbox::number(&txn, &rows, last).await?;
        }
        txn.commit().await?;
        Ok(rows.len())
    }

    /// Database bus: fans out what was numbered since the last look, in order, up to the
    /// first row younger than the relay delay (on SQLite rows are numbered as they are
    /// written, so the delay holds them here).
    async fn fan_out_numbered(&self) -> Result<(), DbErr> {
        let cutoff = (!self.options.relay_delay.is_zero()).then(|| {
            crate::clock::now()
                - chrono::Duration::from_std(self.options.relay_delay)
                    .unwrap_or(chrono::Duration::zero())
        });
        loop {
            let head = i64::try_from(self.head.load(Ordering::Acquire)).unwrap_or(i64::MAX);
            let rows = outbox::after(&self.db, head, REPLAY_PAGE).await?;
            let full = rows.len() as u64 == REPLAY_PAGE;
            for row in rows {
                if cutoff.is_some_and(|cutoff| row.created_at > cutoff) {
                    return Ok(());
                }
                if self.db.get_database_backend() == DatabaseBackend::Sqlite {
                    // Numbered as written: reaching subscribers is its relay.
                    metrics::counter!("aurum_events_relayed_total").increment(1);
                }
                let position = u64::try_from(row.position.unwrap_or(0)).unwrap_or(0);
                match serde_json::from_str::<E>(&row.payload) {
                    Ok(event) => self.deliver(position, event),
                    Err(e) => {
                        self.head.store(position, Ordering::Release);
                        tracing::warn!(outbox.id = row.id, error = %e, "dropping undecodable event");
                    }
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// JetStream bus: publishes the oldest rows, waits for the acks, deletes them. On
    /// PostgreSQL the rows stay locked (and the other relays wait) until then; on SQLite the
    /// write lock is not held while NATS is slow (one relay per process there).
    async fn publish_batch(&self) -> anyhow::Result<usize> {
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            let txn = self.db.begin().await?;
            outbox::lock_relay(&txn).await?;
            let n = self.publish_pending(&txn).await?;
            txn.commit().await?;
            Ok(n)
        } else {
            self.publish_pending(&self.db).await
        }
    }

    async fn publish_pending<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
    ) -> anyhow::Result<usize> {
        let Backend::JetStream {
            js,
            subjects,
            ready,
            guard,
            ..
        } = &self.backend
        else {
            return Ok(0);
        };
        let rows = outbox::pending(conn, true, self.options.relay_delay).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        if !ready.load(Ordering::Acquire) {
            self.ensure_stream().await?;
        }
        let result = crate::infra::guard::guarded_poll(guard.as_ref(), Duration::ZERO, async {
            let mut acks = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    row.event_id.to_string().as_str(),
                );
                let ack = js
                    .publish_with_headers(
                        format!("{subjects}.{}", row.subject),
                        headers,
                        row.payload.clone().into(),
                    )
                    .await?;
                acks.push(ack);
            }
            for ack in acks {
                tokio::time::timeout(ACK_WAIT, ack)
                    .await
                    .map_err(|_| anyhow::anyhow!("no JetStream ack within {ACK_WAIT:?}"))??;
            }
            anyhow::Ok(())
        })
        .await;
        if let Err(e) = result {
            // The stream may be gone (a NATS without its store): declare it again next time.
            ready.store(false, Ordering::Release);
            return Err(e);
        }
        let n = rows.len();
        outbox::remove(conn, rows.into_iter().map(|r| r.id).collect()).await?;
        Ok(n)
    }

    /// Creates the stream, or brings its settings up to date.
    async fn ensure_stream(&self) -> anyhow::Result<()> {
        let Backend::JetStream {
            js,
            stream,
            subjects,
            ready,
            ..
        } = &self.backend
        else {
            return Ok(());
        };
        let retention = self.options.retention.max(Duration::from_secs(1));
        js.create_or_update_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{subjects}.>")],
            max_age: retention,
            duplicate_window: retention.min(Duration::from_secs(120)),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("declaring stream {stream}: {e}"))?;
        ready.store(true, Ordering::Release);
        Ok(())
    }

    /// JetStream bus: reads the stream from where this replica left off and fans out, for as
    /// long as the replica runs; recreates its consumer whenever NATS comes back.
    pub(super) async fn consume_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next: Option<u64> = None;
        let mut failures: u32 = 0;
        loop {
            if failures > 0 {
                let pause = (Duration::from_millis(100) * failures.min(10)).min(MAX_BACKOFF);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            match self.consume(&mut next, &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_multiple_of(50) {
                        tracing::warn!(error = %e, attempts = failures, "reading the event stream failed; retrying");
                    }
                }
            }
        }
    }

    /// Reads until shutdown (`Ok`) or a failure (`Err`, to be retried from `next`).
    async fn consume(
        &self,
        next: &mut Option<u64>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let Backend::JetStream {
            client, js, stream, ..
        } = &self.backend
        else {
            return Ok(());
        };
        self.ensure_stream().await?;
        let mut handle = js.get_stream(stream).await?;
        let start = match *next {
            Some(start) => start,
            None => {
                // A new replica starts at the end: its subscribers want what happens from now.
                let last = handle.info().await?.state.last_sequence;
                self.head.store(last, Ordering::Release);
                *next = Some(last + 1);
                last + 1
            }
        };
        let consumer = handle
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        // The ordered consumer finds out late (missed heartbeats) that a restarted NATS lost
        // it; watching the connection recreates it as soon as NATS is back.
        let mut watch = tokio::time::interval(Duration::from_millis(250));
        let mut disconnected = false;
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = watch.tick() => {
                    let connected = client.connection_state() == async_nats::connection::State::Connected;
                    if !connected {
                        disconnected = true;
                    } else if disconnected {
                        anyhow::bail!("NATS reconnected; reading the stream again from {}", next.unwrap_or(start));
                    }
                    continue;
                }
                message = messages.next() => message,
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("the stream consumer ended"),
            };
            let position = message
                .info()
                .map_err(|e| anyhow::anyhow!("message without stream info: {e}"))?
                .stream_sequence;
            *next = Some(position + 1);
            match serde_json::from_slice::<E>(&message.payload) {
                Ok(event) => self.deliver(position, event),
                Err(e) => {
                    self.head.store(position, Ordering::Release);
                    tracing::warn!(nats.subject = %message.subject, error = %e, "dropping undecodable event");
                }
            }
        }
    }
}
