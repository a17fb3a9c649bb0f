// Drives the gateway's web viewer in Debian's Chromium with playwright-core; run by
// tests/it/browser.rs, which starts the gateway and checks the lines printed here.
//
// CASE=viewer: decode a pasted pipeline container, follow its receipts live (the test posts the
//   pipeline only after the page says it is waiting), and check the receipts and the join effect,
//   and that they came over the event stream: every receipt request the page makes is counted, and
//   a single long poll or plain receipt fetch (the fallback) fails the check.
// CASE=cross-origin: from a page served on another port, post a container to the gateway and read
//   its receipt back (both need CORS: the post is preflighted, and reading any answer needs
//   Access-Control-Allow-Origin).
//
// Prints one JSON line per check: {"case", "ok", "detail"}; stdin carries "posted" when asked.

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const gateway = env('GATEWAY_URL');
const outDir = env('OUT_DIR');
const report = (name, ok, detail) => console.log(JSON.stringify({ case: name, ok, detail }));
const lines = readline.createInterface({ input: process.stdin });
// A test that gave up closes stdin; that ends the wait too.
const nextLine = () => new Promise((resolve) => { lines.once('line', resolve); lines.once('close', resolve); });
// However the browser behaves, the script ends.
setTimeout(() => { report('script', false, 'timed out after 120 s'); process.exit(3); }, 120000).unref();

fs.mkdirSync(outDir, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ucan-gateway-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1280, height: 900 },
});

async function viewer() {
  const steps = JSON.parse(env('STEPS')); // [{cid, out}]
  const effectOut = JSON.parse(env('EFFECT_OUT'));
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  // A receipt not stored yet is a 404 by design (the page then waits for it), which Chromium logs.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().includes('status of 404')) problems.push(`console: ${m.text()}`);
  });

  // How the page asked for receipts: event streams, or the long-polling fallback.
  const asked = { streams: [], other: [] };
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (!url.pathname.startsWith('/receipts/')) return;
    (url.pathname.endsWith('/events') ? asked.streams : asked.other).push(`${url.pathname}${url.search}`);
  });
  const transports = async () => ({
    page: await page.locator('#receipt-status').getAttribute('data-transport'),
    trees: await page.locator('ul.tree').evaluateAll((trees) => trees.map((t) => t.dataset.transport)),
  });
  const streamed = (t, roots) => t.page === 'events' && t.trees.length === roots && t.trees.every((x) => x === 'events') && asked.other.length === 0;

  await page.goto(`${gateway}/ui`);
  const did = await page.locator('[data-field=did]').textContent({ timeout: 10000 });
  report('description', did === env('GATEWAY_DID'), { did });
  const routes = await page.locator('#routes tbody tr').count();
  report('routes', routes >= 2, { routes });

  // Decode the pasted container: every token, valid signatures, the chain root → invoker.
  await page.fill('#token-input', env('CONTAINER'));
  await page.click('#decode');
  await page.locator('article.token').first().waitFor({ timeout: 10000 });
  const tokens = await page.locator('article.token').count();
  const invocations = await page.locator('article.token[data-kind=invocation]').count();
  const badSignatures = await page.locator('#inspect .badge.error').count();
  const chain = page.locator(`.chain[data-invocation="${steps[1].cid}"] li`);
  const links = await chain.count();
  const roles = await chain.locator('.role').allTextContents();
  report('decode', tokens === Number(env('TOKENS')) && invocations === 2 && badSignatures === 0, { tokens, invocations, badSignatures });
  report('chain', links === Number(env('CHAIN_LINKS')) && roles[0] === 'root delegation' && roles.at(-1) === 'invocation', { links, roles });
  await page.screenshot({ path: path.join(outDir, 'viewer-decoded.png'), fullPage: true });

  // Follow the decoded invocations' receipts before they exist: the page must say it waits, and
  // show them when the gateway stores them.
  await page.click('#follow-decoded');
  await page.locator('#receipt-status[data-state=live]').waitFor({ timeout: 10000 });
  // Both roots are followed by open streams, which wait for receipts not stored yet.
  const before = await transports();
  const opened = [...asked.streams];
  const streamedBefore = streamed(before, steps.length) && steps.every((s) => opened.some((u) => u.startsWith(`/receipts/${s.cid}/events?wait=`)));
  // Listening before saying so: the test posts as soon as it reads `waiting`.
  const posted = nextLine();
  report('waiting', true, { status: await page.locator('#receipt-status').textContent() });
  await posted; // the test has posted the pipeline
  await page.locator('#receipt-status[data-state=complete]').waitFor({ timeout: 30000 });
  const found = [];
  for (const step of steps) {
    const root = page.locator(`ul.tree[data-root="${step.cid}"] > li`);
    found.push({ cid: step.cid, state: await root.getAttribute('data-state'), out: await root.getAttribute('data-out') });
  }
  report('receipts', found.every((f, i) => f.state === 'ok' && JSON.parse(f.out) === steps[i].out), found);
  // The steps in the order they run, the awaited one first (a container sorts its tokens by bytes).
  const order = await page.locator('ul.tree').evaluateAll((trees) => trees.map((t) => t.dataset.root));
  report('pipeline order', JSON.stringify(order) === JSON.stringify(steps.map((s) => s.cid)), order);
  const join = page.locator(`ul.tree[data-root="${steps[1].cid}"] > li > ul > li`);
  const joinVia = await join.locator('.via').first().textContent();
  const joinOut = await join.first().getAttribute('data-out');
  report('join effect', joinVia.startsWith('join /wasm/run') && JSON.parse(joinOut) === effectOut, { joinVia, joinOut });
  const after = await transports();
  report('stream', streamedBefore && streamed(after, steps.length), { before, after, asked });
  await page.locator('#receipts').screenshot({ path: path.join(outDir, 'viewer-receipts.png') });
  await page.screenshot({ path: path.join(outDir, 'viewer-page.png'), fullPage: true });

  // A CID typed in shows the same receipt.
  await page.fill('#receipt-cid', steps[0].cid);
  await page.click('#follow');
  await page.locator(`#receipt-status[data-state=complete]`).waitFor({ timeout: 10000 });
  const typed = await page.locator(`ul.tree[data-root="${steps[0].cid}"] > li`).getAttribute('data-out');
  const typedVia = await transports();
  report('typed cid', JSON.parse(typed) === steps[0].out && streamed(typedVia, 1), { typed, typedVia, asked });
  report('no page errors', problems.length === 0, problems);
}

