// Live-view hooks every view shares: a subscription hook that hands every event to a
// callback and resumes from its cursor after a reconnect, and a coalescing trigger for the
// refetches events cause.
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import type { AnyVariables, CombinedError } from '@urql/core';
import { useCallback, useEffect, useRef, useState } from 'react';
import { useClient } from 'urql';

import { useConnectionGeneration } from './client';

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
