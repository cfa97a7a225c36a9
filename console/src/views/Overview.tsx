// Overview: the health of each domain the caller may read (budgets, dead letters, circuit
// breakers, governance, sandbox, tasks and escalations), the server's `/ready` dependencies,
// and the alerts that need someone now. Counts are read once and again whenever a live event
// of their domain arrives (coalesced), after the socket reconnects, and on "Refresh";
// `/ready` is read with them. Nothing polls.
import { useCallback, useEffect, useRef, useState } from 'react';
import { Link } from 'react-router-dom';
import { useClient, useQuery } from 'urql';

import { graphql } from '../gql';
import type {
  CircuitBreakerState,
  OverviewBreakersQuery,
  OverviewBudgetChangedSubscription,
  OverviewBudgetsQuery,
} from '../gql/graphql';
import { useCan } from '../session';
import { Empty, ErrorNote, LiveBadge, Section, Time, useRefetchOnReconnect } from '../ui';
import { useCoalesced, useEvents } from '../live';
import { age, crossedThreshold, fmt, loadPages, type Loaded } from './budgets/live';
import './Overview.css';

const BUDGETS = graphql(`
  query OverviewBudgets($first: Int, $after: String) {
    budgets(first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { id tenantId projectId total used reserved available alertThresholds updatedAt }
    }
  }
`);

const BREAKERS = graphql(`
  query OverviewBreakers($first: Int, $after: String) {
    circuitBreakers(first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { name state dependency stateSince metrics { failureRate remainingOpenMs } }
    }
  }
`);

const DLQ = graphql(`
  query OverviewDlqStats {
    dlqStats { queue depth oldestAgeSeconds pending }
  }
`);

const PENDING = graphql(`
  query OverviewPendingApprovals {
    learningUpdates(filter: { status: PENDING_APPROVAL }, first: 5) {
      totalCount
      nodes { id agentRole kind proposedBy createdAt expiresAt }
    }
  }
`);

const SANDBOX = graphql(`
  query OverviewSandboxRuns {
    queued: sandboxRuns(filter: { status: QUEUED }, first: 0) { totalCount }
    running: sandboxRuns(filter: { status: RUNNING }, first: 0) { totalCount }
  }
`);

const TASKS = graphql(`
  query OverviewTasks {
    all: tasks(first: 0) { totalCount }
    pending: tasks(state: PENDING, first: 0) { totalCount }
    assigned: tasks(state: ASSIGNED, first: 0) { totalCount }
    inProgress: tasks(state: IN_PROGRESS, first: 0) { totalCount }
    blocked: tasks(state: BLOCKED, first: 0) { totalCount }
    reviewing: tasks(state: REVIEWING, first: 0) { totalCount }
    deploying: tasks(state: DEPLOYING, first: 0) { totalCount }
    failed: tasks(state: FAILED, first: 0) { totalCount }
  }
`);

const ESCALATIONS = graphql(`
  query OverviewOpenEscalations {
    escalations(status: OPEN, first: 5) {
      totalCount
      nodes { id reason severity createdAt }
    }
  }
`);

const BREAKER_CHANGED = graphql(`
  subscription OverviewBreakerChanged {
    circuitBreakerChanged { cursor name state }
  }
`);

const DLQ_ADDED = graphql(`
  subscription OverviewDlqAdded {
    dlqMessageAdded { cursor message { id queue } }
  }
`);

const LEARNING_CHANGED = graphql(`
  subscription OverviewLearningChanged {
    learningUpdateChanged { cursor kind }
  }
`);

const TASK_CHANGED = graphql(`
  subscription OverviewTaskChanged {
    taskChanged { cursor kind }
  }
`);

const SANDBOX_CHANGED = graphql(`
  subscription OverviewSandboxChanged {
    sandboxRunChanged { cursor kind }
  }
`);

const BUDGET_CHANGED = graphql(`
  subscription OverviewBudgetChanged {
    budgetChanged {
      cursor
      kind
      state { budgetId total used reserved available }
    }
  }
`);

