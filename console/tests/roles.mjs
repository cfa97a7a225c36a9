// What each role is offered: one user per role logs in through the page; the navigation lists
// the views the server's permission list allows, and each view's actions appear only for the
// roles whose permissions allow them (the server's `me.permissions`, checked against the role
// table here so that a change to either shows up). On every view visited, every control has
// an accessible name and takes the keyboard's focus.
import { check, gql, run, user } from './lib.mjs';

const VIEWS = {
  Overview: null,
  Budgets: 'budget.view',
  'Dead letters': 'dlq.read',
  Breakers: 'breaker.view',
  Governance: 'learning.view',
  Sandbox: 'sandbox.view',
  Tasks: 'task.view',
};

// view link → [the action's button, the permission it needs]
const ACTIONS = [
  ['Budgets', 'New budget', 'budget.configure'],
  ['Sandbox', 'Start run', 'sandbox.run'],
  ['Dead letters', 'Dry run', 'dlq.resolve'],
  ['Breakers', 'Reset all', 'breaker.manage'],
];

// The role table (README, `aurum roles`) for the actions above.
const OFFERED = {
  ADMIN: ['New budget', 'Start run', 'Dry run', 'Reset all'],
  OPERATOR: ['New budget', 'Start run', 'Dry run', 'Reset all'],
  DEVELOPER: ['Start run'],
  OBSERVER: [],
};

/**
 * Every control on the page has an accessible name (a label, aria-label or its text) and can
 * take the keyboard's focus (a real button, link or form field, not a tabindex -1).
 */
async function labelled(page, where) {
  const problems = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll('input, select, textarea, button, a[href], [role="button"]')) {
      if (el.type === 'hidden' || el.closest('[hidden]')) continue;
      const name =
        el.getAttribute('aria-label') ||
        el.getAttribute('aria-labelledby') ||
        (el.labels && [...el.labels].map((l) => l.textContent.trim()).join(' ')) ||
        (['BUTTON', 'A'].includes(el.tagName) || el.getAttribute('role') === 'button' ? el.textContent.trim() : '') ||
        el.getAttribute('title');
      if (!name) bad.push(`${el.tagName.toLowerCase()} without a name: ${el.outerHTML.slice(0, 120)}`);
      if (el.tabIndex < 0 && !el.disabled) bad.push(`${el.tagName.toLowerCase()} out of the tab order: ${el.outerHTML.slice(0, 120)}`);
    }
    return bad;
  });
  check(problems.length === 0, `${where}: ${problems.join('; ')}`);
}

run('roles', async (ctx) => {
  for (const role of Object.keys(OFFERED)) {
    const who = await user(role);
    const { me } = await gql(who.token, '{ me { role permissions } }');
    check(me.role === role, `${role}: me.role is ${me.role}`);
    const page = await ctx.loginAs(who);
    const nav = page.getByRole('navigation', { name: 'Views' });
    const links = (await nav.getByRole('link').allInnerTexts()).map((t) => t.trim());
    const expected = Object.entries(VIEWS)
      .filter(([, p]) => p === null || me.permissions.includes(p))
      .map(([v]) => v);
    check(
      JSON.stringify(links) === JSON.stringify(expected),
      `${role}: views ${JSON.stringify(links)}, expected ${JSON.stringify(expected)}`,
    );
    await page.getByText(role.toLowerCase(), { exact: true }).first().waitFor();
    const offered = [];
    for (const [view, button, permission] of ACTIONS) {
      await nav.getByRole('link', { name: view, exact: true }).click();
      await page.getByRole('heading', { level: 1, name: new RegExp(`^${view}`) }).waitFor();
      // Let the view settle (its first queries answered) before looking for the action.
      await page.waitForLoadState('networkidle');
      await labelled(page, `${role} on ${view}`);
      const shown = (await page.getByRole('button', { name: button, exact: true }).count()) > 0;
      check(
        shown === me.permissions.includes(permission),
        `${role}: "${button}" on ${view} ${shown ? 'offered' : 'not offered'}, permission ${permission} ${me.permissions.includes(permission) ? 'granted' : 'not granted'}`,
      );
      if (shown) offered.push(button);
    }
    check(
      JSON.stringify(offered) === JSON.stringify(OFFERED[role]),
      `${role}: offered ${JSON.stringify(offered)}, the role table says ${JSON.stringify(OFFERED[role])}`,
    );
    await nav.getByRole('link', { name: 'Overview', exact: true }).click();
    await page.waitForLoadState('networkidle');
    await ctx.screenshot(page, role.toLowerCase());
    await page.context().close();
  }
});
