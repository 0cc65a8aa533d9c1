// Browser test of the dashboard: Debian's chromium driven by playwright-core. Started by
// actors/tests/dashboard.rs, which runs the daemon (fake evaluator, mock LLM whose replies
// carry a <script>) and passes DASH_URL, DASH_TOKEN, DASH_BUDGET, DASH_OUT and PLAYWRIGHT_DIR.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const url = env('DASH_URL');
const token = env('DASH_TOKEN');
const budget = Number(env('DASH_BUDGET'));
const out = env('DASH_OUT');
const require = createRequire(path.join(env('PLAYWRIGHT_DIR'), 'package.json'));
const { chromium } = require('playwright-core');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const step = (m) => console.log(`e2e: ${m}`);
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  let navigations = 0;
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations += 1; });
  // Anything but the daemon itself (a CDN, a font) would fail without internet: refuse it.
  const foreign = [];
  await page.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.origin !== new URL(url).origin) { foreign.push(u.href); return route.abort(); }
    return route.continue();
  });

  await page.goto(url);
  await page.evaluate(() => { window.__samePage = true; });
  // auth_reads is on: without a token the list is refused and the page says so.
  await page.waitForFunction(() => document.querySelector('#list-msg').textContent.includes('401')
    || document.querySelector('#auth-state').textContent.includes('sign-in'));
  step('unauthenticated list refused');

  await page.fill('#token', token);
  await page.click('#signin button[type=submit]');
  await page.click('#new-search summary');
  await page.fill('#config', JSON.stringify({ search: { budget, in_flight: 1 } }));
  await page.click('#submit-btn');
  await page.waitForFunction(() => /^s[0-9a-f]+$/.test(document.querySelector('#detail-id').textContent));
  const id = await page.textContent('#detail-id');
  step(`submitted ${id}`);
  assert.ok(!page.url().includes(token), 'the token must not be in the URL');

  // Live: rows arrive one after another on the same page, with no reload.
  const evaluatedRows = () => page.locator('#candidates tbody tr.kind-evaluated').count();
  await page.waitForFunction(() => document.querySelectorAll('#candidates tbody tr.kind-evaluated').length >= 1);
  const first = await evaluatedRows();
  assert.ok(first < budget, `the first look should be mid-search, saw ${first} of ${budget}`);
  await page.waitForFunction((n) => document.querySelectorAll('#candidates tbody tr.kind-evaluated').length === n,
    budget, { timeout: 60000 });
  step(`candidates went from ${first} to ${budget} live`);
  assert.equal(await page.evaluate(() => window.__samePage), true, 'the page was reloaded');
  assert.equal(navigations, 1, 'the page navigated again');

  await page.waitForFunction(() => document.querySelector('#detail-status').textContent === 'completed',
    null, { timeout: 30000 });
  // One point per evaluated candidate with a score, as the API lists them.
  const api = await page.evaluate(async ([sid, t]) => {
    const r = await fetch(`/searches/${sid}/candidates?limit=500`, { headers: { Authorization: `Bearer ${t}` } });
    return r.json();
  }, [id, token]);
  const scored = api.items.filter((c) => c.score !== null).length;
  assert.equal(api.total, budget);
  assert.ok(scored > 0);
  assert.equal(await page.locator('#curve circle.pt').count(), scored, 'curve points');
  assert.equal(await page.locator('#curve path.bestline').count(), 1);
  assert.ok(await page.locator('#dag circle.node').count() >= 2, 'the best architecture is drawn');
  assert.ok(await page.locator('#dag text.elabel').count() >= 1, 'edges are labelled');
  step(`curve has ${scored} points`);

  // The mock's second reply is not an architecture: a rejected proposal with its reason.
  await page.selectOption('#filter', 'rejected');
  const rejected = page.locator('#candidates tbody tr.kind-rejected');
  assert.ok(await rejected.count() >= 1, 'a rejected proposal is listed');
  assert.ok((await rejected.first().locator('td.reason').textContent()).length > 0, 'with its reason');
  await page.selectOption('#filter', 'all');

  // Sorting by score puts the best first.
  await page.click('#candidates th[data-key=score]');
  const top = await page.locator('#candidates tbody tr').first().getAttribute('data-candidate');
  const best = api.items.filter((c) => c.score !== null).sort((a, b) => a.score - b.score)[0];
  assert.equal(Number(top), best.candidate, 'sorted by score');

  await page.screenshot({ path: path.join(out, 'dashboard.png'), fullPage: true });

  // A reply with <script> is shown as text and never runs.
  await page.locator('#candidates tbody tr.kind-evaluated').first().click();
  const reply = page.locator('#exchange pre.reply').first();
  await reply.waitFor();
  const text = await reply.textContent();
  assert.ok(text.includes('<script>window.__pwned=1</script>'), `reply text: ${text}`);
  await page.getByText('<script>window.__pwned=1</script>').first().waitFor({ state: 'visible' });
  assert.ok((await page.locator('#exchange pre.prompt').first().textContent()).length > 0, 'the prompt is shown');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'a reply ran as script');
  assert.equal(await page.locator('#exchange-body script').count(), 0);
  await page.screenshot({ path: path.join(out, 'dashboard-reply.png'), fullPage: false });
  step('reply shown as text');

  assert.deepEqual(foreign, [], 'requests outside the daemon');
  assert.deepEqual(pageErrors, [], 'page errors');
  console.log('e2e: ok');
} finally {
  await browser.close();
}
