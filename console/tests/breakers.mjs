// The Breakers view, end to end: an operator watches the page while another client creates
// a breaker and drives it OPEN with failed calls; the page shows OPEN without a reload and
// the transition in its history. The operator then forces it closed (DISABLED) and resets
// it (CLOSED) from the page, each with a reason that lands in the history. An observer sees
// the breaker and its state but no control.
import { adminToken, check, gql, run, subscribed, user } from './lib.mjs';

// Breakers are listed by name: a leading digit puts this one on the first page.
const name = `0console-${process.pid}-${Date.now()}`;
const MINIMUM_CALLS = 2;

async function serverState() {
  const d = await gql(adminToken, 'query($n: String!) { circuitBreaker(name: $n) { state } }', { n: name });
  return d.circuitBreaker?.state;
}

run('breakers', async (ctx) => {
  try {
    await scenario(ctx);
  } finally {
    // Leave nothing forced behind, whatever happened.
    await gql(adminToken, 'mutation($n: String!) { resetCircuitBreaker(name: $n, reason: "console test done") { state } }', {
      n: name,
    }).catch(() => undefined);
  }
});

async function scenario(ctx) {
  const operator = await user('OPERATOR');
  const observer = await user('OBSERVER');

  const page = await ctx.loginAs(operator);
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Breakers' }).click();
  await page.getByRole('heading', { name: 'Breakers', level: 1 }).waitFor();
  await page.locator('.live-live').waitFor();
  await subscribed(operator, 'BreakersChanged');
  await ctx.screenshot(page, 'opened');

  // 1. Another client creates the breaker: it appears live, CLOSED.
  await gql(
    adminToken,
    'mutation($i: ConfigureCircuitBreakerInput!) { configureCircuitBreaker(input: $i) { name state } }',
    {
      i: {
        name,
        slidingWindowType: 'COUNT_BASED',
        slidingWindowSize: MINIMUM_CALLS,
        minimumNumberOfCalls: MINIMUM_CALLS,
        failureRateThreshold: 50,
        // OPEN stays OPEN for the whole test: no wait elapses on its own.
        waitDurationInOpenStateMs: 600000,
        automaticTransitionFromOpenToHalfOpen: false,
        reason: 'console browser test',
      },
    },
  );
  const card = page.getByRole('article', { name: `Breaker ${name}` });
  await card.waitFor();
  await card.locator('.brk-state', { hasText: /^CLOSED$/ }).waitFor();
  await ctx.screenshot(page, 'configured-live');

  // 2. Failed calls through it open it: the page shows OPEN without a reload.
  for (let i = 0; i < MINIMUM_CALLS; i += 1) {
    const p = await gql(
      adminToken,
      'mutation($n: String!) { acquireCircuitBreakerPermit(name: $n) { permitted permitId state } }',
      { n: name },
    );
    check(p.acquireCircuitBreakerPermit.permitted, `call ${i + 1} was permitted`);
    await gql(
      adminToken,
      'mutation($i: RecordCircuitBreakerOutcomeInput!) { recordCircuitBreakerOutcome(input: $i) { counted state } }',
      { i: { permitId: p.acquireCircuitBreakerPermit.permitId, outcome: 'FAILURE', durationMs: 5 } },
    );
  }
  check((await serverState()) === 'OPEN', 'the failures opened the breaker');
  await card.locator('.brk-state', { hasText: /^OPEN$/ }).waitFor();
  await page
    .getByRole('list', { name: 'Live breaker changes' })
    .locator('li', { hasText: name })
    .getByText('THRESHOLDS_EXCEEDED')
    .waitFor();
  await ctx.screenshot(page, 'open-live');

  // 3. Its detail: the transition that opened it.
  await card.getByRole('link', { name: `Details of breaker ${name}` }).click();
  const detail = page.getByRole('region', { name: `Breaker ${name}` });
  await detail.locator('.brk-state', { hasText: /^OPEN$/ }).waitFor();
  const history = detail.getByRole('table', { name: `Transitions of ${name}` });
  await history.locator('tr', { hasText: 'CLOSED → OPEN' }).getByText('THRESHOLDS_EXCEEDED').waitFor();
  await ctx.screenshot(page, 'detail');

  // 4. Force it closed from the page, with a reason.
  const reason = `closing by hand ${process.pid}`;
  await detail.getByRole('button', { name: 'Force close', exact: true }).click();
  await detail.getByRole('form', { name: 'Force close' }).getByLabel('Reason').fill(reason);
  await detail.getByRole('form', { name: 'Force close' }).getByRole('button', { name: 'Force close' }).click();
  await detail.locator('.brk-state', { hasText: /^DISABLED$/ }).waitFor();
  await card.locator('.brk-state', { hasText: /^DISABLED$/ }).waitFor();
  await history.locator('tr', { hasText: 'OPEN → DISABLED' }).getByText(reason).waitFor();
  check((await serverState()) === 'DISABLED', 'the server has it DISABLED (forced closed)');
  await ctx.screenshot(page, 'forced-closed');

  // 5. Reset it: CLOSED with an empty window.
  await detail.getByRole('button', { name: 'Reset', exact: true }).click();
  await detail.getByRole('form', { name: 'Reset' }).getByLabel('Reason').fill(`${reason}, done`);
  await detail.getByRole('form', { name: 'Reset' }).getByRole('button', { name: 'Reset' }).click();
  await card.locator('.brk-state', { hasText: /^CLOSED$/ }).waitFor();
  await history.locator('tr', { hasText: 'DISABLED → CLOSED' }).getByText(`${reason}, done`).waitFor();
  check((await serverState()) === 'CLOSED', 'the server has it CLOSED');
  await ctx.screenshot(page, 'reset');

  // 6. Opened elsewhere by hand, the open page follows.
  await gql(adminToken, 'mutation($n: String!) { forceOpenCircuitBreaker(name: $n, reason: "console test") { state } }', {
    n: name,
  });
  await card.locator('.brk-state', { hasText: /^FORCED_OPEN$/ }).waitFor();
  await detail.locator('.brk-state', { hasText: /^FORCED_OPEN$/ }).waitFor();
  await history.locator('tr', { hasText: 'CLOSED → FORCED_OPEN' }).waitFor();

  // 7. An observer sees it and its state, and no control.
  const watcher = await ctx.loginAs(observer);
  await watcher.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Breakers' }).click();
  const seen = watcher.getByRole('article', { name: `Breaker ${name}` });
  await seen.locator('.brk-state', { hasText: /^FORCED_OPEN$/ }).waitFor();
  await seen.getByRole('link', { name: `Details of breaker ${name}` }).click();
  await watcher.getByRole('region', { name: `Breaker ${name}` }).getByRole('table').waitFor();
  for (const control of ['Force open', 'Force close', 'Metrics only', 'Reset', 'Reset all']) {
    check(
      (await watcher.getByRole('button', { name: control, exact: true }).count()) === 0,
      `an observer has no ${control}`,
    );
  }
  await ctx.screenshot(watcher, 'observer');

  // 8. The narrow layout, with the breaker open.
  const narrow = await ctx.loginAs(operator, { width: 420, height: 900 });
  await narrow.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Breakers' }).click();
  await narrow.getByRole('article', { name: `Breaker ${name}` }).getByRole('link').click();
  await narrow.getByRole('region', { name: `Breaker ${name}` }).getByRole('table').waitFor();
  const width = await narrow.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 420, `the page fits 420 px (it is ${width} px wide)`);
  await ctx.screenshot(narrow, 'narrow');
}
