// One breaker in full: its state and figures, its configuration, its transitions (newest
// first, paginated) and — with `breaker.manage` — force open, force close, metrics only and
// reset, each with a reason for the audit log.
import { useEffect, useRef, useState } from 'react';
import { Link } from 'react-router-dom';
import { useClient, useQuery } from 'urql';

import { graphql } from '../../gql';
import type { BreakersFieldsFragment } from '../../gql/graphql';
import { useCan } from '../../session';
import { Empty, ErrorNote, Pager, ReasonAction, Section, Time, useAction, usePager, useRefetchOnReconnect } from '../../ui';
import { Rates, StateBadge } from './Card';
import { ms, pct } from './common';

const ONE = graphql(`
  query BreakersOne($name: String!) {
    circuitBreaker(name: $name) { ...BreakersFields }
  }
`);

const TRANSITIONS = graphql(`
  query BreakersTransitions($name: String!, $first: Int, $after: String) {
    circuitBreakerTransitions(name: $name, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { id fromState toState cause failureRate slowCallRate actor reason replica at }
    }
  }
`);

const FORCE_OPEN = graphql(`
  mutation BreakersForceOpen($name: String!, $reason: String!) {
    forceOpenCircuitBreaker(name: $name, reason: $reason) { ...BreakersFields }
  }
`);

const FORCE_CLOSE = graphql(`
  mutation BreakersForceClose($name: String!, $reason: String!) {
    forceCloseCircuitBreaker(name: $name, reason: $reason) { ...BreakersFields }
  }
`);

const METRICS_ONLY = graphql(`
  mutation BreakersMetricsOnly($name: String!, $reason: String!) {
    metricsOnlyCircuitBreaker(name: $name, reason: $reason) { ...BreakersFields }
  }
`);

const RESET = graphql(`
  mutation BreakersReset($name: String!, $reason: String!) {
    resetCircuitBreaker(name: $name, reason: $reason) { ...BreakersFields }
  }
`);

