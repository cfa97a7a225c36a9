// Small pieces the Governance view's parts share: enum words, badges, the word diff and the
// URL state (selected role, proposal filter) kept in the query string so a view can be linked.
import { diffWords } from 'diff';
import { useMemo } from 'react';

import type { GovernanceState, LearningUpdateStatus } from '../../gql/graphql';
import { useQueryState } from '../../ui';

/** `PENDING_APPROVAL` → `pending approval`. */
export function words(value: string): string {
  return value.replace(/_/g, ' ').toLowerCase();
}

const STATE_TONE: Record<GovernanceState, string> = {
  CAN_AUTO_UPDATE: 'ok',
  REQUIRES_APPROVAL: 'warn',
  COOLDOWN_ACTIVE: 'warn',
  DAILY_LIMIT_REACHED: 'bad',
};

export function StateBadge({ state }: { state: GovernanceState }) {
  return <span className={`badge ${STATE_TONE[state]}`}>{words(state)}</span>;
}

const STATUS_TONE: Record<LearningUpdateStatus, string> = {
  PENDING_APPROVAL: 'warn',
  APPLIED: 'ok',
  REJECTED: 'bad',
  EXPIRED: '',
};

export function UpdateStatusBadge({ status }: { status: LearningUpdateStatus }) {
  return <span className={`badge ${STATUS_TONE[status]}`}>{words(status)}</span>;
}

/** Hours as the rules hold them (fractions allowed), in words. */
export function hours(h: number): string {
  if (h === 0) return 'none';
  if (h < 1) return `${Math.round(h * 60)} min`;
  return `${Number.isInteger(h) ? h : h.toFixed(1)} h`;
}

function wordCount(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

/**
 * The proposed text against the current one, word by word: removed words in `<del>`, added
 * ones in `<ins>`. Without a current version every word is new.
 */
export function PromptDiff({ from, to, label }: { from: string | null; to: string; label: string }) {
  const parts = useMemo(() => diffWords(from ?? '', to), [from, to]);
  const added = parts.filter((p) => p.added).reduce((n, p) => n + wordCount(p.value), 0);
  const removed = parts.filter((p) => p.removed).reduce((n, p) => n + wordCount(p.value), 0);
  return (
    <figure className="gov-diff-figure">
      <figcaption className="muted">
        {label} · <span className="gov-added">+{added}</span> / <span className="gov-removed">−{removed}</span>{' '}
        words
      </figcaption>
      <div className="diff gov-diff" role="group" aria-label={label}>
        {parts.map((p, i) =>
          p.added ? (
            <ins key={i}>{p.value}</ins>
          ) : p.removed ? (
            <del key={i}>{p.value}</del>
          ) : (
            <span key={i}>{p.value}</span>
          ),
        )}
      </div>
    </figure>
  );
}

export const ALL = 'ALL';

/** The view's state in the URL: `role` (selected role) and `status` (proposals shown). */
export function useGovernanceParams() {
  const { params, search, set } = useQueryState();
  const role = params.get('role');
  const status = (params.get('status') ?? 'PENDING_APPROVAL') as LearningUpdateStatus | typeof ALL;
  return { role, status, search, set };
}
