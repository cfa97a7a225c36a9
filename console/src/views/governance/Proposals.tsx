// Learning updates, newest first: pending ones with their text diffed against the role's
// current prompt, and approve / reject for callers with `learning.approve`.
import { useEffect, useId, useRef } from 'react';
import { Link } from 'react-router-dom';
import { useMutation, useQuery } from 'urql';

import type { GovernanceUpdateFieldsFragment, LearningUpdateStatus } from '../../gql/graphql';
import { useCan, useSession } from '../../session';
import { Empty, ErrorNote, Pager, ReasonAction, Section, Time, useAction, usePager, useRefetchOnReconnect } from '../../ui';
import { ALL, PromptDiff, UpdateStatusBadge, useGovernanceParams, words } from './common';
import { APPROVE, CURRENT_PROMPT, REJECT, UPDATES } from './ops';

const STATUSES: LearningUpdateStatus[] = ['PENDING_APPROVAL', 'APPLIED', 'REJECTED', 'EXPIRED'];

export function Proposals({
  tick,
  roleTick,
  roles,
}: {
  tick: number;
  roleTick: (role: string) => number;
  roles: string[];
}) {
  const { role, status, search, set } = useGovernanceParams();
  // Another filter (from a link, or the browser's back button) starts again at page 1.
  const pager = usePager(10, `${role ?? ''}|${status}`);
  const statusId = useId();
  const roleId = useId();
  const [result, reexecute] = useQuery({
    query: UPDATES,
    variables: {
      filter: { status: status === ALL ? null : status, agentRole: role },
      first: pager.first,
      after: pager.after,
    },
  });
  const refetch = () => reexecute({ requestPolicy: 'network-only' });
  useRefetchOnReconnect(refetch);
  const firstTick = useRef(tick);
  useEffect(() => {
    // Every learning update event may add, decide or expire one shown here.
    if (tick !== firstTick.current) refetch();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tick]);

  const conn = result.data?.learningUpdates;
  const title = status === 'PENDING_APPROVAL' ? 'Pending approvals' : 'Learning updates';
  return (
    <Section title={title}>
      <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter learning updates">
        <label htmlFor={statusId}>
          Status
          <select
            id={statusId}
            value={status}
            onChange={(e) => set({ status: e.target.value === 'PENDING_APPROVAL' ? null : e.target.value })}
          >
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {words(s)}
              </option>
            ))}
            <option value={ALL}>any status</option>
          </select>
        </label>
        <label htmlFor={roleId}>
          Role
          <select
            id={roleId}
            value={role ?? ''}
            onChange={(e) => set({ role: e.target.value || null })}
          >
            <option value="">all roles</option>
            {(role && !roles.includes(role) ? [role, ...roles] : roles).map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        {conn && <span className="muted">{conn.totalCount} in all</span>}
      </form>
      <ErrorNote error={result.error} />
      {conn && conn.nodes.length === 0 && (
        <Empty>
          {status === 'PENDING_APPROVAL'
            ? 'Nothing waits for approval.'
            : 'No learning updates match.'}
        </Empty>
      )}
      <ul className="gov-updates" aria-label={title}>
        {conn?.nodes.map((u) => (
          <li key={u.id}>
            <UpdateCard update={u} tick={roleTick(u.agentRole)} onDecided={refetch} roleLink={search({ role: u.agentRole })} />
          </li>
        ))}
      </ul>
      {conn && <Pager pager={pager} pageInfo={conn.pageInfo} total={conn.totalCount} label={title} />}
    </Section>
  );
}

