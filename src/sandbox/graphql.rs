//! GraphQL surface of sandbox runs: thin resolvers over `SandboxService`, the status
//! subscription, and the output subscription (stored chunks from an offset, then live ones,
//! then the final status).

use async_graphql::{
    Context, Enum, ErrorExtensions, ID, InputObject, Object, Result, SimpleObject, Subscription,
    connection::Connection,
};
use std::sync::atomic::Ordering;

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, Utc};
use entity::{sandbox_output, sandbox_run};
use futures::{Stream, StreamExt};

use super::{
    events::SandboxEventKind,
    model::RequestedLimits,
    service::{NewRun, RunFilter, SandboxService},
};
use crate::{
    auth::{guard::Require, permission::Permission},
    error::AppError,
    events::DomainEvent,
    graphql::context::{
        ConnectionFields, caller, connection, meta, page_cost, page_request, parse_id, services,
        wants_total,
    },
    graphql::events::CursorSlot,
    infra::event_bus::Interrupted,
    rate_limit::LimitedAction,
};

/// `sandbox_runs.status`.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::sandbox_run::SandboxStatus")]
pub enum SandboxRunStatus {
    /// Waiting for a replica with a free slot.
    Queued,
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero, or could not execute (`error` says why).
    Failed,
    /// Killed at its wall-clock limit.
    TimedOut,
    /// Killed for exceeding its memory.
    OomKilled,
    Cancelled,
    /// Its replica died or shut down while running it; it was not retried (the program may
    /// have had effects).
    Lost,
}

/// Which stream a chunk came from.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "entity::sandbox_output::OutputStream")]
pub enum SandboxStream {
    Stdout,
    Stderr,
}

/// The limits a run runs with.
#[derive(SimpleObject)]
pub struct SandboxLimits {
    pub memory_mb: i32,
    pub cpus: f64,
    pub timeout_ms: i64,
    pub pids: i32,
    /// Output kept (stdout and stderr together), in bytes.
    pub output_bytes: i64,
}

/// What a run may ask for (`sandboxLimits`): the limits it gets when it names none, and the
/// most it may name (more is refused with `BAD_USER_INPUT`).
#[derive(SimpleObject)]
pub struct SandboxLimitBounds {
    pub defaults: SandboxLimits,
    pub maxima: SandboxLimits,
    /// Largest program accepted, in bytes.
    pub max_code_bytes: i64,
    /// Largest stdin accepted, in bytes.
    pub max_stdin_bytes: i64,
}

fn int32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn int64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One sandbox run.
pub struct SandboxRun(pub sandbox_run::Model);

fn millis(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Option<i64> {
    Some((to? - from?).num_milliseconds())
}

#[Object]
impl SandboxRun {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn language(&self) -> &str {
        &self.0.language
    }
    async fn code(&self) -> &str {
        &self.0.code
    }
    async fn stdin(&self) -> Option<&str> {
        self.0.stdin.as_deref()
    }
    async fn limits(&self) -> SandboxLimits {
        SandboxLimits {
            memory_mb: self.0.memory_mb,
            cpus: self.0.cpus,
            timeout_ms: self.0.timeout_ms,
            pids: self.0.pids,
            output_bytes: self.0.output_bytes,
        }
    }
    async fn status(&self) -> SandboxRunStatus {
        self.0.status.into()
    }
    /// The program's exit code (128+n after signal n); none when it was killed by the runner
    /// (timeout, cancel) or never ran.
    async fn exit_code(&self) -> Option<i32> {
        self.0.exit_code
    }
    /// The signal that ended it (`SIGKILL`), when one did.
    async fn signal(&self) -> Option<&str> {
        self.0.signal.as_deref()
    }
    /// Why it failed without an exit code, or was lost.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn cancel_requested(&self) -> bool {
        self.0.cancel_requested
    }
    /// Milliseconds from the claim to the end.
    async fn duration_ms(&self) -> Option<i64> {
        millis(self.0.started_at, self.0.finished_at)
    }
    /// Milliseconds it waited queued.
    async fn queue_wait_ms(&self) -> Option<i64> {
        millis(Some(self.0.created_at), self.0.started_at)
    }
    /// Highest memory use sampled (none when the run ended before the first sample).
    async fn peak_memory_bytes(&self) -> Option<i64> {
        self.0.peak_memory_bytes
    }
    /// Bytes written to stdout (kept or not).
    async fn stdout_bytes(&self) -> i64 {
        self.0.stdout_bytes
    }
    async fn stderr_bytes(&self) -> i64 {
        self.0.stderr_bytes
    }
    /// Some stdout was dropped at the output cap.
    async fn stdout_truncated(&self) -> bool {
        self.0.stdout_truncated
    }
    async fn stderr_truncated(&self) -> bool {
        self.0.stderr_truncated
    }
    /// Bytes of output stored: the end offset of `sandboxRunOutput`.
    async fn stored_bytes(&self) -> i64 {
        self.0.stored_bytes
    }
    /// The replica that ran (or runs) it.
    async fn replica(&self) -> Option<&str> {
        self.0.replica.as_deref()
    }
    async fn task_id(&self) -> Option<ID> {
        self.0.task_id.map(|t| ID(t.to_string()))
    }
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
}

