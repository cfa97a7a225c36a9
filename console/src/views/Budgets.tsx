// Budgets: every (tenant, project) budget as a bar of used and reserved over its total, live
// (one `budgetChanged` and one `budgetThresholdReached` subscription over every budget the
// caller may read); threshold crossings as alerts; the selected budget's detail
// (`/budgets/<id>`); creating and changing budgets with `budget.configure`.
import { useEffect, useState, type FormEvent } from 'react';
import { Link, useNavigate, useParams, useSearchParams } from 'react-router-dom';
import { useQuery } from 'urql';

import type { BudgetsChangedSubscription, BudgetsThresholdReachedSubscription } from '../gql/graphql';
import { useCan, useSession } from '../session';
import { Empty, ErrorNote, LiveBadge, Pager, Section, usePager, useRefetchOnReconnect } from '../ui';
import { BudgetDetail, ThresholdBar, type LiveState } from './budgets/BudgetDetail';
import { CreateBudgetForm } from './budgets/BudgetForms';
import { useCoalesced, useEvents } from '../live';
import { crossedThreshold, fmt } from './budgets/live';
import { CHANGED, LIST, THRESHOLD } from './budgets/queries';
import './Budgets.css';

type Changed = BudgetsChangedSubscription['budgetChanged'];
type Crossed = BudgetsThresholdReachedSubscription['budgetThresholdReached'];

interface Alert {
  cursor: string;
  threshold: number;
  state: Crossed['state'];
  receivedAt: string;
}

