// Budgets and Overview in a browser: an operator watches a budget bar move while another
// client (a developer's token) spends, without reloading the page; a threshold crossing shows
// as an alert there and on the Overview; refused actions show the server's error code; an
// observer is offered no create or edit controls.
import { randomUUID } from 'node:crypto';

import { adminToken, base, check, gql, run, subscribed as registered, user } from './lib.mjs';

const CREATE = `mutation($i: CreateBudgetInput!) { createBudget(input: $i) { id } }`;
const RESERVE = `mutation($i: ReserveBudgetInput!) { reserveBudget(input: $i) { id } }`;
const COMMIT = `mutation($i: CommitBudgetInput!) { commitBudget(input: $i) { status actualAmount } }`;

/** Reserves `amount` and commits `spent` of it, as `token`'s client. */
async function spend(token, tenantId, projectId, amount, spent) {
  const r = await gql(token, RESERVE, {
    i: { tenantId, projectId, amount, requestId: randomUUID(), model: 'test-model' },
  });
  const c = await gql(token, COMMIT, {
    i: { reservationId: r.reserveBudget.id, actualAmount: spent, requestId: randomUUID() },
  });
  check(c.commitBudget.status === 'COMMITTED', `commit answered ${c.commitBudget.status}`);
}

/**
 * Waits until the page has asked for `operation` (in a frame sent after the first `from`) and
 * the server lists `who`'s subscription of that name as running, so that a change made next
 * is one it must see (a threshold alert is an event: one made before would be missed).
 */
async function subscribed(page, who, operation, from = 0) {
  const deadline = Date.now() + 15000;
  const asked = () => page.sentFrames.slice(from).some((f) => f.includes('"subscribe"') && f.includes(operation));
  while (!asked()) {
    check(Date.now() < deadline, `the page never subscribed to ${operation}`);
    await page.waitForTimeout(100);
  }
  await registered(who, operation);
  // Listed as its execution starts: a moment more for it to join the event feed.
  await page.waitForTimeout(300);
}

/** The numbers a budget's row shows, from its `<data>` values. */
async function figures(row) {
  const read = async (field) => Number(await row.locator(`[data-field="${field}"]`).getAttribute('value'));
  return {
    used: await read('used'),
    reserved: await read('reserved'),
    available: await read('available'),
    total: await read('total'),
  };
}

/** Waits until the row's `field` shows `value` (live, the page is not reloaded). */
async function waitFigure(page, name, field, value) {
  await page.waitForFunction(
    ([n, f, v]) =>
      document.querySelector(`tr[data-budget="${n}"] [data-field="${f}"]`)?.getAttribute('value') === String(v),
    [name, field, value],
    { timeout: 15000 },
  );
}

