// The gateway's web viewer: decode tokens and containers (POST /inspect), follow receipts and the
// effects they set off as they arrive (GET /receipts/{cid}/events, or long polls of
// GET /receipts/{cid} where streams are not to be had), and show the gateway's description
// (GET /). Plain DOM code with no dependencies; everything shown is written as text, never markup.

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('data-') || key === 'title') node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const json = (value) => JSON.stringify(value, null, 2);
const short = (text, n = 120) => (text.length > n ? `${text.slice(0, n)}…` : text);
const shortDid = (did) => (typeof did === 'string' && did.length > 28 ? `${did.slice(0, 16)}…${did.slice(-8)}` : String(did));

/** A Unix time with its date, or "never". */
function when(seconds) {
  if (seconds === null || seconds === undefined) return 'never';
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? String(seconds) : `${seconds} (${date.toISOString().replace('.000', '')})`;
}

function badge(state, text = state) {
  return el('span', { class: `badge ${state}` }, text);
}

function signatureBadge(signature) {
  return signature === 'valid' ? badge('ok', 'signature valid') : badge('error', `signature ${signature}`);
}

async function getJson(url, options = {}) {
  const response = await fetch(url, { ...options, headers: { Accept: 'application/json', ...(options.headers || {}) } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return { status: response.status, ok: response.ok, body };
}

// ---------------------------------------------------------------- the gateway's description

async function loadGateway() {
  const { ok, body } = await getJson('/');
  if (!ok || !body) {
    $('gateway-summary').textContent = 'The gateway did not describe itself.';
    return;
  }
  $('gateway-summary').textContent = `${body.name} ${body.version} · ${body.did}`;
  const facts = $('gateway-facts');
  const fact = (name, ...value) => facts.append(el('dt', {}, name), el('dd', {}, ...value));
  fact('DID', el('code', { 'data-field': 'did' }, body.did));
  fact('Version', body.version);
  fact('Subjects served', ...(body.subjects || []).map((s) => el('code', { class: 'subject' }, s === 'self' ? `self (${body.did})` : s)));
  if (body.max_body_bytes !== undefined) fact('Largest request body', `${body.max_body_bytes} bytes`);
  const rows = $('routes').querySelector('tbody');
  for (const route of body.commands || []) {
    const limits = route.limits
      ? `fuel ${route.limits.fuel}, memory ${route.limits.memory_bytes} B, ${route.limits.timeout_ms} ms, input ≤ ${route.limits.max_input_bytes} B, output ≤ ${route.limits.max_output_bytes} B`
      : '';
    const args = route.arguments
      ? el('details', {}, el('summary', {}, route.arguments.title || 'schema'), el('pre', {}, json(route.arguments)))
      : '—';
    rows.append(el('tr', { 'data-command': route.command },
      el('td', {}, el('code', {}, route.command)),
      el('td', {}, route.backend),
      el('td', {}, route.effect || ''),
      el('td', { class: 'limits' }, limits),
      el('td', {}, args)));
  }
}

// ---------------------------------------------------------------- decoding

let decodedInvocations = [];

async function decode(body) {
  const error = $('inspect-error');
  error.hidden = true;
  $('chains').replaceChildren();
  $('tokens').replaceChildren();
  $('follow-decoded').hidden = true;
  const { ok, body: answer } = await getJson('/inspect', { method: 'POST', body });
  if (!ok || !answer || !answer.tokens) {
    const e = answer && answer.error ? `${answer.error.name}: ${answer.error.message}` : 'the gateway could not read it';
    error.textContent = e;
    error.hidden = false;
    return;
  }
  renderChains(answer.chains || []);
  renderTokens(answer.tokens);
  decodedInvocations = pipelineOrder(answer.tokens.filter((t) => t.kind === 'invocation')).slice(0, MAX_ROOTS);
  $('follow-decoded').hidden = decodedInvocations.length === 0;
}

const MAX_ROOTS = 16;

/** A container's tokens are sorted by bytes; a pipeline reads better in the order its steps run:
 * a step whose arguments name another step's CID (an `await/…` promise) comes after it. */
function pipelineOrder(invocations) {
  const waitsFor = (a, b) => JSON.stringify(a.payload.args || {}).includes(b.cid);
  const left = [...invocations];
  const order = [];
  while (left.length) {
    const i = left.findIndex((a) => !left.some((b) => b !== a && waitsFor(a, b)));
    order.push(...left.splice(i < 0 ? 0 : i, 1));
  }
  return order.map((t) => t.cid);
}

/** Each invocation's chain, drawn root → invoker: one box per delegation, then the invocation. */
function renderChains(chains) {
  const container = $('chains');
  for (const chain of chains) {
    const flow = el('ol', { class: 'chain', 'data-invocation': chain.invocation });
    chain.links.forEach((link, i) => {
      if (link.missing) {
        flow.append(el('li', { class: 'link missing' }, badge('error', 'missing proof'), el('code', {}, short(link.cid, 24))));
        return;
      }
      flow.append(el('li', { class: 'link', 'data-cid': link.cid },
        el('div', { class: 'role' }, i === 0 ? 'root delegation' : 'delegation'),
        el('div', {}, el('code', { title: link.iss }, shortDid(link.iss)), ' → ', el('code', { title: link.aud }, shortDid(link.aud))),
        el('div', {}, 'can ', el('code', {}, link.cmd), ' on ', el('code', { title: link.sub ?? 'any' }, link.sub ? shortDid(link.sub) : 'any subject')),
        signatureBadge(link.signature)));
    });
    flow.append(el('li', { class: 'link invocation', 'data-cid': chain.invocation },
      el('div', { class: 'role' }, chain.kind === 'receipt' ? 'receipt' : 'invocation'),
      el('div', {}, 'by ', el('code', { title: chain.invoker }, shortDid(chain.invoker))),
      el('div', {}, el('code', {}, chain.cmd), ' on ', el('code', { title: chain.subject }, shortDid(chain.subject))),
      signatureBadge(chain.signature)));
    container.append(el('h3', {}, `Chain of ${short(chain.invocation, 24)}`), flow);
  }
}

const FIELDS = ['iss', 'aud', 'sub', 'cmd', 'exp', 'nbf', 'iat', 'pol', 'args', 'meta', 'prf', 'cause'];

function renderTokens(tokens) {
  const container = $('tokens');
  for (const token of tokens) {
    if (token.error) {
      container.append(el('article', { class: 'token bad' }, el('h3', {}, badge('error', 'not a token')), el('p', {}, `${token.error} (${token.bytes} bytes)`)));
      continue;
    }
    const payload = token.payload || {};
    const rows = FIELDS.filter((f) => f in payload).map((field) => {
      const value = payload[field];
      const shown = ['exp', 'nbf', 'iat'].includes(field) ? when(value)
        : typeof value === 'string' ? value : short(JSON.stringify(value), 400);
      return el('tr', {}, el('th', {}, field), el('td', {}, el('code', {}, shown)));
    });
    container.append(el('article', { class: 'token', 'data-kind': token.kind, 'data-cid': token.cid },
      el('h3', {}, badge(token.kind === 'delegation' ? 'info' : 'accent', token.kind), ' ', el('code', { class: 'cid' }, token.cid)),
      el('p', {}, signatureBadge(token.signature), ' ', el('span', { class: 'muted' }, `${token.tag} · ${token.alg}`)),
      el('table', { class: 'fields' }, el('tbody', {}, rows)),
      el('details', {}, el('summary', {}, 'payload (DAG-JSON)'), el('pre', {}, json(payload)))));
  }
}

// ---------------------------------------------------------------- following receipts
//
// Each root (an invocation CID, task id or receipt CID) is followed with the gateway's event stream
// (GET /receipts/{cid}/events?wait=), which sends its receipt and each receipt of its effects as
// they are stored. Where EventSource is missing, or the gateway refuses the stream (an older
// gateway without `wait`, the cap on streams, draining), the root is followed by long polls of
// GET /receipts/{cid}?follow=join instead. Either way the receipts land in the same map, so the
// tree is drawn the same way.

const MAX_NODES = 128;
// Browsers open at most six HTTP/1.1 connections to one host and each stream holds one for as long
// as it lasts: beyond four, roots are followed by long polls (one at a time) so the page keeps a
// connection for its other requests.
const MAX_STREAMS = 4;
const STREAM_WAIT_SECONDS = 120;
const LONG_POLL_SECONDS = 10;
const GIVE_UP_MS = 10 * 60 * 1000;
let following = null;

/** What is known of one root's workflow. `transport` is how it is followed: `events` once its
 * stream is open, `poll` for long polls, `null` while its stream is still connecting. */
function newFlow(root) {
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  return { root, receipts: new Map(), cids: new Set(), jobs: new Map(), failed: new Map(), transport: null, complete: false, done, finish };
}

function settle(flow) {
  flow.complete = true;
  flow.finish();
}

/** Keeps a receipt under every key a tree names receipts by: invocation, task id, receipt CID. */
function remember(flow, key, receipt) {
  flow.cids.add(receipt.cid);
  for (const k of [key, receipt.cid, receipt.ran, receipt.task]) if (k) flow.receipts.set(k, receipt);
  flow.jobs.delete(key);
  flow.failed.delete(key);
}

function nodeFor(flow, key, via) {
  const receipt = flow.receipts.get(key);
  if (receipt) return { key, via, state: receipt.out && 'ok' in receipt.out ? 'ok' : 'error', receipt };
  if (flow.failed.has(key)) return { key, via, state: 'failed', message: flow.failed.get(key) };
  return { key, via, state: 'pending', job: flow.jobs.get(key) };
}

/** The tree under a flow's root as far as its receipts reach, breadth first with a node budget, as
 * a flat list with parent indices. */
function tree(flow) {
  const nodes = [];
  const queue = [{ key: flow.root, via: null, parent: null }];
  const seen = new Set();
  while (queue.length && nodes.length < MAX_NODES) {
    const next = queue.shift();
    const node = nodeFor(flow, next.key, next.via);
    node.parent = next.parent;
    const id = nodes.push(node) - 1;
    const receipt = node.receipt;
    if (!receipt || seen.has(receipt.cid)) continue;
    seen.add(receipt.cid);
    const tasks = receipt.fx_tasks || { fork: [], join: null };
    const fx = receipt.fx || {};
    (tasks.fork || []).forEach((task, i) => {
      const cmd = fx.fork && fx.fork[i] ? fx.fork[i].cmd : '';
      queue.push({ key: task, via: `fork ${cmd}`, parent: id });
    });
    if (tasks.join) queue.push({ key: tasks.join, via: `join ${fx.join ? fx.join.cmd : ''}`, parent: id });
  }
  return nodes;
}

function outcome(node) {
  if (node.state === 'failed') return node.message;
  if (!node.receipt) {
    return node.job ? `waiting for job ${node.job.job} (${node.job.state})` : 'no receipt yet';
  }
  const out = node.receipt.out || {};
  if ('ok' in out) return `ok ${short(JSON.stringify(out.ok))}`;
  const e = out.error || {};
  return `error ${e.name}: ${e.message}`;
}

const TRANSPORTS = { events: 'event stream', poll: 'long polls' };

function renderTree(flow, nodes) {
  const lists = [];
  const top = el('ul', { class: 'tree', 'data-root': flow.root, 'data-transport': flow.transport });
  nodes.forEach((node, id) => {
    const receipt = node.receipt;
    const item = el('li', { 'data-state': node.state, 'data-key': node.key, 'data-out': receipt && receipt.out && 'ok' in receipt.out ? JSON.stringify(receipt.out.ok) : null },
      el('div', { class: 'node' },
        node.via ? el('span', { class: 'via' }, node.via) : el('span', { class: 'via' }, 'invocation'),
        badge(node.state === 'ok' ? 'ok' : node.state === 'pending' ? 'pending' : 'error', node.state),
        el('span', { class: 'outcome' }, outcome(node))),
      el('div', { class: 'muted ids' },
        receipt ? ['ran ', el('code', {}, receipt.ran), ' · receipt ', el('code', {}, receipt.cid)] : ['task ', el('code', {}, node.key)]),
      receipt ? el('details', {}, el('summary', {}, 'receipt (JSON)'), el('pre', {}, json(receipt))) : null);
    const children = el('ul');
    item.append(children);
    lists[id] = children;
    (node.parent === null ? top : lists[node.parent]).append(item);
  });
  const via = flow.transport ? el('span', { class: 'muted' }, ` · ${TRANSPORTS[flow.transport]}`) : null;
  return el('div', { class: 'receipt-tree' }, el('h3', {}, el('code', {}, flow.root), via), top);
}

/** Redraws every tree and says where following stands. */
function render(flows) {
  const trees = flows.map((flow) => [flow, tree(flow)]);
  $('receipt-trees').replaceChildren(...trees.map(([flow, nodes]) => renderTree(flow, nodes)));
  const status = $('receipt-status');
  status.dataset.transport = [...new Set(flows.map((f) => f.transport).filter(Boolean))].join(' ');
  if (flows.every((f) => f.complete)) {
    status.textContent = 'Complete: every task in view has its receipt.';
    status.dataset.state = 'complete';
  } else if (flows.some((f) => !f.transport)) {
    status.textContent = 'Connecting…';
    status.dataset.state = 'connecting';
  } else {
    const waiting = trees.flatMap(([, nodes]) => nodes).find((n) => n.state === 'pending');
    const via = [...new Set(flows.filter((f) => !f.complete).map((f) => TRANSPORTS[f.transport]))].join(' and ');
    status.textContent = `Live (${via}): waiting for the receipt of ${short(waiting ? waiting.key : '…', 24)}…`;
    status.dataset.state = 'live';
  }
}

/** Follows a flow with its event stream. Resolves `settled`, `stopped`, or `refused` when the
 * stream could not be (re)opened, for long polls to take over from what it received. */
function stream(flow, signal, redraw) {
  return new Promise((resolve) => {
    const source = new EventSource(`/receipts/${encodeURIComponent(flow.root)}/events?wait=${STREAM_WAIT_SECONDS}`);
    const finish = (how) => {
      source.close();
      signal.removeEventListener('abort', stop);
      resolve(how);
    };
    const stop = () => finish('stopped');
    signal.addEventListener('abort', stop, { once: true });
    source.addEventListener('open', () => {
      flow.transport = 'events';
      redraw();
    });
    source.addEventListener('receipt', (event) => {
      let receipt = null;
      try {
        receipt = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!receipt || !receipt.cid) return;
      // The key it answers is not in the event; its own fields are the keys a tree uses.
      remember(flow, receipt.cid, receipt);
      redraw();
      // The tree is drawn only so far; more receipts would not be shown.
      if (flow.cids.size >= MAX_NODES) finish('settled');
    });
    source.addEventListener('end', (event) => {
      let reason = '';
      try {
        reason = JSON.parse(event.data).reason;
      } catch {
        reason = '';
      }
      if (reason === 'settled' || reason === 'limit') finish('settled');
      // Otherwise (shutdown, lifetime, missing, unavailable) the browser reconnects by itself,
      // resuming after the last receipt with Last-Event-ID.
    });
    source.addEventListener('error', () => {
      // While CONNECTING the browser retries by itself; CLOSED means the gateway refused.
      if (source.readyState === EventSource.CLOSED) finish('refused');
    });
  });
}

/** Asks once for a receipt; whether one was found. */
async function lookUp(flow, key, signal) {
  const response = await fetch(`/receipts/${encodeURIComponent(key)}`, { headers: { Accept: 'application/json' }, signal });
  const body = await response.json().catch(() => null);
  if (response.status === 200 && body && body.receipt) {
    remember(flow, key, body.receipt);
    return true;
  }
  flow.failed.delete(key);
  if (response.status === 202 && body && body.pending) flow.jobs.set(key, body.pending);
  else if (response.status !== 404) flow.failed.set(key, body && body.error ? `${body.error.name}: ${body.error.message}` : `HTTP ${response.status}`);
  return false;
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
});

/** A wake-up call: `wait()` resolves at the next `ring()`, or once `signal` aborts. */
function bell(signal) {
  let pending = null;
  let ring = () => {};
  signal.addEventListener('abort', () => ring(), { once: true });
  return {
    wait: () => {
      if (signal.aborted) return Promise.resolve();
      pending = pending || new Promise((resolve) => {
        ring = () => {
          pending = null;
          resolve();
        };
      });
      return pending;
    },
    ring: () => ring(),
  };
}

/** Follows the flows in `polled` by long polls, one at a time, until stopped. More flows may join
 * while it runs (a stream refused); `joined` rings when one does. */
async function poll(polled, signal, redraw, joined) {
  while (!signal.aborted) {
    const live = polled.filter((f) => !f.complete);
    if (!live.length) {
      await joined.wait();
      continue;
    }
    let waiting = null;
    for (const flow of live) {
      // Until a pass finds nothing new: each receipt found may name effects to look up.
      for (let pass = 0; pass < MAX_NODES; pass += 1) {
        let found = false;
        for (const node of tree(flow).filter((n) => !n.receipt)) found = (await lookUp(flow, node.key, signal)) || found;
        if (!found) break;
      }
      flow.transport = 'poll';
      const pending = tree(flow).find((n) => n.state === 'pending');
      if (!pending) settle(flow);
      else if (!waiting) waiting = pending;
    }
    redraw();
    if (!waiting) continue;
    // The gateway answers as soon as that receipt is stored (or after the wait), so the tree is
    // redrawn when something happened rather than on a timer; the pause bounds a fast loop.
    // A flow that joins cuts the wait short, so it is not left undrawn for a whole long poll.
    const round = new AbortController();
    const cut = () => round.abort();
    signal.addEventListener('abort', cut, { once: true });
    await Promise.race([
      fetch(`/receipts/${encodeURIComponent(waiting.key)}?follow=join&wait=${LONG_POLL_SECONDS}`, { headers: { Accept: 'application/json' }, signal: round.signal }).catch(() => {}),
      joined.wait(),
    ]);
    cut();
    signal.removeEventListener('abort', cut);
    await sleep(300, signal);
  }
}

function stopFollowing() {
  if (following) following.abort();
  following = null;
  $('stop').hidden = true;
}

/** Follows the receipts under each root until every one has settled, the user stops, or time is up. */
async function follow(roots) {
  stopFollowing();
  const control = new AbortController();
  following = control;
  const { signal } = control;
  $('stop').hidden = false;
  const status = $('receipt-status');
  const flows = roots.map(newFlow);
  const redraw = () => { if (!signal.aborted) render(flows); };

  const polled = [];
  const joined = bell(signal);
  const byPolling = (flow) => {
    flow.transport = 'poll';
    polled.push(flow);
    joined.ring();
  };
  const streams = typeof EventSource === 'function' ? flows.slice(0, MAX_STREAMS) : [];
  for (const flow of flows) {
    if (!streams.includes(flow)) {
      byPolling(flow);
      continue;
    }
    stream(flow, signal, redraw).then((how) => {
      if (how === 'settled') settle(flow);
      else if (how === 'refused') byPolling(flow);
      redraw();
    });
  }
  redraw();
  const timer = setTimeout(() => {
    control.abort();
    status.textContent = 'Stopped waiting after ten minutes; follow again to resume.';
  }, GIVE_UP_MS);
  const stopped = new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  const polling = poll(polled, signal, redraw, joined).catch((e) => {
    if (!signal.aborted) {
      status.textContent = `Could not follow: ${e.message}`;
      control.abort();
    }
  });
  try {
    await Promise.race([Promise.all(flows.map((f) => f.done)), stopped]);
  } finally {
    clearTimeout(timer);
    if (following === control) stopFollowing();
    control.abort();
    await polling;
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('decode').addEventListener('click', () => decode($('token-input').value.trim()));
  $('token-file').addEventListener('change', async (event) => {
    const file = event.target.files[0];
    if (file) decode(new Uint8Array(await file.arrayBuffer()));
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    const file = event.dataTransfer.files[0];
    if (file) {
      decode(new Uint8Array(await file.arrayBuffer()));
    } else {
      const text = event.dataTransfer.getData('text/plain');
      $('token-input').value = text;
      decode(text.trim());
    }
  });
  $('follow-decoded').addEventListener('click', () => {
    $('receipt-cid').value = decodedInvocations.join(' ');
    follow(decodedInvocations);
  });
  $('receipt-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const roots = $('receipt-cid').value.split(/[\s,]+/).filter(Boolean);
    if (roots.length) follow(roots);
  });
  $('stop').addEventListener('click', () => {
    stopFollowing();
    $('receipt-status').textContent = 'Stopped.';
  });
}

wire();
loadGateway();
