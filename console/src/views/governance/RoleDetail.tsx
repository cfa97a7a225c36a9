// One role: its status and rule (changeable with `learning.configure`), its current prompt,
// and its prompt versions, newest first, with rollback to an earlier one.
import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { useMutation, useQuery } from 'urql';

import type { GovernanceRuleFieldsFragment, GovernanceStatusFieldsFragment } from '../../gql/graphql';
import { useCan } from '../../session';
import {
  Empty,
  ErrorNote,
  newRequestId,
  Pager,
  ReasonAction,
  Section,
  Time,
  useAction,
  usePager,
  useRefetchOnReconnect,
} from '../../ui';
import { StateBadge, hours, useGovernanceParams } from './common';
import { CONFIGURE_RULE, CURRENT_PROMPT, ROLLBACK, VERSIONS } from './ops';

export function RoleDetail({
  role,
  status,
  rule,
  tick,
  onRuleSaved,
}: {
  role: string;
  status?: GovernanceStatusFieldsFragment;
  rule?: GovernanceRuleFieldsFragment;
  tick: number;
  onRuleSaved: () => void;
}) {
  const { set } = useGovernanceParams();
  const can = useCan();
  const shownRule = status?.rule ?? rule;
  return (
    <Section
      title={`Role ${role}`}
      actions={
        <button type="button" onClick={() => set({ role: null })}>
          Close
        </button>
      }
    >
      {status ? (
        <dl className="gov-facts">
          <div>
            <dt>Now</dt>
            <dd>
              <StateBadge state={status.status} />
            </dd>
          </div>
          <div>
            <dt>Applied in 24 h</dt>
            <dd>
              {status.updatesInWindow} ({status.remainingUpdates} left)
            </dd>
          </div>
          <div>
            <dt>Pending</dt>
            <dd>{status.pendingApprovals}</dd>
          </div>
          <div>
            <dt>Next allowed</dt>
            <dd>{status.nextAllowedAt ? <Time at={status.nextAllowedAt} /> : 'now'}</dd>
          </div>
          {status.cooldownEndsAt && (
            <div>
              <dt>Cooldown ends</dt>
              <dd>
                <Time at={status.cooldownEndsAt} />
              </dd>
            </div>
          )}
          <div>
            <dt>As of</dt>
            <dd>
              <Time at={status.at} />
            </dd>
          </div>
        </dl>
      ) : (
        <p className="muted">No rule is stored for this role yet: it starts from the seeded defaults.</p>
      )}
      {shownRule && (
        <>
          <h3>Rule (version {shownRule.version})</h3>
          <dl className="gov-facts">
            <div>
              <dt>Updates a day</dt>
              <dd>{shownRule.maxUpdatesPerDay}</dd>
            </div>
            <div>
              <dt>Cooldown</dt>
              <dd>{hours(shownRule.cooldownHours)}</dd>
            </div>
            <div>
              <dt>Approval</dt>
              <dd>{shownRule.requireApproval ? 'required' : 'not required'}</dd>
            </div>
            <div>
              <dt>Proposals expire after</dt>
              <dd>{hours(shownRule.approvalExpiryHours)}</dd>
            </div>
            <div>
              <dt>Changed by</dt>
              <dd>
                {shownRule.updatedBy} <Time at={shownRule.updatedAt} />
              </dd>
            </div>
          </dl>
          {can('learning.configure') && <RuleForm rule={shownRule} onSaved={onRuleSaved} />}
        </>
      )}
      <CurrentPrompt role={role} tick={tick} />
      <Versions role={role} tick={tick} currentVersion={status?.currentVersion ?? null} />
    </Section>
  );
}

/** Re-reads when a learning update event arrives (`tick`) or the socket reconnects. */
function useLiveRefetch(tick: number, refetch: () => void) {
  useRefetchOnReconnect(refetch);
  const first = useRef(tick);
  useEffect(() => {
    if (tick !== first.current) refetch();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tick]);
}

function CurrentPrompt({ role, tick }: { role: string; tick: number }) {
  const [result, reexecute] = useQuery({ query: CURRENT_PROMPT, variables: { agentRole: role } });
  useLiveRefetch(tick, () => reexecute({ requestPolicy: 'network-only' }));
  const current = result.data?.currentPrompt;
  return (
    <>
      <h3>Current prompt{current && <> (version {current.version})</>}</h3>
      <ErrorNote error={result.error} />
      {result.data && !current && <Empty>No prompt yet: the first applied update makes version 1.</Empty>}
      {current && <pre aria-label={`Current prompt of ${role}`}>{current.text}</pre>}
    </>
  );
}

