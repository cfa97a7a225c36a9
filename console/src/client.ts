// The one urql client: queries and mutations over HTTP, subscriptions over graphql-ws
// (`graphql-transport-ws`), both carrying the session's current token. A new token restarts
// the socket so that subscriptions continue under it; every (re)connection bumps
// `connectionGeneration`, and views refetch then, so nothing that happened while the socket
// was down is missed.
import { Client, fetchExchange, mapExchange, subscriptionExchange } from '@urql/core';
import { createClient as createWsClient } from 'graphql-ws';
import { useEffect, useRef, useSyncExternalStore } from 'react';

import { getSession, unauthenticated, useSession } from './session';

let generation = 0;
const genListeners = new Set<() => void>();

function wsUrl(): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/graphql`;
}

export const ws = createWsClient({
  url: wsUrl(),
  // One socket for the tab's life (anonymous until login, then restarted under each token).
  // Lazy mode closed it 3 s after a view change whenever the old view's subscriptions ended
  // before the new view's began (graphql-ws 5 does not cancel that close when subscriptions
  // return), and events in the reconnect gap were lost.
  lazy: false,
  keepAlive: 15000,
  retryAttempts: Infinity,
  shouldRetry: () => true,
  retryWait: async (retries) => {
    await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** retries, 5000)));
  },
  connectionParams: () => {
    const s = getSession();
    return s ? { Authorization: `Bearer ${s.token}` } : {};
  },
  on: {
    connected: () => {
      generation += 1;
      genListeners.forEach((l) => l());
    },
    closed: (event) => {
      const code = (event as CloseEvent | undefined)?.code;
      // Visible in the browser's console: why live updates paused (they resume on reconnect).
      console.warn(`subscription socket closed: ${code} ${(event as CloseEvent | undefined)?.reason ?? ''}`);
      // 4403: the token was refused or expired while connected.
      if (code === 4403) unauthenticated();
    },
  },
});

export const client = new Client({
  url: '/graphql',
  requestPolicy: 'cache-and-network',
  fetchOptions: (): RequestInit => {
    const s = getSession();
    const headers: Record<string, string> = {};
    if (s) headers.authorization = `Bearer ${s.token}`;
    return { headers };
  },
  exchanges: [
    mapExchange({
      onError(error) {
        if (error.graphQLErrors.some((e) => e.extensions?.code === 'UNAUTHENTICATED')) {
          unauthenticated();
        }
      },
    }),
    fetchExchange,
    subscriptionExchange({
      forwardSubscription(request) {
        const input = { ...request, query: request.query || '' };
        return {
          subscribe(sink) {
            const unsubscribe = ws.subscribe(input, sink);
            return { unsubscribe };
          },
        };
      },
    }),
  ],
});

/** Restarts the socket under each new token: login, refresh, logout (anonymous again). */
export function useTokenWatch(): void {
  const token = useSession()?.token;
  const last = useRef(token);
  useEffect(() => {
    if (token !== last.current) {
      last.current = token;
      ws.terminate();
    }
  }, [token]);
}

function subscribeGen(l: () => void) {
  genListeners.add(l);
  return () => genListeners.delete(l);
}

/** Bumps each time the subscription socket (re)connects. */
export function useConnectionGeneration(): number {
  return useSyncExternalStore(subscribeGen, () => generation);
}