const BUDGET_THRESHOLD = graphql(`
  subscription OverviewBudgetThreshold {
    budgetThresholdReached { cursor threshold }
  }
`);

/** Budgets and breakers are read whole (100 a request) up to this many. */
const READ_CAP = 1000;

/** The link text of an alert, by the view it leads to. */
const VIEW_NAMES: Record<string, string> = {
  budgets: 'Budgets',
  breakers: 'Breakers',
  'dead-letters': 'Dead letters',
  governance: 'Governance',
  tasks: 'Tasks',
};

type Health = 'ok' | 'warn' | 'bad' | 'off';
const HEALTH_TEXT: Record<Health, string> = { ok: 'healthy', warn: 'attention', bad: 'critical', off: 'disabled' };

interface Ready {
  httpStatus?: number;
  body?: {
    status?: string;
    dependencies?: Record<string, { status: string; reason?: string }>;
    circuitBreakers?: { status: string; scope?: string; reason?: string };
  };
  error?: string;
  at: string;
}

type BudgetLive = OverviewBudgetChangedSubscription['budgetChanged']['state'] & { updatedAt: string };

interface AlertItem {
  key: string;
  level: 'warn' | 'bad';
  to: string;
  text: React.ReactNode;
}

/** Alerts of one domain listed one by one: at most this many, then one line for the rest. */
const ALERTS_PER_DOMAIN = 5;

/** Adds `items` (worst first) to `into`, the ones past the cap summed up in one line. */
function capped(into: AlertItem[], items: AlertItem[], to: string, rest: (n: number) => React.ReactNode) {
  into.push(...items.slice(0, ALERTS_PER_DOMAIN));
  if (items.length > ALERTS_PER_DOMAIN) {
    const more = items.slice(ALERTS_PER_DOMAIN);
    into.push({
      key: `${to}-more`,
      level: more.some((a) => a.level === 'bad') ? 'bad' : 'warn',
      to,
      text: rest(more.length),
    });
  }
}

/** Runs `load` now, on `reload()`, and never while paused; keeps the last answer. */
function useLoader<T>(load: () => Promise<T>, pause: boolean) {
  const [state, setState] = useState<{ data?: T; error: unknown; loading: boolean }>({ error: null, loading: !pause });
  const [nonce, setNonce] = useState(0);
  const latest = useRef(load);
  latest.current = load;
  useEffect(() => {
    if (pause) return undefined;
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    latest.current().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error: unknown) => live && setState((s) => ({ ...s, error, loading: false })),
    );
    return () => {
      live = false;
    };
  }, [nonce, pause]);
  const reload = useCallback(() => setNonce((n) => n + 1), []);
  return { ...state, reload };
}

async function readReady(): Promise<Ready> {
  const at = new Date().toISOString();
  try {
    const res = await fetch('/ready', { cache: 'no-store', headers: { accept: 'application/json' } });
    const body = (await res.json().catch(() => undefined)) as Ready['body'];
    return body ? { httpStatus: res.status, body, at } : { httpStatus: res.status, error: `HTTP ${res.status} without a JSON body`, at };
  } catch (e) {
    return { error: `the server did not answer: ${String(e)}`, at };
  }
}

function readyHealth(status: string | undefined): Health {
  if (status === 'ok' || status === 'ready') return 'ok';
  if (status === 'disabled') return 'off';
  if (status === 'degraded') return 'warn';
  return 'bad';
}

