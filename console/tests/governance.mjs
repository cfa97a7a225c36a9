// Governance: approve a pending proposal as a second user. An administrator makes a fresh role
// require approval; a developer proposes (a first version is approved beforehand so the
// proposal is diffed against something); an operator sees the proposal with its word diff,
// approves it from the page, and it leaves the pending list while the role's history shows
// the new version. Then: the operator's own proposal arrives live and approving it is
// refused (four eyes) with the error code shown; an observer sees the proposal without any
// approve / reject control; the operator rejects it with a reason, asks for a rollback (which
// waits for approval too) and changes the role's rule.
import { adminToken, base, check, gql, run, subscribed, user } from './lib.mjs';

const CONFIGURE = `mutation($i: ConfigureGovernanceRuleInput!) {
  configureGovernanceRule(input: $i) { agentRole requireApproval }
}`;
const PROPOSE = `mutation($i: ProposeLearningUpdateInput!) {
  proposeLearningUpdate(input: $i) { id status promptVersion }
}`;
const APPROVE = `mutation($id: ID!, $note: String) {
  approveLearningUpdate(id: $id, note: $note) { id status promptVersion }
}`;
const UPDATE = `query($id: ID!) { learningUpdate(id: $id) { status decidedBy promptVersion decisionNote } }`;

function propose(who, agentRole, text, rationale) {
  return gql(who.token, PROPOSE, {
    i: { agentRole, promptUpdate: text, rationale, requestId: crypto.randomUUID() },
  }).then((d) => d.proposeLearningUpdate);
}

