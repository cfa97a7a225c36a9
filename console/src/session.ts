// The caller's session: tokens and who they are, kept in sessionStorage (one tab, survives a
// reload, gone with the tab). The access token is refreshed before it expires; a refresh that
// fails ends the session with a message, and every view returns to the login page.
import { print } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { useSyncExternalStore } from 'react';

import { graphql } from './gql';
import type { SessionFieldsFragment } from './gql/graphql';

export interface Session {
  token: string;
  refreshToken: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  /** When the token was issued here, to refresh at a share of its lifetime. */
  issuedAt: number;
  user: SessionFieldsFragment['user'];
}

const KEY = 'aurum.console.session';

graphql(`
  fragment SessionFields on AuthPayload {
    token
    refreshToken
    expiresAt
    user { id username role tenantId permissions }
  }
`);

const LOGIN = graphql(`
  mutation ConsoleLogin($username: String!, $password: String!) {
    login(username: $username, password: $password) { ...SessionFields }
  }
`);

const REFRESH = graphql(`
  mutation ConsoleRefresh($refreshToken: String!) {
    refreshToken(refreshToken: $refreshToken) { ...SessionFields }
  }
`);

const LOGOUT = graphql(`
  mutation ConsoleLogout($refreshToken: String) {
    logout(refreshToken: $refreshToken)
  }
`);

/** An error the server answered with: its stable code and the request id to trace it. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

/** One GraphQL call over plain HTTP (the session's own calls, before any client exists). */
export async function request<R, V>(
  doc: TypedDocumentNode<R, V>,
  variables: V,
  token?: string,
): Promise<R> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch('/graphql', {
      method: 'POST',
      headers,
      body: JSON.stringify({ query: print(doc), variables }),
    });
  } catch (e) {
    throw new ApiError(`the server did not answer: ${String(e)}`, 'NETWORK_ERROR');
  }
  const body = await res.json().catch(() => null);
  const first = body?.errors?.[0];
  if (first) {
    throw new ApiError(
      first.message,
      first.extensions?.code ?? 'UNKNOWN',
      first.extensions?.requestId,
    );
  }
  if (!res.ok || !body?.data) {
    throw new ApiError(`HTTP ${res.status}`, 'HTTP_ERROR', res.headers.get('x-request-id') ?? undefined);
  }
  return body.data as R;
}

type Listener = () => void;
let current: Session | null = load();
let notice: string | null = null;
const listeners = new Set<Listener>();
let timer: ReturnType<typeof setTimeout> | undefined;

function load(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as Session;
    return s.expiresAt > Date.now() ? s : null;
  } catch {
    return null;
  }
}

function set(next: Session | null, message: string | null = null) {
  current = next;
  notice = message;
  if (next) sessionStorage.setItem(KEY, JSON.stringify(next));
  else sessionStorage.removeItem(KEY);
  schedule();
  listeners.forEach((l) => l());
}

function fromPayload(p: SessionFieldsFragment): Session {
  return {
    token: p.token,
    refreshToken: p.refreshToken,
    expiresAt: Date.parse(p.expiresAt),
    issuedAt: Date.now(),
    user: p.user,
  };
}

/** Refresh at three quarters of the token's life (at least 2 s before it ends). */
function schedule() {
  if (timer) clearTimeout(timer);
  timer = undefined;
  if (!current) return;
  const life = current.expiresAt - current.issuedAt;
  const at = Math.min(current.issuedAt + life * 0.75, current.expiresAt - 2000);
  timer = setTimeout(() => void refresh(), Math.max(0, at - Date.now()));
}

let refreshing: Promise<boolean> | null = null;

/** Exchanges the refresh token for new tokens; ends the session when that is refused. */
export function refresh(): Promise<boolean> {
  const s = current;
  if (!s) return Promise.resolve(false);
  refreshing ??= request(REFRESH, { refreshToken: s.refreshToken })
    .then((data) => {
      set(fromPayload(data.refreshToken));
      return true;
    })
    .catch((e: unknown) => {
      if (e instanceof ApiError && e.code === 'NETWORK_ERROR') {
        // The server is away (a restart): try again shortly while the token still lives.
        if (current && current.expiresAt > Date.now() + 3000) {
          timer = setTimeout(() => void refresh(), 2000);
          return false;
        }
      }
      set(null, 'Your session expired. Log in again.');
      return false;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

export async function login(username: string, password: string): Promise<void> {
  const data = await request(LOGIN, { username, password });
  set(fromPayload(data.login));
}

export async function logout(): Promise<void> {
  const s = current;
  set(null, 'You are logged out.');
  if (s) {
    await request(LOGOUT, { refreshToken: s.refreshToken }, s.token).catch(() => undefined);
  }
}

/** The server refused the token (expired or revoked): refresh once, or end the session. */
export function unauthenticated(): void {
  if (current) void refresh();
}

export function getSession(): Session | null {
  return current;
}

export function getNotice(): string | null {
  return notice;
}

function subscribe(l: Listener) {
  listeners.add(l);
  return () => listeners.delete(l);
}

export function useSession(): Session | null {
  return useSyncExternalStore(subscribe, () => current);
}

export function useNotice(): string | null {
  return useSyncExternalStore(subscribe, () => notice);
}

/** Whether the caller's role grants `permission` (the server's own list, from `me`). */
export function useCan(): (permission: string) => boolean {
  const s = useSession();
  return (permission) => !!s?.user.permissions.includes(permission);
}

schedule();
