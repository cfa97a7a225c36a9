// Shared pieces of every view: error notes with code and request id, cursor pagination,
// bars, reason forms for audited actions, the live badge and time formatting.
import type { CombinedError } from '@urql/core';
import { useCallback, useEffect, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { useSearchParams } from 'react-router-dom';

import { useConnectionGeneration } from './client';
import { ApiError } from './session';

/**
 * An idempotency key for one click. `crypto.randomUUID` exists only in secure contexts (an
 * https console, or one on localhost); a console reached over plain http on a LAN address
 * still needs unique keys, so fall back to 122 random bits from `getRandomValues`.
 */
export function newRequestId(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A client-visible error: code, message and the request id that traces it in the logs. */
export interface Shown {
  code: string;
  message: string;
  requestId?: string;
}

export function describe(error: unknown): Shown | null {
  if (!error) return null;
  if (error instanceof ApiError) {
    return { code: error.code, message: error.message, requestId: error.requestId };
  }
  const combined = error as CombinedError;
  const first = combined.graphQLErrors?.[0];
  if (first) {
    return {
      code: String(first.extensions?.code ?? 'UNKNOWN'),
      message: first.message,
      requestId: first.extensions?.requestId as string | undefined,
    };
  }
  if (combined.networkError) {
    return { code: 'NETWORK_ERROR', message: combined.networkError.message };
  }
  return { code: 'UNKNOWN', message: String((error as Error).message ?? error) };
}

export function ErrorNote({ error }: { error: unknown }) {
  const shown = describe(error);
  if (!shown) return null;
  return (
    <p className="error" role="alert" data-code={shown.code}>
      <strong className="code">{shown.code}</strong> {shown.message}
      {shown.requestId && <span className="request-id"> (request id {shown.requestId})</span>}
    </p>
  );
}

/**
 * Cursor pagination over a connection: the `after` of each page visited, to go back. A new
 * `filterKey` (another filter, from a form, a link or the browser's back button) starts at
 * page 1 in the same render, so no query goes out with the old filter's cursor.
 */
export function usePager(pageSize = 20, filterKey = '') {
  const [pages, setPages] = useState<{ key: string; stack: (string | null)[] }>({
    key: filterKey,
    stack: [null],
  });
  // React's "adjusting state while rendering": the update re-renders before anything commits.
  if (pages.key !== filterKey) setPages({ key: filterKey, stack: [null] });
  const stack = pages.key === filterKey ? pages.stack : [null];
  const push = (f: (s: (string | null)[]) => (string | null)[]) =>
    setPages((p) => ({ key: p.key, stack: f(p.stack) }));
  return {
    first: pageSize,
    after: stack[stack.length - 1],
    page: stack.length,
    next: (cursor: string | null | undefined) => cursor && push((s) => [...s, cursor]),
    prev: () => push((s) => (s.length > 1 ? s.slice(0, -1) : s)),
    reset: () => push(() => [null]),
  };
}

export function Pager({
  pager,
  pageInfo,
  total,
  label,
}: {
  pager: ReturnType<typeof usePager>;
  pageInfo?: { hasNextPage: boolean; endCursor?: string | null } | null;
  total?: number | null;
  label: string;
}) {
  return (
    <nav className="pager" aria-label={`${label} pages`}>
      <button type="button" onClick={pager.prev} disabled={pager.page <= 1}>
        ← Previous
      </button>
      <span>
        page {pager.page}
        {total != null && <> · {total} in all</>}
      </span>
      <button
        type="button"
        onClick={() => pager.next(pageInfo?.endCursor)}
        disabled={!pageInfo?.hasNextPage}
      >
        Next →
      </button>
    </nav>
  );
}

/** A labelled horizontal bar of segments (used, reserved, …) over a total. */
export function Bar({
  label,
  total,
  parts,
}: {
  label: string;
  total: number;
  parts: { name: string; value: number; className: string }[];
}) {
  const safe = total > 0 ? total : 1;
  return (
    <div
      className="bar"
      role="meter"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={total}
      aria-valuenow={parts.reduce((a, p) => a + p.value, 0)}
    >
      {parts.map((p) => (
        <span
          key={p.name}
          className={`bar-part ${p.className}`}
          style={{ width: `${Math.min(100, (100 * p.value) / safe)}%` }}
          title={`${p.name}: ${p.value}`}
        />
      ))}
    </div>
  );
}

/** A button that asks for a reason (or note) before it acts; audited actions need one. */
export function ReasonAction({
  label,
  prompt,
  onSubmit,
  danger,
  optional,
}: {
  label: string;
  prompt: string;
  onSubmit: (reason: string) => Promise<unknown>;
  danger?: boolean;
  optional?: boolean;
}) {
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (open) input.current?.focus();
  }, [open]);
  if (!open) {
    return (
      <button type="button" className={danger ? 'danger' : undefined} onClick={() => setOpen(true)}>
        {label}
      </button>
    );
  }
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    try {
      await onSubmit(reason.trim());
      setOpen(false);
      setReason('');
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="reason" onSubmit={submit} aria-label={label}>
      <label>
        {prompt}
        <input
          ref={input}
          value={reason}
          onChange={(e) => setReason(e.target.value)}
          required={!optional}
          onKeyDown={(e) => e.key === 'Escape' && setOpen(false)}
        />
      </label>
      <button type="submit" disabled={busy || (!optional && !reason.trim())}>
        {label}
      </button>
      <button type="button" onClick={() => setOpen(false)}>
        Cancel
      </button>
    </form>
  );
}

/**
 * Runs a mutation and keeps its error to show: `run` resolves to the data, or to undefined
 * when the server refused (the error is then in `error`).
 */
export function useAction() {
  const [error, setError] = useState<unknown>(null);
  const run = useCallback(async <T,>(result: Promise<{ data?: T; error?: CombinedError }>) => {
    const r = await result;
    setError(r.error ?? null);
    return r.error ? undefined : r.data;
  }, []);
  return { error, run, clear: () => setError(null) };
}

/** Refetches whenever the subscription socket (re)connects, so a gap loses nothing. */
export function useRefetchOnReconnect(refetch: () => void) {
  const gen = useConnectionGeneration();
  const first = useRef(gen);
  useEffect(() => {
    if (gen !== first.current) refetch();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [gen]);
}

export function LiveBadge({ fetching, error }: { fetching?: boolean; error?: unknown }) {
  const state = error ? 'interrupted' : fetching ? 'live' : 'connecting';
  return (
    <span className={`live live-${state}`} role="status" aria-live="polite">
      {error ? 'live updates interrupted' : 'live'}
    </span>
  );
}

export function Time({ at }: { at?: string | null }) {
  if (!at) return <>—</>;
  const d = new Date(at);
  return <time dateTime={at} title={d.toISOString()}>{d.toLocaleString()}</time>;
}

export function Section({ title, actions, children }: { title: string; actions?: ReactNode; children: ReactNode }) {
  return (
    <section className="panel" aria-label={title}>
      <header className="panel-head">
        <h2>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

/**
 * A view's state kept in the URL's query (linkable, survives a reload): `search(changes)` is
 * the query string with `changes` applied (`null` removes a key), for links; `set(changes)`
 * goes there.
 */
export function useQueryState() {
  const [params, setParams] = useSearchParams();
  const search = (changes: Record<string, string | null>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null) next.delete(k);
      else next.set(k, v);
    }
    const s = next.toString();
    return s ? `?${s}` : '?';
  };
  const set = (changes: Record<string, string | null>) => setParams(new URLSearchParams(search(changes)));
  return { params, search, set };
}
