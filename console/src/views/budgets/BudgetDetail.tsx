// One budget: where it stands (bars and numbers, live), its alert thresholds, spend over time
// from its ledger, its reservations (paginated, by status), its most recent ledger rows, and
// — with `budget.configure` — a form to change it.
import { useCallback, useEffect, useRef, useState } from 'react';
import { useClient, useQuery } from 'urql';

import type { BudgetsBudgetFieldsFragment, BudgetsLedgerQuery, ReservationStatus } from '../../gql/graphql';
import { useCan } from '../../session';
import { Bar, Empty, ErrorNote, Pager, Time, usePager } from '../../ui';
import { EditBudgetForm, PERIODS } from './BudgetForms';
import { crossedThreshold, fmt, loadPages } from './live';
import { DETAIL, LEDGER, RESERVATIONS } from './queries';
import { ShortTime } from './ShortTime';
import { SpendChart } from './SpendChart';

export interface LiveState {
  total: number;
  used: number;
  reserved: number;
  available: number;
}

type LedgerRow = BudgetsLedgerQuery['budgetTransactions']['nodes'][number];

/** At most this many ledger rows are read for one chart (100 per request). */
const LEDGER_CAP = 2000;

type Range = '24h' | '7d' | '30d' | 'period' | 'all';
const RANGES: { value: Range; label: string }[] = [
  { value: '24h', label: 'last 24 hours' },
  { value: '7d', label: 'last 7 days' },
  { value: '30d', label: 'last 30 days' },
  { value: 'period', label: 'current period' },
  { value: 'all', label: 'whole ledger' },
];

interface Ledger {
  rows: LedgerRow[];
  /** Rows in the range (the server counts them with the same `since`). */
  total: number | null;
  truncated: boolean;
  loading: boolean;
  error: unknown;
}

/**
 * The ledger rows since `since` (ms; null: from the first), then, on every `tick`, the rows
 * appended after the last one read — the ledger only grows, so nothing is read twice.
 */
function useLedger(budgetId: string, since: number | null, tick: number): Ledger {
  const client = useClient();
  const [ledger, setLedger] = useState<Ledger>({ rows: [], total: null, truncated: false, loading: true, error: null });
  const cursor = useRef<string | null>(null);
  // Past the cap the chart stops: appends would only read further into the range's middle.
  const truncated = useRef(false);
  const generation = useRef(0);
  // One read at a time: an append must start from the cursor the previous read left.
  const chain = useRef<Promise<void>>(Promise.resolve());

  const read = useCallback(
    (fresh: boolean) => {
      const gen = fresh ? ++generation.current : generation.current;
      chain.current = chain.current.then(async () => {
        if (gen !== generation.current || (!fresh && truncated.current)) return;
        if (fresh) {
          cursor.current = null;
          truncated.current = false;
          setLedger({ rows: [], total: null, truncated: false, loading: true, error: null });
        }
        try {
          const page = await loadPages(
            client,
            LEDGER,
            (first, after) => ({
              budgetId,
              since: since == null ? null : new Date(since).toISOString(),
              first,
              after,
            }),
            (d) => d.budgetTransactions,
            { after: cursor.current, cap: LEDGER_CAP },
          );
          if (gen !== generation.current) return;
          cursor.current = page.endCursor;
          truncated.current = page.truncated;
          setLedger((l) => ({
            rows: fresh ? page.nodes : [...l.rows, ...page.nodes],
            total: page.total,
            truncated: page.truncated,
            loading: false,
            error: null,
          }));
        } catch (error) {
          if (gen === generation.current) setLedger((l) => ({ ...l, loading: false, error }));
        }
      });
    },
    [client, budgetId, since],
  );

  useEffect(() => read(true), [read]);
  const first = useRef(tick);
  useEffect(() => {
    // A live change appended ledger rows: read what follows the last one.
    if (tick !== first.current) read(false);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tick]);
  return ledger;
}

