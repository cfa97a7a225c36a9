// The Dead letters view, end to end: an operator watches the page while another client
// dead-letters a message (enqueue → claim → reject); the letter appears without a reload,
// its detail shows what it carried, and the operator retries one, resolves another with a
// note and redrives a third after a dry run. An observer sees the list but no action.
import { adminToken, base, check, gql, run, subscribed, user } from './lib.mjs';

const tag = `dlq-console-${process.pid}-${Date.now()}`;

/** Dead-letters a fresh task's message on `default` as another client; returns its task id. */
async function deadLetter(label) {
  const task = await gql(
    adminToken,
    'mutation($i: CreateTaskInput!) { createTask(input: $i) { id } }',
    { i: { title: `${tag} ${label}` } },
  );
  const taskId = task.createTask.id;
  const payload = JSON.stringify({ test: tag, label });
  await gql(
    adminToken,
    'mutation($i: EnqueueTaskInput!) { enqueueTask(input: $i) { sequence } }',
    { i: { taskId, queue: 'default', payload, requestId: `${tag}-${label}` } },
  );
  // The queue may hold other messages: claim until ours comes, and hand the others back.
  for (let round = 0; round < 20; round += 1) {
    const claimed = await gql(
      adminToken,
      'mutation { claimTaskMessages(queue: "default", max: 100, waitMs: 2000) { deliveryId taskId } }',
    );
    let ours = null;
    for (const d of claimed.claimTaskMessages) {
      if (d.taskId === taskId) {
        ours = d;
      } else {
        await handBack(d.deliveryId);
      }
    }
    if (ours) {
      await gql(
        adminToken,
        'mutation($d: String!, $r: String!) { rejectTaskMessage(deliveryId: $d, reason: $r) { deliveryId } }',
        { d: ours.deliveryId, r: `poison ${tag} ${label}` },
      );
      return { taskId, payload };
    }
  }
  throw new Error(`the message of task ${taskId} never came to be claimed`);
}

/** Hands back a claimed message that is not this test's, for its owner to claim again. */
async function handBack(deliveryId) {
  await gql(
    adminToken,
    'mutation($d: String!) { nackTaskMessage(deliveryId: $d, error: "claimed by the console DLQ test", delaySeconds: 0) { deliveryId } }',
    { d: deliveryId },
  );
}

/** Takes the messages that retry and redrive put back for `taskIds` off the queue. */
async function settle(taskIds) {
  const left = new Set(taskIds);
  for (let round = 0; round < 10 && left.size; round += 1) {
    const claimed = await gql(
      adminToken,
      'mutation { claimTaskMessages(queue: "default", max: 100, waitMs: 1000) { deliveryId taskId } }',
    );
    for (const d of claimed.claimTaskMessages) {
      if (left.has(d.taskId)) {
        left.delete(d.taskId);
        await gql(adminToken, 'mutation($d: String!) { ackTaskMessage(deliveryId: $d) { deliveryId } }', {
          d: d.deliveryId,
        });
      } else {
        await handBack(d.deliveryId);
      }
    }
  }
}

async function dlqOf(taskId) {
  const data = await gql(
    adminToken,
    'query($f: DlqFilterInput) { dlqMessages(filter: $f, first: 5) { nodes { id status note } } }',
    { f: { taskId } },
  );
  return data.dlqMessages.nodes;
}

