// Dead letters: each queue's DLQ depth, the filtered list (oldest first, as the server
// orders it) with its total, one letter in full, and — with `dlq.resolve` — retry, resolve
// and redrive. New dead letters arrive through `dlqMessageAdded`: they are listed at once
// above the table (which is oldest first, so a new one sits on its last page) and the
// list and figures are fetched again.
import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { useQuery } from 'urql';

import { graphql } from '../gql';
import type { DeadLettersRowFragment } from '../gql/graphql';
import { useEvents } from '../live';
import { useCan } from '../session';
import { Empty, ErrorNote, LiveBadge, Pager, Section, Time, usePager, useRefetchOnReconnect } from '../ui';
import { EMPTY_DRAFT, age, short, toFilter, type FilterDraft } from './dlq/common';
import { Detail } from './dlq/Detail';
import { Redrive } from './dlq/Redrive';
import './DeadLetters.css';

const LIST = graphql(`
  query DeadLettersList($filter: DlqFilterInput, $first: Int, $after: String) {
    dlqMessages(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { ...DeadLettersRow }
    }
  }
`);

const STATS = graphql(`
  query DeadLettersStats {
    dlqStats { queue depth oldestAgeSeconds pending }
  }
`);

const ADDED = graphql(`
  subscription DeadLettersAdded($queue: String, $after: String) {
    dlqMessageAdded(queue: $queue, after: $after) {
      cursor
      message { ...DeadLettersRow }
    }
  }
`);

/** How many live arrivals stay listed above the table. */
const ARRIVALS_KEPT = 50;

