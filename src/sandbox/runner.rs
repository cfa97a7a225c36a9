//! The runner: this replica's share of the sandbox. It claims queued runs (at most
//! `AURUM_SANDBOX_CONCURRENCY` at once), runs each in a locked-down container through the Docker
//! API, stores and publishes the output as it is read, enforces the wall-clock limit, kills on
//! cancellation, renews its leases, marks runs of dead replicas `LOST` and removes containers
//! no live run owns. When its replica drains it stops claiming; when the replica stops, runs
//! still executing are killed and recorded `LOST` at once (not left for another replica's lease
//! sweep to find). Every Docker call but the long-lived streams goes through the `docker`
//! circuit breaker.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use bollard::{
    Docker,
    container::LogOutput,
    errors::Error as DockerError,
    query_parameters::{
        AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, EventsOptionsBuilder,
        KillContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
        StatsOptionsBuilder, WaitContainerOptions,
    },
};
use entity::sandbox_run::{self, SandboxStatus};
use futures::StreamExt;
use tokio::{io::AsyncWriteExt, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    container::{self, CallError, LABEL_FLEET, LABEL_RUN, answered, call},
    events::{Chunk, SandboxEventKind},
    model::{Ending, fit, outcome},
    service::{Availability, Counts, Finished, MAX_CHUNK, SandboxService, status_name, stream_of},
};
use crate::{
    events::DomainEvent,
    infra::{guard::Guard, shutdown::Shutdown},
};

/// How long a slot waits after handing a run back because the engine was unavailable.
const REQUEUE_PAUSE: Duration = Duration::from_secs(2);

/// How many times a SIGKILLed container is inspected for the engine's OOM flag (and its event
/// log for an `oom`), 100 ms apart; it only delays runs that ended on a SIGKILL the runner
/// did not send.
const OOM_LOOKS: u32 = 20;

/// Output is stored when this much waits, or at the next tick.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Counts one run's final status.
pub fn count_outcome(status: SandboxStatus) {
    metrics::counter!("aurum_sandbox_runs_total", "outcome" => status_name(status)).increment(1);
}

/// This replica's runner.
#[derive(Clone)]
pub struct Runner {
    svc: SandboxService,
    docker: Docker,
    guard: Guard,
    replica: String,
    slots: Arc<Semaphore>,
    /// Runs executing here, with the token that kills each.
    running: Arc<Mutex<HashMap<Uuid, CancellationToken>>>,
    /// The process's shutdown: claims stop when it drains; runs still executing when it
    /// stops are killed and recorded `LOST` (their executions are its tasks, waited for).
    shutdown: Shutdown,
}

/// Starts the runner (when Docker answered) or only the lease sweep (when it did not, runs
/// stay queued for replicas that have it).
pub fn spawn(
    svc: SandboxService,
    docker: Option<Docker>,
    unavailable: Option<String>,
    guard: Guard,
    replica: String,
    shutdown: Shutdown,
) {
    let Some(docker) = docker else {
        svc.set_availability(Availability::Unavailable(
            unavailable.unwrap_or_else(|| "no Docker engine".into()),
        ));
        let svc2 = svc.clone();
        shutdown.clone().spawn(async move {
            let mut tick = tokio::time::interval(svc2.config().lease());
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = svc2.expire_leases().await {
                            tracing::warn!(error = ?e, "sandbox lease sweep failed");
                        }
                    }
                }
            }
        });
        return;
    };
    let runner = Runner {
        slots: Arc::new(Semaphore::new(svc.config().concurrency as usize)),
        svc,
        docker,
        guard,
        replica,
        running: Arc::default(),
        shutdown: shutdown.clone(),
    };
    shutdown.spawn(runner.clone().claim_loop());
    shutdown.spawn(runner.clone().lease_loop());
    shutdown.spawn(runner.clone().listen());
    shutdown.spawn(runner.sweep_loop());
}