export function BudgetDetail({
  id,
  live,
  tick,
  onClose,
}: {
  id: string;
  /** The latest state a live event delivered, shown until the refetch it caused answers. */
  live?: LiveState;
  /** Bumped when a live event concerns this budget. */
  tick: number;
  onClose: () => void;
}) {
  const can = useCan();
  const [detail, refetchDetail] = useQuery({ query: DETAIL, variables: { id } });
  const [editing, setEditing] = useState(false);
  const first = useRef(tick);
  useEffect(() => {
    if (tick !== first.current) refetchDetail({ requestPolicy: 'network-only' });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tick]);

  const b = detail.data?.budget;
  if (!b) {
    return (
      <section className="panel budget-detail" aria-label="Budget detail">
        <header className="panel-head">
          <h2>Budget</h2>
          <button type="button" onClick={onClose}>
            Close
          </button>
        </header>
        {detail.fetching ? <p className="muted">Loading…</p> : <ErrorNote error={detail.error} />}
      </section>
    );
  }
  const now = live ?? b;
  const name = `${b.tenantId}/${b.projectId}`;
  return (
    <section className="panel budget-detail" aria-label={`Budget ${name} detail`}>
      <header className="panel-head">
        <h2>{name}</h2>
        <div className="row">
          {can('budget.configure') && !editing && (
            <button type="button" onClick={() => setEditing(true)}>
              Edit budget
            </button>
          )}
          <button type="button" onClick={onClose}>
            Close
          </button>
        </div>
      </header>
      <ErrorNote error={detail.error} />
      {editing && (
        <EditBudgetForm
          budget={b}
          onDone={() => {
            setEditing(false);
            refetchDetail({ requestPolicy: 'network-only' });
          }}
        />
      )}
      <Standing name={name} state={now} thresholds={b.alertThresholds} />
      <dl className="facts">
        <div>
          <dt>Period</dt>
          <dd>{PERIODS.find((p) => p.value === b.period)?.label ?? b.period}</dd>
        </div>
        <div>
          <dt>Current window</dt>
          <dd>
            <Time at={b.periodStart} /> → {b.periodEnd ? <Time at={b.periodEnd} /> : 'no end'}
          </dd>
        </div>
        <div>
          <dt>Version</dt>
          <dd>{b.version}</dd>
        </div>
        <div>
          <dt>Changed</dt>
          <dd>
            <Time at={b.updatedAt} />
          </dd>
        </div>
      </dl>
      <Thresholds budget={{ ...b, ...now }} />
      <Spend budget={b} name={name} now={now} tick={tick} />
      <Reservations budgetId={b.id} tick={tick} />
    </section>
  );
}

/** The bar and the four numbers; the numbers are text (and `<data>` values) as well. */
function Standing({ name, state, thresholds }: { name: string; state: LiveState; thresholds: number[] }) {
  return (
    <div className="standing">
      <ThresholdBar label={`Standing of ${name}`} state={state} thresholds={thresholds} />
      <dl className="numbers">
        <div>
          <dt>
            <i className="swatch used" /> Used
          </dt>
          <dd>
            <data value={state.used}>{fmt(state.used)}</data>
          </dd>
        </div>
        <div>
          <dt>
            <i className="swatch reserved" /> Reserved
          </dt>
          <dd>
            <data value={state.reserved}>{fmt(state.reserved)}</data>
          </dd>
        </div>
        <div>
          <dt>
            <i className="swatch available" /> Available
          </dt>
          <dd>
            <data value={state.available}>{fmt(state.available)}</data>
          </dd>
        </div>
        <div>
          <dt>Total</dt>
          <dd>
            <data value={state.total}>{fmt(state.total)}</data>
          </dd>
        </div>
      </dl>
    </div>
  );
}

/** The shared bar (used, reserved over the total) with a tick at each alert threshold. */
export function ThresholdBar({
  label,
  state,
  thresholds,
}: {
  label: string;
  state: LiveState;
  thresholds: number[];
}) {
  return (
    <div className="threshold-bar">
      <Bar
        label={label}
        total={state.total}
        parts={[
          { name: 'used', value: state.used, className: 'used' },
          { name: 'reserved', value: state.reserved, className: 'reserved' },
        ]}
      />
      {thresholds.map((t) => (
        <span key={t} className="tick" style={{ left: `${Math.min(100, t)}%` }} title={`alert at ${t}%`} aria-hidden="true" />
      ))}
    </div>
  );
}

function Thresholds({ budget }: { budget: BudgetsBudgetFieldsFragment & LiveState }) {
  const crossed = crossedThreshold(budget);
  if (budget.alertThresholds.length === 0) {
    return <p className="muted">No alert thresholds: this budget never announces its spend.</p>;
  }
  return (
    <div>
      <h3>Alert thresholds</h3>
      <ul className="thresholds" aria-label="Alert thresholds">
        {budget.alertThresholds.map((t) => {
          const reached = budget.total > 0 && budget.used * 100 >= t * budget.total;
          const sent = budget.alertsSent.includes(t);
          return (
            <li key={t} className={`badge ${reached ? (t >= 100 ? 'bad' : 'warn') : ''}`}>
              {t}% · {reached ? 'reached' : 'not reached'}
              {sent && ' · announced'}
            </li>
          );
        })}
      </ul>
      {crossed != null && (
        <p className={crossed >= 100 ? 'error' : 'notice'} role="status">
          Used is past the {crossed}% alert threshold ({fmt(budget.used)} of {fmt(budget.total)} tokens).
        </p>
      )}
    </div>
  );
}