async function crossOrigin() {
  // A page of another origin (another port on loopback), the way a web app would be served.
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>app</title><p>another origin</p>');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  const result = await page.evaluate(async ({ gateway, container, cid }) => {
    const attempt = async (run) => {
      try {
        return await run();
      } catch (e) {
        return { error: String(e) };
      }
    };
    const bytes = Uint8Array.from(atob(container), (c) => c.charCodeAt(0));
    const post = await attempt(async () => {
      const r = await fetch(`${gateway}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', accept: 'application/json' },
        body: bytes,
      });
      return { status: r.status, body: await r.json() };
    });
    const get = await attempt(async () => {
      const r = await fetch(`${gateway}/receipts/${cid}`, { headers: { accept: 'application/json' } });
      return { status: r.status, body: await r.json() };
    });
    return { post, get };
  }, { gateway, container: env('CROSS_CONTAINER'), cid: env('CROSS_CID') });
  const out = (answer) => answer.body && answer.body.receipt && answer.body.receipt.out;
  report('cross-origin post', result.post.status === 200 && out(result.post) && out(result.post).ok === Number(env('CROSS_OUT')), result.post);
  report('cross-origin receipt read', result.get.status === 200 && out(result.get) && out(result.get).ok === Number(env('CROSS_OUT')), result.get);
  await page.screenshot({ path: path.join(outDir, 'cross-origin.png') });
  server.close();
}

try {
  if (env('CASE') === 'viewer') await viewer();
  else await crossOrigin();
} catch (e) {
  report('script', false, String(e && e.stack ? e.stack : e));
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
  lines.close();
}