impl Runner {
    /// Whether runs can start: the runtime is registered and every language's image exists.
    async fn check(&self) -> Availability {
        let info = match call(&self.guard, self.docker.info()).await {
            Ok(info) => info,
            Err(e) => {
                return Availability::Unavailable(format!("the Docker engine did not answer: {e}"));
            }
        };
        let runtime = &self.svc.config().runtime;
        let known = info
            .runtimes
            .as_ref()
            .is_some_and(|r| r.contains_key(runtime));
        if !known {
            return Availability::Unavailable(format!(
                "the container runtime `{runtime}` is not registered with the Docker engine"
            ));
        }
        let mut missing = Vec::new();
        for lang in &self.svc.config().languages.0 {
            if let Err(e) = call(&self.guard, self.docker.inspect_image(&lang.image)).await {
                let why = if e.is_gone() {
                    format!(
                        "the image `{}` of language `{}` is missing (scripts/sandbox-images builds it)",
                        lang.image, lang.name
                    )
                } else {
                    format!(
                        "the image `{}` of language `{}` could not be checked: {e}",
                        lang.image, lang.name
                    )
                };
                tracing::error!(language = %lang.name, image = %lang.image, "{why}");
                missing.push((lang.name.clone(), why));
            }
        }
        if missing.is_empty() {
            Availability::Ready
        } else {
            Availability::Partial(missing)
        }
    }

