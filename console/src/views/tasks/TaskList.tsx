// Tasks, oldest first (the API's order), filtered by state, with their open escalations.
import { useId } from 'react';
import { Link } from 'react-router-dom';
import { useQuery } from 'urql';

import type { TaskState } from '../../gql/graphql';
import { Empty, ErrorNote, Pager, Section, Time, usePager, useRefetchOnReconnect } from '../../ui';
import { ANY, StateBadge, TASK_STATES, useRefetchOn, useTasksParams, words } from './common';
import { TASKS } from './ops';

export function TaskList({ signal }: { signal: number }) {
  const { task: selected, state, search, set } = useTasksParams();
  // Another filter (from a link, or the browser's back button) starts again at page 1.
  const pager = usePager(20, state);
  const stateId = useId();
  const [result, reexecute] = useQuery({
    query: TASKS,
    variables: { first: pager.first, after: pager.after, state: state === ANY ? null : (state as TaskState) },
  });
  const refetch = () => reexecute({ requestPolicy: 'network-only' });
  useRefetchOnReconnect(refetch);
  useRefetchOn(signal, refetch);
  const conn = result.data?.tasks;

  return (
    <Section title="Tasks">
      <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter tasks">
        <label htmlFor={stateId}>
          State
          <select
            id={stateId}
            value={state}
            onChange={(e) => set({ state: e.target.value === ANY ? null : e.target.value })}
          >
            <option value={ANY}>any state</option>
            {TASK_STATES.map((s) => (
              <option key={s} value={s}>
                {words(s)}
              </option>
            ))}
          </select>
        </label>
        {conn && (
          <span className="muted" data-testid="tasks-total">
            {conn.totalCount} in all
          </span>
        )}
      </form>
      <ErrorNote error={result.error} />
      {conn && conn.nodes.length === 0 && <Empty>No tasks match.</Empty>}
      {conn && conn.nodes.length > 0 && (
        <div className="table-wrap">
          <table aria-label="Tasks">
            <thead>
              <tr>
                <th scope="col">Title</th>
                <th scope="col">State</th>
                <th scope="col">Priority</th>
                <th scope="col">Assignee</th>
                <th scope="col">Open escalations</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {conn.nodes.map((t) => {
                const open = t.escalations.filter((e) => e.status === 'OPEN').length;
                return (
                  <tr key={t.id} className={t.id === selected ? 'selected' : undefined} data-task-id={t.id}>
                    <td className="tasks-title">
                      <Link to={search({ task: t.id })} aria-current={t.id === selected ? 'true' : undefined}>
                        {t.title}
                      </Link>
                    </td>
                    <td>
                      <StateBadge state={t.state} />
                    </td>
                    <td>{t.priority}</td>
                    <td>{t.assignee?.name ?? <span className="muted">unassigned</span>}</td>
                    <td>{open > 0 ? <span className="badge bad">{open}</span> : <span className="muted">0</span>}</td>
                    <td>
                      <Time at={t.updatedAt} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {conn && <Pager pager={pager} pageInfo={conn.pageInfo} total={conn.totalCount} label="Tasks" />}
    </Section>
  );
}
