// Drives Debian's Chromium through the relay's status page as an operator
// would (.ci/test-status-page starts the relay); exits non-zero on the first
// expectation that does not hold.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url + '/../');
const { chromium } = require('playwright-core');
const { RELAY_URL, STATUS_TOKEN, FAILED_COMMIT, QUIET_COMMIT, SCREENSHOT } = process.env;
const axeSource = require('fs').readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

// axe checks the page as it is now: no violation that axe rates serious or
// critical (colour contrast among them). The page's CSP allows no script, so
// axe is evaluated through the browser's own protocol, not injected.
async function accessible(page, what) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), [],
    `axe-core on ${what}`);
  return result.violations.length;
}

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

  // Bitbucket's number for each pipeline (#N) beside GitLab's id.
  assert.match(await page.locator('article', { hasText: 'acme/widgets' }).locator('dd').nth(2).innerText(), /SUCCESSFUL for pipeline 3100 \(#1100\)/);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  const light = await accessible(page, 'a commit (light)');

  // A query the page cannot read is refused, and stays in the box to mend.
  await page.fill('#q', 'main');
  await page.click('button[type=submit]');
  await page.waitForSelector('#search-error');
  assert.match(await page.locator('#search-error').innerText(), /^search for a commit/);
  assert.equal(await page.inputValue('#q'), 'main', 'the refused query is kept');

  // What operators paste: a GitLab commit URL, a Bitbucket commit URL, a
  // project in another letter case, its GitLab URL.
  for (const [query, title] of [
    [`https://gitlab.example.com/acme/widgets/-/commit/${FAILED_COMMIT}`, `3 statuses for commit ${FAILED_COMMIT}`],
    [`https://bitbucket.org/acme/widgets/commits/${FAILED_COMMIT.slice(0, 12)}`, `3 statuses for commit ${FAILED_COMMIT.slice(0, 12)}`],
    ['ACME/Widgets', '23 statuses for project ACME/Widgets, page 1 of 2'],
    ['https://gitlab.example.com/acme/widgets/-/pipelines/3001', '23 statuses for project acme/widgets, page 1 of 2'],
  ]) {
    await page.goto(`${RELAY_URL}/status?q=${encodeURIComponent(query)}`);
    assert.equal(await page.locator('#search h2').innerText(), title, `search ${query}`);
    assert.equal(await page.inputValue('#q'), query, 'the query stays in the box');
  }
  // The next page holds the rest.
  await page.click('a[rel=next]');
  assert.equal(await page.locator('#search h2').innerText(), '23 statuses for project acme/widgets, page 2 of 2');
  assert.equal(await page.locator('article.status').count(), 3, 'the second page');

  // A commit whose only pipeline was not reported says why.
  await page.goto(`${RELAY_URL}/status?q=${QUIET_COMMIT}`);
  assert.equal(await page.locator('#search h2').innerText(), `No status for commit ${QUIET_COMMIT}`);
  assert.match(await page.locator('table.skipped').innerText(), /child_pipeline: pipeline 2046 is a child pipeline of pipeline 2045/);

  // Dark mode, and a phone on call: 390 px wide, nothing wider than the screen.
  const phone = await browser.newContext({ httpCredentials: { username: 'operator', password: STATUS_TOKEN }, viewport: { width: 390, height: 844 },
    colorScheme: 'dark', deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  for (const url of [`${RELAY_URL}/status?q=${FAILED_COMMIT.slice(0, 10)}`, `${RELAY_URL}/status?q=acme/widgets`, `${RELAY_URL}/status?q=${QUIET_COMMIT}`]) {
    await small.goto(url);
    const widths = await small.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      widest: Math.max(...[...document.querySelectorAll('main *, header *')].map((e) => e.getBoundingClientRect().right)),
    }));
    assert.ok(widths.page <= 390 && widths.widest <= 390.5, `at 390 px, ${url} is ${widths.page} px wide (its widest element ends at ${widths.widest})`);
    await accessible(small, `${url} (dark, 390 px)`);
  }
  assert.equal(await small.evaluate(() => matchMedia('(prefers-color-scheme: dark)').matches), true, 'dark mode');
  await small.goto(`${RELAY_URL}/status?q=${FAILED_COMMIT.slice(0, 10)}`);
  await small.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-phone-dark.png'), fullPage: true });
  await phone.close();
  console.log(`ok: backlog "${backlog}", the refused post explained, the injected name shown as text, no script; pasted URLs and ` +
    `paging found; axe-core: no serious violation in light (${light} lesser) or dark; 390 px: nothing wider; ${SCREENSHOT}`);
} finally {
  await browser.close();
}