function UpdateCard({
  update: u,
  tick,
  onDecided,
  roleLink,
}: {
  update: GovernanceUpdateFieldsFragment;
  tick: number;
  onDecided: () => void;
  roleLink: string;
}) {
  const can = useCan();
  const session = useSession();
  const pending = u.status === 'PENDING_APPROVAL';
  const mine = session ? u.proposedBy === `user:${session.user.username}` : false;
  const approve = useAction();
  const reject = useAction();
  const [, approveMut] = useMutation(APPROVE);
  const [, rejectMut] = useMutation(REJECT);
  const headingId = useId();

  return (
    <article className="card gov-update" aria-labelledby={headingId} data-update-id={u.id}>
      <header className="gov-update-head">
        <h3 id={headingId}>
          <Link to={roleLink} title="Show this role's prompt and versions">
            {u.agentRole}
          </Link>{' '}
          <span className="muted">
            {u.kind === 'ROLLBACK' ? `rollback to version ${u.rollbackTo ?? '?'}` : 'prompt proposal'}
          </span>
        </h3>
        <UpdateStatusBadge status={u.status} />
      </header>
      <dl className="gov-facts">
        <div>
          <dt>Proposed by</dt>
          <dd>
            {u.proposedBy}
            {mine && <span className="muted"> (you)</span>}
          </dd>
        </div>
        <div>
          <dt>Proposed</dt>
          <dd>
            <Time at={u.createdAt} />
          </dd>
        </div>
        {pending && (
          <div>
            <dt>Expires</dt>
            <dd>
              <Time at={u.expiresAt} />
            </dd>
          </div>
        )}
        {u.decidedBy && (
          <div>
            <dt>{u.status === 'REJECTED' ? 'Rejected by' : 'Approved by'}</dt>
            <dd>
              {u.decidedBy} <Time at={u.decidedAt} />
            </dd>
          </div>
        )}
        {u.promptVersion != null && (
          <div>
            <dt>Became</dt>
            <dd>version {u.promptVersion}</dd>
          </div>
        )}
        {u.taskId && (
          <div>
            <dt>Task</dt>
            <dd className="mono">{u.taskId}</dd>
          </div>
        )}
        {u.agentId && (
          <div>
            <dt>Agent</dt>
            <dd className="mono">{u.agentId}</dd>
          </div>
        )}
      </dl>
      <p className="gov-rationale">
        <span className="muted">{u.kind === 'ROLLBACK' ? 'Reason: ' : 'Rationale: '}</span>
        {u.rationale}
      </p>
      {u.decisionNote && (
        <p className="gov-rationale">
          <span className="muted">{u.status === 'REJECTED' ? 'Rejection reason: ' : 'Approval note: '}</span>
          {u.decisionNote}
        </p>
      )}
      {pending ? (
        <CurrentDiff role={u.agentRole} proposed={u.promptUpdate} tick={tick} />
      ) : (
        <details>
          <summary>Prompt text</summary>
          <pre>{u.promptUpdate}</pre>
        </details>
      )}
      {pending && can('learning.approve') && (
        <div className="row gov-actions">
          {mine && (
            <p className="muted gov-mine">You proposed this: another person has to approve it.</p>
          )}
          <ReasonAction
            label="Approve"
            prompt="Approval note (optional)"
            optional
            onSubmit={async (note) => {
              reject.clear();
              const done = await approve.run(approveMut({ id: u.id, note: note || null }));
              if (done) onDecided();
            }}
          />
          <ReasonAction
            label="Reject"
            prompt="Why reject it"
            danger
            onSubmit={async (reason) => {
              approve.clear();
              const done = await reject.run(rejectMut({ id: u.id, reason }));
              if (done) onDecided();
            }}
          />
        </div>
      )}
      <ErrorNote error={approve.error} />
      <ErrorNote error={reject.error} />
    </article>
  );
}

/** The pending text against the role's current prompt (re-read when the role changes). */
function CurrentDiff({ role, proposed, tick }: { role: string; proposed: string; tick: number }) {
  const [result, reexecute] = useQuery({ query: CURRENT_PROMPT, variables: { agentRole: role } });
  const refetch = () => reexecute({ requestPolicy: 'network-only' });
  useRefetchOnReconnect(refetch);
  const firstTick = useRef(tick);
  useEffect(() => {
    // Another approval may have made a new current version since this was read.
    if (tick !== firstTick.current) refetch();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tick]);
  if (result.error) return <ErrorNote error={result.error} />;
  if (!result.data) return <p className="muted">Reading the current prompt…</p>;
  const current = result.data.currentPrompt;
  return (
    <PromptDiff
      from={current?.text ?? null}
      to={proposed}
      label={current ? `Changes against version ${current.version}` : 'No current prompt yet: all of it is new'}
    />
  );
}