export function Overview() {
  const can = useCan();
  const client = useClient();
  const canBudgets = can('budget.view');
  const canBreakers = can('breaker.view');
  const canDlq = can('dlq.read');
  const canLearning = can('learning.view');
  const canSandbox = can('sandbox.view');
  const canTasks = can('task.view');
  const canEscalations = can('escalation.view');

  const [ready, setReady] = useState<Ready | null>(null);
  const [readyBusy, setReadyBusy] = useState(false);
  const refreshReady = useCallback(() => {
    setReadyBusy(true);
    void readReady().then((r) => {
      setReady(r);
      setReadyBusy(false);
    });
  }, []);
  useEffect(refreshReady, [refreshReady]);

  const budgets = useLoader(
    () =>
      loadPages(client, BUDGETS, (first, after) => ({ first, after }), (d: OverviewBudgetsQuery) => d.budgets, {
        cap: READ_CAP,
      }),
    !canBudgets,
  );
  const breakers = useLoader(
    () =>
      loadPages(
        client,
        BREAKERS,
        (first, after) => ({ first, after }),
        (d: OverviewBreakersQuery) => d.circuitBreakers,
        { cap: READ_CAP },
      ),
    !canBreakers,
  );
  const [dlq, refetchDlq] = useQuery({ query: DLQ, pause: !canDlq });
  const [pending, refetchPending] = useQuery({ query: PENDING, pause: !canLearning });
  const [sandbox, refetchSandbox] = useQuery({ query: SANDBOX, pause: !canSandbox });
  const [tasks, refetchTasks] = useQuery({ query: TASKS, pause: !canTasks });
  const [escalations, refetchEscalations] = useQuery({ query: ESCALATIONS, pause: !canEscalations });

  const net = { requestPolicy: 'network-only' } as const;
  const [refreshedAt, setRefreshedAt] = useState(() => new Date().toISOString());
  const refreshAll = () => {
    refreshReady();
    if (canBudgets) budgets.reload();
    if (canBreakers) breakers.reload();
    if (canDlq) refetchDlq(net);
    if (canLearning) refetchPending(net);
    if (canSandbox) refetchSandbox(net);
    if (canTasks) refetchTasks(net);
    if (canEscalations) refetchEscalations(net);
    setRefreshedAt(new Date().toISOString());
  };
  useRefetchOnReconnect(refreshAll);

  // Each feed refetches its own domain and `/ready`.
  const onEvent = (refetchDomain: () => void) => {
    refetchDomain();
    refreshReady();
    setRefreshedAt(new Date().toISOString());
  };
  const breakersEvent = useCoalesced(() => onEvent(breakers.reload));
  const dlqEvent = useCoalesced(() => onEvent(() => refetchDlq(net)));
  const learningEvent = useCoalesced(() => onEvent(() => refetchPending(net)));
  const taskEvent = useCoalesced(() =>
    onEvent(() => {
      refetchTasks(net);
      if (canEscalations) refetchEscalations(net);
    }),
  );
  const budgetEvent = useCoalesced(() => onEvent(budgets.reload));
  const sandboxEvent = useCoalesced(() => onEvent(() => refetchSandbox(net)));
  // Spending moves are applied from the event itself (no refetch): a busy fleet spends
  // all the time, and crossing a threshold that was already announced sends no other event.
  const [budgetLive, setBudgetLive] = useState<Record<string, BudgetLive>>({});
  useEffect(() => setBudgetLive({}), [budgets.data]);
  const onBudgetChanged = (e: OverviewBudgetChangedSubscription['budgetChanged']) => {
    if (e.kind === 'CREATED' || e.kind === 'UPDATED') budgetEvent();
    else setBudgetLive((m) => ({ ...m, [e.state.budgetId]: { ...e.state, updatedAt: new Date().toISOString() } }));
  };

  const feedErrors = [
    useEvents(BREAKER_CHANGED, {}, breakersEvent, !canBreakers),
    useEvents(DLQ_ADDED, {}, dlqEvent, !canDlq),
    useEvents(LEARNING_CHANGED, {}, learningEvent, !canLearning),
    useEvents(TASK_CHANGED, {}, taskEvent, !canTasks),
    useEvents(SANDBOX_CHANGED, {}, sandboxEvent, !canSandbox),
  ];
  const [budgetFeedError, setBudgetFeedError] = useState<unknown>(null);
  const feedError = [...feedErrors, budgetFeedError].find(Boolean);

  const budgetsRead = budgets.data as Loaded<OverviewBudgetsQuery['budgets']['nodes'][number]> | undefined;
  const budgetList = budgetsRead && {
    ...budgetsRead,
    nodes: budgetsRead.nodes.map((b) => ({ ...b, ...budgetLive[b.id] })),
  };
  const breakerList = breakers.data as Loaded<OverviewBreakersQuery['circuitBreakers']['nodes'][number]> | undefined;

  // ---- what each domain says -------------------------------------------------------------
  const alerts: AlertItem[] = [];

  const deps = ready?.body?.dependencies ?? {};
  const readyStatus = ready?.body?.status;
  for (const [name, dep] of Object.entries(deps)) {
    const h = readyHealth(dep.status);
    if (h === 'bad' || h === 'warn') {
      alerts.push({
        key: `dep-${name}`,
        level: h,
        to: '/overview',
        text: (
          <>
            Dependency <strong>{name}</strong> is {dep.status}
            {dep.reason && <>: {dep.reason}</>}
          </>
        ),
      });
    }
  }
  if (ready?.error) {
    alerts.push({ key: 'ready', level: 'bad', to: '/overview', text: <>Readiness could not be read: {ready.error}</> });
  }

  const breakerCounts: Partial<Record<CircuitBreakerState, number>> = {};
  const breakerAlerts: AlertItem[] = [];
  for (const b of breakerList?.nodes ?? []) {
    breakerCounts[b.state] = (breakerCounts[b.state] ?? 0) + 1;
    if (b.state === 'OPEN' || b.state === 'FORCED_OPEN' || b.state === 'HALF_OPEN') {
      breakerAlerts.push({
        key: `breaker-${b.name}`,
        level: b.state === 'HALF_OPEN' ? 'warn' : 'bad',
        to: '/breakers',
        text: (
          <>
            Breaker <strong>{b.name}</strong> is <span className={`badge ${b.state}`}>{b.state}</span> since{' '}
            <Time at={b.stateSince} />
            {b.state === 'OPEN' && b.metrics.remainingOpenMs > 0 && (
              <> (probes in {age(b.metrics.remainingOpenMs / 1000)})</>
            )}
          </>
        ),
      });
    }
  }
  breakerAlerts.sort((a, b) => (a.level === b.level ? 0 : a.level === 'bad' ? -1 : 1));
  capped(alerts, breakerAlerts, '/breakers', (n) => <>{n} more breaker{n === 1 ? ' is' : 's are'} open or half-open</>);
  const openBreakers = (breakerCounts.OPEN ?? 0) + (breakerCounts.FORCED_OPEN ?? 0);
  const halfOpen = breakerCounts.HALF_OPEN ?? 0;

  let pastThreshold = 0;
  let exhausted = 0;
  const budgetAlerts: (AlertItem & { share: number; at: string })[] = [];
  for (const b of budgetList?.nodes ?? []) {
    const crossed = crossedThreshold(b);
    // Nothing left to reserve: every new LLM call of the project is refused.
    const empty = b.total > 0 && b.available === 0;
    if (empty) exhausted += 1;
    if (crossed != null) pastThreshold += 1;
    if (crossed == null && !empty) continue;
    budgetAlerts.push({
      share: b.total > 0 ? (b.used + b.reserved) / b.total : 1,
      at: b.updatedAt,
      key: `budget-${b.id}`,
      level: empty || (crossed ?? 0) >= 100 ? 'bad' : 'warn',
      to: `/budgets/${b.id}`,
      text: (
        <>
          Budget{' '}
          <strong>
            {b.tenantId}/{b.projectId}
          </strong>{' '}
          {crossed != null ? <>is past its {crossed}% threshold</> : <>has nothing left to reserve</>}:{' '}
          {fmt(b.used)} used and {fmt(b.reserved)} reserved of {fmt(b.total)} tokens
        </>
      ),
    });
  }

  // Critical first, then the fullest, then the most recently changed.
  budgetAlerts.sort(
    (a, b) =>
      Number(b.level === 'bad') - Number(a.level === 'bad') || b.share - a.share || b.at.localeCompare(a.at),
  );
  capped(alerts, budgetAlerts, '/budgets', (n) => <>{n} more budget{n === 1 ? ' is' : 's are'} past an alert threshold or exhausted</>);

  const queues = dlq.data?.dlqStats ?? [];
  const deadLetters = queues.reduce((a, q) => a + q.depth, 0);
  for (const q of queues.filter((q) => q.depth > 0)) {
    alerts.push({
      key: `dlq-${q.queue}`,
      level: 'warn',
      to: '/dead-letters',
      text: (
        <>
          {fmt(q.depth)} unresolved dead letter{q.depth === 1 ? '' : 's'} in queue <strong>{q.queue}</strong>
          {q.oldestAgeSeconds != null && <> (oldest {age(q.oldestAgeSeconds)} old)</>}
        </>
      ),
    });
  }

  const approvals = pending.data?.learningUpdates;
  if (approvals && approvals.totalCount > 0) {
    const roles = [...new Set(approvals.nodes.map((u) => u.agentRole))];
    alerts.push({
      key: 'approvals',
      level: 'warn',
      to: '/governance',
      text: (
        <>
          {approvals.totalCount} learning update{approvals.totalCount === 1 ? '' : 's'} wait
          {approvals.totalCount === 1 ? 's' : ''} for approval (roles {roles.join(', ')}
          {approvals.totalCount > approvals.nodes.length && ', …'})
        </>
      ),
    });
  }

  const openEscalations = escalations.data?.escalations;
  if (openEscalations && openEscalations.totalCount > 0) {
    const critical = openEscalations.nodes.some((e) => e.severity === 'CRITICAL' || e.severity === 'HIGH');
    alerts.push({
      key: 'escalations',
      level: critical ? 'bad' : 'warn',
      to: '/tasks',
      text: (
        <>
          {openEscalations.totalCount} open escalation{openEscalations.totalCount === 1 ? '' : 's'}; the oldest:{' '}
          <q>{openEscalations.nodes[0]?.reason}</q>
        </>
      ),
    });
  }
  alerts.sort((a, b) => (a.level === b.level ? 0 : a.level === 'bad' ? -1 : 1));

  const t = tasks.data;
  const sandboxDep = deps.sandbox;

  return (
    <div className="overview">
      <header className="page-head">
        <h1>Overview</h1>
        <LiveBadge fetching error={feedError} />
        <span className="muted small">
          read <Time at={refreshedAt} />
        </span>
        <button type="button" onClick={refreshAll} disabled={readyBusy}>
          Refresh
        </button>
      </header>
      {canBudgets && <BudgetFeed onChanged={onBudgetChanged} onThreshold={budgetEvent} onError={setBudgetFeedError} />}
      <ErrorNote error={feedError} />

      <div className="cols">
        <Section title="Active alerts">
          {alerts.length === 0 ? (
            <Empty>No active alerts.</Empty>
          ) : (
            <ul className="alert-list" aria-label="Active alerts">
              {alerts.map((a) => (
                <li key={a.key} className={a.level}>
                  <span className={`badge ${a.level}`}>{a.level === 'bad' ? 'critical' : 'warning'}</span>
                  <span className="alert-text">{a.text}</span>
                  {a.to !== '/overview' && (
                    <Link to={a.to} className="alert-link">
                      {VIEW_NAMES[a.to.split('/')[1]] ?? 'Open'} →
                    </Link>
                  )}
                </li>
              ))}
            </ul>
          )}
        </Section>

        <Section
          title="Readiness"
          actions={
            readyStatus && <span className={`badge ${readyHealth(readyStatus)}`}>{readyStatus}</span>
          }
        >
          {!ready ? (
            <p className="muted">Reading /ready…</p>
          ) : ready.error ? (
            <p className="error" role="alert">
              {ready.error}
            </p>
          ) : (
            <div className="table-wrap">
              <table className="deps">
                <caption className="sr-only">Dependencies as /ready reports them</caption>
                <thead>
                  <tr>
                    <th scope="col">Dependency</th>
                    <th scope="col">Status</th>
                    <th scope="col">Detail</th>
                  </tr>
                </thead>
                <tbody>
                  {Object.entries(deps).map(([name, dep]) => (
                    <tr key={name}>
                      <th scope="row">{name}</th>
                      <td>
                        <span className={`badge ${readyHealth(dep.status)}`}>{dep.status}</span>
                      </td>
                      <td className="muted">{dep.reason ?? ''}</td>
                    </tr>
                  ))}
                  {ready.body?.circuitBreakers && (
                    <tr>
                      <th scope="row">circuit breakers</th>
                      <td>
                        <span className={`badge ${readyHealth(ready.body.circuitBreakers.status)}`}>
                          {ready.body.circuitBreakers.status}
                        </span>
                      </td>
                      <td className="muted">
                        {ready.body.circuitBreakers.scope && <>scope {ready.body.circuitBreakers.scope}</>}
                        {ready.body.circuitBreakers.reason && <>: {ready.body.circuitBreakers.reason}</>}
                      </td>
                    </tr>
                  )}
                </tbody>
              </table>
            </div>
          )}
          {ready && (
            <p className="muted small">
              HTTP {ready.httpStatus ?? '—'} at <Time at={ready.at} />
            </p>
          )}
        </Section>
      </div>

      <div className="grid domains">
        {canBudgets && (
          <Domain
            title="Budgets"
            to="/budgets"
            health={exhausted > 0 ? 'bad' : pastThreshold > 0 ? 'warn' : 'ok'}
            stat={budgetList?.total ?? budgetList?.nodes.length}
            unit="budgets"
            loading={budgets.loading && !budgetList}
            error={budgets.error}
            facts={[
              ['past an alert threshold', pastThreshold],
              ['exhausted', exhausted],
            ]}
            note={
              budgetList?.truncated ? `thresholds checked on the first ${budgetList.nodes.length}` : undefined
            }
          />
        )}
        {canDlq && (
          <Domain
            title="Dead letters"
            to="/dead-letters"
            health={deadLetters > 0 ? 'warn' : 'ok'}
            stat={dlq.data ? deadLetters : undefined}
            unit="unresolved"
            loading={dlq.fetching && !dlq.data}
            error={dlq.error}
            facts={queues.map((q) => [
              `queue ${q.queue}`,
              `${fmt(q.depth)} dead · ${fmt(q.pending)} pending${q.oldestAgeSeconds != null ? ` · oldest ${age(q.oldestAgeSeconds)}` : ''}`,
            ])}
          />
        )}
        {canBreakers && (
          <Domain
            title="Circuit breakers"
            to="/breakers"
            health={openBreakers > 0 ? 'bad' : halfOpen > 0 ? 'warn' : 'ok'}
            stat={breakerList ? openBreakers + halfOpen : undefined}
            unit="open or half-open"
            loading={breakers.loading && !breakerList}
            error={breakers.error}
            facts={[
              ['open', breakerCounts.OPEN ?? 0],
              ['forced open', breakerCounts.FORCED_OPEN ?? 0],
              ['half-open', halfOpen],
              ['closed', breakerCounts.CLOSED ?? 0],
              ['disabled or metrics only', (breakerCounts.DISABLED ?? 0) + (breakerCounts.METRICS_ONLY ?? 0)],
              ['in all', breakerList?.total ?? breakerList?.nodes.length ?? 0],
            ]}
          />
        )}
        {canLearning && (
          <Domain
            title="Governance"
            to="/governance"
            health={(approvals?.totalCount ?? 0) > 0 ? 'warn' : 'ok'}
            stat={approvals?.totalCount}
            unit="pending approvals"
            loading={pending.fetching && !pending.data}
            error={pending.error}
            facts={(approvals?.nodes ?? []).map((u) => [
              `${u.agentRole} (${u.kind.toLowerCase()})`,
              u.expiresAt ? <>by {u.proposedBy}, expires <Time at={u.expiresAt} /></> : <>by {u.proposedBy}</>,
            ])}
          />
        )}
        {canSandbox && (
          <Domain
            title="Sandbox"
            to="/sandbox"
            health={sandboxDep ? readyHealth(sandboxDep.status) : 'ok'}
            stat={sandbox.data ? sandbox.data.queued.totalCount + sandbox.data.running.totalCount : undefined}
            unit="queued or running"
            loading={sandbox.fetching && !sandbox.data}
            error={sandbox.error}
            facts={[
              ['queued', sandbox.data?.queued.totalCount ?? 0],
              ['running', sandbox.data?.running.totalCount ?? 0],
              ['engine', sandboxDep ? `${sandboxDep.status}${sandboxDep.reason ? `: ${sandboxDep.reason}` : ''}` : 'unknown'],
            ]}
          />
        )}
        {canTasks && (
          <Domain
            title="Tasks"
            to="/tasks"
            health={(openEscalations?.totalCount ?? 0) > 0 || (t?.blocked.totalCount ?? 0) > 0 ? 'warn' : 'ok'}
            stat={t ? t.pending.totalCount + t.assigned.totalCount + t.inProgress.totalCount + t.blocked.totalCount + t.reviewing.totalCount + t.deploying.totalCount : undefined}
            unit="active"
            loading={tasks.fetching && !t}
            error={tasks.error ?? escalations.error}
            facts={[
              ...(canEscalations ? [['open escalations', openEscalations?.totalCount ?? 0] as [string, number]] : []),
              ['pending', t?.pending.totalCount ?? 0],
              ['assigned', t?.assigned.totalCount ?? 0],
              ['in progress', t?.inProgress.totalCount ?? 0],
              ['blocked', t?.blocked.totalCount ?? 0],
              ['reviewing', t?.reviewing.totalCount ?? 0],
              ['deploying', t?.deploying.totalCount ?? 0],
              ['failed', t?.failed.totalCount ?? 0],
              ['in all', t?.all.totalCount ?? 0],
            ]}
          />
        )}
      </div>
    </div>
  );
}

