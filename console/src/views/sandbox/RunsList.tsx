// Runs, newest first, a page at a time, filtered by status and language. It is fetched again
// when any run changes status (`sandboxRunChanged`, through `refreshKey`), when the page
// starts one, on Refresh, and after a reconnect.
import { useEffect, useState } from 'react';
import { Link } from 'react-router-dom';
import { useQuery } from 'urql';

import type { SandboxRunStatus } from '../../gql/graphql';
import { Empty, ErrorNote, Pager, Section, Time, usePager, useRefetchOnReconnect } from '../../ui';
import { duration, shortId } from './format';
import { ENDED, RUNS, STATUSES } from './ops';

export function RunsList({
  languages,
  selected,
  refreshKey,
}: {
  languages: string[];
  selected: string | null;
  refreshKey: number;
}) {
  const [status, setStatus] = useState<SandboxRunStatus | ''>('');
  const [language, setLanguage] = useState('');
  const pager = usePager(20);
  const filter = status || language ? { status: status || null, language: language || null } : null;
  const [{ data, error, fetching }, refetch] = useQuery({
    query: RUNS,
    variables: { filter, first: pager.first, after: pager.after },
    requestPolicy: 'cache-and-network',
  });
  const reload = () => refetch({ requestPolicy: 'network-only' });
  useRefetchOnReconnect(reload);
  useEffect(() => {
    if (refreshKey) reload();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [refreshKey]);

  const runs = data?.sandboxRuns;
  return (
    <Section
      title="Runs"
      actions={
        <button type="button" onClick={reload} disabled={fetching}>
          {fetching ? 'Refreshing…' : 'Refresh'}
        </button>
      }
    >
      <form className="filters" aria-label="Filter runs" onSubmit={(e) => e.preventDefault()}>
        <label>
          Status
          <select
            value={status}
            onChange={(e) => {
              setStatus(e.target.value as SandboxRunStatus | '');
              pager.reset();
            }}
          >
            <option value="">all</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Language
          <select
            value={language}
            onChange={(e) => {
              setLanguage(e.target.value);
              pager.reset();
            }}
          >
            <option value="">all</option>
            {languages.map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </label>
        {runs && (
          <span className="muted" aria-live="polite">
            {runs.totalCount} {runs.totalCount === 1 ? 'run' : 'runs'}
          </span>
        )}
      </form>
      <ErrorNote error={error} />
      {runs && runs.nodes.length === 0 && <Empty>No runs{filter ? ' match this filter' : ' yet'}.</Empty>}
      {runs && runs.nodes.length > 0 && (
        <div className="table-wrap">
          <table className="sandbox-runs" aria-label="Sandbox runs">
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">Status</th>
                <th scope="col">Language</th>
                <th scope="col">Exit</th>
                <th scope="col">Duration</th>
                <th scope="col">By</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {runs.nodes.map((r) => (
                <tr key={r.id} className={r.id === selected ? 'selected' : undefined} data-run={r.id}>
                  <td>
                    <Link
                      to={`/sandbox/${r.id}`}
                      className="mono"
                      title={r.id}
                      aria-current={r.id === selected ? 'true' : undefined}
                      aria-label={`Run ${r.id}`}
                    >
                      {shortId(r.id)}
                    </Link>
                  </td>
                  <td>
                    <span className={`badge ${r.status}`}>{r.status}</span>
                    {r.cancelRequested && !ENDED.has(r.status) && (
                      <span className="muted"> cancelling</span>
                    )}
                  </td>
                  <td>{r.language}</td>
                  <td className="mono">{r.exitCode ?? '—'}</td>
                  <td>{duration(r.durationMs)}</td>
                  <td>{r.createdBy}</td>
                  <td>
                    <Time at={r.createdAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager pager={pager} pageInfo={runs?.pageInfo} total={runs?.totalCount} label="Runs" />
    </Section>
  );
}