run('governance', async (ctx) => {
  const mark = `${Date.now().toString(36)}${process.pid}`;
  const role = `console-gov-${mark}`;
  await gql(adminToken, CONFIGURE, {
    i: { agentRole: role, requireApproval: true, cooldownHours: 0, maxUpdatesPerDay: 100, approvalExpiryHours: 24 },
  });
  const developer = await user('DEVELOPER');
  const operator = await user('OPERATOR');
  const observer = await user('OBSERVER');

  // Version 1, approved by the administrator, so the next proposal has a text to differ from.
  const first = await propose(
    developer,
    role,
    `You review pull requests for the ${role} team.\nKeep every answer short and cite the failing test.`,
    'first version',
  );
  check(first.status === 'PENDING_APPROVAL', `the role requires approval, got ${first.status}`);
  const applied = (await gql(adminToken, APPROVE, { id: first.id, note: 'baseline' })).approveLearningUpdate;
  check(applied.status === 'APPLIED' && applied.promptVersion === 1, `baseline not applied: ${JSON.stringify(applied)}`);

  const added = `precise${mark}`;
  const proposal = await propose(
    developer,
    role,
    `You review pull requests for the ${role} team.\nKeep every answer ${added} and name the failing test.`,
    `answers were too vague ${mark}`,
  );
  check(proposal.status === 'PENDING_APPROVAL', `proposal should wait, got ${proposal.status}`);

  // The operator sees it, diffed against version 1.
  const page = await ctx.loginAs(operator);
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Governance' }).click();
  await page.getByRole('heading', { name: 'Pending approvals' }).waitFor();
  const card = page.locator(`article[data-update-id="${proposal.id}"]`);
  await card.waitFor();
  const diff = card.locator('.diff');
  check((await diff.getAttribute('aria-label')) === 'Changes against version 1', 'the diff is not against version 1');
  await diff.locator('ins', { hasText: added }).first().waitFor();
  await diff.locator('del', { hasText: 'short' }).first().waitFor();
  check(!(await diff.locator('del, ins').filter({ hasText: 'review pull requests' }).count()), 'unchanged words are marked');
  await ctx.screenshot(page, 'pending-diff');

  // Approve it from the page, with a note.
  await card.getByRole('button', { name: 'Approve' }).click();
  const form = card.getByRole('form', { name: 'Approve' });
  await form.getByLabel('Approval note (optional)').fill(`checked ${mark}`);
  await ctx.screenshot(page, 'approve-note');
  await form.getByRole('button', { name: 'Approve' }).click();
  await card.waitFor({ state: 'detached' });
  const decided = (await gql(adminToken, UPDATE, { id: proposal.id })).learningUpdate;
  check(decided.status === 'APPLIED', `approved from the page but ${decided.status}`);
  check(decided.decidedBy === `user:${operator.username}`, `decided by ${decided.decidedBy}`);
  check(decided.promptVersion === 2, `became version ${decided.promptVersion}`);
  await ctx.screenshot(page, 'approved-left-pending');

  // The role's history shows version 2 as current.
  await page.getByRole('table', { name: 'Roles' }).getByRole('link', { name: role, exact: true }).click();
  const versions = page.getByRole('list', { name: `Prompt versions of ${role}` });
  const v2 = versions.locator('li[data-version="2"]');
  await v2.waitFor();
  await v2.locator('.badge', { hasText: 'current' }).waitFor();
  check(await versions.locator('li[data-version="1"]').count() === 1, 'version 1 missing from the history');
  await page.getByLabel(`Current prompt of ${role}`).filter({ hasText: added }).waitFor();
  await ctx.screenshot(page, 'version-history');

  // The operator's own proposal arrives live; approving it is refused with the code shown.
  await subscribed(operator, 'GovernanceUpdateChanged');
  const own = await propose(operator, role, `You review pull requests, tersely. ${mark}`, `mine ${mark}`);
  const ownCard = page.locator(`article[data-update-id="${own.id}"]`);
  await ownCard.waitFor();
  await ownCard.getByRole('button', { name: 'Approve' }).click();
  await ownCard.getByRole('form', { name: 'Approve' }).getByRole('button', { name: 'Approve' }).click();
  await ownCard.locator('.error[data-code="FOUR_EYES_REQUIRED"]').waitFor();
  check((await gql(adminToken, UPDATE, { id: own.id })).learningUpdate.status === 'PENDING_APPROVAL', 'own proposal applied');
  await ctx.screenshot(page, 'four-eyes-refused');

  // An observer sees the pending proposal but no control to decide or roll back.
  const watcher = await ctx.loginAs(observer);
  await watcher.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Governance' }).click();
  const seen = watcher.locator(`article[data-update-id="${own.id}"]`);
  await seen.locator('.diff').waitFor();
  await watcher.getByRole('table', { name: 'Roles' }).getByRole('link', { name: role, exact: true }).click();
  await watcher.getByRole('list', { name: `Prompt versions of ${role}` }).locator('li[data-version="2"]').waitFor();
  for (const name of ['Approve', 'Reject', 'Roll back to 1', 'Change rule']) {
    check((await watcher.getByRole('button', { name }).count()) === 0, `an observer sees "${name}"`);
  }
  await ctx.screenshot(watcher, 'observer-read-only');

  // The operator rejects the proposal with a reason: it leaves the pending list.
  await ownCard.getByRole('button', { name: 'Reject' }).click();
  const rejectForm = ownCard.getByRole('form', { name: 'Reject' });
  await rejectForm.getByLabel('Why reject it').fill(`not needed ${mark}`);
  await rejectForm.getByRole('button', { name: 'Reject' }).click();
  await ownCard.waitFor({ state: 'detached' });
  const rejected = (await gql(adminToken, UPDATE, { id: own.id })).learningUpdate;
  check(rejected.status === 'REJECTED' && rejected.decisionNote === `not needed ${mark}`, `reject: ${JSON.stringify(rejected)}`);
  // The observer's page drops it live too.
  await seen.waitFor({ state: 'detached' });
  await ctx.screenshot(page, 'rejected');

  // Rolling back asks for a reason; the role requires approval, so the rollback waits for it.
  const history = page.getByRole('list', { name: `Prompt versions of ${role}` });
  await history.locator('li[data-version="1"]').getByRole('button', { name: 'Roll back to 1' }).click();
  const rollbackForm = history.getByRole('form', { name: 'Roll back to 1' });
  await rollbackForm.getByLabel('Why roll back').fill(`back to the baseline ${mark}`);
  await rollbackForm.getByRole('button', { name: 'Roll back to 1' }).click();
  await page.getByRole('status').filter({ hasText: 'waits for another person' }).waitFor();
  await page.locator('article.gov-update', { hasText: 'rollback to version 1' }).locator('.diff').waitFor();
  await ctx.screenshot(page, 'rollback-pending');

  // The rule changes from the page (approval expiry 24 h → 48 h).
  await page.getByRole('button', { name: 'Change rule' }).click();
  const ruleForm = page.getByRole('form', { name: `Rule of ${role}` });
  await ruleForm.getByLabel('Proposals expire after (hours)').fill('48');
  await ruleForm.getByRole('button', { name: 'Save rule' }).click();
  await page.getByRole('heading', { name: 'Rule (version 3)' }).waitFor();
  await page.locator('.gov-facts dd', { hasText: '48 h' }).waitFor();
  await ctx.screenshot(page, 'rule-changed');

  // The same view at a phone's width.
  const narrow = await ctx.loginAs(operator, { width: 420, height: 900 });
  await narrow.goto(`${base}/console/governance?role=${role}&status=APPLIED`);
  await narrow.locator(`article[data-update-id="${proposal.id}"]`).waitFor();
  await narrow.getByRole('list', { name: `Prompt versions of ${role}` }).waitFor();
  await ctx.screenshot(narrow, 'narrow');
});