run('budgets', async (ctx) => {
  const tag = `${process.pid}-${Date.now().toString(36)}`;
  const tenant = `console-${tag}`;
  const project = `bars-${tag}`;
  const name = `${tenant}/${project}`;
  const created = await gql(adminToken, CREATE, {
    i: { tenantId: tenant, projectId: project, total: 10000, alertThresholds: [50, 80, 100] },
  });
  const budgetId = created.createBudget.id;
  const operator = await user('OPERATOR');
  const developer = await user('DEVELOPER');
  const observer = await user('OBSERVER');

  // ---- the Overview: readiness, domains, alerts ---------------------------------------------
  const page = await ctx.loginAs(operator);
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  const readiness = page.getByRole('region', { name: 'Readiness' });
  await readiness.getByRole('rowheader', { name: 'database' }).waitFor();
  await page.getByRole('article', { name: 'Budgets' }).locator('data.stat').waitFor();
  for (const domain of ['Budgets', 'Dead letters', 'Circuit breakers', 'Governance', 'Sandbox', 'Tasks']) {
    check((await page.getByRole('article', { name: domain }).count()) === 1, `the Overview has no ${domain} card`);
  }
  await ctx.screenshot(page, 'overview');

  // ---- Budgets: find the budget, watch it move --------------------------------------------
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Budgets' }).click();
  const filter = page.getByRole('search', { name: 'Filter budgets' });
  await filter.getByLabel('Tenant').fill(tenant);
  await filter.getByRole('button', { name: 'Filter' }).click();
  const row = page.locator(`tr[data-budget="${name}"]`);
  const meter = page.getByRole('meter', { name: `Budget ${name}`, exact: true });
  await meter.waitFor();
  const before = await figures(row);
  check(before.used === 0 && before.available === 10000 && before.total === 10000, `unexpected start ${JSON.stringify(before)}`);
  check((await meter.getAttribute('aria-valuenow')) === '0', 'the bar does not start at 0');

  await row.getByRole('link', { name }).click();
  const detail = page.getByRole('region', { name: `Budget ${name} detail` });
  await detail.getByRole('img', { name: `Spend over time of ${name}` }).waitFor();
  check(page.url().endsWith(`/budgets/${budgetId}?tenant=${tenant}`), `the detail is not addressable: ${page.url()}`);
  // Anything that reloads the page drops this marker.
  await page.evaluate(() => {
    window.__budgetsNoReload = true;
  });
  await subscribed(page, operator, 'BudgetsChanged');
  await subscribed(page, operator, 'BudgetsThresholdReached');
  await ctx.screenshot(page, 'before-spend');

  // Another client spends: 3,000 reserved, 2,500 committed.
  await spend(developer.token, tenant, project, 3000, 2500);
  await waitFigure(page, name, 'used', 2500);
  await waitFigure(page, name, 'available', 7500);
  const after = await figures(row);
  check(after.used === 2500 && after.reserved === 0 && after.available === 7500, `unexpected after ${JSON.stringify(after)}`);
  await page.waitForFunction(
    (n) => document.querySelector(`[role="meter"][aria-label="Budget ${n}"]`)?.getAttribute('aria-valuenow') === '2500',
    name,
  );
  const detailMeter = detail.getByRole('meter', { name: `Standing of ${name}` });
  await page.waitForFunction(
    (n) => document.querySelector(`[role="meter"][aria-label="Standing of ${n}"]`)?.getAttribute('aria-valuenow') === '2500',
    name,
  );
  check(await detailMeter.isVisible(), 'the detail bar is not shown');
  // The ledger rows of the spend reached the detail too (reserve + commit after the creation).
  await detail.getByText(/^3 ledger rows in this range/).waitFor();

  // Past 50 %: a threshold alert arrives live.
  await spend(developer.token, tenant, project, 3000, 3000);
  await waitFigure(page, name, 'used', 5500);
  const alerts = page.getByRole('region', { name: 'Threshold alerts' });
  await alerts.getByText(`${name} reached 50%`).waitFor();
  await row.getByText('past 50%').waitFor();
  check(await page.evaluate(() => window.__budgetsNoReload === true), 'the page was reloaded');
  await ctx.screenshot(page, 'after-spend');

  // ---- refused actions show the server's code ----------------------------------------------
  await page.getByRole('button', { name: 'New budget' }).click();
  const form = page.getByRole('form', { name: 'New budget' });
  await form.getByLabel('Tenant').fill(tenant);
  await form.getByLabel('Project').fill(project);
  await form.getByLabel('Total (tokens)').fill('500');
  await form.getByRole('button', { name: 'Create budget' }).click();
  const duplicate = form.locator('.error[data-code]');
  await duplicate.waitFor();
  const dupCode = await duplicate.getAttribute('data-code');
  check(dupCode === 'CONFLICT', `a duplicate budget showed ${dupCode}`);
  await form.getByRole('button', { name: 'Cancel' }).click();

  await detail.getByRole('button', { name: 'Edit budget' }).click();
  const edit = detail.getByRole('form', { name: 'Edit budget' });
  await edit.getByLabel('Total (tokens)').fill('100');
  await edit.getByRole('button', { name: 'Save changes' }).click();
  const below = edit.locator('.error[data-code]');
  await below.waitFor();
  const belowCode = await below.getAttribute('data-code');
  check(belowCode === 'BAD_USER_INPUT', `a total below what is used showed ${belowCode}`);
  check(/request id/.test(await below.innerText()), 'the error note has no request id');
  await ctx.screenshot(page, 'refused');

  // An accepted edit: the limit moves, live in the list.
  await edit.getByLabel('Total (tokens)').fill('20000');
  await edit.getByRole('button', { name: 'Save changes' }).click();
  await waitFigure(page, name, 'total', 20000);
  await waitFigure(page, name, 'available', 14500);

  // ---- the Overview lists the budget past its threshold ------------------------------------
  const framesBefore = page.sentFrames.length;
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Overview' }).click();
  await page.getByRole('article', { name: 'Budgets' }).locator('data.stat').waitFor();
  const overviewAlerts = page.getByRole('region', { name: 'Active alerts' });
  check((await overviewAlerts.getByText(name).count()) === 0, 'the Overview lists a budget that is past no threshold');
  await subscribed(page, operator, 'OverviewBudgetChanged', framesBefore);
  // 5,500 of 20,000 is past no threshold any more: spend all of it, live on the open page.
  // An exhausted budget is a critical alert, listed first however many other budgets the
  // server holds.
  await spend(developer.token, tenant, project, 14500, 14500);
  // (Between the reserve and the commit it reads "nothing left to reserve".)
  const item = overviewAlerts.getByRole('listitem').filter({ hasText: name }).filter({ hasText: 'past its 100% threshold' });
  await item.waitFor();
  const text = await item.innerText();
  check(/critical/.test(text), `the Overview alert says: ${text}`);
  await ctx.screenshot(page, 'overview-alert');

  // ---- narrow window ---------------------------------------------------------------------
  const narrow = await ctx.loginAs(operator, { width: 420, height: 900 });
  await narrow.goto(`${base}/console/budgets/${budgetId}?tenant=${tenant}`);
  await narrow.getByRole('img', { name: `Spend over time of ${name}` }).waitFor();
  await ctx.screenshot(narrow, 'narrow');

  // ---- an observer reads but is offered no changes ----------------------------------------
  const watcher = await ctx.loginAs(observer);
  await watcher.goto(`${base}/console/budgets/${budgetId}?tenant=${tenant}`);
  await watcher.getByRole('meter', { name: `Budget ${name}`, exact: true }).waitFor();
  await watcher.getByRole('img', { name: `Spend over time of ${name}` }).waitFor();
  check((await watcher.getByRole('button', { name: 'New budget' }).count()) === 0, 'an observer is offered New budget');
  check((await watcher.getByRole('button', { name: 'Edit budget' }).count()) === 0, 'an observer is offered Edit budget');
  await ctx.screenshot(watcher, 'observer');
});
