// What the breaker pieces share: the fields read of each breaker, and words for durations.
import { graphql } from '../../gql';

graphql(`
  fragment BreakersFields on CircuitBreaker {
    name
    state
    scope
    dependency
    stateSince
    updatedBy
    updatedAt
    configuration {
      slidingWindowType
      slidingWindowSize
      minimumNumberOfCalls
      failureRateThreshold
      slowCallRateThreshold
      slowCallDurationThresholdMs
      waitDurationInOpenStateMs
      permittedNumberOfCallsInHalfOpenState
      maxWaitDurationInHalfOpenStateMs
      automaticTransitionFromOpenToHalfOpen
    }
    metrics {
      failureRate
      slowCallRate
      numberOfCalls
      numberOfFailedCalls
      numberOfSlowCalls
      numberOfNotPermittedCalls
      probesIssued
      remainingOpenMs
    }
  }
`);

/** "250 ms", "30 s", "5 min": a duration in milliseconds, for people. */
export function ms(value: number | null | undefined): string {
  if (value == null) return '—';
  if (value < 1000) return `${value} ms`;
  const s = value / 1000;
  if (s < 120) return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
  const m = s / 60;
  if (m < 120) return `${Math.round(m)} min`;
  return `${(m / 60).toFixed(1)} h`;
}

export function pct(value: number | null | undefined): string {
  if (value == null) return '—';
  return `${Number.isInteger(value) ? value : value.toFixed(1)}%`;
}

/** The states that refuse calls, the ones that let every call through, and the rest. */
export function tone(state: string): 'bad' | 'warn' | 'ok' | 'neutral' {
  if (state === 'OPEN' || state === 'FORCED_OPEN') return 'bad';
  if (state === 'HALF_OPEN') return 'warn';
  if (state === 'CLOSED') return 'ok';
  return 'neutral';
}