export function Detail({
  name,
  version,
  onChanged,
}: {
  name: string;
  /** Bumps when a change of this breaker arrives live: fetch it again. */
  version: number;
  onChanged: () => void;
}) {
  const can = useCan();
  const client = useClient();
  const action = useAction();
  const pager = usePager(10);
  const [answered, setAnswered] = useState<BreakersFieldsFragment | null>(null);
  const [one, refetchOne] = useQuery({ query: ONE, variables: { name } });
  const [history, refetchHistory] = useQuery({
    query: TRANSITIONS,
    variables: { name, first: pager.first, after: pager.after },
  });
  const refetch = () => {
    setAnswered(null);
    refetchOne({ requestPolicy: 'network-only' });
    refetchHistory({ requestPolicy: 'network-only' });
  };
  useRefetchOnReconnect(refetch);
  const seen = useRef(version);
  useEffect(() => {
    if (version !== seen.current) {
      seen.current = version;
      refetch();
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [version]);

  const b = answered ?? one.data?.circuitBreaker;
  const close = <Link to={{ search: '' }}>Close</Link>;
  if (!b) {
    return (
      <Section title={`Breaker ${name}`} actions={close}>
        <ErrorNote error={one.error} />
        {one.data && one.data.circuitBreaker === null && <Empty>There is no breaker named {name}.</Empty>}
        {!one.data && !one.error && <Empty>Loading…</Empty>}
      </Section>
    );
  }

  const act = (doc: typeof FORCE_OPEN | typeof FORCE_CLOSE | typeof METRICS_ONLY | typeof RESET) => async (reason: string) => {
    const r = await action.run(client.mutation(doc, { name: b.name, reason }).toPromise());
    if (r) {
      const next = Object.values(r)[0] as BreakersFieldsFragment;
      setAnswered(next);
      pager.reset();
      refetchHistory({ requestPolicy: 'network-only' });
      onChanged();
    }
  };

  const c = b.configuration;
  const m = b.metrics;
  const transitions = history.data?.circuitBreakerTransitions;

  return (
    <Section title={`Breaker ${b.name}`} actions={close}>
      <div className="brk-detail">
        <p className="brk-detail-state">
          State <StateBadge state={b.state} />{' '}
          <span className="muted">
            since <Time at={b.stateSince} /> · {b.scope.toLowerCase()}
            {b.dependency ? ' · one of Aurum’s own dependencies' : ''}
          </span>
        </p>
        {can('breaker.manage') && (
          <div className="brk-actions" role="group" aria-label="Change the state">
            <div className="row">
              {b.state !== 'FORCED_OPEN' && (
                <ReasonAction label="Force open" prompt="Reason" onSubmit={act(FORCE_OPEN)} danger />
              )}
              {b.state !== 'DISABLED' && <ReasonAction label="Force close" prompt="Reason" onSubmit={act(FORCE_CLOSE)} />}
              {b.state !== 'METRICS_ONLY' && (
                <ReasonAction label="Metrics only" prompt="Reason" onSubmit={act(METRICS_ONLY)} />
              )}
              <ReasonAction label="Reset" prompt="Reason" onSubmit={act(RESET)} />
            </div>
            <p className="muted brk-help">
              Force open refuses every call; force close lets every call through and records nothing
              (DISABLED); metrics only measures but never opens; reset returns to CLOSED with an empty window.
            </p>
          </div>
        )}
        <ErrorNote error={action.error} />

        <Rates b={b} />
        <dl className="brk-facts">
          <dt>Calls in the window</dt>
          <dd>{m.numberOfCalls}</dd>
          <dt>Failed · slow</dt>
          <dd>
            {m.numberOfFailedCalls} · {m.numberOfSlowCalls}
          </dd>
          <dt>Refused since the state began</dt>
          <dd>{m.numberOfNotPermittedCalls}</dd>
          <dt>Probes issued</dt>
          <dd>{m.probesIssued}</dd>
          <dt>Open for</dt>
          <dd>{m.remainingOpenMs > 0 ? ms(m.remainingOpenMs) : '—'}</dd>
        </dl>

        <h3>Configuration</h3>
        <dl className="brk-facts">
          <dt>Window</dt>
          <dd>
            {c.slidingWindowType === 'COUNT_BASED'
              ? `last ${c.slidingWindowSize} calls`
              : `calls of the last ${c.slidingWindowSize} s`}
          </dd>
          <dt>Minimum calls</dt>
          <dd>{c.minimumNumberOfCalls}</dd>
          <dt>Failure rate threshold</dt>
          <dd>{pct(c.failureRateThreshold)}</dd>
          <dt>Slow call threshold</dt>
          <dd>
            {pct(c.slowCallRateThreshold)} of calls over {ms(c.slowCallDurationThresholdMs)}
          </dd>
          <dt>Wait in OPEN</dt>
          <dd>
            {ms(c.waitDurationInOpenStateMs)}
            {c.automaticTransitionFromOpenToHalfOpen ? ', then HALF_OPEN by itself' : ', then HALF_OPEN on the next call'}
          </dd>
          <dt>Probes in HALF_OPEN</dt>
          <dd>
            {c.permittedNumberOfCallsInHalfOpenState}
            {c.maxWaitDurationInHalfOpenStateMs != null
              ? `, at most ${ms(c.maxWaitDurationInHalfOpenStateMs)}`
              : ', however long they take'}
          </dd>
          <dt>Configured by</dt>
          <dd>
            {b.updatedBy}, <Time at={b.updatedAt} />
          </dd>
        </dl>

        <h3>Transitions</h3>
        <ErrorNote error={history.error} />
        {transitions && transitions.nodes.length === 0 && <Empty>No transition yet.</Empty>}
        {transitions && transitions.nodes.length > 0 && (
          <div className="table-wrap">
            <table className="brk-transitions" aria-label={`Transitions of ${b.name}`}>
              <thead>
                <tr>
                  <th scope="col">At</th>
                  <th scope="col">Change</th>
                  <th scope="col">Who · why</th>
                </tr>
              </thead>
              <tbody>
                {transitions.nodes.map((t) => (
                  <tr key={t.id}>
                    <td>
                      <Time at={t.at} />
                      <div className="muted">
                        on <span className="mono">{t.replica}</span>
                      </div>
                    </td>
                    <td>
                      <span className="brk-change">
                        {t.fromState} → {t.toState}
                      </span>
                      <div className="muted">
                        {t.cause}
                        {(t.failureRate != null || t.slowCallRate != null) && (
                          <>
                            {' '}
                            · {pct(t.failureRate)} failed · {pct(t.slowCallRate)} slow
                          </>
                        )}
                      </div>
                    </td>
                    <td className="brk-why">
                      {t.actor ?? '—'}
                      {t.reason && <div>{t.reason}</div>}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <Pager
          pager={pager}
          pageInfo={transitions?.pageInfo}
          total={transitions?.totalCount}
          label={`Transitions of ${b.name}`}
        />
      </div>
    </Section>
  );
}