export function Budgets() {
  const selected = useParams()['*'] || null;
  const navigate = useNavigate();
  const [search, setSearch] = useSearchParams();
  const tenantFilter = search.get('tenant') ?? '';
  const session = useSession();
  const can = useCan();
  const ownTenant = session?.user.tenantId ?? null;
  const pager = usePager(20);
  const [creating, setCreating] = useState(false);

  const [list, refetchList] = useQuery({
    query: LIST,
    variables: { first: pager.first, after: pager.after, tenantId: tenantFilter || null },
  });

  // The state each live event delivered, per budget, shown until the refetch it causes
  // answers (a fresh page replaces them all).
  const [live, setLive] = useState<Record<string, LiveState>>({});
  useEffect(() => setLive({}), [list.data]);
  const [tick, setTick] = useState(0);
  const [alerts, setAlerts] = useState<Alert[]>([]);
  const [watchError, setWatchError] = useState<unknown>(null);

  const refetch = useCoalesced(() => refetchList({ requestPolicy: 'network-only' }));
  const bumpDetail = useCoalesced(() => setTick((t) => t + 1), 250);
  useRefetchOnReconnect(() => {
    refetchList({ requestPolicy: 'network-only' });
    setTick((t) => t + 1);
  });

  const onChanged = (e: Changed) => {
    setLive((m) => ({ ...m, [e.state.budgetId]: e.state }));
    refetch();
    if (e.state.budgetId === selected) bumpDetail();
  };
  const onThreshold = (e: Crossed) => {
    setAlerts((a) =>
      a.some((x) => x.cursor === e.cursor)
        ? a
        : [{ cursor: e.cursor, threshold: e.threshold, state: e.state, receivedAt: new Date().toISOString() }, ...a].slice(0, 20),
    );
    // `alertsSent` changed.
    refetch();
    if (e.state.budgetId === selected) bumpDetail();
  };

  const conn = list.data?.budgets;
  const suffix = tenantFilter ? `?tenant=${encodeURIComponent(tenantFilter)}` : '';

  return (
    <div className="budgets">
      <header className="page-head">
        <h1>Budgets</h1>
        <LiveBadge fetching error={watchError} />
        {can('budget.configure') && !creating && (
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            New budget
          </button>
        )}
      </header>
      <BudgetWatch onChanged={onChanged} onThreshold={onThreshold} onError={setWatchError} />
      <ErrorNote error={watchError} />

      <div aria-live="polite">
        {alerts.length > 0 && (
          <Section
            title="Threshold alerts"
            actions={
              <button type="button" onClick={() => setAlerts([])}>
                Dismiss all
              </button>
            }
          >
            <ul className="alerts">
              {alerts.map((a) => (
                <li key={a.cursor} className={a.threshold >= 100 ? 'bad' : 'warn'}>
                  <strong>
                    <Link to={`/budgets/${a.state.budgetId}${suffix}`}>
                      {a.state.tenantId}/{a.state.projectId}
                    </Link>{' '}
                    reached {a.threshold}%
                  </strong>{' '}
                  <span>
                    used {fmt(a.state.used)} of {fmt(a.state.total)} tokens ({fmt(a.state.available)} available)
                  </span>{' '}
                  <span className="muted small">
                    at {new Date(a.receivedAt).toLocaleTimeString()}
                  </span>{' '}
                  <button
                    type="button"
                    onClick={() => setAlerts((xs) => xs.filter((x) => x.cursor !== a.cursor))}
                    aria-label={`Dismiss the ${a.threshold}% alert of ${a.state.tenantId}/${a.state.projectId}`}
                  >
                    Dismiss
                  </button>
                </li>
              ))}
            </ul>
          </Section>
        )}
      </div>

      {creating && (
        <Section title="New budget">
          <CreateBudgetForm
            fixedTenant={ownTenant}
            onCancel={() => setCreating(false)}
            onCreated={(id) => {
              setCreating(false);
              refetchList({ requestPolicy: 'network-only' });
              navigate(`/budgets/${id}${suffix}`);
            }}
          />
        </Section>
      )}

      <div className={selected ? 'split' : undefined}>
        <Section
          title="All budgets"
          actions={
            <TenantFilter
              value={tenantFilter}
              onChange={(t) => {
                pager.reset();
                setSearch(t ? { tenant: t } : {});
              }}
            />
          }
        >
          <ErrorNote error={list.error} />
          {conn && conn.nodes.length === 0 ? (
            <Empty>
              {tenantFilter ? `No budgets of tenant ${tenantFilter}.` : 'No budgets yet.'}
            </Empty>
          ) : (
            <div className="table-wrap">
              <table className="budget-list">
                <caption className="sr-only">Budgets, oldest first</caption>
                <thead>
                  <tr>
                    <th scope="col">Tenant / project</th>
                    <th scope="col">Standing</th>
                    <th scope="col">Alert</th>
                    <th scope="col">Period</th>
                  </tr>
                </thead>
                <tbody>
                  {conn?.nodes.map((b) => {
                    const now = live[b.id] ?? b;
                    const name = `${b.tenantId}/${b.projectId}`;
                    const crossed = crossedThreshold({ ...b, ...now });
                    const isSelected = b.id === selected;
                    return (
                      <tr key={b.id} data-budget={name} className={isSelected ? 'selected' : undefined}>
                        <th scope="row">
                          <Link to={`/budgets/${b.id}${suffix}`} aria-current={isSelected ? 'true' : undefined}>
                            {b.tenantId}/<wbr />
                            {b.projectId}
                          </Link>
                        </th>
                        <td className="standing-cell">
                          <ThresholdBar label={`Budget ${name}`} state={now} thresholds={b.alertThresholds} />
                          <p className="figures">
                            <span>
                              used <data data-field="used" value={now.used}>{fmt(now.used)}</data>
                            </span>
                            <span>
                              reserved <data data-field="reserved" value={now.reserved}>{fmt(now.reserved)}</data>
                            </span>
                            <span>
                              available <data data-field="available" value={now.available}>{fmt(now.available)}</data>
                            </span>
                            <span>
                              of <data data-field="total" value={now.total}>{fmt(now.total)}</data>
                            </span>
                          </p>
                        </td>
                        <td>
                          {crossed != null ? (
                            <span className={`badge ${crossed >= 100 ? 'bad' : 'warn'}`}>past {crossed}%</span>
                          ) : (
                            <span className="muted">—</span>
                          )}
                        </td>
                        <td>{b.period.toLowerCase()}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
          <Pager pager={pager} pageInfo={conn?.pageInfo} total={conn?.totalCount} label="Budgets" />
          <p className="legend">
            <span>
              <i className="swatch used" /> used
            </span>
            <span>
              <i className="swatch reserved" /> reserved
            </span>
            <span>
              <i className="swatch tick-swatch" /> alert threshold
            </span>
          </p>
        </Section>
        {selected && (
          <BudgetDetail
            key={selected}
            id={selected}
            live={live[selected]}
            tick={tick}
            onClose={() => navigate(`/budgets${suffix}`)}
          />
        )}
      </div>
    </div>
  );
}

/**
 * The budget subscriptions, of every budget the caller may read (the selected one may be of
 * another tenant than the list's filter); renders nothing.
 */
function BudgetWatch({
  onChanged,
  onThreshold,
  onError,
}: {
  onChanged: (e: Changed) => void;
  onThreshold: (e: Crossed) => void;
  onError: (error: unknown) => void;
}) {
  const changedError = useEvents(CHANGED, {}, (d) => onChanged(d.budgetChanged));
  // Alerts are events, not state a refetch could bring back: this feed resumes after a gap.
  const thresholdError = useEvents(
    THRESHOLD,
    {},
    (d) => onThreshold(d.budgetThresholdReached),
    false,
    (d) => d.budgetThresholdReached.cursor,
  );
  const error = changedError ?? thresholdError;
  useEffect(() => {
    onError(error);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [error]);
  return null;
}

function TenantFilter({ value, onChange }: { value: string; onChange: (tenant: string) => void }) {
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    onChange(text.trim());
  };
  return (
    <form className="filters" onSubmit={submit} role="search" aria-label="Filter budgets">
      <label>
        Tenant
        <input value={text} onChange={(e) => setText(e.target.value)} placeholder="every tenant" />
      </label>
      <button type="submit">Filter</button>
      {value && (
        <button
          type="button"
          onClick={() => {
            setText('');
            onChange('');
          }}
        >
          Clear
        </button>
      )}
    </form>
  );
}