function Domain({
  title,
  to,
  health,
  stat,
  unit,
  facts,
  loading,
  error,
  note,
}: {
  title: string;
  to: string;
  health: Health;
  stat: number | undefined;
  unit: string;
  facts: [string, React.ReactNode][];
  loading: boolean;
  error: unknown;
  note?: string;
}) {
  const shown: Health = error ? 'bad' : health;
  return (
    <article className={`card domain domain-${shown}`} aria-label={title}>
      <header className="domain-head">
        <h2>
          <Link to={to}>{title}</Link>
        </h2>
        {!loading && <span className={`badge ${shown}`}>{error ? 'unreadable' : HEALTH_TEXT[shown]}</span>}
      </header>
      {loading ? (
        <p className="muted">Loading…</p>
      ) : (
        <p className="domain-stat">
          <data className="stat" value={stat ?? ''}>
            {stat == null ? '—' : fmt(stat)}
          </data>{' '}
          <span className="muted">{unit}</span>
        </p>
      )}
      <ErrorNote error={error} />
      {facts.length > 0 && (
        <dl className="domain-facts">
          {facts.map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>{typeof v === 'number' ? fmt(v) : v}</dd>
            </div>
          ))}
        </dl>
      )}
      {note && <p className="muted small">{note}</p>}
    </article>
  );
}

/** The budget feeds (every budget the caller may read); renders nothing. */
function BudgetFeed({
  onChanged,
  onThreshold,
  onError,
}: {
  onChanged: (e: OverviewBudgetChangedSubscription['budgetChanged']) => void;
  onThreshold: () => void;
  onError: (error: unknown) => void;
}) {
  const changed = useEvents(BUDGET_CHANGED, {}, (d) => onChanged(d.budgetChanged));
  const threshold = useEvents(BUDGET_THRESHOLD, {}, () => onThreshold());
  const error = changed ?? threshold;
  useEffect(() => {
    onError(error);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [error]);
  return null;
}
