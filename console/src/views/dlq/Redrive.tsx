// Redrive: move the open dead letters the current filter matches back to their queues.
// A dry run comes first and says how many would move; only then can the real one start,
// for that same filter and rate. Its progress arrives live from `dlqRedriveProgress`.
import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { useClient, useQuery, useSubscription } from 'urql';

import { graphql } from '../../gql';
import type { DeadLettersRedriveFieldsFragment, DlqFilterInput } from '../../gql/graphql';
import {
  Empty,
  ErrorNote,
  LiveBadge,
  newRequestId,
  Section,
  Time,
  useAction,
  useRefetchOnReconnect,
} from '../../ui';

const REDRIVE = graphql(`
  mutation DeadLettersRedrive($input: RedriveDlqInput!) {
    redriveDlq(input: $input) { ...DeadLettersRedriveFields }
  }
`);

const CANCEL = graphql(`
  mutation DeadLettersCancelRedrive($id: ID!) {
    cancelDlqRedrive(id: $id) { ...DeadLettersRedriveFields }
  }
`);

const JOB = graphql(`
  query DeadLettersRedriveJob($id: ID!) {
    dlqRedrive(id: $id) { ...DeadLettersRedriveFields }
  }
`);

const PROGRESS = graphql(`
  subscription DeadLettersRedriveProgress($jobId: ID!) {
    dlqRedriveProgress(jobId: $jobId) {
      cursor
      redrive { ...DeadLettersRedriveFields }
    }
  }
`);

type Job = DeadLettersRedriveFieldsFragment;

/** The later of two views of one job: a finished one wins, else the one that moved more. */
function latest(a: Job | null | undefined, b: Job | null | undefined): Job | null {
  if (!a) return b ?? null;
  if (!b) return a;
  if (a.status !== 'RUNNING' && b.status === 'RUNNING') return a;
  if (b.status !== 'RUNNING' && a.status === 'RUNNING') return b;
  if (a.moved !== b.moved) return a.moved > b.moved ? a : b;
  return a.updatedAt >= b.updatedAt ? a : b;
}

/** Human words for the filter a redrive applies to. */
function describeFilter(f: DlqFilterInput): string {
  const parts: string[] = [];
  if (f.queue) parts.push(`queue ${f.queue}`);
  if (f.subject) parts.push(`subject ${f.subject}`);
  if (f.taskId) parts.push(`task ${f.taskId}`);
  if (f.errorContains) parts.push(`error containing “${f.errorContains}”`);
  if (f.from) parts.push(`dead from ${new Date(f.from).toLocaleString()}`);
  if (f.to) parts.push(`dead before ${new Date(f.to).toLocaleString()}`);
  return parts.length ? parts.join(', ') : 'every queue';
}

