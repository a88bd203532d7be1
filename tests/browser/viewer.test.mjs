// Browser tests of the /viewer page: a real `trailkeep serve` on a free loopback port with a
// temporary data directory, driven in headless Debian Chromium by playwright-core.
//
// Run by scripts/browser-tests.sh, which sets TRAILKEEP_BIN (the binary) and CHROMIUM (the
// browser, default /usr/bin/chromium). Screenshots go to $TRAILKEEP_BROWSER_ARTIFACTS (default
// $TMPDIR/trailkeep-browser-artifacts); the path is printed.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const BIN = process.env.TRAILKEEP_BIN;
const BROWSER = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.TRAILKEEP_BROWSER_ARTIFACTS || join(tmpdir(), 'trailkeep-browser-artifacts');
const ADMIN = 'browser-test-admin-key-0123456789abcdef';
const A_EVENTS = 130;

let base;
const procs = [];
const dirs = [];
let browser;
const aIds = new Set();
const bIds = new Set();
// Every page's CSP violations and console errors; each test ends with none.
let problems = [];

function must(cond, msg) {
  if (!cond) throw new Error(msg);
}

/// Starts `trailkeep serve` on a free loopback port; returns its base URL and process.
async function startServer(configToml) {
  must(BIN, 'TRAILKEEP_BIN must name the trailkeep binary (scripts/browser-tests.sh sets it)');
  const dir = mkdtempSync(join(tmpdir(), 'trailkeep-browser-'));
  dirs.push(dir);
  // Only the variables the test means: serve refuses unknown TRAILKEEP_ variables.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRAILKEEP_')));
  env.TRAILKEEP_ADMIN_KEY = ADMIN;
  env.NO_COLOR = '1';
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data')];
  if (configToml) {
    writeFileSync(join(dir, 'trailkeep.toml'), configToml);
    args.push('--config', join(dir, 'trailkeep.toml'));
  }
  const proc = spawn(BIN, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  procs.push(proc);
  let stderr = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('trailkeep serve did not start within 30 s; stderr:\n' + stderr)), 30000);
    proc.stderr.on('data', (d) => {
      stderr += d;
      const m = /listening on (http:\/\/[0-9.:]+)/.exec(stderr);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`trailkeep serve exited (${code}); stderr:\n${stderr}`)); });
  });
  return url;
}

