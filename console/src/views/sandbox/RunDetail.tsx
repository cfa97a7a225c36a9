// One run: what it is, how it ended, and its output streaming into a live region. The
// output streams from offset 0, so opening a finished run replays all that was kept. The
// run's own fields are fetched again when `sandboxRunChanged` reports a change of it (or
// its output first arrives: it is running then) and replaced by the final state the `done`
// delivery carries.
import { useEffect, useLayoutEffect, useRef, useState, type ReactNode } from 'react';
import { useMutation, useQuery } from 'urql';

import type { SandboxRunFieldsFragment } from '../../gql/graphql';
import { useCan } from '../../session';
import { ErrorNote, Section, Time, useRefetchOnReconnect } from '../../ui';
import { bytes, duration } from './format';
import { CANCEL, ENDED, RUN } from './ops';
import { useRunOutput } from './useRunOutput';

export function RunDetail({
  runId,
  changed,
  onStatusChange,
}: {
  runId: string;
  /** Bumped by `sandboxRunChanged` for this run: read it again. */
  changed: number;
  /** The run's status changed under our eyes: the list shows it again. */
  onStatusChange: () => void;
}) {
  const can = useCan();
  const [{ data, error, fetching }, refetch] = useQuery({
    query: RUN,
    variables: { id: runId },
    requestPolicy: 'network-only',
  });
  const reload = () => refetch({ requestPolicy: 'network-only' });
  useRefetchOnReconnect(reload);
  const firstChange = useRef(changed);
  useEffect(() => {
    if (changed !== firstChange.current) reload();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [changed]);
  const queried = data?.sandboxRun.id === runId ? data.sandboxRun : undefined;
  const [cancelled, setCancelled] = useState<SandboxRunFieldsFragment | null>(null);
  const [cancelState, cancel] = useMutation(CANCEL);
  const [cancelError, setCancelError] = useState<unknown>(null);

  const output = useRunOutput(
    runId,
    () => {
      // Output means the run was claimed: show RUNNING (and its start) here and in the list.
      if (!queried || queried.status === 'QUEUED') {
        reload();
        onStatusChange();
      }
    },
    () => onStatusChange(),
  );

  useEffect(() => {
    setCancelled(null);
    setCancelError(null);
  }, [runId]);

  // The freshest state known: the final one, else the cancel's answer, else the query's.
  const base = queried;
  const run: (SandboxRunFieldsFragment & { code?: string; stdin?: string | null }) | undefined =
    output.final ?? (cancelled?.id === runId ? cancelled : undefined) ?? base;
  const ended = !!output.final || (run ? ENDED.has(run.status) : false);

  const doCancel = async () => {
    const r = await cancel({ id: runId });
    setCancelError(r.error ?? null);
    if (r.data) {
      setCancelled(r.data.cancelSandboxRun);
      onStatusChange();
    }
  };

  return (
    <Section
      title="Run"
      actions={
        run &&
        !ended &&
        can('sandbox.run') && (
          <button
            type="button"
            className="danger"
            onClick={() => void doCancel()}
            disabled={cancelState.fetching || run.cancelRequested}
          >
            {run.cancelRequested ? 'Cancelling…' : 'Cancel run'}
          </button>
        )
      }
    >
      <ErrorNote error={error} />
      <ErrorNote error={cancelError} />
      {!run && fetching && <p className="muted">Loading the run…</p>}
      {run && (
        <>
          <p className="sandbox-status" role="status" aria-live="polite">
            <span className={`badge ${run.status}`} data-testid="run-status">
              {run.status}
            </span>{' '}
            {run.cancelRequested && !ended && <span className="muted">cancel requested </span>}
            {ended ? (
              <span>
                {[
                  run.exitCode != null && (
                    <span key="exit">
                      exit code <strong data-testid="run-exit">{run.exitCode}</strong>
                    </span>
                  ),
                  run.signal && (
                    <span key="signal">
                      signal <strong>{run.signal}</strong>
                    </span>
                  ),
                  run.durationMs != null && <span key="ran">ran {duration(run.durationMs)}</span>,
                ]
                  .filter(Boolean)
                  .flatMap((part, i) => (i ? [' · ', part] : [part]))}
              </span>
            ) : (
              <span className="muted">
                {run.status === 'QUEUED' ? 'waiting for a free slot' : 'output streams in below'}
              </span>
            )}
          </p>
          {run.error && <p className="error">{run.error}</p>}
          {(run.stdoutTruncated || run.stderrTruncated) && (
            <p className="notice">
              Output was cut at the limit of {bytes(run.limits.outputBytes)}:{' '}
              {[run.stdoutTruncated && 'stdout', run.stderrTruncated && 'stderr'].filter(Boolean).join(' and ')}{' '}
              truncated.
            </p>
          )}
          <Output segments={output.segments} ended={ended} />
          <ErrorNote error={output.error} />
          <dl className="sandbox-facts">
            <Fact label="Id">
              <span className="mono">{run.id}</span>
            </Fact>
            <Fact label="Language">{run.language}</Fact>
            <Fact label="Started by">{run.createdBy}</Fact>
            <Fact label="Created">
              <Time at={run.createdAt} />
            </Fact>
            <Fact label="Started">
              <Time at={run.startedAt} />
            </Fact>
            <Fact label="Finished">
              <Time at={run.finishedAt} />
            </Fact>
            <Fact label="Queued for">{duration(run.queueWaitMs)}</Fact>
            <Fact label="Duration">{duration(run.durationMs)}</Fact>
            <Fact label="Exit code">{run.exitCode ?? '—'}</Fact>
            <Fact label="Signal">{run.signal ?? '—'}</Fact>
            <Fact label="Peak memory">{bytes(run.peakMemoryBytes)}</Fact>
            <Fact label="Stdout">
              {bytes(run.stdoutBytes)}
              {run.stdoutTruncated && ' (truncated)'}
            </Fact>
            <Fact label="Stderr">
              {bytes(run.stderrBytes)}
              {run.stderrTruncated && ' (truncated)'}
            </Fact>
            <Fact label="Output kept">{bytes(ended ? run.storedBytes : output.received)}</Fact>
            <Fact label="Replica">{run.replica ?? '—'}</Fact>
            {run.taskId && (
              <Fact label="Task">
                <span className="mono">{run.taskId}</span>
              </Fact>
            )}
            <Fact label="Limits">
              {duration(run.limits.timeoutMs)} · {run.limits.memoryMb} MB · {run.limits.cpus} CPU ·{' '}
              {run.limits.pids} processes · {bytes(run.limits.outputBytes)} output
            </Fact>
          </dl>
          {base?.code != null && (
            <details className="sandbox-code">
              <summary>Code</summary>
              <pre>{base.code}</pre>
              {base.stdin != null && (
                <>
                  <h3>Standard input</h3>
                  <pre>{base.stdin}</pre>
                </>
              )}
            </details>
          )}
        </>
      )}
    </Section>
  );
}

function Fact({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div>
      <dt>{label}</dt>
      <dd>{children}</dd>
    </div>
  );
}

/** The output pane: follows the end while the reader is at the end, not when they scrolled up. */
function Output({ segments, ended }: { segments: { stream: string; text: string }[]; ended: boolean }) {
  const pre = useRef<HTMLPreElement>(null);
  const atEnd = useRef(true);
  useLayoutEffect(() => {
    const el = pre.current;
    if (el && atEnd.current) el.scrollTop = el.scrollHeight;
  }, [segments]);
  const empty = segments.length === 0;
  return (
    <>
      <h3 id="sandbox-output-label">
        Output <span className="muted sandbox-legend">(<span className="sandbox-stderr">stderr</span> in red)</span>
      </h3>
      <pre
        ref={pre}
        className="sandbox-output"
        aria-labelledby="sandbox-output-label"
        aria-live="polite"
        tabIndex={0}
        data-testid="run-output"
        onScroll={(e) => {
          const el = e.currentTarget;
          atEnd.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {segments.map((s, i) => (
          <span key={i} className={s.stream === 'STDERR' ? 'sandbox-stderr' : undefined}>
            {s.text}
          </span>
        ))}
        {empty && <span className="muted">{ended ? '(no output)' : '(waiting for output…)'}</span>}
      </pre>
    </>
  );
}
