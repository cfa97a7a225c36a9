// Helpers the Budgets and Overview views share: a subscription hook that hands every event to
// a callback (urql's own `useSubscription` folds events into state, where a burst of events
// in one render would collapse into the last one), a coalescing trigger for refetches caused
// by events, a loader that walks a connection page by page, and number formatting.
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import type { AnyVariables, Client, CombinedError } from '@urql/core';
import { useCallback, useEffect, useRef, useState } from 'react';
import { useClient } from 'urql';

import { useConnectionGeneration } from '../../client';

/**
 * Subscribes to `query` while `pause` is false and calls `onData` once per event, in order.
 * With `cursorOf` (the event's feed cursor), the feed is resumable: after the socket
 * reconnects it starts again with `after` = the last cursor received, so the server replays
 * what happened in the gap (events, unlike counts, cannot be refetched), and an event seen
 * twice across the restart is handed over once. Returns the subscription's error or null.
 */
export function useEvents<D, V extends AnyVariables>(
  query: TypedDocumentNode<D, V>,
  variables: V,
  onData: (data: D) => void,
  pause = false,
  cursorOf?: (data: D) => string,
): CombinedError | null {
  const client = useClient();
  const generation = useConnectionGeneration();
  const [error, setError] = useState<CombinedError | null>(null);
  const [restarts, setRestarts] = useState(0);
  const handler = useRef(onData);
  handler.current = onData;
  const cursorFn = useRef(cursorOf);
  cursorFn.current = cursorOf;
  // Variables usually arrive as a fresh object every render: compare their content.
  const key = JSON.stringify(variables);
  const live = useRef<{ key: string; generation: number; stop: () => void } | null>(null);
  const last = useRef<{ key: string; cursor: string; seen: Set<string> } | null>(null);

  useEffect(() => {
    const current = live.current;
    if (pause) {
      current?.stop();
      live.current = null;
      return;
    }
    const resumable = !!cursorFn.current && last.current?.key === key;
    const reconnected = current != null && current.generation !== generation && resumable;
    if (current && current.key === key && !reconnected) return;
    current?.stop();
    if (last.current?.key !== key) last.current = null;
    const vars = JSON.parse(key) as Record<string, unknown>;
    if (resumable && last.current) vars.after = last.current.cursor;
    setError(null);
    const sub = client.subscription(query, vars as V).subscribe((result) => {
      if (result.error) {
        const first = result.error.graphQLErrors[0];
        const code = first?.extensions?.code;
        if (code === 'SUBSCRIPTION_LAGGED' || code === 'CURSOR_EXPIRED') {
          // Fell behind, or the gap is older than the server holds: start again, from the
          // last event handed over when the server still has it, else from now.
          const lastCursor = first?.extensions?.lastCursor;
          if (cursorFn.current && code === 'SUBSCRIPTION_LAGGED' && typeof lastCursor === 'string') {
            last.current = { key, cursor: lastCursor, seen: last.current?.seen ?? new Set() };
          } else if (code === 'CURSOR_EXPIRED') {
            last.current = null;
          }
          live.current?.stop();
          live.current = null;
          setRestarts((n) => n + 1);
          return;
        }
        setError(result.error);
        return;
      }
      if (!result.data) return;
      setError(null);
      const cursor = cursorFn.current?.(result.data);
      if (cursor != null) {
        const seen = last.current?.seen ?? new Set<string>();
        if (seen.has(cursor)) return;
        seen.add(cursor);
        // Only the recent past can be replayed twice: keep the set small.
        if (seen.size > 500) seen.delete(seen.values().next().value as string);
        last.current = { key, cursor, seen };
      }
      handler.current(result.data);
    });
    live.current = { key, generation, stop: () => sub.unsubscribe() };
  }, [client, query, key, pause, generation, restarts]);

  useEffect(
    () => () => {
      live.current?.stop();
      live.current = null;
    },
    [],
  );
  return error;
}

/**
 * A trigger that runs `fn` once, `ms` after the first call of a burst: events arrive in
 * bursts (a spend is a reserve and a commit) and one refetch answers all of them.
 */
export function useCoalesced(fn: () => void, ms = 400): () => void {
  const latest = useRef(fn);
  latest.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );
  return useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      latest.current();
    }, ms);
  }, [ms]);
}

interface Connection<N> {
  totalCount?: number;
  pageInfo: { hasNextPage: boolean; endCursor?: string | null };
  nodes: N[];
}

/** What `loadPages` read: the rows, the cursor after the last one, and whether it stopped early. */
export interface Loaded<N> {
  nodes: N[];
  total: number | null;
  endCursor: string | null;
  /** More rows follow but `cap` was reached. */
  truncated: boolean;
}

/**
 * Reads a connection from `after` to its end (or `cap` rows), `pageSize` rows per request.
 * Throws the CombinedError of the first refused page.
 */
export async function loadPages<D, V extends AnyVariables, N>(
  client: Client,
  query: TypedDocumentNode<D, V>,
  variables: (first: number, after: string | null) => V,
  pick: (data: D) => Connection<N>,
  options: { after?: string | null; cap: number; pageSize?: number },
): Promise<Loaded<N>> {
  const pageSize = options.pageSize ?? 100;
  const nodes: N[] = [];
  let after = options.after ?? null;
  let total: number | null = null;
  for (;;) {
    const result = await client
      .query(query, variables(pageSize, after), { requestPolicy: 'network-only' })
      .toPromise();
    if (result.error) throw result.error;
    if (!result.data) throw new Error('the server answered without data');
    const conn = pick(result.data);
    total ??= conn.totalCount ?? null;
    nodes.push(...conn.nodes);
    if (conn.pageInfo.endCursor) after = conn.pageInfo.endCursor;
    if (!conn.pageInfo.hasNextPage) return { nodes, total, endCursor: after, truncated: false };
    if (nodes.length >= options.cap) return { nodes, total, endCursor: after, truncated: true };
  }
}

const numbers = new Intl.NumberFormat();

/** A token count with grouping, in a `<data>` element so tests and tools read the raw value. */
export function fmt(n: number): string {
  return numbers.format(n);
}

/** Compact form for chart axes: 950, 1.2k, 3.4M. */
export function compact(n: number): string {
  const abs = Math.abs(n);
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [size, suffix] of units) {
    if (abs >= size) {
      const v = n / size;
      return `${Number.isInteger(v) ? v : v.toFixed(abs >= size * 10 ? 0 : 1)}${suffix}`;
    }
  }
  return String(n);
}

/** Whole seconds as the largest fitting unit: 45 s, 12 min, 3 h, 2 d. */
export function age(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

/** The highest alert threshold `used` has reached, in percent of `total`, or null. */
export function crossedThreshold(b: { used: number; total: number; alertThresholds: number[] }): number | null {
  if (b.total <= 0) return null;
  const reached = b.alertThresholds.filter((t) => b.used * 100 >= t * b.total);
  return reached.length ? Math.max(...reached) : null;
}
