// The Sandbox view (the proof: "stream a sandbox run's output"). A developer starts a
// shell run from the page whose lines come out 0.4 s apart and sees them arrive one after
// another in the output, then SUCCEEDED with exit code 0 (and the runs list refreshed to
// say so); starts a 30 s run and cancels it from the page, which ends CANCELLED; the list's
// status filter finds it. An observer sees the runs, replays a finished run's output, and
// watches a running one, started elsewhere and joining its list live, without any start or
// cancel control.
import { check, gql, run, subscribed, user } from './lib.mjs';

const tag = `sb-${process.pid}-${Date.now() % 100000}`;
const RUN = `query($id: ID!) { sandboxRun(id: $id) { id status exitCode cancelRequested } }`;

run('sandbox', async (ctx) => {
  const dev = await user('DEVELOPER');
  const observer = await user('OBSERVER');

  const page = await ctx.loginAs(dev);
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Sandbox' }).click();
  await page.getByRole('heading', { name: 'Sandbox', level: 1 }).waitFor();
  const form = page.getByRole('form', { name: 'Start a run' });
  await form.getByLabel('Language').selectOption('shell');
  await ctx.screenshot(page, 'empty');

  // 1. A run whose lines come out 0.4 s apart: they must show up progressively.
  const program = `echo "${tag} start"\nfor i in 1 2 3 4 5; do echo line-$i; sleep 0.4; done\necho done-err >&2\n`;
  await form.getByLabel(/^Code/).fill(program);
  await form.getByRole('button', { name: 'Start run' }).click();
  await page.waitForURL(/\/console\/sandbox\/[0-9a-f-]{36}$/);
  const first = page.url().split('/').pop();
  const output = page.getByTestId('run-output');
  await page.waitForFunction(
    () => document.querySelector('[data-testid="run-output"]')?.textContent?.includes('line-1'),
    null,
    { timeout: 60000, polling: 50 },
  );
  const early = await output.textContent();
  check(early.includes('line-1'), 'line-1 is not in the output');
  check(!early.includes('line-5'), `line-5 arrived together with line-1: the output did not stream (${early})`);
  await ctx.screenshot(page, 'streaming');
  await page.waitForFunction(
    () => document.querySelector('[data-testid="run-output"]')?.textContent?.includes('done-err'),
    null,
    { timeout: 30000 },
  );
  const all = await output.textContent();
  const positions = [1, 2, 3, 4, 5].map((i) => all.indexOf(`line-${i}`));
  check(positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1])), `the lines are not all there in order: ${all}`);
  check(
    (await output.locator('.sandbox-stderr').textContent())?.includes('done-err'),
    'the stderr line is not marked as stderr',
  );
  const status = page.getByTestId('run-status');
  await page.waitForFunction(() => document.querySelector('[data-testid="run-status"]')?.textContent === 'SUCCEEDED');
  check((await page.getByTestId('run-exit').textContent()) === '0', 'the exit code shown is not 0');
  check(
    (await gql(dev.token, RUN, { id: first })).sandboxRun.status === 'SUCCEEDED',
    'the server does not have the run SUCCEEDED',
  );
  // The list follows `sandboxRunChanged`: the row turns SUCCEEDED without a reload.
  const firstRow = page.locator(`tr[data-run="${first}"]`);
  await firstRow.getByText('SUCCEEDED').waitFor({ timeout: 5000 });
  await ctx.screenshot(page, 'succeeded');

  // 2. A long run cancelled from the page ends CANCELLED.
  await form.getByLabel(/^Code/).fill(`echo "${tag} long"\nsleep 30\necho never\n`);
  await form.getByText(/^Limits/).click();
  await form.getByLabel('Timeout (ms)').fill('45000');
  await form.getByRole('button', { name: 'Start run' }).click();
  await page.waitForURL((url) => /\/sandbox\/[0-9a-f-]{36}$/.test(url.pathname) && !url.pathname.endsWith(first));
  const long = page.url().split('/').pop();
  await page.waitForFunction(
    (t) => document.querySelector('[data-testid="run-output"]')?.textContent?.includes(`${t} long`),
    tag,
    { timeout: 60000 },
  );
  // Its first output means it was claimed: the page shows RUNNING without polling.
  await page.waitForFunction(
    () => document.querySelector('[data-testid="run-status"]')?.textContent === 'RUNNING',
    null,
    { timeout: 5000 },
  );
  await page.locator(`tr[data-run="${long}"]`).getByText('RUNNING').waitFor({ timeout: 5000 });
  await ctx.screenshot(page, 'long-running');
  const started = Date.now();
  await page.getByRole('button', { name: 'Cancel run' }).click();
  await page.waitForFunction(
    () => document.querySelector('[data-testid="run-status"]')?.textContent === 'CANCELLED',
    null,
    { timeout: 25000 },
  );
  check(Date.now() - started < 25000, 'the cancel took as long as the program');
  check(!(await output.textContent()).includes('never'), 'the cancelled run went on to the end');
  check((await page.getByRole('button', { name: 'Cancel run' }).count()) === 0, 'an ended run still offers Cancel');
  const longOnServer = (await gql(dev.token, RUN, { id: long })).sandboxRun;
  check(longOnServer.status === 'CANCELLED' && longOnServer.cancelRequested, `the server has ${JSON.stringify(longOnServer)}`);
  await page.locator(`tr[data-run="${long}"]`).getByText('CANCELLED').waitFor({ timeout: 5000 });
  await ctx.screenshot(page, 'cancelled');

  // The status filter: CANCELLED lists the long run, not the one that succeeded.
  await page.getByRole('form', { name: 'Filter runs' }).getByLabel('Status').selectOption('CANCELLED');
  await page.locator(`tr[data-run="${first}"]`).waitFor({ state: 'detached', timeout: 5000 });
  await page.locator(`tr[data-run="${long}"]`).waitFor();
  check(
    (await page.locator('tbody .badge').allTextContents()).every((s) => s === 'CANCELLED'),
    'the CANCELLED filter lists runs of another status',
  );
  await ctx.screenshot(page, 'filtered');

  // The same page at a phone's width.
  await page.setViewportSize({ width: 420, height: 900 });
  await page.goto(`${page.url()}`);
  await page.getByTestId('run-status').waitFor();
  await ctx.screenshot(page, 'narrow');

  // 3. An observer: runs and output, no start or cancel controls.
  const obs = await ctx.loginAs(observer);
  await obs.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Sandbox' }).click();
  await obs.getByRole('heading', { name: 'Sandbox', level: 1 }).waitFor();
  await obs.locator(`tr[data-run="${first}"]`).waitFor();
  await obs.locator(`tr[data-run="${long}"]`).waitFor();
  check((await obs.getByRole('form', { name: 'Start a run' }).count()) === 0, 'an observer is offered the start form');
  check((await obs.getByRole('button', { name: 'Start run' }).count()) === 0, 'an observer is offered Start run');
  await ctx.screenshot(obs, 'observer-list');
  // A run started elsewhere joins the open list by itself (`sandboxRunChanged`, no reload).
  await subscribed(observer, 'SandboxRunChanged');
  const running = (
    await gql(
      dev.token,
      `mutation($i: StartSandboxRunInput!) { startSandboxRun(input: $i) { id } }`,
      {
        i: {
          language: 'shell',
          code: `echo "${tag} watched"\nsleep 20\n`,
          limits: { timeoutMs: 40000 },
          requestId: crypto.randomUUID(),
        },
      },
    )
  ).startSandboxRun.id;
  await obs.locator(`tr[data-run="${running}"]`).waitFor({ timeout: 15000 });
  // A finished run replays from offset 0.
  await obs.getByRole('link', { name: `Run ${first}` }).click();
  await obs.waitForFunction(
    () => document.querySelector('[data-testid="run-output"]')?.textContent?.includes('line-5'),
  );
  check((await obs.getByTestId('run-status').textContent()) === 'SUCCEEDED', 'the observer does not see SUCCEEDED');
  await ctx.screenshot(obs, 'observer-replay');
  // A running run: live output, but no Cancel.
  await obs.getByRole('link', { name: `Run ${running}` }).click();
  await obs.waitForFunction(
    (t) => document.querySelector('[data-testid="run-output"]')?.textContent?.includes(`${t} watched`),
    tag,
    { timeout: 60000 },
  );
  check((await obs.getByTestId('run-status').textContent()) === 'RUNNING', 'the observer does not see RUNNING');
  check((await obs.getByRole('button', { name: 'Cancel run' }).count()) === 0, 'an observer is offered Cancel');
  await ctx.screenshot(obs, 'observer-running');
  // The developer cancels it over the API; the observer's page sees it end.
  await gql(dev.token, `mutation($id: ID!) { cancelSandboxRun(id: $id) { id } }`, { id: running });
  await obs.waitForFunction(
    () => document.querySelector('[data-testid="run-status"]')?.textContent === 'CANCELLED',
    null,
    { timeout: 25000 },
  );
  await ctx.screenshot(obs, 'observer-cancelled');
});
