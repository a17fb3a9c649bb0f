// The gateway's web viewer: decode tokens and containers (POST /inspect), follow receipts and the
// effects they set off as they arrive (GET /receipts/{cid}), and show the gateway's description
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

const MAX_NODES = 128;
const LONG_POLL_SECONDS = 10;
const GIVE_UP_MS = 10 * 60 * 1000;
let following = null;

/** One receipt (or a receipt still to come) and the effects it asked for. */
async function fetchNode(key, via, signal) {
  const response = await fetch(`/receipts/${encodeURIComponent(key)}`, { headers: { Accept: 'application/json' }, signal });
  const body = await response.json().catch(() => null);
  if (response.status === 200 && body && body.receipt) return { key, via, state: body.receipt.out && 'ok' in body.receipt.out ? 'ok' : 'error', receipt: body.receipt };
  if (response.status === 202 && body && body.pending) return { key, via, state: 'pending', job: body.pending };
  if (response.status === 404) return { key, via, state: 'pending' };
  const message = body && body.error ? `${body.error.name}: ${body.error.message}` : `HTTP ${response.status}`;
  return { key, via, state: 'failed', message };
}

/** The tree under `root`, breadth first with a node budget, as a flat list with parent indices. */
async function walk(root, signal) {
  const nodes = [];
  const queue = [{ key: root, via: null, parent: null }];
  const seen = new Set();
  while (queue.length && nodes.length < MAX_NODES) {
    const next = queue.shift();
    const node = await fetchNode(next.key, next.via, signal);
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

function renderTree(root, nodes) {
  const lists = [];
  const top = el('ul', { class: 'tree', 'data-root': root });
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
  return el('div', { class: 'receipt-tree' }, el('h3', {}, el('code', {}, root)), top);
}

function stopFollowing() {
  if (following) following.abort();
  following = null;
  $('stop').hidden = true;
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
});

/** Follows the receipts under each root until every node has one, the user stops, or time is up. */
async function follow(roots) {
  stopFollowing();
  const control = new AbortController();
  following = control;
  const { signal } = control;
  $('stop').hidden = false;
  const status = $('receipt-status');
  const started = Date.now();
  try {
    while (!signal.aborted) {
      const trees = [];
      for (const root of roots) trees.push([root, await walk(root, signal)]);
      $('receipt-trees').replaceChildren(...trees.map(([root, nodes]) => renderTree(root, nodes)));
      const waiting = trees.flatMap(([, nodes]) => nodes).find((n) => n.state === 'pending');
      if (!waiting) {
        status.textContent = 'Complete: every task in view has its receipt.';
        status.dataset.state = 'complete';
        break;
      }
      if (Date.now() - started > GIVE_UP_MS) {
        status.textContent = 'Stopped waiting after ten minutes; follow again to resume.';
        break;
      }
      status.textContent = `Live: waiting for the receipt of ${short(waiting.key, 24)}…`;
      status.dataset.state = 'live';
      // The gateway answers as soon as that receipt is stored (or after the wait), so the tree is
      // redrawn when something happened rather than on a timer; the pause bounds a fast loop.
      await fetch(`/receipts/${encodeURIComponent(waiting.key)}?follow=join&wait=${LONG_POLL_SECONDS}`, { headers: { Accept: 'application/json' }, signal }).catch(() => {});
      await sleep(300, signal);
    }
  } catch (e) {
    if (!signal.aborted) status.textContent = `Could not follow: ${e.message}`;
  } finally {
    if (following === control) stopFollowing();
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