/// Limits asked for; each unset one takes the server's default. Over a maximum is
/// `BAD_USER_INPUT`, never clamped.
#[derive(InputObject, Default)]
pub struct SandboxLimitsInput {
    pub memory_mb: Option<i64>,
    pub cpus: Option<f64>,
    pub timeout_ms: Option<i64>,
    pub pids: Option<i64>,
    pub output_bytes: Option<i64>,
}

#[derive(InputObject)]
pub struct StartSandboxRunInput {
    /// A configured language (`sandboxLanguages`).
    pub language: String,
    pub code: String,
    pub stdin: Option<String>,
    pub limits: Option<SandboxLimitsInput>,
    /// Idempotency key: a retry with the same one answers the same run.
    pub request_id: String,
    pub task_id: Option<ID>,
}

#[derive(InputObject, Default)]
pub struct SandboxRunFilter {
    pub status: Option<SandboxRunStatus>,
    pub language: Option<String>,
    pub task_id: Option<ID>,
}

/// A language runs can be written in.
#[derive(SimpleObject)]
pub struct SandboxLanguage {
    pub name: String,
    pub image: String,
    pub file: String,
    pub command: Vec<String>,
    /// Why runs in it cannot start now (a missing image, no engine), if they cannot.
    pub unavailable: Option<String>,
}

fn sandbox<'a>(ctx: &Context<'a>) -> Result<&'a SandboxService> {
    Ok(&services(ctx)?.sandbox)
}

#[derive(Default)]
pub struct SandboxQuery;

#[Object]
impl SandboxQuery {
    #[graphql(guard = "Require(Permission::SandboxView)")]
    async fn sandbox_run(&self, ctx: &Context<'_>, id: ID) -> Result<SandboxRun> {
        let id = parse_id("id", &id)?;
        Ok(SandboxRun(
            sandbox(ctx)?.get(caller(ctx).tenant(), id).await?,
        ))
    }

