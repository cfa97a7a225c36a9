// What every console browser test shares: a headless Chromium that may talk to the loopback
// only, GraphQL calls as another client (fetch), users of each role, logging in through the
// page, and screenshots kept under target/console-screenshots.
//
// Each test is a script run by tests/console.rs against a real server on the services
// profile: AURUM_URL is its base URL, AURUM_ADMIN_TOKEN an administrator's access token.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const base = process.env.AURUM_URL;
export const adminToken = process.env.AURUM_ADMIN_TOKEN;
const shots = process.env.AURUM_SCREENSHOTS || 'target/console-screenshots';
if (!base || !adminToken) {
  console.error('AURUM_URL and AURUM_ADMIN_TOKEN must be set');
  process.exit(2);
}

/** One GraphQL call as another client; throws with the first error's code. */
export async function gql(token, query, variables = {}) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: token
      ? { 'content-type': 'application/json', authorization: `Bearer ${token}` }
      : { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors?.length) {
    const e = new Error(`${body.errors[0].extensions?.code}: ${body.errors[0].message}`);
    e.code = body.errors[0].extensions?.code;
    throw e;
  }
  return body.data;
}

let users = 0;
/** A new user of `role` (ADMIN, OPERATOR, DEVELOPER, OBSERVER) and their access token. */
export async function user(role) {
  users += 1;
  const username = `${role.toLowerCase()}-${process.pid}-${users}-${Date.now() % 100000}`;
  const password = `pw-${Math.random().toString(36).slice(2)}-Aa1!`;
  await gql(
    adminToken,
    'mutation($i: CreateUserInput!) { createUser(input: $i) { id } }',
    { i: { username, password, role } },
  );
  const data = await gql(
    null,
    'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }',
    { u: username, p: password },
  );
  return { username, password, role, token: data.login.token };
}

/**
 * Runs `body(ctx)` with a fresh browser; fails when a request leaves the loopback, when the
 * page throws, or when `body` does. `name` names the screenshots.
 */
export async function run(name, body) {
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const external = [];
  const pageErrors = [];
  let shot = 0;
  const open = async (viewport = { width: 1366, height: 850 }) => {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('request', (req) => {
      const url = new URL(req.url());
      if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) && url.protocol !== 'data:') {
        external.push(req.url());
      }
    });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    // What the page sends on its subscription socket (to know what it has asked for).
    page.sentFrames = [];
    page.endFrames = [];
    page.on('websocket', (ws) => {
      ws.on('framesent', (f) => page.sentFrames.push(String(f.payload)));
      // Errors and completions the server sent: a live view that stops updating shows why.
      ws.on('framereceived', (f) => {
        const text = String(f.payload);
        if (text.includes('"type":"error"') || text.includes('"type":"complete"')) page.endFrames.push(text.slice(0, 400));
      });
      ws.on('close', () => page.endFrames.push('socket closed'));
    });
    page.on('console', (m) => {
      if (m.text().startsWith('subscription socket closed')) page.endFrames.push(m.text());
    });
    return page;
  };
  const ctx = {
    open,
    /** Opens a page and logs in as `who` through the login form. */
    async loginAs(who, viewport) {
      const page = await open(viewport);
      await page.goto(`${base}/console/`);
      await page.getByLabel('Username').fill(who.username);
      await page.getByLabel('Password').fill(who.password);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.getByRole('navigation', { name: 'Views' }).waitFor();
      return page;
    },
    async screenshot(page, label) {
      shot += 1;
      const path = join(shots, `${name}-${String(shot).padStart(2, '0')}-${label}.png`);
      await page.screenshot({ path, fullPage: true });
      console.log(`screenshot ${path}`);
    },
  };
  let code = 1;
  try {
    await body(ctx);
    if (external.length) throw new Error(`requests left the machine: ${external.join(', ')}`);
    if (pageErrors.length) throw new Error(`the page threw: ${pageErrors.join(' | ')}`);
    code = 0;
  } catch (err) {
    console.error(`${name} failed: ${err.stack || err}`);
    for (const context of browser.contexts()) {
      for (const page of context.pages()) {
        if (page.endFrames?.length) console.error(`subscription ends seen by ${page.url()}: ${page.endFrames.join(' | ')}`);
        shot += 1;
        await page
          .screenshot({ path: join(shots, `${name}-${String(shot).padStart(2, '0')}-FAILED.png`), fullPage: true })
          .catch(() => undefined);
      }
    }
  } finally {
    await browser.close();
  }
  process.exit(code);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `who` holds a live subscription named `operationName` on the server (subscription
 * admin), so that a change made next is one the page must see.
 */
export async function subscribed(who, operationName) {
  for (let i = 0; i < 100; i += 1) {
    const { activeSubscriptions } = await gql(adminToken, '{ activeSubscriptions { caller operationName } }');
    if (activeSubscriptions.some((s) => s.caller === `user:${who.username}` && s.operationName === operationName)) {
      return;
    }
    await sleep(100);
  }
  throw new Error(`${who.username} never subscribed to ${operationName}`);
}

/** Fails with `message` unless `cond`. */
export function check(cond, message) {
  if (!cond) throw new Error(message);
}
