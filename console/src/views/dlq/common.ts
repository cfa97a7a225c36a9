// What the dead-letter pieces share: the fragments they read, request ids for idempotent
// actions, and the helpers that turn the filter form into a `DlqFilterInput`.
import { graphql } from '../../gql';
import type { DlqFilterInput } from '../../gql/graphql';

graphql(`
  fragment DeadLettersRow on DlqMessage {
    id
    queue
    subject
    taskId
    reason
    attempts
    lastError
    deadAt
    status
  }
`);

graphql(`
  fragment DeadLettersRedriveFields on DlqRedrive {
    id
    status
    total
    moved
    ratePerSecond
    owner
    createdBy
    createdAt
    updatedAt
    finishedAt
  }
`);

/** The filter form as typed: every field a string, empty meaning "any". */
export interface FilterDraft {
  queue: string;
  subject: string;
  taskId: string;
  /** `open`, `closed` (resolved or retried) or `any`. */
  status: 'open' | 'closed' | 'any';
  errorContains: string;
  /** `datetime-local` values, in the browser's time zone. */
  from: string;
  to: string;
}

export const EMPTY_DRAFT: FilterDraft = {
  queue: '',
  subject: '',
  taskId: '',
  // Open letters are what needs someone; the others stay one choice away.
  status: 'open',
  errorContains: '',
  from: '',
  to: '',
};

function localToIso(v: string): string | null {
  if (!v) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** The server's filter for a draft; absent fields are left out so they narrow nothing. */
export function toFilter(d: FilterDraft): DlqFilterInput {
  const f: DlqFilterInput = {};
  if (d.queue.trim()) f.queue = d.queue.trim();
  if (d.subject.trim()) f.subject = d.subject.trim();
  if (d.taskId.trim()) f.taskId = d.taskId.trim();
  if (d.status !== 'any') f.resolved = d.status === 'closed';
  if (d.errorContains) f.errorContains = d.errorContains;
  const from = localToIso(d.from);
  if (from) f.from = from;
  const to = localToIso(d.to);
  if (to) f.to = to;
  return f;
}

/** "3 min", "2 h 5 min": an age in seconds, for people. */
export function age(seconds: number | null | undefined): string {
  if (seconds == null) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/**
 * The last `n` characters of an id: ids are UUIDv7, whose leading characters are a timestamp
 * and so the same for letters that died together; the tail tells them apart.
 */
export function short(id: string, n = 8): string {
  return id.length > n ? `…${id.slice(-n)}` : id;
}