    #[graphql(
        guard = "Require(Permission::SandboxView)",
        complexity = "page_cost(first, child_complexity)"
    )]
    /// Runs, newest first.
    async fn sandbox_runs(
        &self,
        ctx: &Context<'_>,
        filter: Option<SandboxRunFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, SandboxRun, ConnectionFields>> {
        let svc = services(ctx)?;
        let page = page_request(svc, first, after)?;
        let f = filter.unwrap_or_default();
        let filter = RunFilter {
            status: f.status.map(Into::into),
            language: f.language,
            task_id: f.task_id.map(|id| parse_id("taskId", &id)).transpose()?,
        };
        let tenant = caller(ctx).tenant();
        let rows = svc.sandbox.list(tenant, &filter, page).await?;
        let total = if wants_total(ctx) {
            svc.sandbox.count(tenant, &filter).await?
        } else {
            0
        };
        Ok(connection(rows, page, total, |r| r.id, SandboxRun))
    }

    #[graphql(guard = "Require(Permission::SandboxView)")]
    /// The limits a run gets when it names none, and the most it may ask for.
    async fn sandbox_limits(&self, ctx: &Context<'_>) -> Result<SandboxLimitBounds> {
        let c = sandbox(ctx)?.config();
        Ok(SandboxLimitBounds {
            defaults: SandboxLimits {
                memory_mb: int32(c.default_memory_mb),
                cpus: c.default_cpus,
                timeout_ms: int64(c.default_timeout_ms),
                pids: int32(c.default_pids),
                output_bytes: int64(c.default_output_bytes),
            },
            maxima: SandboxLimits {
                memory_mb: int32(c.max_memory_mb),
                cpus: c.max_cpus,
                timeout_ms: int64(c.max_timeout_ms),
                pids: int32(c.max_pids),
                output_bytes: int64(c.max_output_bytes),
            },
            max_code_bytes: int64(c.max_code_bytes),
            max_stdin_bytes: int64(c.max_stdin_bytes),
        })
    }

    #[graphql(guard = "Require(Permission::SandboxView)")]
    /// The configured languages, and whether each can run now.
    async fn sandbox_languages(&self, ctx: &Context<'_>) -> Result<Vec<SandboxLanguage>> {
        let svc = sandbox(ctx)?;
        let availability = svc.availability();
        Ok(svc
            .config()
            .languages
            .0
            .iter()
            .map(|l| SandboxLanguage {
                name: l.name.clone(),
                image: l.image.clone(),
                file: l.file.clone(),
                command: l.command.clone(),
                unavailable: match &availability {
                    super::service::Availability::Ready => None,
                    super::service::Availability::Unavailable(why) => Some(why.clone()),
                    super::service::Availability::Partial(m) => m
                        .iter()
                        .find(|(name, _)| *name == l.name)
                        .map(|(_, why)| why.clone()),
                },
            })
            .collect())
    }
}

#[derive(Default)]
pub struct SandboxMutation;

#[Object]
impl SandboxMutation {
    #[graphql(guard = "Require(Permission::SandboxRun)")]
    /// Queues a run (charged to the caller's `sandbox` rate limit). Idempotent by `requestId`.
    async fn start_sandbox_run(
        &self,
        ctx: &Context<'_>,
        input: StartSandboxRunInput,
    ) -> Result<SandboxRun> {
        let svc = services(ctx)?;
        let meta = meta(ctx);
        let task_id = input
            .task_id
            .map(|id| parse_id("taskId", &id))
            .transpose()?;
        let limits = input.limits.unwrap_or_default();
        if let Some(key) = meta.caller.limit_key(meta.client.as_deref()) {
            svc.limits.check(LimitedAction::SandboxRun, &key, 1).await?;
        }
        let run = svc
            .sandbox
            .start(
                &meta,
                NewRun {
                    language: input.language,
                    code: input.code,
                    stdin: input.stdin,
                    limits: RequestedLimits {
                        memory_mb: limits.memory_mb,
                        cpus: limits.cpus,
                        timeout_ms: limits.timeout_ms,
                        pids: limits.pids,
                        output_bytes: limits.output_bytes,
                    },
                    request_id: input.request_id,
                    task_id,
                },
            )
            .await?;
        Ok(SandboxRun(run))
    }

    #[graphql(guard = "Require(Permission::SandboxRun)")]
    /// Cancels a run once: a queued run ends `CANCELLED` at once; a running one when its
    /// replica has killed the container. `CONFLICT` for a run already ended or being cancelled.
    async fn cancel_sandbox_run(&self, ctx: &Context<'_>, id: ID) -> Result<SandboxRun> {
        let id = parse_id("id", &id)?;
        Ok(SandboxRun(sandbox(ctx)?.cancel(&meta(ctx), id).await?))
    }
}

/// One delivery of `sandboxRunOutput`: a piece of output, or (`done`) the run's end.
#[derive(SimpleObject)]
pub struct SandboxOutputEvent {
    /// Offset of the first byte delivered here (for `done`: the end of the output).
    pub offset: i64,
    /// Resume with `fromOffset: nextOffset` to continue after this delivery.
    pub next_offset: i64,
    pub stream: Option<SandboxStream>,
    /// The bytes as UTF-8 (invalid sequences replaced; a character split across chunks shows
    /// as replacement characters: use `base64` for exact bytes).
    pub text: Option<String>,
    /// The bytes, base64.
    pub base64: Option<String>,
    /// The run ended: `run` holds its final state, and nothing follows.
    pub done: bool,
    pub run: Option<SandboxRun>,
}