run('dead-letters', async (ctx) => {
  const operator = await user('OPERATOR');
  const observer = await user('OBSERVER');

  const page = await ctx.loginAs(operator);
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Dead letters' }).click();
  await page.getByRole('heading', { name: 'Dead letters', level: 1 }).waitFor();
  await page.getByRole('region', { name: 'Queues' }).getByRole('article', { name: 'Queue default' }).waitFor();
  // The subscription is up before the letter dies (the badge says live, the server lists it).
  await page.locator('.live-live').waitFor();
  await subscribed(operator, 'DeadLettersAdded');
  await ctx.screenshot(page, 'opened');

  // 1. A new dead letter appears in the open page, no reload.
  const first = await deadLetter('retry-me');
  const arrivals = page.getByRole('list', { name: 'New dead letters' });
  await arrivals.getByText(first.taskId).waitFor();
  check((await dlqOf(first.taskId)).length === 1, 'the server holds the new dead letter');
  await ctx.screenshot(page, 'arrived-live');

  // 2. Its detail: payload, reason and the reported error.
  await arrivals.getByRole('link', { name: `Details of the new dead letter of task ${first.taskId}` }).click();
  const detail = page.getByRole('region', { name: /^Dead letter / });
  await detail.getByText(`"label": "retry-me"`).waitFor();
  await detail.getByText(`poison ${tag} retry-me`).first().waitFor();
  check((await detail.locator('.status').textContent()) === 'OPEN', 'a new dead letter is OPEN');
  await ctx.screenshot(page, 'detail');

  // 3. Retry it from the page.
  await detail.getByRole('button', { name: 'Retry', exact: true }).click();
  await detail.locator('.status', { hasText: 'RETRIED' }).waitFor();
  await detail.getByRole('status').getByText(/Published back to/).waitFor();
  check((await detail.getByRole('button', { name: 'Retry', exact: true }).count()) === 0, 'no retry once retried');
  const retried = await dlqOf(first.taskId);
  check(retried[0]?.status === 'RETRIED', `the server shows it RETRIED (got ${retried[0]?.status})`);
  // Retried, it leaves the list of open letters (the default filter).
  await page.locator('table.dlq-table').getByText(first.taskId).waitFor({ state: 'detached' });
  await ctx.screenshot(page, 'retried');
  // The retry put it back on the queue: a worker takes it, so the next letters are the only
  // messages there (claimed back and forth, it would die again after its deliveries).
  await settle([first.taskId]);

  // 4. Resolve another with a note.
  const second = await deadLetter('resolve-me');
  check((await dlqOf(second.taskId)).length === 1, 'the server holds the second dead letter');
  await arrivals.getByText(second.taskId).waitFor();
  await arrivals.getByRole('link', { name: `Details of the new dead letter of task ${second.taskId}` }).click();
  const detail2 = page.getByRole('region', { name: /^Dead letter / });
  await detail2.getByText(`"label": "resolve-me"`).waitFor();
  await detail2.getByRole('button', { name: 'Resolve', exact: true }).click();
  await detail2.getByLabel('Note (why no retry)').fill(`handled by hand ${tag}`);
  await detail2.getByRole('form', { name: 'Resolve' }).getByRole('button', { name: 'Resolve' }).click();
  await detail2.locator('.status', { hasText: 'RESOLVED' }).waitFor();
  await detail2.getByText(`handled by hand ${tag}`).waitFor();
  const resolved = await dlqOf(second.taskId);
  check(resolved[0]?.status === 'RESOLVED' && resolved[0]?.note === `handled by hand ${tag}`, 'the server keeps the note');
  await ctx.screenshot(page, 'resolved');

  // 5. Redrive a third: the filter narrows to its task, a dry run counts it, then it moves.
  const third = await deadLetter('redrive-me');
  await arrivals.getByText(third.taskId).waitFor();
  const filters = page.getByRole('form', { name: 'Filter dead letters' });
  await filters.getByLabel('Task id').fill(third.taskId);
  await filters.getByRole('button', { name: 'Apply' }).click();
  await page.locator('.dlq-total-count', { hasText: /^1$/ }).waitFor();
  const table = page.locator('table.dlq-table');
  await table.getByText(third.taskId).waitFor();
  check((await table.locator('tbody tr').count()) === 1, 'the filter narrows the list to the one letter');
  const redrive = page.getByRole('region', { name: 'Redrive' });
  await redrive.getByRole('button', { name: 'Dry run' }).click();
  await redrive.locator('.dlq-dry-count', { hasText: /^1$/ }).waitFor();
  check((await dlqOf(third.taskId))[0]?.status === 'OPEN', 'a dry run moves nothing');
  await ctx.screenshot(page, 'redrive-dry-run');
  await redrive.getByRole('button', { name: 'Redrive 1 now' }).click();
  await redrive.locator('.redrive-status', { hasText: 'COMPLETED' }).waitFor({ timeout: 30000 });
  const bar = redrive.getByRole('progressbar', { name: 'Dead letters moved' });
  check((await bar.getAttribute('aria-valuenow')) === '1', 'the progress bar shows the one letter moved');
  check((await dlqOf(third.taskId))[0]?.status === 'RETRIED', 'the redrive moved it back');
  await page.getByText('No dead letter matches.').waitFor();
  await ctx.screenshot(page, 'redrive-done');

  // 6. An observer sees the list and a letter, and no action.
  const watcher = await ctx.loginAs(observer);
  await watcher.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Dead letters' }).click();
  const filters2 = watcher.getByRole('form', { name: 'Filter dead letters' });
  await filters2.getByLabel('Task id').fill(second.taskId);
  await filters2.getByLabel('Status').selectOption('any');
  await filters2.getByRole('button', { name: 'Apply' }).click();
  await watcher.locator('table.dlq-table').getByText(second.taskId).waitFor();
  await watcher.locator('table.dlq-table').getByRole('link', { name: new RegExp(`^Dead letter .* of task ${second.taskId}$`) }).click();
  await watcher.getByRole('region', { name: /^Dead letter / }).getByText(`"label": "resolve-me"`).waitFor();
  for (const name of ['Retry', 'Resolve', 'Dry run']) {
    check((await watcher.getByRole('button', { name, exact: true }).count()) === 0, `an observer has no ${name}`);
  }
  check((await watcher.getByRole('region', { name: 'Redrive' }).count()) === 0, 'an observer has no redrive');
  await ctx.screenshot(watcher, 'observer');

  // 7. The narrow layout, with a letter opened by its address.
  const [letter] = await dlqOf(second.taskId);
  const narrow = await ctx.loginAs(operator, { width: 420, height: 900 });
  await narrow.goto(`${base}/console/dead-letters?id=${letter.id}`);
  await narrow.getByRole('heading', { name: 'Dead letters', level: 1 }).waitFor();
  await narrow.locator('.dlq-total-count').waitFor();
  await narrow.getByRole('region', { name: `Dead letter ${letter.id}` }).getByText(`handled by hand ${tag}`).waitFor();
  const width = await narrow.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 420, `the page fits 420 px (it is ${width} px wide)`);
  await ctx.screenshot(narrow, 'narrow');

  // The retried and the redriven messages are back on the queue: take them off.
  await settle([first.taskId, third.taskId]);
});
