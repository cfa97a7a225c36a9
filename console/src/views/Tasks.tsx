// Tasks and escalations: both lists (filtered, paginated), the detail of a chosen task and
// what changed since the page opened. Live: one `taskChanged` subscription; its events feed
// the activity list and re-read the lists and the open task (escalations are announced on
// their task as ESCALATED / ESCALATION_RESOLVED).
import { Link } from 'react-router-dom';
import { useSubscription } from 'urql';

import type { TaskEventKind, TasksChangedSubscription } from '../gql/graphql';
import { useCan } from '../session';
import { Empty, ErrorNote, LiveBadge, Section, Time } from '../ui';
import { StateBadge, useTasksParams, words } from './tasks/common';
import { Escalations } from './tasks/Escalations';
import { TaskDetail } from './tasks/TaskDetail';
import { TaskList } from './tasks/TaskList';
import { TASK_CHANGED } from './tasks/ops';
import './Tasks.css';

type Event = TasksChangedSubscription['taskChanged'] & { seq: number };

interface Feed {
  /** Every event so far. */
  all: number;
  /** Events that changed an escalation or a task state (what the escalation list shows). */
  escalations: number;
  /** The latest event count per task id, so an open task re-reads only on its own events. */
  byTask: Record<string, number>;
  /** The newest events first, kept short. */
  recent: Event[];
}

const FEED_LENGTH = 30;
const ESCALATION_KINDS: TaskEventKind[] = ['ESCALATED', 'ESCALATION_RESOLVED', 'STATE_CHANGED'];

export function Tasks() {
  const can = useCan();
  const { task } = useTasksParams();
  const [feed] = useSubscription({ query: TASK_CHANGED }, (prev: Feed | undefined, data): Feed => {
    const p = prev ?? { all: 0, escalations: 0, byTask: {}, recent: [] };
    const e = data.taskChanged;
    const seq = p.all + 1;
    return {
      all: seq,
      escalations: p.escalations + (ESCALATION_KINDS.includes(e.kind) ? 1 : 0),
      byTask: { ...p.byTask, [e.task.id]: seq },
      recent: [{ ...e, seq }, ...p.recent].slice(0, FEED_LENGTH),
    };
  });
  const f = feed.data;

  return (
    <div className="tasks">
      <div className="panel-head">
        <h1>Tasks and escalations</h1>
        <LiveBadge fetching={feed.fetching} error={feed.error} />
      </div>
      <ErrorNote error={feed.error} />
      <div className="tasks-layout">
        <div className="tasks-lists">
          <TaskList signal={f?.all ?? 0} />
          {can('escalation.view') && <Escalations signal={f?.escalations ?? 0} />}
        </div>
        {task && (
          <div className="tasks-open">
            <TaskDetail key={task} id={task} signal={f?.byTask[task] ?? 0} />
          </div>
        )}
        <div className="tasks-feed">
          <Activity events={f?.recent ?? []} />
        </div>
      </div>
    </div>
  );
}

/** What changed since the page opened, newest first: new tasks show here at once. */
function Activity({ events }: { events: Event[] }) {
  const { search } = useTasksParams();
  return (
    <Section title="Live activity">
      {events.length === 0 && <Empty>Nothing changed since this page opened.</Empty>}
      <ol className="tasks-activity" aria-label="Task changes, newest first">
        {events.map((e) => (
          <li key={e.seq} data-task-id={e.task.id} data-kind={e.kind}>
            <span className="tasks-kind">{words(e.kind)}</span>{' '}
            <Link to={search({ task: e.task.id })}>{e.task.title}</Link> <StateBadge state={e.task.state} />{' '}
            <span className="muted">
              <Time at={e.task.updatedAt} />
            </span>
          </li>
        ))}
      </ol>
    </Section>
  );
}
