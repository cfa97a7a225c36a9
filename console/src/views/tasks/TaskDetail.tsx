// One task: its facts, assignee, escalations (resolvable), the latest result of each quality
// gate and the remediation plan being worked on.
import { useEffect, useId, useRef } from 'react';
import { useQuery } from 'urql';

import { Empty, ErrorNote, Time, useRefetchOnReconnect } from '../../ui';
import { EscalationBadge, SeverityBadge, StateBadge, useRefetchOn, useTasksParams, words } from './common';
import { ResolveEscalation } from './Escalations';
import { TASK } from './ops';

export function TaskDetail({ id, signal }: { id: string; signal: number }) {
  const { set } = useTasksParams();
  const [result, reexecute] = useQuery({ query: TASK, variables: { id } });
  const refetch = () => reexecute({ requestPolicy: 'network-only' });
  useRefetchOnReconnect(refetch);
  useRefetchOn(signal, refetch);
  const headingId = useId();
  const heading = useRef<HTMLHeadingElement>(null);
  const t = result.data?.task;

  // A task chosen from a list comes into view (on a narrow screen the detail sits above the
  // lists) and takes the focus, so keyboard and screen reader users land on it.
  const loaded = !!t;
  useEffect(() => {
    if (!loaded) return;
    heading.current?.scrollIntoView({ block: 'nearest' });
    heading.current?.focus({ preventScroll: true });
  }, [id, loaded]);

  return (
    <section className="panel tasks-detail" aria-labelledby={headingId}>
      <header className="panel-head">
        <h2 id={headingId} ref={heading} tabIndex={-1}>
          {t ? t.title : 'Task'}
        </h2>
        <button type="button" onClick={() => set({ task: null })}>
          Close
        </button>
      </header>
      <ErrorNote error={result.error} />
      {!t && !result.error && <p className="muted">Loading…</p>}
      {t && (
        <>
          <dl className="tasks-facts">
            <div>
              <dt>State</dt>
              <dd>
                <StateBadge state={t.state} />
              </dd>
            </div>
            <div>
              <dt>Priority</dt>
              <dd>{t.priority}</dd>
            </div>
            <div>
              <dt>Assignee</dt>
              <dd>
                {t.assignee ? (
                  <>
                    {t.assignee.name} <span className="muted">({t.assignee.role}, {words(t.assignee.status)})</span>
                  </>
                ) : (
                  <span className="muted">unassigned</span>
                )}
              </dd>
            </div>
            <div>
              <dt>Created by</dt>
              <dd>{t.createdBy}</dd>
            </div>
            {t.tenantId && (
              <div>
                <dt>Tenant</dt>
                <dd>{t.tenantId}</dd>
              </div>
            )}
            <div>
              <dt>Created</dt>
              <dd>
                <Time at={t.createdAt} />
              </dd>
            </div>
            <div>
              <dt>Updated</dt>
              <dd>
                <Time at={t.updatedAt} />
              </dd>
            </div>
            <div>
              <dt>Id</dt>
              <dd className="mono">{t.id}</dd>
            </div>
          </dl>
          {t.description && <p className="tasks-description">{t.description}</p>}

          <h3>Escalations</h3>
          {t.escalations.length === 0 && <Empty>None raised.</Empty>}
          <ul className="tasks-escalations" aria-label="Escalations of this task">
            {t.escalations.map((e) => (
              <li key={e.id} className="card" data-escalation-id={e.id}>
                <div className="row">
                  <EscalationBadge status={e.status} />
                  <SeverityBadge severity={e.severity} />
                  {e.pattern && <span className="muted">{words(e.pattern)}</span>}
                  <span className="muted">
                    raised by {e.agent ? `agent ${e.agent.name}` : e.createdBy} <Time at={e.createdAt} />
                  </span>
                </div>
                <p className="tasks-reason">{e.reason}</p>
                {e.suggestedFix && (
                  <p className="tasks-reason">
                    <span className="muted">Suggested: </span>
                    {e.suggestedFix}
                  </p>
                )}
                {e.status === 'RESOLVED' ? (
                  <p className="tasks-reason tasks-resolution">
                    <span className="muted">Resolved by {e.resolvedBy ?? 'someone'} <Time at={e.resolvedAt} />: </span>
                    {e.resolution}
                  </p>
                ) : (
                  <ResolveEscalation id={e.id} onResolved={refetch} />
                )}
              </li>
            ))}
          </ul>

          <h3>Quality gates</h3>
          {t.gateResults.length === 0 ? (
            <Empty>No gate has reported or refused a move.</Empty>
          ) : (
            <div className="table-wrap">
              <table aria-label="Gate results">
                <thead>
                  <tr>
                    <th scope="col">Gate</th>
                    <th scope="col">Result</th>
                    <th scope="col">Detail</th>
                    <th scope="col">Reported</th>
                    <th scope="col">Refusals in a row</th>
                  </tr>
                </thead>
                <tbody>
                  {t.gateResults.map((g) => (
                    <tr key={g.gate}>
                      <th scope="row" className="mono">
                        {g.gate}
                      </th>
                      <td>
                        {g.passed == null ? (
                          <span className="badge">not reported</span>
                        ) : g.passed ? (
                          <span className="badge ok">passed</span>
                        ) : (
                          <span className="badge bad">failed</span>
                        )}
                      </td>
                      <td className="tasks-reason">{g.detail ?? <span className="muted">—</span>}</td>
                      <td>
                        {g.reportedBy ?? <span className="muted">—</span>} {g.reportedAt && <Time at={g.reportedAt} />}
                      </td>
                      <td>{g.refusalsInARow}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}

          {t.remediationPlan && (
            <>
              <h3>Remediation plan</h3>
              <p>
                <span className={`badge ${t.remediationPlan.status === 'ACTIVE' ? 'warn' : 'ok'}`}>
                  {words(t.remediationPlan.status)}
                </span>{' '}
                towards <StateBadge state={t.remediationPlan.targetState} />{' '}
                <span className="muted">
                  written by {t.remediationPlan.createdBy} <Time at={t.remediationPlan.createdAt} />
                  {t.remediationPlan.closedAt && (
                    <>
                      , closed <Time at={t.remediationPlan.closedAt} />
                    </>
                  )}
                </span>
              </p>
              <div className="table-wrap">
                <table aria-label="Remediation actions">
                  <thead>
                    <tr>
                      <th scope="col">Priority</th>
                      <th scope="col">Action</th>
                      <th scope="col">Gate</th>
                      <th scope="col">For role</th>
                      <th scope="col">Why</th>
                      <th scope="col">Status</th>
                    </tr>
                  </thead>
                  <tbody>
                    {t.remediationPlan.actions.map((a) => (
                      <tr key={a.id}>
                        <td>{a.priority}</td>
                        <td>{words(a.actionType)}</td>
                        <td className="mono">{a.gate}</td>
                        <td>{a.agentRole}</td>
                        <td className="tasks-reason">{a.reason}</td>
                        <td>
                          <span className={`badge ${a.status === 'DONE' ? 'ok' : 'warn'}`}>{words(a.status)}</span>
                          {a.doneBy && (
                            <div className="muted">
                              {a.doneBy} <Time at={a.doneAt} />
                            </div>
                          )}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          )}
        </>
      )}
    </section>
  );
}