export function DeadLetters() {
  const can = useCan();
  const [params] = useSearchParams();
  const selected = params.get('id');
  const pager = usePager(20);
  const [draft, setDraft] = useState<FilterDraft>(EMPTY_DRAFT);
  const [applied, setApplied] = useState<FilterDraft>(EMPTY_DRAFT);
  const filter = useMemo(() => toFilter(applied), [applied]);

  const [list, refetchList] = useQuery({
    query: LIST,
    variables: { filter, first: pager.first, after: pager.after },
  });
  const [stats, refetchStats] = useQuery({ query: STATS });
  const refresh = useCallback(() => {
    refetchList({ requestPolicy: 'network-only' });
    refetchStats({ requestPolicy: 'network-only' });
  }, [refetchList, refetchStats]);
  useRefetchOnReconnect(refresh);

  // Arrivals of the filter's queue (every queue without one), newest first. The feed resumes
  // from its last cursor after the socket reconnects, so a letter that died in the gap is
  // still listed here.
  const [arrived, setArrived] = useState<DeadLettersRowFragment[]>([]);
  const queue = filter.queue ?? null;
  useEffect(() => setArrived([]), [queue]);
  const addedError = useEvents(
    ADDED,
    { queue },
    (event) =>
      setArrived((prev) =>
        [event.dlqMessageAdded.message, ...prev.filter((m) => m.id !== event.dlqMessageAdded.message.id)].slice(
          0,
          ARRIVALS_KEPT,
        ),
      ),
    false,
    (event) => event.dlqMessageAdded.cursor,
  );
  const added = { data: arrived, error: addedError, fetching: !addedError };
  const arrivals = added.data ?? [];
  const newest = arrivals[0]?.id;
  // Only a new arrival refetches (not a new `refresh`, which changes with the filter).
  const refreshRef = useRef(refresh);
  refreshRef.current = refresh;
  useEffect(() => {
    if (newest) refreshRef.current();
  }, [newest]);

  const apply = (e: FormEvent) => {
    e.preventDefault();
    setApplied(draft);
    pager.reset();
  };
  const clear = () => {
    setDraft(EMPTY_DRAFT);
    setApplied(EMPTY_DRAFT);
    pager.reset();
  };
  const showQueue = (queue: string) => {
    const next = { ...applied, queue };
    setDraft(next);
    setApplied(next);
    pager.reset();
  };

  const queues = stats.data?.dlqStats ?? [];
  const conn = list.data?.dlqMessages;
  const linkTo = (id: string) => {
    const next = new URLSearchParams(params);
    next.set('id', id);
    return { search: `?${next.toString()}` };
  };

  return (
    <div className="dlq">
      <header className="row dlq-head">
        <h1>Dead letters</h1>
        <LiveBadge fetching={added.fetching} error={added.error} />
      </header>

      <Section title="Queues">
        <ErrorNote error={stats.error} />
        {queues.length === 0 && !stats.fetching && !stats.error && <Empty>No queue is configured.</Empty>}
        <div className="grid dlq-queues">
          {queues.map((q) => (
            <article key={q.queue} className="card" aria-label={`Queue ${q.queue}`}>
              <h3 className="mono">{q.queue}</h3>
              <p>
                <span className="stat">{q.depth}</span> open dead letter{q.depth === 1 ? '' : 's'}
              </p>
              <p className="muted">
                oldest {age(q.oldestAgeSeconds)} · {q.pending} pending in the queue
              </p>
              <button type="button" onClick={() => showQueue(q.queue)} disabled={applied.queue === q.queue}>
                Show {q.queue}
              </button>
            </article>
          ))}
        </div>
      </Section>

      {arrivals.length > 0 && (
        <Section title="Arrived while you watch">
          <ul className="dlq-arrivals" aria-label="New dead letters">
            {/* As they died: what became of them since is in the list and the detail. */}
            {arrivals.map((m) => (
              <li key={m.id}>
                <Time at={m.deadAt} /> <span className="mono">{m.queue}</span> · task{' '}
                <span className="mono">{m.taskId}</span> · <span className="badge">{m.reason}</span>{' '}
                {m.lastError && <span className="dlq-error-text">{m.lastError}</span>}{' '}
                <Link to={linkTo(m.id)} aria-label={`Details of the new dead letter of task ${m.taskId}`}>
                  Details
                </Link>
              </li>
            ))}
          </ul>
        </Section>
      )}

      <div className={selected ? 'cols' : undefined}>
        <div>
          <Section title="List">
            <form className="filters" onSubmit={apply} aria-label="Filter dead letters">
              <label>
                Queue
                <select value={draft.queue} onChange={(e) => setDraft({ ...draft, queue: e.target.value })}>
                  <option value="">Any queue</option>
                  {queues.map((q) => (
                    <option key={q.queue} value={q.queue}>
                      {q.queue}
                    </option>
                  ))}
                </select>
              </label>
              <label>
                Status
                <select
                  value={draft.status}
                  onChange={(e) => setDraft({ ...draft, status: e.target.value as FilterDraft['status'] })}
                >
                  <option value="open">Open</option>
                  <option value="closed">Resolved or retried</option>
                  <option value="any">Any</option>
                </select>
              </label>
              <label>
                Subject
                <input value={draft.subject} onChange={(e) => setDraft({ ...draft, subject: e.target.value })} />
              </label>
              <label>
                Task id
                <input value={draft.taskId} onChange={(e) => setDraft({ ...draft, taskId: e.target.value })} />
              </label>
              <label>
                Error contains
                <input
                  value={draft.errorContains}
                  onChange={(e) => setDraft({ ...draft, errorContains: e.target.value })}
                />
              </label>
              <label>
                Dead from
                <input
                  type="datetime-local"
                  value={draft.from}
                  onChange={(e) => setDraft({ ...draft, from: e.target.value })}
                />
              </label>
              <label>
                Dead before
                <input
                  type="datetime-local"
                  value={draft.to}
                  onChange={(e) => setDraft({ ...draft, to: e.target.value })}
                />
              </label>
              <button type="submit">Apply</button>
              <button type="button" onClick={clear}>
                Clear
              </button>
            </form>
            <p className="muted dlq-total" role="status">
              {conn ? (
                <>
                  <strong className="dlq-total-count">{conn.totalCount}</strong> dead letter
                  {conn.totalCount === 1 ? '' : 's'} match, oldest first
                </>
              ) : (
                'Loading…'
              )}
            </p>
            <ErrorNote error={list.error} />
            {conn && conn.nodes.length === 0 && <Empty>No dead letter matches.</Empty>}
            {conn && conn.nodes.length > 0 && (
              <div className="table-wrap">
                <table className="dlq-table">
                  <thead>
                    <tr>
                      <th scope="col">Letter</th>
                      <th scope="col">Dead at</th>
                      <th scope="col">Queue</th>
                      <th scope="col">Task</th>
                      <th scope="col">Reason</th>
                      <th scope="col">Status</th>
                      <th scope="col">Last error</th>
                    </tr>
                  </thead>
                  <tbody>
                    {conn.nodes.map((m) => (
                      <tr key={m.id} className={m.id === selected ? 'selected' : undefined}>
                        <td className="mono">
                          <Link
                            to={linkTo(m.id)}
                            aria-current={m.id === selected ? 'true' : undefined}
                            aria-label={`Dead letter ${short(m.id)} of task ${m.taskId}`}
                            title="Show this dead letter in full"
                          >
                            {short(m.id)}
                          </Link>
                        </td>
                        <td>
                          <Time at={m.deadAt} />
                        </td>
                        <td className="mono">
                          {m.queue}
                          {m.subject !== m.queue && <div className="muted">{m.subject}</div>}
                        </td>
                        <td className="mono dlq-task">{m.taskId}</td>
                        <td>
                          <span className="badge">{m.reason}</span>
                          <div className="muted">
                            {m.attempts} attempt{m.attempts === 1 ? '' : 's'}
                          </div>
                        </td>
                        <td>
                          <span className={`badge ${m.status === 'OPEN' ? 'bad' : 'ok'}`}>{m.status}</span>
                        </td>
                        <td className="dlq-error-text">{m.lastError ?? '—'}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
            <Pager pager={pager} pageInfo={conn?.pageInfo} total={conn?.totalCount} label="Dead letters" />
          </Section>
          {can('dlq.resolve') && <Redrive filter={filter} onProgress={refresh} />}
        </div>
        {selected && <Detail key={selected} id={selected} onChanged={refresh} />}
      </div>
    </div>
  );
}
