// Sessions in the console, on a server whose access tokens live 5 s: the page refreshes its
// token (and restarts its socket under it) before expiry, so live updates continue past the
// first token's end; logging out returns to the login page and revokes the refresh token; a
// user disabled by an administrator is sent back to the login page when the next refresh is
// refused.
import { adminToken, check, gql, run, user } from './lib.mjs';

const storedToken = (page) =>
  page.evaluate(() => JSON.parse(sessionStorage.getItem('aurum.console.session') || 'null')?.token ?? null);

run('session', async (ctx) => {
  const operator = await user('OPERATOR');
  const page = await ctx.loginAs(operator);
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Tasks' }).click();
  const first = await storedToken(page);
  check(first, 'the session is stored after login');

  // Past the first token's lifetime: a new token, still logged in, and live updates arrive.
  await page.waitForTimeout(7000);
  const second = await storedToken(page);
  check(second && second !== first, 'the access token was refreshed before it expired');
  const title = `after-refresh-${Date.now()}`;
  await gql(adminToken, 'mutation($t: String!) { createTask(input: { title: $t }) { id } }', { t: title });
  await page.getByText(title).first().waitFor({ timeout: 10000 });
  await ctx.screenshot(page, 'live-after-refresh');

  // Log out: the login page, nothing stored, and the refresh token no longer works.
  const refreshToken = await page.evaluate(
    () => JSON.parse(sessionStorage.getItem('aurum.console.session')).refreshToken,
  );
  // The page leaves the session at once and revokes it on the server meanwhile: wait for that
  // answer before trying the old refresh token.
  const revoked = page.waitForResponse(
    (r) => r.url().endsWith('/graphql') && (r.request().postData() ?? '').includes('ConsoleLogout'),
  );
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByText('You are logged out.').waitFor();
  await revoked;
  check((await storedToken(page)) === null, 'logging out clears the session');
  const refused = await gql(
    null,
    'mutation($r: String!) { refreshToken(refreshToken: $r) { token } }',
    { r: refreshToken },
  ).then(() => null, (e) => e.code);
  check(refused === 'UNAUTHENTICATED', `a logged-out refresh token is refused (got ${refused})`);
  await ctx.screenshot(page, 'logged-out');

  // Disabled while logged in: the next refresh is refused and the page says the session ended.
  const again = await ctx.loginAs(operator);
  // (The token `user()` returned has expired by now: log in afresh to learn the id.)
  const fresh = await gql(
    null,
    'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { user { id } } }',
    { u: operator.username, p: operator.password },
  );
  await gql(adminToken, 'mutation($id: ID!) { setUserDisabled(id: $id, disabled: true) { id } }', {
    id: fresh.login.user.id,
  });
  await again.getByText('Your session expired. Log in again.').waitFor({ timeout: 15000 });
  check(await again.getByLabel('Username').isVisible(), 'the login form is shown');
  await ctx.screenshot(again, 'expired');
});
