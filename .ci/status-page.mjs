// Drives Debian's Chromium through the relay's status page as an operator
// would (.ci/test-status-page starts the relay); exits non-zero on the first
// expectation that does not hold.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url + '/../');
const { chromium } = require('playwright-core');
const { RELAY_URL, STATUS_TOKEN, FAILED_COMMIT, SCREENSHOT } = process.env;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  // Without the token, or with another: 401, and a Basic challenge.
  for (const credentials of [undefined, { username: 'operator', password: 'guess' }]) {
    const stranger = await browser.newContext({ httpCredentials: credentials });
    const refused = await stranger.request.get(`${RELAY_URL}/status`);
    assert.equal(refused.status(), 401, 'the page without the token');
    assert.match(refused.headers()['www-authenticate'], /^Basic realm="bitbucket-status-relay"/);
    await stranger.close();
  }

  const context = await browser.newContext({ httpCredentials: { username: 'operator', password: STATUS_TOKEN }, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const dialogs = [];
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
  const scripts = [];
  page.on('request', (r) => { if (r.resourceType() === 'script' || !r.url().startsWith(RELAY_URL)) scripts.push(r.url()); });

  const overview = await page.goto(`${RELAY_URL}/status`);
  assert.equal(overview.status(), 200);
  assert.match(overview.headers()['content-security-policy'], /default-src 'none'/);
  const backlog = (await page.locator('#backlog').innerText()).trim();
  assert.equal(backlog, '1 status pending, the oldest accepted ' + backlog.split('accepted ')[1], 'the backlog');
  assert.match(backlog, /^1 status pending, the oldest accepted \d+ s ago\.$/);
  assert.ok(await page.locator('svg.plot rect.posts').count() >= 1, 'the plot has bars');
  // One server; two failures: the refusal, and the Bitbucket that is down (the last).
  const cells = await page.locator('#servers tbody tr td').allInnerTexts();
  assert.equal(cells[2], '2', `failures in the last hour: ${cells}`);
  assert.match(cells[3], /503: POST .*\/repositories\/acme\/down\//);

  // Search the commit whose post failed, as a person types it (short).
  await page.fill('#q', FAILED_COMMIT.slice(0, 10));
  await page.click('button[type=submit]');
  await page.waitForSelector('#search h2');
  assert.equal(await page.locator('#search h2').innerText(), `3 statuses for commit ${FAILED_COMMIT.slice(0, 10)}`);
  const failed = page.locator('article.failed');
  assert.equal(await failed.count(), 1, 'one status whose post was refused');
  assert.match(await failed.locator('.last-error').innerText(), /Bitbucket refused the request \(403 Forbidden\)[\s\S]*only the account that created a status \(or a repository admin\) may overwrite it/);
  assert.match(await failed.locator('.waiting').innerText(), /Bitbucket refused the last post, and a refusal is not retried on its own/);

  // The project named with markup is text: no image element, no alert.
  const names = await page.locator('dd.project').allInnerTexts();
  assert.ok(names.includes('acme/<img src=x onerror=alert(1)>'), `project names shown: ${names}`);
  assert.equal(await page.locator('main img').count(), 0, 'an <img> from a project name');
  assert.deepEqual(dialogs, [], 'a dialog opened');
  assert.deepEqual(scripts, [], 'a script or an asset from elsewhere was requested');

  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`ok: backlog "${backlog}", the refused post explained, the injected name shown as text, no script; ${SCREENSHOT}`);
} finally {
  await browser.close();
}