function Spend({
  budget,
  name,
  now,
  tick,
}: {
  budget: BudgetsBudgetFieldsFragment;
  name: string;
  now: LiveState;
  tick: number;
}) {
  const [range, setRange] = useState<Range>(budget.period === 'NONE' ? 'all' : 'period');
  // The range's start is fixed when it is chosen, so appends extend the same window.
  const [chosenAt, setChosenAt] = useState(() => Date.now());
  const since = (() => {
    switch (range) {
      case '24h':
        return chosenAt - 86400_000;
      case '7d':
        return chosenAt - 7 * 86400_000;
      case '30d':
        return chosenAt - 30 * 86400_000;
      case 'period':
        return Date.parse(budget.periodStart);
      case 'all':
        return null;
    }
  })();
  const ledger = useLedger(budget.id, since, tick);
  const from = since ?? Date.parse(budget.createdAt);
  const lastRow = ledger.rows[ledger.rows.length - 1];
  const to = ledger.truncated && lastRow ? Date.parse(lastRow.at) : Date.now();
  const recent = ledger.rows.slice(-10).reverse();

  return (
    <div className="spend">
      <div className="panel-head">
        <h3>Spend over time</h3>
        <label className="inline-label">
          Range
          <select
            value={range}
            onChange={(e) => {
              setRange(e.target.value as Range);
              setChosenAt(Date.now());
            }}
          >
            {RANGES.map((r) => (
              <option key={r.value} value={r.value}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorNote error={ledger.error} />
      {ledger.loading && ledger.rows.length === 0 ? (
        <p className="muted">Reading the ledger…</p>
      ) : (
        <SpendChart
          name={name}
          rows={ledger.rows}
          from={from}
          to={to}
          current={now}
          thresholds={budget.alertThresholds}
        />
      )}
      <p className="muted small">
        {ledger.rows.length} ledger rows in this range
        {ledger.total != null && <> · {ledger.total} in the whole ledger</>}
        {ledger.truncated && (
          <> · only the first {ledger.rows.length} are drawn: choose a shorter range to see the latest</>
        )}
      </p>
      <h3>Recent ledger rows</h3>
      {recent.length === 0 ? (
        <Empty>No ledger rows in this range.</Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <caption className="sr-only">The latest ledger rows of {name}, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Kind</th>
                <th scope="col">Δ used</th>
                <th scope="col">Δ reserved</th>
                <th scope="col">Δ total</th>
                <th scope="col">Used after</th>
                <th scope="col">By</th>
              </tr>
            </thead>
            <tbody>
              {recent.map((r) => (
                <tr key={r.id}>
                  <td>
                    <ShortTime at={r.at} />
                  </td>
                  <td>
                    <span className="badge">{r.kind}</span>
                  </td>
                  <td className="num">{signed(r.deltaUsed)}</td>
                  <td className="num">{signed(r.deltaReserved)}</td>
                  <td className="num">{signed(r.deltaTotal)}</td>
                  <td className="num">{fmt(r.usedAfter)}</td>
                  <td className="mono">{r.actor}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function signed(n: number): string {
  return n > 0 ? `+${fmt(n)}` : n < 0 ? `−${fmt(-n)}` : '0';
}

const STATUSES: ReservationStatus[] = ['RESERVED', 'COMMITTED', 'RELEASED', 'EXPIRED'];

function Reservations({ budgetId, tick }: { budgetId: string; tick: number }) {
  const [status, setStatus] = useState<ReservationStatus | ''>('');
  const pager = usePager(10);
  const [res, refetch] = useQuery({
    query: RESERVATIONS,
    variables: { budgetId, status: status || null, first: pager.first, after: pager.after },
  });
  const first = useRef(tick);
  useEffect(() => {
    if (tick !== first.current) refetch({ requestPolicy: 'network-only' });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tick]);
  const conn = res.data?.budgetReservations;
  return (
    <div className="reservations">
      <div className="panel-head">
        <h3>Reservations</h3>
        <label className="inline-label">
          Status
          <select
            value={status}
            onChange={(e) => {
              setStatus(e.target.value as ReservationStatus | '');
              pager.reset();
            }}
          >
            <option value="">all</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.toLowerCase()}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorNote error={res.error} />
      {conn && conn.nodes.length === 0 ? (
        <Empty>No reservations{status && ` with status ${status.toLowerCase()}`}.</Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <caption className="sr-only">Reservations, oldest first</caption>
            <thead>
              <tr>
                <th scope="col">Created</th>
                <th scope="col">Status</th>
                <th scope="col">Amount</th>
                <th scope="col">Spent</th>
                <th scope="col">Model</th>
                <th scope="col">Expires / resolved</th>
                <th scope="col">Request id</th>
              </tr>
            </thead>
            <tbody>
              {conn?.nodes.map((r) => (
                <tr key={r.id}>
                  <td>
                    <ShortTime at={r.createdAt} />
                  </td>
                  <td>
                    <span className={`badge ${r.status === 'RESERVED' ? 'warn' : r.status === 'EXPIRED' ? 'bad' : 'ok'}`}>
                      {r.status}
                    </span>
                  </td>
                  <td className="num">{fmt(r.amount)}</td>
                  <td className="num">{r.actualAmount == null ? '—' : fmt(r.actualAmount)}</td>
                  <td>{r.model ?? '—'}</td>
                  <td>
                    <ShortTime at={r.resolvedAt ?? r.expiresAt} />
                  </td>
                  <td className="mono ellipsis" title={r.requestId}>
                    {r.requestId}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager pager={pager} pageInfo={conn?.pageInfo} total={conn?.totalCount} label="Reservations" />
    </div>
  );
}
