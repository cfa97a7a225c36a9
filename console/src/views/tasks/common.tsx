// Pieces the Tasks view's parts share: enum words and badges, the URL state (selected task,
// filters) and a throttled re-read on live events.
import { useEffect, useRef } from 'react';

import type { EscalationStatus, Severity, TaskState } from '../../gql/graphql';
import { useQueryState } from '../../ui';

/** `IN_PROGRESS` → `in progress`. */
export function words(value: string): string {
  return value.replace(/_/g, ' ').toLowerCase();
}

const STATE_TONE: Record<TaskState, string> = {
  PENDING: 'warn',
  ASSIGNED: '',
  IN_PROGRESS: 'warn',
  BLOCKED: 'bad',
  REVIEWING: '',
  DEPLOYING: '',
  COMPLETED: 'ok',
  FAILED: 'bad',
  CANCELLED: '',
};

export const TASK_STATES = Object.keys(STATE_TONE) as TaskState[];

export function StateBadge({ state }: { state: TaskState }) {
  return <span className={`badge ${STATE_TONE[state]}`}>{words(state)}</span>;
}

const SEVERITY_TONE: Record<Severity, string> = { LOW: '', MEDIUM: 'warn', HIGH: 'bad', CRITICAL: 'bad' };

export function SeverityBadge({ severity }: { severity: Severity }) {
  return <span className={`badge ${SEVERITY_TONE[severity]}`}>{words(severity)}</span>;
}

export function EscalationBadge({ status }: { status: EscalationStatus }) {
  return <span className={`badge ${status === 'OPEN' ? 'bad' : 'ok'}`}>{words(status)}</span>;
}

export const ANY = 'ANY';

/** The view's state in the URL: `task` (selected), `state` and `escalations` (filters). */
export function useTasksParams() {
  const { params, search, set } = useQueryState();
  const task = params.get('task');
  const state = (params.get('state') ?? ANY) as TaskState | typeof ANY;
  const escalations = (params.get('escalations') ?? 'OPEN') as EscalationStatus | typeof ANY;
  return { task, state, escalations, search, set };
}

/**
 * Calls `refetch` after `signal` changes (a live event arrived), at most once per `ms`: a
 * burst of events costs one read, and the last event of a burst is always covered.
 */
export function useRefetchOn(signal: number, refetch: () => void, ms = 300) {
  const first = useRef(signal);
  const timer = useRef<ReturnType<typeof setTimeout>>();
  const fn = useRef(refetch);
  fn.current = refetch;
  useEffect(() => {
    if (signal === first.current || timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      fn.current();
    }, ms);
  }, [signal, ms]);
  useEffect(() => () => clearTimeout(timer.current), []);
}