function Versions({ role, tick, currentVersion }: { role: string; tick: number; currentVersion: number | null }) {
  const can = useCan();
  const pager = usePager(10);
  const [result, reexecute] = useQuery({
    query: VERSIONS,
    variables: { agentRole: role, first: pager.first, after: pager.after },
  });
  const refetch = () => reexecute({ requestPolicy: 'network-only' });
  useLiveRefetch(tick, refetch);
  const [, rollbackMut] = useMutation(ROLLBACK);
  const rollback = useAction();
  const [outcome, setOutcome] = useState<string | null>(null);
  const conn = result.data?.promptVersions;
  // The newest version on the first page is the current one (the status may lag behind).
  const current = currentVersion ?? (pager.page === 1 ? conn?.nodes[0]?.version : undefined);
  const total = conn?.totalCount;

  return (
    <>
      <h3>Prompt versions{total != null && <span className="muted"> · {total} in all</span>}</h3>
      <ErrorNote error={result.error} />
      {conn && conn.nodes.length === 0 && <Empty>No versions yet.</Empty>}
      {outcome && (
        <p className="notice" role="status">
          {outcome}
        </p>
      )}
      <ErrorNote error={rollback.error} />
      {conn && conn.nodes.length > 0 && (
        <ol className="gov-versions" aria-label={`Prompt versions of ${role}`}>
          {conn.nodes.map((v) => (
            <li key={v.version} data-version={v.version} className={v.version === current ? 'gov-version current' : 'gov-version'}>
              <div className="gov-version-head">
                <strong>Version {v.version}</strong>
                {v.version === current && <span className="badge ok">current</span>}
                {v.rollbackOf != null && <span className="muted">rollback of {v.rollbackOf}</span>}
                <span className="muted">
                  <Time at={v.createdAt} />
                </span>
              </div>
              <dl className="gov-facts">
                <div>
                  <dt>Proposed by</dt>
                  <dd>{v.proposedBy}</dd>
                </div>
                <div>
                  <dt>Approved by</dt>
                  <dd>{v.approvedBy ?? <span className="muted">no approval needed</span>}</dd>
                </div>
              </dl>
              <details>
                <summary>{preview(v.text)}</summary>
                <pre>{v.text}</pre>
              </details>
              {can('learning.configure') && v.version !== current && (
                <div className="gov-actions">
                  <ReasonAction
                    label={`Roll back to ${v.version}`}
                    prompt="Why roll back"
                    danger
                    onSubmit={async (reason) => {
                      setOutcome(null);
                      const data = await rollback.run(
                        rollbackMut({
                          agentRole: role,
                          version: v.version,
                          reason,
                          requestId: newRequestId(),
                        }),
                      );
                      const u = data?.rollbackPrompt;
                      if (!u) return;
                      setOutcome(
                        u.status === 'APPLIED'
                          ? `Version ${v.version}'s text is current again, as version ${u.promptVersion}.`
                          : `The rollback to version ${v.version} waits for another person's approval.`,
                      );
                      refetch();
                    }}
                  />
                </div>
              )}
            </li>
          ))}
        </ol>
      )}
      {conn && <Pager pager={pager} pageInfo={conn.pageInfo} total={total} label="Prompt versions" />}
    </>
  );
}

function preview(text: string): string {
  const line = text.trim().split('\n')[0] ?? '';
  return line.length > 70 ? `${line.slice(0, 70)}…` : line || '(empty)';
}

/** Changes the role's rule; the server checks every bound and names a refused field. */
function RuleForm({ rule, onSaved }: { rule: GovernanceRuleFieldsFragment; onSaved: () => void }) {
  const [open, setOpen] = useState(false);
  const [max, setMax] = useState(String(rule.maxUpdatesPerDay));
  const [cooldown, setCooldown] = useState(String(rule.cooldownHours));
  const [approval, setApproval] = useState(rule.requireApproval);
  const [expiry, setExpiry] = useState(String(rule.approvalExpiryHours));
  const [busy, setBusy] = useState(false);
  const action = useAction();
  const [, configure] = useMutation(CONFIGURE_RULE);
  const ids = { max: useId(), cooldown: useId(), approval: useId(), expiry: useId() };

  // A rule changed elsewhere (another person, live) resets the form to what is stored.
  useEffect(() => {
    setMax(String(rule.maxUpdatesPerDay));
    setCooldown(String(rule.cooldownHours));
    setApproval(rule.requireApproval);
    setExpiry(String(rule.approvalExpiryHours));
  }, [rule.version, rule.maxUpdatesPerDay, rule.cooldownHours, rule.requireApproval, rule.approvalExpiryHours]);

  if (!open) {
    return (
      <button type="button" onClick={() => setOpen(true)}>
        Change rule
      </button>
    );
  }
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    try {
      const done = await action.run(
        configure({
          input: {
            agentRole: rule.agentRole,
            maxUpdatesPerDay: Number(max),
            cooldownHours: Number(cooldown),
            requireApproval: approval,
            approvalExpiryHours: Number(expiry),
          },
        }),
      );
      if (done) {
        setOpen(false);
        onSaved();
      }
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="inline gov-rule-form" onSubmit={submit} aria-label={`Rule of ${rule.agentRole}`}>
      <label htmlFor={ids.max}>
        Updates a day (0–1000)
        <input id={ids.max} type="number" min={0} max={1000} step={1} required value={max} onChange={(e) => setMax(e.target.value)} />
      </label>
      <label htmlFor={ids.cooldown}>
        Cooldown hours
        <input id={ids.cooldown} type="number" min={0} max={8760} step="any" required value={cooldown} onChange={(e) => setCooldown(e.target.value)} />
      </label>
      <label htmlFor={ids.expiry}>
        Proposals expire after (hours)
        <input id={ids.expiry} type="number" min={0} max={720} step="any" required value={expiry} onChange={(e) => setExpiry(e.target.value)} />
      </label>
      <label htmlFor={ids.approval} className="gov-check">
        <span>
          <input id={ids.approval} type="checkbox" checked={approval} onChange={(e) => setApproval(e.target.checked)} /> Require
          approval
        </span>
      </label>
      <button type="submit" disabled={busy}>
        Save rule
      </button>
      <button type="button" onClick={() => { action.clear(); setOpen(false); }}>
        Cancel
      </button>
      <ErrorNote error={action.error} />
    </form>
  );
}
