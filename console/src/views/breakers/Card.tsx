// One breaker at a glance: its state as text, its rates against their thresholds, the
// counts of its window, and a link to its detail.
import { Link } from 'react-router-dom';

import type { BreakersFieldsFragment } from '../../gql/graphql';
import { Time } from '../../ui';
import { ms, pct, tone } from './common';

/** A rate against its threshold: the fill, and a tick where the breaker opens. */
export function RateMeter({
  label,
  rate,
  threshold,
  minimum,
  calls,
}: {
  label: string;
  rate: number | null | undefined;
  threshold: number;
  minimum: number;
  calls: number;
}) {
  const over = rate != null && rate >= threshold;
  return (
    <div className="brk-rate">
      <div className="brk-rate-text">
        <span>{label}</span>
        <span>
          {rate == null ? (
            <span className="muted">
              {calls}/{minimum} calls needed
            </span>
          ) : (
            <strong className={over ? 'brk-over' : undefined}>{pct(rate)}</strong>
          )}{' '}
          <span className="muted">opens at {pct(threshold)}</span>
        </span>
      </div>
      <div
        className="brk-meter"
        role="meter"
        aria-label={`${label}, opens at ${pct(threshold)}`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={rate ?? 0}
        aria-valuetext={rate == null ? 'not enough calls yet' : pct(rate)}
      >
        <span className={`brk-fill${over ? ' brk-over' : ''}`} style={{ width: `${Math.min(100, rate ?? 0)}%` }} />
        <span className="brk-tick" style={{ left: `${Math.min(100, threshold)}%` }} aria-hidden="true" />
      </div>
    </div>
  );
}

/** Both rates of a breaker against their thresholds. */
export function Rates({ b }: { b: BreakersFieldsFragment }) {
  const c = b.configuration;
  const m = b.metrics;
  return (
    <>
        <RateMeter
          label="Failure rate"
          rate={m.failureRate}
          threshold={c.failureRateThreshold}
          minimum={c.minimumNumberOfCalls}
          calls={m.numberOfCalls}
        />
        <RateMeter
          label="Slow calls"
          rate={m.slowCallRate}
          threshold={c.slowCallRateThreshold}
          minimum={c.minimumNumberOfCalls}
          calls={m.numberOfCalls}
        />
    </>
  );
}

export function StateBadge({ state }: { state: string }) {
  return <span className={`badge brk-badge brk-${tone(state)} ${state} brk-state`}>{state}</span>;
}

export function Card({ b, selected, to }: { b: BreakersFieldsFragment; selected: boolean; to: { search: string } }) {
  const c = b.configuration;
  const m = b.metrics;
  return (
    <article className={`card brk-card brk-card-${tone(b.state)}${selected ? ' brk-selected' : ''}`} aria-label={`Breaker ${b.name}`}>
      <header className="brk-card-head">
        <h3 className="mono">{b.name}</h3>
        <StateBadge state={b.state} />
      </header>
      <p className="brk-tags">
        <span className="badge">{b.scope.toLowerCase()}</span>
        {b.dependency && <span className="badge">dependency</span>}
        <span className="muted">
          since <Time at={b.stateSince} />
        </span>
      </p>
      <Rates b={b} />
      <dl className="brk-counts">
        <div>
          <dt>Calls</dt>
          <dd>
            {m.numberOfCalls}
            <span className="muted">
              /{c.slidingWindowSize}
              {c.slidingWindowType === 'TIME_BASED' ? ' s' : ''}
            </span>
          </dd>
        </div>
        <div>
          <dt>Failed</dt>
          <dd>{m.numberOfFailedCalls}</dd>
        </div>
        <div>
          <dt>Slow</dt>
          <dd>{m.numberOfSlowCalls}</dd>
        </div>
        <div>
          <dt>Refused</dt>
          <dd>{m.numberOfNotPermittedCalls}</dd>
        </div>
        {b.state === 'HALF_OPEN' && (
          <div>
            <dt>Probes</dt>
            <dd>
              {m.probesIssued}/{c.permittedNumberOfCallsInHalfOpenState}
            </dd>
          </div>
        )}
        {b.state === 'OPEN' && (
          <div>
            <dt>Open for</dt>
            <dd>{m.remainingOpenMs > 0 ? ms(m.remainingOpenMs) : 'wait over'}</dd>
          </div>
        )}
      </dl>
      <Link to={to} aria-current={selected ? 'true' : undefined} aria-label={`Details of breaker ${b.name}`}>
        Details
      </Link>
    </article>
  );
}
