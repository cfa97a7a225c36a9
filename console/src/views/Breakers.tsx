// Circuit breakers: every breaker's state and figures (by name, paginated), the changes
// arriving live through `circuitBreakerChanged`, and one breaker in full with its history
// and — with `breaker.manage` — the manual state changes. A change refetches the list (and
// the open breaker), so a state shown here is the server's, never a guess.
import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { useNavigate, useSearchParams } from 'react-router-dom';
import { useClient, useQuery, useSubscription } from 'urql';

import { graphql } from '../gql';
import type { BreakersChangedSubscription } from '../gql/graphql';
import { useCan } from '../session';
import {
  Empty,
  ErrorNote,
  LiveBadge,
  Pager,
  ReasonAction,
  Section,
  useAction,
  usePager,
  useRefetchOnReconnect,
} from '../ui';
import { Card, StateBadge } from './breakers/Card';
import { Detail } from './breakers/Detail';
import './Breakers.css';

const LIST = graphql(`
  query BreakersList($first: Int, $after: String) {
    circuitBreakers(first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { ...BreakersFields }
    }
  }
`);

const CHANGED = graphql(`
  subscription BreakersChanged {
    circuitBreakerChanged {
      cursor
      kind
      name
      state
      previousState
      cause
      replica
      dependency
    }
  }
`);

const RESET_ALL = graphql(`
  mutation BreakersResetAll($reason: String!) {
    resetAllCircuitBreakers(reason: $reason)
  }
`);

type Change = BreakersChangedSubscription['circuitBreakerChanged'] & { seenAt: string };

/** How many live changes stay listed. */
const CHANGES_KEPT = 20;

export function Breakers() {
  const can = useCan();
  const client = useClient();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const selected = params.get('name');
  const pager = usePager(24);
  const [find, setFind] = useState('');
  const resetAll = useAction();
  const [resetDone, setResetDone] = useState<string | null>(null);
  // Bumps when a change of the open breaker arrives: its detail fetches again.
  const [version, setVersion] = useState(0);

  const [list, refetchList] = useQuery({ query: LIST, variables: { first: pager.first, after: pager.after } });
  const refresh = useCallback(() => refetchList({ requestPolicy: 'network-only' }), [refetchList]);
  useRefetchOnReconnect(refresh);

  const [changes] = useSubscription({ query: CHANGED }, (prev: Change[] = [], event) =>
    [{ ...event.circuitBreakerChanged, seenAt: new Date().toISOString() }, ...prev].slice(0, CHANGES_KEPT),
  );
  const last = changes.data?.[0];
  useEffect(() => {
    if (!last) return;
    refresh();
    if (last.name === selected) setVersion((v) => v + 1);
    // Each event (a new cursor) is one change to show.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [last?.cursor]);

  const linkTo = (name: string) => {
    const next = new URLSearchParams(params);
    next.set('name', name);
    return { search: `?${next.toString()}` };
  };
  const show = (e: FormEvent) => {
    e.preventDefault();
    const name = find.trim();
    if (name) navigate(linkTo(name));
  };
  const doResetAll = async (reason: string) => {
    setResetDone(null);
    const r = await resetAll.run(client.mutation(RESET_ALL, { reason }).toPromise());
    if (r) {
      setResetDone(`${r.resetAllCircuitBreakers} breaker${r.resetAllCircuitBreakers === 1 ? '' : 's'} reset.`);
      refresh();
      setVersion((v) => v + 1);
    }
  };

  const conn = list.data?.circuitBreakers;

  return (
    <div className="brk">
      <header className="row brk-head">
        <h1>Breakers</h1>
        <LiveBadge fetching={changes.fetching} error={changes.error} />
      </header>

      <div className={selected ? 'cols' : undefined}>
        <div>
          <Section
            title="Every breaker"
            actions={
              <div className="row">
                <button type="button" onClick={refresh} title="The figures change with every call; states arrive live">
                  Refresh figures
                </button>
                {can('breaker.manage') && (
                  <ReasonAction label="Reset all" prompt="Reason for resetting every breaker" onSubmit={doResetAll} danger />
                )}
              </div>
            }
          >
            <form className="filters" onSubmit={show} aria-label="Find a breaker">
              <label>
                Breaker name
                <input value={find} onChange={(e) => setFind(e.target.value)} />
              </label>
              <button type="submit" disabled={!find.trim()}>
                Show
              </button>
            </form>
            <ErrorNote error={resetAll.error} />
            {resetDone && (
              <p className="notice" role="status">
                {resetDone}
              </p>
            )}
            <ErrorNote error={list.error} />
            {conn && conn.nodes.length === 0 && <Empty>No breaker yet.</Empty>}
            <div className="grid brk-grid">
              {conn?.nodes.map((b) => (
                <Card key={b.name} b={b} selected={b.name === selected} to={linkTo(b.name)} />
              ))}
            </div>
            <Pager pager={pager} pageInfo={conn?.pageInfo} total={conn?.totalCount} label="Breakers" />
          </Section>

          <Section title="Live changes">
            {!changes.data?.length ? (
              <Empty>No change since this page opened.</Empty>
            ) : (
              <ul className="brk-changes" aria-label="Live breaker changes">
                {changes.data.map((c) => (
                  <li key={c.cursor}>
                    <span className="mono">{c.name}</span>{' '}
                    {c.kind === 'CONFIGURED' ? (
                      <>configured</>
                    ) : (
                      <>
                        {c.previousState && <StateBadge state={c.previousState} />} → <StateBadge state={c.state} />
                        {c.cause && <span className="muted"> · {c.cause}</span>}
                      </>
                    )}
                    {c.replica && <span className="muted"> · {c.replica}</span>}
                    <span className="muted"> · {new Date(c.seenAt).toLocaleTimeString()}</span>
                  </li>
                ))}
              </ul>
            )}
          </Section>
        </div>
        {selected && <Detail key={selected} name={selected} version={version} onChanged={refresh} />}
      </div>
    </div>
  );
}
