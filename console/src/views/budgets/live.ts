// Helpers the Budgets and Overview views share: a loader that walks a connection page by page,
// number formatting and threshold arithmetic. (The live-view hooks are in `src/live.ts`.)
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import type { AnyVariables, Client } from '@urql/core';

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
