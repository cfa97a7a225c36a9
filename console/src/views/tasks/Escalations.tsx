// Escalations, oldest first, filtered by status, each resolvable with a resolution text by a
// caller with `escalation.resolve`.
import { useId } from 'react';
import { Link } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';

import { useCan } from '../../session';
import { Empty, ErrorNote, Pager, ReasonAction, Section, Time, useAction, usePager, useRefetchOnReconnect } from '../../ui';
import { ANY, EscalationBadge, SeverityBadge, StateBadge, useRefetchOn, useTasksParams, words } from './common';
import { ESCALATIONS, RESOLVE } from './ops';

/** Resolve button and the refusal, if the server refuses. */
export function ResolveEscalation({ id, onResolved }: { id: string; onResolved: () => void }) {
  const can = useCan();
  const action = useAction();
  const [, resolve] = useMutation(RESOLVE);
  if (!can('escalation.resolve')) return null;
  return (
    <div className="tasks-resolve">
      <ReasonAction
        label="Resolve"
        prompt="Resolution"
        onSubmit={async (resolution) => {
          const done = await action.run(resolve({ id, resolution }));
          if (done) onResolved();
        }}
      />
      <ErrorNote error={action.error} />
    </div>
  );
}

export function Escalations({ signal }: { signal: number }) {
  const { escalations: status, search, set } = useTasksParams();
  // Another filter (from a link, or the browser's back button) starts again at page 1.
  const pager = usePager(10, status);
  const statusId = useId();
  const [result, reexecute] = useQuery({
    query: ESCALATIONS,
    variables: { first: pager.first, after: pager.after, status: status === ANY ? null : status },
  });
  const refetch = () => reexecute({ requestPolicy: 'network-only' });
  useRefetchOnReconnect(refetch);
  useRefetchOn(signal, refetch);
  const conn = result.data?.escalations;

  return (
    <Section title="Escalations">
      <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter escalations">
        <label htmlFor={statusId}>
          Status
          <select
            id={statusId}
            value={status}
            onChange={(e) => set({ escalations: e.target.value === 'OPEN' ? null : e.target.value })}
          >
            <option value="OPEN">open</option>
            <option value="RESOLVED">resolved</option>
            <option value={ANY}>any status</option>
          </select>
        </label>
        {conn && (
          <span className="muted" data-testid="escalations-total">
            {conn.totalCount} in all
          </span>
        )}
      </form>
      <ErrorNote error={result.error} />
      {conn && conn.nodes.length === 0 && (
        <Empty>{status === 'OPEN' ? 'No escalation is open.' : 'No escalations match.'}</Empty>
      )}
      {conn && conn.nodes.length > 0 && (
        <div className="table-wrap">
          <table aria-label="Escalations">
            <thead>
              <tr>
                <th scope="col">Task</th>
                <th scope="col">Severity</th>
                <th scope="col">Reason</th>
                <th scope="col">Raised</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {conn.nodes.map((e) => (
                <tr key={e.id} data-escalation-id={e.id}>
                  <td>
                    {e.task ? (
                      <>
                        <Link to={search({ task: e.task.id })}>{e.task.title}</Link>
                        <div>
                          <StateBadge state={e.task.state} />
                        </div>
                      </>
                    ) : (
                      <span className="muted">task not visible</span>
                    )}
                  </td>
                  <td>
                    <SeverityBadge severity={e.severity} />
                    {e.pattern && <div className="muted">{words(e.pattern)}</div>}
                  </td>
                  <td className="tasks-reason">{e.reason}</td>
                  <td>
                    <Time at={e.createdAt} />
                    <div className="muted">{e.agent ? `agent ${e.agent.name}` : e.createdBy}</div>
                  </td>
                  <td>
                    <EscalationBadge status={e.status} />
                    {e.resolution && (
                      <div className="tasks-reason">
                        {e.resolution} <span className="muted">({e.resolvedBy})</span>
                      </div>
                    )}
                    {e.status === 'OPEN' && <ResolveEscalation id={e.id} onResolved={refetch} />}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {conn && <Pager pager={pager} pageInfo={conn.pageInfo} total={conn.totalCount} label="Escalations" />}
    </Section>
  );
}