async function call(method, path, body, at) {
  const r = await fetch((at || base) + path, {
    method,
    headers: { Authorization: 'Bearer ' + ADMIN, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  must(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function hour(i) {
  return new Date(Date.UTC(2026, 0, 1) + i * 3600 * 1000).toISOString();
}

async function seed() {
  const a = [];
  for (let i = 0; i < A_EVENTS; i++) {
    const ev = { tenant_id: 't_a', actor: i % 2 ? 'user:ana@a.example' : 'svc:crawler', timestamp: hour(i) };
    const note = i === 77 ? 'needle-77' : 'note ' + i;
    if (i % 3 === 0) {
      ev.event_type = 'policy.change';
      ev.payload = { before: { limit: i, region: 'eu' }, after: { limit: i + 1, region: 'eu', mode: 'strict' }, note };
    } else if (i % 3 === 1) {
      ev.event_type = 'crawl.finished';
      ev.payload = { pages: i, note };
    } else {
      ev.event_type = 'member.invite';
      ev.payload = { email: `m${i}@a.example`, note };
    }
    a.push(ev);
  }
  const b = [];
  for (let i = 0; i < 20; i++) {
    b.push({ tenant_id: 't_b', actor: 'user:bob@b.example', event_type: 'policy.change', timestamp: hour(i * 5),
      payload: { before: { limit: 1 }, after: { limit: 2 }, note: 'TENANT-B-SECRET needle-77' } });
  }
  for (const r of (await call('POST', '/v1/events', a)).receipts) aIds.add(r.event_id);
  for (const r of (await call('POST', '/v1/events', b)).receipts) bIds.add(r.event_id);
  // Wait for the checkpoint that covers every event of t_a (signed within a second).
  for (let i = 0; i < 100; i++) {
    const r = await fetch(base + '/v1/tenants/t_a/checkpoint', { headers: { Authorization: 'Bearer ' + ADMIN } });
    if (r.ok) {
      const size = Number((await r.text()).split('\n')[1]);
      if (size >= A_EVENTS) return;
    }
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error('no checkpoint covering t_a within 20 s');
}

async function mint(body, at) {
  return (await call('POST', '/v1/viewer-tokens', body, at)).token;
}

async function openViewer(token, name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, timezoneId: 'UTC' });
  const page = await context.newPage();
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
    });
  });
  page.on('console', (m) => {
    // A 400/401/404 the page handles is logged by Chromium as a failed resource; not a problem.
    if (m.type() === 'error' && !/status of 40[014]/.test(m.text())) problems.push(`${name}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  const url = token === null ? `${base}/viewer` : `${base}/viewer?token=${encodeURIComponent(token)}`;
  const resp = await page.goto(url);
  assert.equal(resp.status(), 200);
  return { page, context };
}

async function shot(page, name) {
  const path = join(ARTIFACTS, name + '.png');
  await page.screenshot({ path, fullPage: true });
  return path;
}

async function rowIds(page) {
  return page.$$eval('#rows tr', (trs) => trs.map((t) => ({ id: t.dataset.eventId, type: t.children[1].textContent, actor: t.children[2].textContent })));
}

async function scrollToEnd(page) {
  // Up a little first: a list already at its end fires no scroll event (one that arrived while
  // a page was loading would otherwise be the last).
  await page.$eval('.list', (l) => { l.scrollTop = Math.max(0, l.scrollHeight - l.clientHeight - 40); });
  await page.waitForTimeout(30);
  await page.$eval('.list', (l) => { l.scrollTop = l.scrollHeight; });
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  console.log(`screenshots: ${ARTIFACTS}`);
  base = await startServer();
  await seed();
  browser = await chromium.launch({
    executablePath: BROWSER,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  if (browser) await browser.close();
  // Wait for each server to flush and exit before its data directory is removed.
  await Promise.all(procs.map((p) => new Promise((resolve) => {
    if (typeof p.once !== 'function') { p.kill(); return resolve(); } // a helper server
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    const timer = setTimeout(() => { p.kill('SIGKILL'); resolve(); }, 30000);
    p.once('exit', () => { clearTimeout(timer); resolve(); });
    p.kill('SIGTERM');
  })));
  for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 5 });
});

afterEach(() => {
  const p = problems;
  problems = [];
  assert.deepEqual(p, [], 'CSP violations or console errors');
});

test('the page loads one tenant, and scrolling pages through it to the end', async () => {
  const token = await mint({ tenant_id: 't_a' });
  const { page, context } = await openViewer(token, 'scroll');
  await page.waitForSelector('#rows tr');
  assert.equal(await page.textContent('#scope-tenant'), 't_a');
  await page.waitForFunction(() => document.body.dataset.loaded === '50');
  assert.equal((await rowIds(page)).length, 50);
  await shot(page, '01-loaded');
  // Scrolling loads the next pages through the cursor, until the end of the log.
  for (let i = 0; i < 10; i++) {
    await scrollToEnd(page);
    await page.waitForFunction(() => !document.querySelector('#list-status').textContent.startsWith('Loading'));
    if ((await page.textContent('#list-status')).includes('end of the log')) break;
    await page.waitForTimeout(100);
  }
  assert.match(await page.textContent('#list-status'), /end of the log/);
  const rows = await rowIds(page);
  const own = rows.filter((r) => r.type !== 'audit.read');
  assert.equal(own.length, A_EVENTS, 'every event of t_a, once');
  assert.equal(new Set(own.map((r) => r.id)).size, A_EVENTS);
  for (const r of rows) assert.ok(!bIds.has(r.id), 'an event of t_b is shown');
  const text = await page.textContent('body');
  assert.ok(!text.includes('bob@b.example') && !text.includes('TENANT-B-SECRET'));
  await shot(page, '02-scrolled-to-end');
  // The violation detector itself works: an inline script is refused and reported.
  await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.inlineRan = true';
    document.body.appendChild(s);
  });
  await page.waitForTimeout(200);
  assert.equal(await page.evaluate(() => window.inlineRan), undefined, 'an inline script ran');
  const caught = problems.splice(0);
  assert.ok(caught.some((p) => /CSP violation: script-src/.test(p)), caught.join('\n'));
  await context.close();
});

test('filters: type, actor, time range and text', async () => {
  const token = await mint({ tenant_id: 't_a' });
  const { page, context } = await openViewer(token, 'filters');
  assert.match(await page.textContent('label:has(#f-since)'), /UTC/);
  await page.waitForSelector('#rows tr');
  const apply = async () => {
    await page.click('#f-apply');
    await page.waitForFunction(() => /event|No events/.test(document.querySelector('#list-status').textContent) && !document.querySelector('#list-status').textContent.startsWith('Loading'));
    // Load every page of the result: scroll, let the page's load finish, look again (a
    // generous budget: on a loaded machine one page can take well over a second).
    for (let i = 0; i < 40 && !(await page.textContent('#list-status')).match(/end of the log|No events/); i++) {
      await scrollToEnd(page);
      await page.waitForTimeout(150);
      await page.waitForFunction(() => !document.querySelector('#list-status').textContent.startsWith('Loading'));
    }
    return rowIds(page);
  };
  await page.fill('#f-type', 'policy.change');
  let rows = await apply();
  assert.equal(rows.length, 44);
  assert.ok(rows.every((r) => r.type === 'policy.change'));
  await shot(page, '03-filter-type');

  await page.fill('#f-type', '');
  await page.fill('#f-actor', 'svc:crawler');
  rows = await apply();
  assert.equal(rows.length, 65);
  assert.ok(rows.every((r) => r.actor === 'svc:crawler'));

  await page.fill('#f-actor', '');
  await page.fill('#f-since', '2026-01-02T00:00:00');
  await page.fill('#f-until', '2026-01-03T00:00:00');
  rows = await apply();
  assert.equal(rows.length, 24, 'one event an hour for one day');
  const times = await page.$$eval('#rows td.time', (tds) => tds.map((t) => t.textContent));
  assert.ok(times.every((t) => t.startsWith('2026-01-02')), times.join(','));

  await page.fill('#f-since', '');
  await page.fill('#f-until', '');
  await page.fill('#f-q', 'NEEDLE-77');
  rows = await apply();
  assert.equal(rows.length, 1, 'the text search finds the one event of t_a (and none of t_b)');
  assert.ok(aIds.has(rows[0].id));
  await shot(page, '04-filter-text');

  // A bad filter is explained, not fatal.
  await page.fill('#f-q', '');
  await page.fill('#f-type', 'Not A Type');
  await page.click('#f-apply');
  await page.waitForSelector('#filter-error:not([hidden])');
  assert.match(await page.textContent('#filter-error'), /event_type/);
  await page.click('#f-reset');
  await page.waitForFunction(() => document.body.dataset.loaded === '50');
  await context.close();
});

test('an event opens with its before → after diff and a verified proof', async () => {
  const token = await mint({ tenant_id: 't_a' });
  const { page, context } = await openViewer(token, 'detail');
  await page.fill('#f-type', 'policy.change');
  await page.click('#f-apply');
  await page.waitForFunction(() => document.body.dataset.loaded === '44');
  await page.click('#rows tr:first-child');
  await page.waitForSelector('#diff:not([hidden])');
  assert.equal(await page.textContent('#d-type'), 'policy.change');
  const diff = await page.$$eval('#diff-rows tr', (trs) => trs.map((t) => [t.className, ...[...t.children].map((c) => c.textContent)]));
  // The newest policy.change is i = 129: limit 129 → 130, mode added, region unchanged.
  assert.deepEqual(diff, [
    ['changed', 'limit', '129', '130'],
    ['added', 'mode', '', '"strict"'],
    ['unchanged', 'region', '"eu"', '"eu"'],
  ]);
  await page.waitForSelector('#proof[data-status="verified"]', { timeout: 15000 });
  assert.match(await page.textContent('#proof-badge'), /Verified/);
  assert.match(await page.textContent('#proof-text'), /signed checkpoint/);
  await shot(page, '05-detail-diff-proof');
  // An event without before/after says so.
  await page.click('#f-reset');
  await page.waitForFunction(() => document.body.dataset.loaded === '50');
  await page.click('#rows tr:has(td.type:text-is("crawl.finished"))');
  await page.waitForSelector('#diff-note:not([hidden])');
  assert.match(await page.textContent('#diff-note'), /no before\/after/);
  await context.close();
});

test("a token for t_a cannot reach t_b's events, even from the page's own script", async () => {
  const token = await mint({ tenant_id: 't_a' });
  const { page, context } = await openViewer(token, 'isolation');
  await page.waitForSelector('#rows tr');
  const statuses = await page.evaluate(async ([ids, t]) => {
    const out = [];
    for (const id of ids) {
      for (const p of [`viewer/api/events/${id}`, `viewer/api/events/${id}/proof`]) {
        out.push((await fetch(`${p}?token=${encodeURIComponent(t)}`)).status);
      }
    }
    const naming = await fetch(`viewer/api/events?token=${encodeURIComponent(t)}&tenant_id=t_b`);
    out.push(naming.status);
    return out;
  }, [[...bIds].slice(0, 3), token]);
  assert.deepEqual(statuses, [404, 404, 404, 404, 404, 404, 400]);
  // An actor-bound token shows only that actor.
  const bound = await mint({ tenant_id: 't_a', actor: 'user:ana@a.example' });
  const v = await openViewer(bound, 'actor-bound');
  await v.page.waitForSelector('#rows tr');
  assert.equal(await v.page.textContent('#scope-actor'), 'user:ana@a.example');
  assert.ok(await v.page.isDisabled('#f-actor'));
  assert.ok((await rowIds(v.page)).every((r) => r.actor === 'user:ana@a.example'));
  await shot(v.page, '06-actor-bound');
  await v.context.close();
  await context.close();
});

test('an expired, tampered or missing token shows a clear message', async () => {
  const shortLived = await mint({ tenant_id: 't_a', ttl_seconds: 1 });
  await new Promise((r) => setTimeout(r, 2100));
  const good = await mint({ tenant_id: 't_a' });
  const [head, tag] = [good.slice(0, good.lastIndexOf('.')), good.slice(good.lastIndexOf('.') + 1)];
  const tampered = head.slice(0, -2) + (head.endsWith('A') ? 'B' : 'A') + head.slice(-1) + '.' + tag;
  for (const [token, name, pattern] of [
    [shortLived, '07-expired', /expired at .*ask for a new link/],
    [tampered, '08-tampered', /(signature does not match|malformed).*new link/],
    [null, '09-missing', /full link/],
  ]) {
    const { page, context } = await openViewer(token, name);
    await page.waitForSelector('#notice:not([hidden])');
    assert.ok(await page.isHidden('#app'), 'no log is shown');
    assert.match(await page.textContent('#notice'), pattern);
    console.log(`${name}: ${await shot(page, name)}`);
    await context.close();
  }
});

/// A page on another loopback origin (its own port) that frames `viewerUrl`; returns what the
/// frame shows (`ready` when the viewer rendered) and the console's messages.
let embedder;
async function startEmbedder() {
  const srv = createServer((req, res) => {
    const target = new URL(req.url, 'http://x').searchParams.get('src') || '';
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!doctype html><title>embedder</title><iframe id="f" width="1200" height="700" src="${target.replace(/"/g, '&quot;')}"></iframe>`);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  procs.push({ kill: () => srv.close() });
  return `http://127.0.0.1:${srv.address().port}`;
}

async function framed(viewerUrl) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const consoleText = [];
  page.on('console', (m) => consoleText.push(m.text()));
  await page.goto(`${embedder}/?src=${encodeURIComponent(viewerUrl)}`);
  await page.waitForTimeout(1000);
  const frame = page.frames().find((f) => f !== page.mainFrame());
  const shown = frame ? await frame.evaluate(() => document.body.dataset.state || 'none').catch(() => 'blocked') : 'no frame';
  return { page, context, shown, url: frame ? frame.url() : '', consoleText };
}

test('the page cannot be framed by other origins by default, and can by configured ones', async () => {
  embedder = await startEmbedder();
  const r = await fetch(base + '/viewer');
  const csp = r.headers.get('content-security-policy');
  assert.match(csp, /frame-ancestors 'none'/);
  assert.match(csp, /script-src 'self'/);
  const token = await mint({ tenant_id: 't_a' });
  const blocked = await framed(`${base}/viewer?token=${encodeURIComponent(token)}`);
  assert.notEqual(blocked.shown, 'ready', 'the viewer rendered in a frame of another origin');
  assert.ok(blocked.consoleText.some((t) => /frame-ancestors/.test(t)), blocked.consoleText.join('\n'));
  await blocked.context.close();

  // A server whose [viewer] frame_ancestors lists the embedder.
  const other = await startServer(`[viewer]\nframe_ancestors = ["${embedder}"]\nmax_ttl = "10m"\n`);
  const r2 = await fetch(other + '/viewer');
  assert.ok(r2.headers.get('content-security-policy').includes(`frame-ancestors ${embedder};`));
  await call('POST', '/v1/events', [{ tenant_id: 't_c', actor: 'user:cy@c.example', event_type: 'policy.change', payload: { before: { a: 1 }, after: { a: 2 } } }], other);
  const r3 = await fetch(other + '/v1/viewer-tokens', { method: 'POST', headers: { Authorization: 'Bearer ' + ADMIN, 'Content-Type': 'application/json' }, body: JSON.stringify({ tenant_id: 't_c', ttl_seconds: 3600 }) });
  assert.equal(r3.status, 422, 'ttl over the configured max_ttl');
  const t2 = await mint({ tenant_id: 't_c' }, other);
  const allowed = await framed(`${other}/viewer?token=${encodeURIComponent(t2)}`);
  assert.equal(allowed.shown, 'ready', `the allowed embedder's frame: ${allowed.url} ${allowed.consoleText.join('\n')}`);
  const frame = allowed.page.frames().find((f) => f !== allowed.page.mainFrame());
  await frame.waitForSelector('#rows tr');
  assert.ok(!allowed.consoleText.some((t) => /Content Security Policy|violation/.test(t)), allowed.consoleText.join('\n'));
  console.log(`10-embedded: ${await shot(allowed.page, '10-embedded')}`);
  await allowed.context.close();
});
