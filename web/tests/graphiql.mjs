// Opens GraphiQL from a running Aurum in headless Chromium (no internet), runs the query given
// in the page URL, and prints the result panel's text. Exit code 0 only when the result panel
// contains the expected text and no request left the machine's loopback.
//
// usage: node web/tests/graphiql.mjs <graphiql-url-with-?query=> <expected-text> [screenshot.png]
import { chromium } from 'playwright-core';

const [url, expected, screenshot] = process.argv.slice(2);
if (!url || !expected) {
  console.error('usage: graphiql.mjs <url> <expected-text> [screenshot.png]');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let code = 1;
try {
  const page = await browser.newPage();
  const external = [];
  page.on('request', (req) => {
    const host = new URL(req.url()).hostname;
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(host) && !req.url().startsWith('data:')) {
      external.push(req.url());
    }
  });
  page.on('pageerror', (err) => console.error('page error:', err.message));
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('.graphiql-execute-button', { timeout: 20000 });
  await page.click('.graphiql-execute-button');
  const result = page.locator('.result-window');
  await result.getByText(expected, { exact: false }).first().waitFor({ timeout: 20000 });
  const text = await result.innerText();
  console.log(text);
  if (screenshot) await page.screenshot({ path: screenshot });
  if (external.length > 0) {
    console.error('requests left the machine:', external);
  } else {
    code = 0;
  }
} catch (err) {
  console.error('browser check failed:', err.message);
} finally {
  await browser.close();
}
process.exit(code);