    fn running_ids(&self) -> Vec<Uuid> {
        self.running
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    fn cancel_local(&self, run: Uuid) {
        if let Ok(m) = self.running.lock()
            && let Some(token) = m.get(&run)
        {
            token.cancel();
        }
    }

    /// Claims queued runs while slots are free; sleeps until woken (a run queued here or
    /// anywhere, a slot freed) or the poll interval passes. Re-checks the images while some
    /// are missing. Ends when the replica starts draining: it takes no new run.
    async fn claim_loop(self) {
        let wake = self.svc.wake_handle();
        let mut tick = tokio::time::interval(self.svc.config().poll());
        let mut checked: Option<Instant> = None;
        loop {
            let due = checked.is_none_or(|at| {
                !matches!(self.svc.availability(), Availability::Ready)
                    && at.elapsed() > Duration::from_secs(10)
            });
            if due {
                let availability = self.check().await;
                self.svc.set_availability(availability);
                checked = Some(Instant::now());
            }
            // Runs in a language this replica cannot run now wait for one that can.
            let runnable = self.svc.runnable();
            while let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
                match self.svc.claim(&self.replica, &runnable).await {
                    Ok(Some(run)) => {
                        let token = CancellationToken::new();
                        if let Ok(mut m) = self.running.lock() {
                            m.insert(run.id, token.clone());
                        }
                        let runner = self.clone();
                        let wake = Arc::clone(&wake);
                        self.shutdown.spawn(async move {
                            runner.execute(run, token).await;
                            drop(permit);
                            wake.notify_one();
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = ?e, "claiming a sandbox run failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = self.shutdown.drained() => return,
                () = wake.notified() => {}
                _ = tick.tick() => {}
            }
        }
    }

    /// Renews the leases of the runs executing here every third of the lease, and kills the
    /// ones whose cancellation was asked (when its event was missed).
    async fn lease_loop(self) {
        let mut tick = tokio::time::interval(self.svc.config().lease() / 3);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.svc.renew(&self.replica, &self.running_ids()).await {
                Ok(cancelled) => cancelled.into_iter().for_each(|id| self.cancel_local(id)),
                Err(e) => tracing::warn!(error = ?e, "renewing sandbox leases failed"),
            }
        }
    }

    /// Follows the bus: a run queued anywhere wakes the claim loop; a cancellation of a run
    /// executing here kills it.
    async fn listen(self) {
        let wake = self.svc.wake_handle();
        loop {
            let mut events = self.svc.bus().subscribe();
            loop {
                let item = tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    item = events.next() => item,
                };
                match item {
                    Some(Ok(delivered)) => {
                        if let DomainEvent::Sandbox(e) = &delivered.event {
                            match e.kind {
                                SandboxEventKind::Queued => wake.notify_one(),
                                SandboxEventKind::CancelRequested => self.cancel_local(e.run_id),
                                _ => {}
                            }
                        }
                    }
                    // Behind: the poll and the lease loop cover what was skipped.
                    Some(Err(_)) => break,
                    None => return,
                }
            }
        }
    }

    /// Marks runs of dead replicas `LOST` and removes containers no live run owns.
    async fn sweep_loop(self) {
        let mut tick = tokio::time::interval(self.svc.config().poll().max(Duration::from_secs(2)));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.svc.expire_leases().await {
                Ok(lost) => {
                    for run in lost {
                        tracing::warn!(run = %run.id, replica = ?run.replica, "sandbox run lost with its replica");
                    }
                }
                Err(e) => tracing::warn!(error = ?e, "sandbox lease sweep failed"),
            }
            if let Err(e) = self.sweep_orphans().await {
                tracing::warn!(error = %e, "sandbox container sweep failed");
            }
        }
    }

    /// Removes every Aurum container whose run is neither executing here nor owned (running
    /// under a live lease) by another replica. Answers how many it removed.
    pub async fn sweep_orphans(&self) -> Result<usize, String> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{LABEL_FLEET}={}", self.svc.config().fleet)],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = call(&self.guard, self.docker.list_containers(Some(options)))
            .await
            .map_err(|e| e.to_string())?;
        let local = self.running_ids();
        let mut candidates: Vec<(String, Option<Uuid>)> = Vec::new();
        for c in containers {
            let Some(id) = c.id else { continue };
            let run = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_RUN))
                .and_then(|r| Uuid::parse_str(r).ok());
            if run.is_some_and(|r| local.contains(&r)) {
                continue;
            }
            candidates.push((id, run));
        }
        if candidates.is_empty() {
            return Ok(0);
        }
        let runs: Vec<Uuid> = candidates.iter().filter_map(|(_, r)| *r).collect();
        let owned = self.svc.owned(&runs).await.map_err(|e| format!("{e:?}"))?;
        let mut removed = 0;
        for (id, run) in candidates {
            if run.is_some_and(|r| owned.contains(&r)) {
                continue;
            }
            if self.remove(&id).await {
                tracing::info!(container = %id, run = ?run, "removed a sandbox container no run owns");
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn remove(&self, container: &str) -> bool {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match call(
            &self.guard,
            self.docker.remove_container(container, Some(options)),
        )
        .await
        {
            Ok(()) => true,
            Err(e) if e.is_gone() => false,
            Err(e) => {
                tracing::warn!(container, error = %e, "removing a sandbox container failed");
                false
            }
        }
    }

    async fn kill(&self, container: &str) {
        match call(
            &self.guard,
            self.docker
                .kill_container(container, None::<KillContainerOptions>),
        )
        .await
        {
            Ok(()) => {}
            Err(e) if e.is_gone() => {}
            Err(e) => tracing::warn!(container, error = %e, "killing a sandbox container failed"),
        }
    }

    /// Executes one claimed run to its end and records it.
    async fn execute(&self, run: sandbox_run::Model, token: CancellationToken) {
        let wait = run
            .started_at
            .map(|s| (s - run.created_at).to_std().unwrap_or_default())
            .unwrap_or_default();
        metrics::histogram!("aurum_sandbox_queue_wait_seconds").record(wait.as_secs_f64());
        let started = Instant::now();
        let mut exec = Execution::new(&run);
        let result = self.run_container(&run, &token, &mut exec).await;
        if let Err(e) = &result
            && exec.container.is_none()
            && e.engine_unreachable()
        {
            // Nothing ran: back in the queue for any replica, and this slot rests a while.
            tracing::warn!(run = %run.id, error = %e, "the Docker engine is unavailable; the run goes back to the queue");
            if let Err(e) = self.svc.requeue(&run, &self.replica).await {
                tracing::error!(run = %run.id, error = ?e, "requeueing a sandbox run failed");
            }
            if let Ok(mut m) = self.running.lock() {
                m.remove(&run.id);
            }
            tokio::time::sleep(REQUEUE_PAUSE).await;
            return;
        }
        let end = match result {
            Ok(ending) => {
                let error = matches!(ending, Ending::Interrupted).then(|| {
                    format!(
                        "replica {} shut down while the run executed and killed it; it may have had effects (a retry needs a new requestId)",
                        self.replica
                    )
                });
                let (status, exit_code, signal) = outcome(ending);
                Finished {
                    status,
                    exit_code,
                    signal: signal.map(str::to_owned),
                    error,
                    peak_memory_bytes: exec.peak(),
                }
            }
            Err(e) => {
                tracing::error!(run = %run.id, error = %e, "a sandbox run could not execute");
                Finished {
                    status: SandboxStatus::Failed,
                    exit_code: None,
                    signal: None,
                    error: Some(format!(
                        "the sandbox could not execute the run ({}); details are in replica {}'s log",
                        e.public(),
                        self.replica
                    )),
                    peak_memory_bytes: exec.peak(),
                }
            }
        };
        if let Some(container) = &exec.container {
            self.remove(container).await;
        }
        let status = end.status;
        match self.svc.finish(&run, &self.replica, exec.counts, end).await {
            Ok(true) => {
                count_outcome(status);
                metrics::histogram!("aurum_sandbox_run_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
            Ok(false) => {
                tracing::warn!(run = %run.id, "a sandbox run ended after it was marked lost")
            }
            Err(e) => {
                tracing::error!(run = %run.id, error = ?e, "recording a sandbox run's end failed")
            }
        }
        if let Ok(mut m) = self.running.lock() {
            m.remove(&run.id);
        }
    }

    async fn run_container(
        &self,
        run: &sandbox_run::Model,
        token: &CancellationToken,
        exec: &mut Execution,
    ) -> Result<Ending, RunError> {
        let spec =
            container::spec(self.svc.config(), run, &self.replica).map_err(RunError::Setup)?;
        let name = format!("aurum-sandbox-{}", run.id);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = call(
            &self.guard,
            self.docker.create_container(Some(options), spec),
        )
        .await?;
        let id = created.id;
        exec.container = Some(id.clone());
        if let Err(e) = self.svc.set_container(run.id, &id).await {
            tracing::warn!(run = %run.id, error = ?e, "recording a sandbox container failed");
        }
        let attach = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attached = call(&self.guard, self.docker.attach_container(&id, Some(attach))).await?;
        let mut output = attached.output;
        let mut input = attached.input;
        call(&self.guard, self.docker.start_container(&id, None)).await?;
        // The wall-clock limit, a cancellation or the replica's stop, whichever comes first,
        // kills it.
        let limit = Duration::from_millis(u64::try_from(run.timeout_ms).unwrap_or(0));
        let stop = async {
            tokio::select! {
                () = tokio::time::sleep(limit) => Ending::TimedOut,
                () = token.cancelled() => Ending::Cancelled,
                () = self.shutdown.cancelled() => Ending::Interrupted,
            }
        };
        tokio::pin!(stop);
        // Code, then the program's stdin, then end of input.
        let mut feed =
            Vec::with_capacity(run.code.len() + run.stdin.as_ref().map_or(0, String::len));
        feed.extend_from_slice(run.code.as_bytes());
        if let Some(stdin) = &run.stdin {
            feed.extend_from_slice(stdin.as_bytes());
        }
        let writer = tokio::spawn(async move {
            // A program that exits before reading everything closes the pipe: not an error.
            let _ = input.write_all(&feed).await;
            let _ = input.shutdown().await;
        });
        let peak = Arc::clone(&exec.peak_memory);
        let stats = {
            let docker = self.docker.clone();
            let id = id.clone();
            // The engine's stream: a sample at once, then one a second. Under cgroup v1
            // `max_usage` is the cgroup's high-water mark, so a later sample still shows the
            // peak; a run shorter than the first sample reports none.
            tokio::spawn(async move {
                let options = StatsOptionsBuilder::default().stream(true).build();
                let mut stats = docker.stats(&id, Some(options));
                while let Some(Ok(s)) = stats.next().await {
                    if let Some(m) = s.memory_stats {
                        let seen = m.max_usage.or(m.usage).unwrap_or(0);
                        peak.fetch_max(i64::try_from(seen).unwrap_or(i64::MAX), Ordering::Relaxed);
                    }
                }
            })
        };
        let mut ending: Option<Ending> = None;
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                item = output.next() => match item {
                    Some(Ok(LogOutput::StdOut { message })) => exec.take(self, run, false, &message).await?,
                    Some(Ok(LogOutput::StdErr { message })) => exec.take(self, run, true, &message).await?,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(run = %run.id, error = %e, "reading a sandbox run's output failed");
                        break;
                    }
                    None => break,
                },
                reason = &mut stop, if ending.is_none() => {
                    ending = Some(reason);
                    self.kill(&id).await;
                }
                _ = flush.tick() => exec.flush(self, run).await?,
            }
        }
        exec.flush(self, run).await?;
        writer.abort();
        // The output closed; the program may still run (it closed its streams): the limit
        // and cancellation still hold while waiting for it to end.
        let exit = loop {
            let waited = async {
                let mut wait = self
                    .docker
                    .wait_container(&id, None::<WaitContainerOptions>);
                match wait.next().await {
                    Some(Ok(r)) => Ok(r.status_code),
                    Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
                    Some(Err(e)) => Err(e),
                    None => Ok(-1),
                }
            };
            tokio::select! {
                code = waited => break code.map_err(CallError::Engine)?,
                reason = &mut stop, if ending.is_none() => {
                    ending = Some(reason);
                    self.kill(&id).await;
                }
            }
        };
        stats.abort();
        if let Some(ending) = ending {
            return Ok(ending);
        }
        // The engine records an OOM kill from its own event, which under runsc can arrive
        // after the exit: a SIGKILL the runner did not send is looked at again, briefly.
        // When the event came after the exit, Docker 20.10 keeps `OOMKilled` false for good
        // (seen under runsc in CI and here) while its event log has the `oom`: that is asked too.
        let mut looks = 0;
        loop {
            let state = call(&self.guard, self.docker.inspect_container(&id, None))
                .await?
                .state;
            let mut oom_killed = state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false);
            let started = state.as_ref().and_then(|s| s.started_at.clone());
            let code = state.and_then(|s| s.exit_code).unwrap_or(exit);
            if !oom_killed && code == 137 {
                oom_killed = self.oom_event_logged(&id, started.as_deref()).await;
            }
            looks += 1;
            if oom_killed || code != 137 || looks >= OOM_LOOKS {
                return Ok(Ending::Exited { code, oom_killed });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the engine's event log holds an `oom` of container `id` since it started (the
    /// query covers the past only: `until` now, so the stream ends).
    async fn oom_event_logged(&self, id: &str, started: Option<&str>) -> bool {
        let until = (chrono::Utc::now().timestamp() + 1).to_string();
        let since = started
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map_or_else(
                || (chrono::Utc::now().timestamp() - 3600).to_string(),
                |t| (t.timestamp() - 1).to_string(),
            );
        let filters = HashMap::from([
            ("container", vec![id]),
            ("type", vec!["container"]),
            ("event", vec!["oom"]),
        ]);
        let options = EventsOptionsBuilder::new()
            .since(&since)
            .until(&until)
            .filters(&filters)
            .build();
        let events = self.docker.events(Some(options));
        let found = tokio::time::timeout(Duration::from_secs(2), async {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(e) if e.action.as_deref() == Some("oom") => return true,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
            false
        })
        .await;
        found.unwrap_or(false)
    }
}

/// Why a run could not execute.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("{0}")]
    Setup(&'static str),
    #[error(transparent)]
    Docker(#[from] CallError),
    #[error("storing its output failed: {0:?}")]
    Store(crate::error::AppError),
}

impl RunError {
    /// The engine refused the call unseen (breaker open) or did not answer at all.
    fn engine_unreachable(&self) -> bool {
        matches!(self, Self::Docker(CallError::Refused(_)))
            || matches!(self, Self::Docker(CallError::Engine(e)) if !answered(e))
    }

    /// What the run's `error` says (no engine internals).
    fn public(&self) -> &'static str {
        match self {
            Self::Setup(why) => why,
            Self::Docker(CallError::Refused(_)) => "the docker circuit breaker is open",
            Self::Docker(CallError::Engine(_)) => "the Docker engine refused the container",
            Self::Store(_) => "its output could not be stored",
        }
    }
}

impl From<crate::error::AppError> for RunError {
    fn from(e: crate::error::AppError) -> Self {
        Self::Store(e)
    }
}

/// One execution's output bookkeeping: what is kept (under the cap), what waits to be
/// stored, and the counts of each stream.
struct Execution {
    container: Option<String>,
    counts: Counts,
    /// The offset the next stored byte gets.
    stored: i64,
    cap: i64,
    pending: Option<(bool, Vec<u8>)>,
    peak_memory: Arc<AtomicI64>,
}

impl Execution {
    fn new(run: &sandbox_run::Model) -> Self {
        Self {
            container: None,
            counts: Counts::default(),
            stored: 0,
            cap: run.output_bytes,
            pending: None,
            peak_memory: Arc::new(AtomicI64::new(0)),
        }
    }

    fn peak(&self) -> Option<i64> {
        let p = self.peak_memory.load(Ordering::Relaxed);
        (p > 0).then_some(p)
    }

    fn kept(&self) -> i64 {
        self.stored
            + self
                .pending
                .as_ref()
                .map_or(0, |(_, d)| i64::try_from(d.len()).unwrap_or(0))
    }

    /// Takes bytes the program wrote: counted always, kept while under the cap.
    async fn take(
        &mut self,
        runner: &Runner,
        run: &sandbox_run::Model,
        stderr: bool,
        bytes: &[u8],
    ) -> Result<(), RunError> {
        let len = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let (keep, truncated) = fit(self.kept(), self.cap, bytes.len());
        if stderr {
            self.counts.stderr += len;
            self.counts.stderr_truncated |= truncated;
        } else {
            self.counts.stdout += len;
            self.counts.stdout_truncated |= truncated;
        }
        if keep == 0 {
            return Ok(());
        }
        if self.pending.as_ref().is_some_and(|(s, _)| *s != stderr) {
            self.flush(runner, run).await?;
        }
        let pending = self.pending.get_or_insert_with(|| (stderr, Vec::new()));
        pending.1.extend_from_slice(&bytes[..keep]);
        if pending.1.len() >= MAX_CHUNK {
            self.flush(runner, run).await?;
        }
        Ok(())
    }

    /// Stores what waits, in chunks of at most `MAX_CHUNK`.
    async fn flush(&mut self, runner: &Runner, run: &sandbox_run::Model) -> Result<(), RunError> {
        let Some((stderr, data)) = self.pending.take() else {
            return Ok(());
        };
        for piece in data.chunks(MAX_CHUNK) {
            let chunk = Chunk {
                offset: self.stored,
                stream: stream_of(stderr),
                data: piece.to_vec(),
            };
            let end = chunk.end();
            runner.svc.append_output(run, chunk, self.counts).await?;
            self.stored = end;
        }
        Ok(())
    }
}