fn piece(
    chunk_offset: i64,
    stream: sandbox_output::OutputStream,
    data: &[u8],
    from: i64,
) -> Option<SandboxOutputEvent> {
    let skip = usize::try_from((from - chunk_offset).max(0)).unwrap_or(usize::MAX);
    let bytes = data.get(skip..).filter(|b| !b.is_empty())?;
    let offset = chunk_offset + i64::try_from(skip).unwrap_or(0);
    Some(SandboxOutputEvent {
        offset,
        next_offset: offset + i64::try_from(bytes.len()).unwrap_or(0),
        stream: Some(stream.into()),
        text: Some(String::from_utf8_lossy(bytes).into_owned()),
        base64: Some(STANDARD.encode(bytes)),
        done: false,
        run: None,
    })
}

fn end_event(run: sandbox_run::Model, next: i64) -> SandboxOutputEvent {
    SandboxOutputEvent {
        offset: next,
        next_offset: next,
        stream: None,
        text: None,
        base64: None,
        done: true,
        run: Some(SandboxRun(run)),
    }
}

/// What changed about a run, as `sandboxRunChanged` tells it.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SandboxRunChangeKind {
    /// Queued: new, or handed back by a replica that could not start it.
    Queued,
    /// A replica started its container.
    Started,
    /// Cancellation was asked while it ran; its replica kills the container.
    CancelRequested,
    /// It reached its final status.
    Finished,
}

/// A change of a run's status (`sandboxRunChanged`): what a runs list needs to follow it;
/// the run itself (`sandboxRun`) has the rest.
#[derive(SimpleObject)]
pub struct SandboxRunChange {
    /// Pass as `after` to resume after this event.
    pub cursor: String,
    pub kind: SandboxRunChangeKind,
    pub run_id: ID,
    pub status: SandboxRunStatus,
    /// The replica running it (none while queued).
    pub replica: Option<String>,
    /// Output bytes stored when the change committed.
    pub stored_bytes: i64,
}

/// Stored chunks read per query while replaying.
const REPLAY_BATCH: u64 = 64;

#[derive(Default)]
pub struct SandboxSubscription;

