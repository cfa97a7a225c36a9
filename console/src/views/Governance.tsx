// Governance of self-learning agents: each role's status and rule, the learning updates
// waiting for approval (diffed against the role's current prompt) and the role's prompt
// versions. Live: `governanceStatusChanged` replaces a role's status as it changes, and every
// `learningUpdateChanged` event re-reads the proposals and versions shown.
import { useMemo } from 'react';
import { Link } from 'react-router-dom';
import { useQuery, useSubscription } from 'urql';

import type { GovernanceStatusFieldsFragment } from '../gql/graphql';
import { Empty, ErrorNote, LiveBadge, Section, Time, useRefetchOnReconnect } from '../ui';
import { StateBadge, hours, useGovernanceParams } from './governance/common';
import { ROLES, STATUS_CHANGED, UPDATE_CHANGED } from './governance/ops';
import { Proposals } from './governance/Proposals';
import { RoleDetail } from './governance/RoleDetail';
import './Governance.css';

type StatusMap = Record<string, GovernanceStatusFieldsFragment>;
interface Ticks {
  all: number;
  byRole: Record<string, number>;
}

export function Governance() {
  const { role, search } = useGovernanceParams();
  const [roles, reexecuteRoles] = useQuery({ query: ROLES });
  const refetchRoles = () => reexecuteRoles({ requestPolicy: 'network-only' });
  useRefetchOnReconnect(refetchRoles);

  // Each event bumps a count, overall and for its role: the proposals list re-reads on every
  // bump, a role's current prompt and versions only on its own.
  const [updates] = useSubscription({ query: UPDATE_CHANGED }, (prev: Ticks | undefined, event): Ticks => {
    const r = event.learningUpdateChanged.update.agentRole;
    const all = (prev?.all ?? 0) + 1;
    return { all, byRole: { ...prev?.byRole, [r]: all } };
  });
  const tick = updates.data?.all ?? 0;
  const roleTick = (r: string) => updates.data?.byRole[r] ?? 0;

  // The latest status per role as the server announced it.
  const [statusFeed] = useSubscription(
    { query: STATUS_CHANGED },
    (prev: StatusMap | undefined, event) => {
      const s = event.governanceStatusChanged.status;
      return { ...prev, [s.agentRole]: s };
    },
  );

  const statuses = useMemo(() => {
    const byRole: StatusMap = {};
    for (const s of roles.data?.governanceStatus ?? []) byRole[s.agentRole] = s;
    // A live status replaces the one read unless the read is newer (read after a reconnect).
    for (const [r, s] of Object.entries(statusFeed.data ?? {})) {
      const read = byRole[r];
      if (!read || Date.parse(s.at) >= Date.parse(read.at)) byRole[r] = s;
    }
    return byRole;
  }, [roles.data, statusFeed.data]);

  const rules = roles.data?.governanceRules ?? [];
  const roleNames = useMemo(() => {
    const names = new Set([...rules.map((r) => r.agentRole), ...Object.keys(statuses)]);
    return [...names].sort();
  }, [rules, statuses]);
  const ruleOf = (r: string) => statuses[r]?.rule ?? rules.find((x) => x.agentRole === r);

  return (
    <div className="governance">
      <div className="panel-head">
        <h1>Governance</h1>
        <LiveBadge fetching={updates.fetching && statusFeed.fetching} error={updates.error ?? statusFeed.error} />
      </div>
      <ErrorNote error={updates.error ?? statusFeed.error} />

      <Section title="Roles">
        <ErrorNote error={roles.error} />
        {roles.data && roleNames.length === 0 && <Empty>No role has a rule yet.</Empty>}
        {roleNames.length > 0 && (
          <div className="table-wrap gov-roles">
            <table aria-label="Roles">
              <thead>
                <tr>
                  <th scope="col">Role</th>
                  <th scope="col">Status</th>
                  <th scope="col">Applied / day</th>
                  <th scope="col">Cooldown</th>
                  <th scope="col">Approval</th>
                  <th scope="col">Pending</th>
                  <th scope="col">Version</th>
                  <th scope="col">Next update</th>
                </tr>
              </thead>
              <tbody>
                {roleNames.map((r) => {
                  const s = statuses[r];
                  const rule = ruleOf(r);
                  return (
                    <tr key={r} className={r === role ? 'selected' : undefined} data-role={r}>
                      <th scope="row">
                        <Link to={search({ role: r === role ? null : r })} aria-current={r === role ? 'true' : undefined}>
                          {r}
                        </Link>
                      </th>
                      <td>{s ? <StateBadge state={s.status} /> : '—'}</td>
                      <td>
                        {s ? s.updatesInWindow : '—'} / {rule?.maxUpdatesPerDay ?? '—'}
                      </td>
                      <td>
                        {rule ? hours(rule.cooldownHours) : '—'}
                        {s?.cooldownEndsAt && (
                          <div className="muted">
                            until <Time at={s.cooldownEndsAt} />
                          </div>
                        )}
                      </td>
                      <td>{rule ? (rule.requireApproval ? 'required' : 'no') : '—'}</td>
                      <td>{s?.pendingApprovals ? <strong>{s.pendingApprovals}</strong> : (s?.pendingApprovals ?? '—')}</td>
                      <td>{s?.currentVersion ?? <span className="muted">none</span>}</td>
                      <td>
                        {!s ? '—' : s.nextAllowedAt ? <Time at={s.nextAllowedAt} /> : s.rule.maxUpdatesPerDay > 0 ? 'now' : 'never'}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </Section>

      <div className="cols">
        <Proposals tick={tick} roleTick={roleTick} roles={roleNames} />
        {role ? (
          <RoleDetail
            key={role}
            role={role}
            status={statuses[role]}
            rule={rules.find((x) => x.agentRole === role)}
            tick={roleTick(role)}
            onRuleSaved={refetchRoles}
          />
        ) : (
          <Section title="Role">
            <p className="muted">Choose a role to see its rule, current prompt and prompt versions.</p>
          </Section>
        )}
      </div>
    </div>
  );
}
