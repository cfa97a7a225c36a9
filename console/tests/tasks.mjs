// Tasks and escalations: a developer (another client) creates a task with an escalation; an
// operator opens it from a link and sees the escalation; with the page open, a second task
// and its escalation appear live (activity, task list, escalation list, no reload); the
// operator opens that task, resolves its escalation with a text from the page, and the status
// shows resolved (the server agrees). An observer sees the task without a Resolve control.
import { adminToken, base, check, gql, run, subscribed, user } from './lib.mjs';

const CREATE_TASK = `mutation($i: CreateTaskInput!) { createTask(input: $i) { id title } }`;
const ESCALATE = `mutation($i: CreateEscalationInput!) { createEscalation(input: $i) { id status } }`;
const ESCALATION = `query($task: ID!) { escalations(taskId: $task) { nodes { id status resolution resolvedBy } } }`;

async function taskWithEscalation(who, title, reason) {
  const task = (await gql(who.token, CREATE_TASK, { i: { title, description: `made by the console test ${title}`, priority: 5 } })).createTask;
  const escalation = (await gql(who.token, ESCALATE, { i: { taskId: task.id, reason, severity: 'HIGH' } })).createEscalation;
  check(escalation.status === 'OPEN', `new escalation is ${escalation.status}`);
  return { task, escalation };
}

run('tasks', async (ctx) => {
  const mark = `${Date.now().toString(36)}-${process.pid}`;
  const developer = await user('DEVELOPER');
  const operator = await user('OPERATOR');
  const observer = await user('OBSERVER');

  const first = await taskWithEscalation(developer, `console first ${mark}`, `needs a decision on the first ${mark}`);

  // The operator opens the first task through its link (the page's only Tasks view, so its
  // one subscription is the one waited for below).
  const page = await ctx.loginAs(operator);
  await page.goto(`${base}/console/tasks?task=${first.task.id}`);
  await page.getByRole('heading', { name: 'Tasks and escalations' }).waitFor();
  await page.getByTestId('tasks-total').waitFor();
  await page.getByTestId('escalations-total').waitFor();
  const detail = page.locator('section.tasks-detail');
  await detail.getByRole('heading', { name: first.task.title }).waitFor();
  const firstEscalation = detail.locator(`li[data-escalation-id="${first.escalation.id}"]`);
  await firstEscalation.getByText(`needs a decision on the first ${mark}`).waitFor();
  await firstEscalation.locator('.badge', { hasText: 'open' }).waitFor();
  await ctx.screenshot(page, 'first-task');

  // With the page open, a second task and its escalation appear without a reload.
  await subscribed(operator, 'TasksChanged');
  const count = async (id) => Number((await page.getByTestId(id).textContent()).match(/\d+/)[0]);
  const before = await count('tasks-total');
  const openBefore = await count('escalations-total');
  const second = await taskWithEscalation(developer, `console live ${mark}`, `blocked on credentials ${mark}`);
  const activity = page.getByRole('list', { name: 'Task changes, newest first' });
  await activity.locator(`li[data-task-id="${second.task.id}"][data-kind="CREATED"]`).waitFor();
  await activity.locator(`li[data-task-id="${second.task.id}"][data-kind="ESCALATED"]`).waitFor();
  // The lists count them too (they are oldest first: the new rows may be on a later page).
  await page.waitForFunction(
    ([n]) => Number(document.querySelector('[data-testid="tasks-total"]')?.textContent?.match(/\d+/)?.[0]) > n,
    [before],
  );
  await page.waitForFunction(
    ([n]) => Number(document.querySelector('[data-testid="escalations-total"]')?.textContent?.match(/\d+/)?.[0]) > n,
    [openBefore],
  );
  const openAfter = await count('escalations-total');
  await ctx.screenshot(page, 'second-task-live');

  // Open it from the activity list and resolve its escalation with a text.
  await activity.locator(`li[data-task-id="${second.task.id}"]`).first().getByRole('link', { name: second.task.title }).click();
  await detail.getByRole('heading', { name: second.task.title }).waitFor();
  check(page.url().includes(`task=${second.task.id}`), `the detail is not linkable: ${page.url()}`);
  const escalation = detail.locator(`li[data-escalation-id="${second.escalation.id}"]`);
  await escalation.getByText(`blocked on credentials ${mark}`).waitFor();
  await escalation.getByRole('button', { name: 'Resolve' }).click();
  const form = escalation.getByRole('form', { name: 'Resolve' });
  const resolution = `rotated the credentials ${mark}`;
  await form.getByLabel('Resolution').fill(resolution);
  await ctx.screenshot(page, 'resolve-form');
  await form.getByRole('button', { name: 'Resolve' }).click();
  await escalation.locator('.badge', { hasText: 'resolved' }).waitFor();
  await escalation.getByText(resolution).waitFor();
  check((await escalation.getByRole('button', { name: 'Resolve' }).count()) === 0, 'a resolved escalation still offers Resolve');
  // The open escalations list drops it live.
  await page.waitForFunction(
    ([n]) => Number(document.querySelector('[data-testid="escalations-total"]')?.textContent?.match(/\d+/)?.[0]) < n,
    [openAfter],
  );
  const stored = (await gql(adminToken, ESCALATION, { task: second.task.id })).escalations.nodes[0];
  check(stored.status === 'RESOLVED' && stored.resolution === resolution, `server has ${JSON.stringify(stored)}`);
  check(stored.resolvedBy === `user:${operator.username}`, `resolved by ${stored.resolvedBy}`);
  await ctx.screenshot(page, 'resolved');

  // An observer reads the first task and its open escalation but cannot resolve it.
  const watcher = await ctx.loginAs(observer);
  await watcher.goto(`${base}/console/tasks?task=${first.task.id}`);
  const seen = watcher.locator(`section.tasks-detail li[data-escalation-id="${first.escalation.id}"]`);
  await seen.locator('.badge', { hasText: 'open' }).waitFor();
  check((await watcher.getByRole('button', { name: 'Resolve' }).count()) === 0, 'an observer sees Resolve');
  await ctx.screenshot(watcher, 'observer-read-only');

  // The same view at a phone's width.
  const narrow = await ctx.loginAs(operator, { width: 420, height: 900 });
  await narrow.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Tasks' }).click();
  await narrow.getByRole('heading', { name: 'Tasks and escalations' }).waitFor();
  await narrow.getByRole('table', { name: 'Tasks' }).waitFor();
  await ctx.screenshot(narrow, 'narrow-lists');
  await narrow.goto(`${base}/console/tasks?task=${second.task.id}`);
  await narrow.locator('section.tasks-detail').getByText(resolution).waitFor();
  await ctx.screenshot(narrow, 'narrow');
});