export function Redrive({
  filter,
  onProgress,
}: {
  /** The list's filter; its status choice does not apply (a redrive moves open letters). */
  filter: DlqFilterInput;
  /** Letters moved: the list and the queue figures are stale. */
  onProgress: () => void;
}) {
  const client = useClient();
  const action = useAction();
  const [rate, setRate] = useState('50');
  const [dry, setDry] = useState<{ key: string; job: Job } | null>(null);
  const [jobId, setJobId] = useState<string | null>(null);
  const [started, setStarted] = useState<Job | null>(null);
  const [busy, setBusy] = useState(false);

  // A redrive always takes the open letters: the status choice is not part of its filter.
  const redriveFilter = useMemo(() => {
    const { resolved: _ignored, ...rest } = filter;
    return rest;
  }, [filter]);
  const rateNumber = Number(rate);
  const rateOk = Number.isInteger(rateNumber) && rateNumber >= 1 && rateNumber <= 10000;
  const key = JSON.stringify([redriveFilter, rateNumber]);
  const dryFresh = dry && dry.key === key ? dry.job : null;

  const [jobQuery, refetchJob] = useQuery({
    query: JOB,
    variables: { id: jobId ?? '' },
    pause: !jobId,
    requestPolicy: 'network-only',
  });
  useRefetchOnReconnect(() => jobId && refetchJob({ requestPolicy: 'network-only' }));
  const [progress] = useSubscription(
    { query: PROGRESS, variables: { jobId: jobId ?? '' }, pause: !jobId },
    (_prev, event) => event,
  );
  const job = latest(latest(started, jobQuery.data?.dlqRedrive), progress.data?.dlqRedriveProgress.redrive);
  const moved = job?.moved ?? 0;
  const status = job?.status;
  useEffect(() => {
    if (jobId) onProgress();
    // Each batch moved (and the end) changes the list and the queue figures.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [jobId, moved, status]);

  const dryRun = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setDry(null);
    const r = await action.run(
      client
        .mutation(REDRIVE, {
          input: { filter: redriveFilter, ratePerSecond: rateNumber, dryRun: true, requestId: newRequestId() },
        })
        .toPromise(),
    );
    setBusy(false);
    if (r) setDry({ key, job: r.redriveDlq });
  };

  const start = async () => {
    setBusy(true);
    const r = await action.run(
      client
        .mutation(REDRIVE, {
          input: { filter: redriveFilter, ratePerSecond: rateNumber, dryRun: false, requestId: newRequestId() },
        })
        .toPromise(),
    );
    setBusy(false);
    if (r) {
      setDry(null);
      setStarted(r.redriveDlq);
      setJobId(r.redriveDlq.id);
    }
  };

  const cancel = async () => {
    if (!jobId) return;
    const r = await action.run(client.mutation(CANCEL, { id: jobId }).toPromise());
    if (r) setStarted(r.cancelDlqRedrive);
  };

  const running = job?.status === 'RUNNING';
  const pct = job && job.total > 0 ? Math.min(100, (100 * job.moved) / job.total) : 0;

  return (
    <Section title="Redrive" actions={jobId && running ? <LiveBadge fetching={progress.fetching} error={progress.error} /> : undefined}>
      <p className="muted">
        Moves the open dead letters matching the filter ({describeFilter(redriveFilter)}) back to their queues.
        A dry run first counts them.
      </p>
      <form className="filters" onSubmit={dryRun} aria-label="Redrive dry run">
        <label>
          Rate (letters per second)
          <input
            type="number"
            min={1}
            max={10000}
            step={1}
            value={rate}
            onChange={(e) => setRate(e.target.value)}
            required
          />
        </label>
        <button type="submit" disabled={busy || running || !rateOk}>
          Dry run
        </button>
      </form>
      {!rateOk && <p className="error">The rate must be a whole number from 1 to 10,000.</p>}
      <ErrorNote error={action.error} />
      {dryFresh && (
        <div className="dlq-dry" role="status">
          <p>
            <strong className="dlq-dry-count">{dryFresh.total}</strong> open dead letter
            {dryFresh.total === 1 ? '' : 's'} would move, at {dryFresh.ratePerSecond} a second (about{' '}
            {Math.max(1, Math.ceil(dryFresh.total / dryFresh.ratePerSecond))} s).
          </p>
          <div className="row">
            <button type="button" className="primary" onClick={() => void start()} disabled={busy}>
              Redrive {dryFresh.total} now
            </button>
            <button type="button" onClick={() => setDry(null)}>
              Discard
            </button>
          </div>
        </div>
      )}
      {dry && !dryFresh && <Empty>The filter or the rate changed since the dry run: run it again.</Empty>}
      {job && (
        <div className="dlq-job" aria-label="Redrive progress">
          <p>
            Redrive <span className="mono">{job.id}</span>{' '}
            <span className={`badge ${job.status} redrive-status`}>{job.status}</span>
          </p>
          <div
            className="progress"
            role="progressbar"
            aria-label="Dead letters moved"
            aria-valuemin={0}
            aria-valuemax={job.total}
            aria-valuenow={job.moved}
          >
            <span style={{ width: `${pct}%` }} />
          </div>
          <p className="muted">
            {job.moved} of {job.total} moved at {job.ratePerSecond}/s · started <Time at={job.createdAt} /> by{' '}
            {job.createdBy}
            {job.finishedAt && (
              <>
                {' '}
                · ended <Time at={job.finishedAt} />
              </>
            )}
          </p>
          <ErrorNote error={jobQuery.error ?? progress.error} />
          {running && (
            <button type="button" className="danger" onClick={() => void cancel()}>
              Cancel redrive
            </button>
          )}
        </div>
      )}
    </Section>
  );
}
