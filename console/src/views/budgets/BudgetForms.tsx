// Creating and changing budgets (`budget.configure`): the forms only collect values; every
// rule (identifier lengths, the limit's range, thresholds 1-100, a total under what is spent)
// is the server's, and its refusal is shown with its code.
import { useState, type FormEvent } from 'react';
import { useMutation } from 'urql';

import { graphql } from '../../gql';
import type { BudgetPeriod } from '../../gql/graphql';
import { ErrorNote, useAction } from '../../ui';

const CREATE = graphql(`
  mutation BudgetsCreate($input: CreateBudgetInput!) {
    createBudget(input: $input) { id tenantId projectId }
  }
`);

const UPDATE = graphql(`
  mutation BudgetsUpdate($input: UpdateBudgetInput!) {
    updateBudget(input: $input) {
      id total used reserved available period periodStart periodEnd alertThresholds alertsSent version updatedAt
    }
  }
`);

export const PERIODS: { value: BudgetPeriod; label: string }[] = [
  { value: 'NONE', label: 'none (lifetime limit)' },
  { value: 'DAILY', label: 'daily (00:00 UTC)' },
  { value: 'WEEKLY', label: 'weekly (Monday 00:00 UTC)' },
  { value: 'MONTHLY', label: 'monthly (the 1st, 00:00 UTC)' },
];

/** Whole numbers separated by commas or spaces; the browser refuses anything else. */
const THRESHOLDS_PATTERN = '\\s*(\\d+\\s*[,\\s]\\s*)*\\d*\\s*';

function parseThresholds(text: string): number[] {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);
}

/** The fields both forms have: the limit, its period and the alert thresholds. */
function LimitFields({
  total,
  setTotal,
  period,
  setPeriod,
  thresholds,
  setThresholds,
}: {
  total: string;
  setTotal: (v: string) => void;
  period: BudgetPeriod;
  setPeriod: (v: BudgetPeriod) => void;
  thresholds: string;
  setThresholds: (v: string) => void;
}) {
  return (
    <>
        <label>
          Total (tokens)
          <input
            type="number"
            inputMode="numeric"
            min={0}
            step={1}
            value={total}
            onChange={(e) => setTotal(e.target.value)}
            required
          />
        </label>
        <label>
          Period
          <select value={period} onChange={(e) => setPeriod(e.target.value as BudgetPeriod)}>
            {PERIODS.map((p) => (
              <option key={p.value} value={p.value}>
                {p.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Alert thresholds (% of total)
          <input
            value={thresholds}
            onChange={(e) => setThresholds(e.target.value)}
            pattern={THRESHOLDS_PATTERN}
            title="whole percentages, separated by commas"
            placeholder="50, 80, 100"
          />
        </label>
    </>
  );
}

export function CreateBudgetForm({
  fixedTenant,
  onCreated,
  onCancel,
}: {
  /** A tenant-scoped caller can only create budgets of its own tenant. */
  fixedTenant: string | null;
  onCreated: (id: string) => void;
  onCancel: () => void;
}) {
  const [tenantId, setTenantId] = useState(fixedTenant ?? '');
  const [projectId, setProjectId] = useState('');
  const [total, setTotal] = useState('');
  const [period, setPeriod] = useState<BudgetPeriod>('NONE');
  const [thresholds, setThresholds] = useState('50, 80, 100');
  const [, create] = useMutation(CREATE);
  const action = useAction();
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    const data = await action.run(
      create({
        input: {
          tenantId: tenantId.trim(),
          projectId: projectId.trim(),
          total: Number(total),
          period,
          alertThresholds: parseThresholds(thresholds),
        },
      }),
    );
    setBusy(false);
    if (data) onCreated(data.createBudget.id);
  };

  return (
    <form className="budget-form" onSubmit={submit} aria-label="New budget">
      <div className="row">
        <label>
          Tenant
          <input
            value={tenantId}
            onChange={(e) => setTenantId(e.target.value)}
            required
            maxLength={64}
            readOnly={fixedTenant != null}
          />
        </label>
        <label>
          Project
          <input value={projectId} onChange={(e) => setProjectId(e.target.value)} required maxLength={128} />
        </label>
        <LimitFields
          total={total}
          setTotal={setTotal}
          period={period}
          setPeriod={setPeriod}
          thresholds={thresholds}
          setThresholds={setThresholds}
        />
      </div>
      <div className="row">
        <button type="submit" disabled={busy}>
          Create budget
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
      <ErrorNote error={action.error} />
    </form>
  );
}

export function EditBudgetForm({
  budget,
  onDone,
}: {
  budget: { id: string; total: number; period: BudgetPeriod; alertThresholds: number[] };
  onDone: () => void;
}) {
  const [total, setTotal] = useState(String(budget.total));
  const [period, setPeriod] = useState<BudgetPeriod>(budget.period);
  const [thresholds, setThresholds] = useState(budget.alertThresholds.join(', '));
  const [, update] = useMutation(UPDATE);
  const action = useAction();
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    // Only what changed is sent: a period sent unchanged would still start a new window.
    const next = parseThresholds(thresholds);
    const input = {
      id: budget.id,
      total: Number(total) !== budget.total ? Number(total) : undefined,
      period: period !== budget.period ? period : undefined,
      alertThresholds: next.join(',') !== budget.alertThresholds.join(',') ? next : undefined,
    };
    setBusy(true);
    const data = await action.run(update({ input }));
    setBusy(false);
    if (data) onDone();
  };

  return (
    <form className="budget-form" onSubmit={submit} aria-label="Edit budget">
      <div className="row">
        <LimitFields
          total={total}
          setTotal={setTotal}
          period={period}
          setPeriod={setPeriod}
          thresholds={thresholds}
          setThresholds={setThresholds}
        />
      </div>
      {period !== budget.period && (
        <p className="notice">A new period starts its current window now and keeps what is used.</p>
      )}
      <div className="row">
        <button type="submit" disabled={busy}>
          Save changes
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
      <ErrorNote error={action.error} />
    </form>
  );
}