#[Subscription]
impl SandboxSubscription {
    #[graphql(guard = "Require(Permission::SandboxView)")]
    /// Status changes of the runs the caller may read (of one run with `runId`): queued,
    /// started, cancellation asked, finished — not their output (`sandboxRunOutput`). `after`
    /// resumes as for the other subscriptions.
    async fn sandbox_run_changed(
        &self,
        ctx: &Context<'_>,
        run_id: Option<ID>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<SandboxRunChange>> + use<>> {
        let only = run_id.map(|id| parse_id("runId", &id)).transpose()?;
        let scope = caller(ctx).tenant().map(str::to_owned);
        crate::graphql::events::subscribe(ctx, after, move |cursor, event| {
            let DomainEvent::Sandbox(e) = event else {
                return None;
            };
            let kind = match e.kind {
                SandboxEventKind::Queued => SandboxRunChangeKind::Queued,
                SandboxEventKind::Started => SandboxRunChangeKind::Started,
                SandboxEventKind::CancelRequested => SandboxRunChangeKind::CancelRequested,
                SandboxEventKind::Finished => SandboxRunChangeKind::Finished,
                SandboxEventKind::Output => return None,
            };
            let visible =
                only.is_none_or(|id| id == e.run_id) && (scope.is_none() || scope == e.tenant_id);
            visible.then(|| SandboxRunChange {
                cursor,
                kind,
                run_id: ID(e.run_id.to_string()),
                status: e.status.into(),
                replica: e.replica.clone(),
                stored_bytes: e.stored_bytes,
            })
        })
        .await
    }

    #[graphql(guard = "Require(Permission::SandboxView)")]
    /// A run's output from `fromOffset` (default 0): the stored chunks, then live ones as the
    /// program writes, then one `done` delivery with the final run. Works on any replica.
    /// Every byte is delivered once, in order; after a disconnect, subscribe again with the
    /// last `nextOffset` received. A subscriber that falls behind receives
    /// `SUBSCRIPTION_LAGGED` (its `lastCursor` is the offset to resume from) and is closed.
    async fn sandbox_run_output(
        &self,
        ctx: &Context<'_>,
        run_id: ID,
        from_offset: Option<i64>,
    ) -> Result<impl Stream<Item = Result<SandboxOutputEvent>> + use<>> {
        let id = parse_id("runId", &run_id)?;
        let from = from_offset.unwrap_or(0);
        if from < 0 {
            return Err(
                AppError::bad_field("fromOffset", "fromOffset must not be negative").into(),
            );
        }
        let svc = sandbox(ctx)?.clone();
        let tenant = caller(ctx).tenant().map(str::to_owned);
        // Visible, or NOT_FOUND now rather than as the first delivery.
        svc.get(tenant.as_deref(), id).await?;
        // Live events before the stored ones are read: every chunk is in one or the other.
        let mut live = svc.bus().subscribe();
        // The transport reports this as `lastCursor` to a subscriber that falls behind it:
        // the offset to resume from.
        let slot = ctx.data_opt::<CursorSlot>().cloned();
        let mark = move |next: i64| {
            if let Some(slot) = &slot {
                slot.0
                    .store(u64::try_from(next).unwrap_or(0), Ordering::Release);
            }
        };
        mark(from);
        Ok(async_stream::stream! {
            let mut next = from;
            // Replays stored chunks from `next` up to `until` (None: all stored).
            macro_rules! replay {
                ($until:expr) => {{
                    let until: Option<i64> = $until;
                    let mut failed = None;
                    loop {
                        if until.is_some_and(|u| next >= u) { break; }
                        match svc.chunks(id, next, REPLAY_BATCH).await {
                            Ok(rows) if rows.is_empty() => break,
                            Ok(rows) => {
                                for row in rows {
                                    if let Some(p) = piece(row.offset, row.stream, &row.data, next) {
                                        next = p.next_offset;
                                        mark(next);
                                        yield Ok(p);
                                    }
                                }
                            }
                            Err(e) => { failed = Some(e); break; }
                        }
                    }
                    failed
                }};
            }
            if let Some(e) = replay!(None) {
                yield Err(e.extend());
                return;
            }
            match svc.get(tenant.as_deref(), id).await {
                Ok(run) if run.status.is_final() => {
                    if let Some(e) = replay!(None) {
                        yield Err(e.extend());
                        return;
                    }
                    yield Ok(end_event(run, next));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    yield Err(e.extend());
                    return;
                }
            }
            while let Some(item) = live.next().await {
                let event = match item {
                    Ok(delivered) => match &delivered.event {
                        DomainEvent::Sandbox(e) if e.run_id == id => e.clone(),
                        _ => continue,
                    },
                    Err(Interrupted::Lagged { skipped, .. }) => {
                        yield Err(AppError::SubscriptionLagged { skipped, last_cursor: u64::try_from(next).ok() }.extend());
                        return;
                    }
                    Err(Interrupted::ReplayFailed { .. }) => {
                        yield Err(AppError::SubscriptionLagged { skipped: 0, last_cursor: u64::try_from(next).ok() }.extend());
                        return;
                    }
                };
                match event.kind {
                    SandboxEventKind::Output => {
                        let Some(chunk) = event.chunk else { continue };
                        if chunk.end() <= next {
                            continue;
                        }
                        if chunk.offset > next {
                            // An event this replica missed: its bytes are stored.
                            if let Some(e) = replay!(Some(chunk.offset)) {
                                yield Err(e.extend());
                                return;
                            }
                        }
                        if let Some(p) = piece(chunk.offset, chunk.stream, &chunk.data, next) {
                            next = p.next_offset;
                            mark(next);
                            yield Ok(p);
                        }
                    }
                    SandboxEventKind::Finished => {
                        if let Some(e) = replay!(None) {
                            yield Err(e.extend());
                            return;
                        }
                        match svc.get(tenant.as_deref(), id).await {
                            Ok(run) => yield Ok(end_event(run, next)),
                            Err(e) => yield Err(e.extend()),
                        }
                        return;
                    }
                    _ => {}
                }
            }
        })
    }
}
