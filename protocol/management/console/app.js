// Lyre's web console: plain JavaScript modules (app.js, format.js, table.js, graph.js), no framework, no
// build step. Everything shown comes from the management API (/api/v1) and is put in the page with
// textContent, never as HTML. The page is served with a Content-Security-Policy that allows only these
// scripts and app.css from the same origin: no inline script or style, no eval.

import { fmtBytes, fmtDuration, fmtNumber, fmtRate, fmtReasons } from './format.js';
import { drawRates } from './graph.js';
import { buildTable, bytes, col, count, num, renderPager, renderRows, since, until } from './table.js';

const API = '/api/v1';
const POLL_MS = 2000; // the overview's poll of /api/v1/broker, and the visible table's refresh
const WINDOW_S = 300; // the rate graph's span
const PAGE_SIZE = 100;
const AUTH_KEY = 'lyre.auth'; // sessionStorage: base64 of "user:password", sent as basic auth
const USER_KEY = 'lyre.user';
const VHOST_KEY = 'lyre.vhost';

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// HTTPError is an API answer other than 2xx; status 0 when the broker could not be reached.
class HTTPError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---- API access -------------------------------------------------------------------------------------

// api calls the management API and returns its decoded JSON (null for 204). The X-Requested-With header
// makes a 401 come without WWW-Authenticate, so the browser shows no login prompt of its own: the
// console opens its login dialog instead.
async function api(method, path, { body, headers = {}, json } = {}) {
  const h = { 'X-Requested-With': 'lyre-console', Accept: 'application/json', ...headers };
  const auth = sessionStorage.getItem(AUTH_KEY);
  if (auth) h.Authorization = 'Basic ' + auth;
  if (json !== undefined) {
    h['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(API + path, { method, headers: h, body, cache: 'no-store' });
  } catch (e) {
    throw new HTTPError(0, 'The broker does not answer (' + e.message + ')');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const msg = data && typeof data.error === 'string' ? data.error : text.trim() || `HTTP ${res.status} ${res.statusText}`;
    if (res.status === 401) {
      if (auth && sessionStorage.getItem(AUTH_KEY) === auth) {
        // Wrong, or no longer valid (a reload removed the user): forget them.
        sessionStorage.removeItem(AUTH_KEY);
        showUser();
      }
      if (loginDismissed) throw new HTTPError(401, 'Sign in to see this broker: ' + msg);
      openLogin(auth ? 'The user or password was not accepted.' : '');
    }
    throw new HTTPError(res.status, msg);
  }
  return data;
}

function vhostPath(rest) {
  return `/vhosts/${enc(vhost())}${rest}`;
}

// ---- messages to the user ---------------------------------------------------------------------------

let statusTimer = 0;

// say shows a short success message in the status line.
function say(text) {
  const s = $('status');
  s.textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { s.textContent = ''; }, 10000);
}

// fail shows an error; what says what was being done. A 401 is the login dialog's business.
function fail(what, e) {
  if (e instanceof HTTPError && e.status === 401 && !loginDismissed) return;
  let text = e instanceof HTTPError ? e.message : String(e && e.message ? e.message : e);
  if (e instanceof HTTPError && e.status === 403) text = 'Not allowed: ' + text;
  text = what ? `${what}: ${text}` : text;
  if ($('alert-text').textContent !== text) $('alert-text').textContent = text;
  $('alert').hidden = false;
}

function clearAlert() {
  $('alert').hidden = true;
  $('alert-text').textContent = '';
}

// ---- virtual host and user --------------------------------------------------------------------------

function vhost() {
  return $('vhost').value || sessionStorage.getItem(VHOST_KEY) || 'default';
}

async function loadVhosts() {
  let page;
  try {
    page = await api('GET', '/vhosts?page_size=1000');
  } catch (e) {
    fail('Listing virtual hosts', e);
    return;
  }
  const names = (page && page.items ? page.items : []).map((h) => (typeof h === 'string' ? h : h.name));
  const sel = $('vhost');
  const want = sessionStorage.getItem(VHOST_KEY) || sel.value;
  sel.replaceChildren(...names.map((n) => new Option(n, n)));
  if (names.includes(want)) sel.value = want;
}

function showUser() {
  const user = sessionStorage.getItem(AUTH_KEY) ? sessionStorage.getItem(USER_KEY) : '';
  $('who').textContent = user ? 'signed in as ' + user : 'anonymous';
  $('signout').hidden = !user;
  $('signin').hidden = !!user;
}

// base64 of the UTF-8 bytes of s (btoa takes Latin-1 only).
function base64UTF8(s) {
  let bin = '';
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin);
}

// loginDismissed is set when the user closes the login form without signing in: a 401 then shows as an
// error instead of opening the form again at every poll, until the Sign in button is used.
let loginDismissed = false;

function openLogin(error) {
  loginDismissed = false;
  const d = $('login');
  $('login-error').textContent = error || '';
  $('login-error').hidden = !error;
  if (!d.open) {
    $('login-user').value = sessionStorage.getItem(USER_KEY) || '';
    $('login-password').value = '';
    d.showModal();
    ($('login-user').value ? $('login-password') : $('login-user')).focus();
  }
}

function setupLogin() {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = $('login-user').value;
    if (!user) {
      $('login-error').textContent = 'Enter a user name.';
      $('login-error').hidden = false;
      return;
    }
    sessionStorage.setItem(AUTH_KEY, base64UTF8(user + ':' + $('login-password').value));
    sessionStorage.setItem(USER_KEY, user);
    $('login-password').value = '';
    $('login').close();
    showUser();
    clearAlert();
    reloadAll();
  });
  $('login-cancel').addEventListener('click', () => {
    loginDismissed = true;
    $('login').close();
  });
  $('login').addEventListener('cancel', () => { loginDismissed = true; }); // Escape
  $('signin').addEventListener('click', () => openLogin(''));
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(AUTH_KEY);
    sessionStorage.removeItem(USER_KEY);
    showUser();
    clearAlert();
    reloadAll();
  });
}

// ---- confirmation dialog ----------------------------------------------------------------------------

let confirmResolve = null;

// confirmAction asks before a change; it resolves to the dialog's fields ({} without any), or null when
// cancelled. A <dialog>, not window.confirm: it can hold fields and says what will happen in the page's
// own words.
function confirmAction({ title, text, ok, danger, move }) {
  const d = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = ok;
  $('confirm-ok').classList.toggle('danger', !!danger);
  $('move-fields').hidden = !move;
  $('confirm-error').hidden = true;
  if (move) {
    $('move-to').value = '';
    $('move-max').value = '0';
  }
  return new Promise((resolve) => {
    confirmResolve = resolve;
    d.showModal();
    (move ? $('move-to') : $('confirm-cancel')).focus();
  });
}

function setupConfirm() {
  const d = $('confirm');
  $('confirm-form').addEventListener('submit', (e) => {
    e.preventDefault();
    let fields = {};
    if (!$('move-fields').hidden) {
      const to = $('move-to').value.trim();
      const max = Number($('move-max').value || '0');
      if (!to || !Number.isInteger(max) || max < 0) {
        $('confirm-error').textContent = !to ? 'Name the queue to move to.' : 'At most must be a whole number, 0 for all.';
        $('confirm-error').hidden = false;
        return;
      }
      fields = { to, max };
    }
    const resolve = confirmResolve;
    confirmResolve = null;
    d.close();
    if (resolve) resolve(fields);
  });
  $('confirm-cancel').addEventListener('click', () => d.close());
  d.addEventListener('close', () => {
    const resolve = confirmResolve;
    confirmResolve = null;
    if (resolve) resolve(null);
  });
}

// ---- listings ---------------------------------------------------------------------------------------

// The listings. path gives the API path of the listing, key a stable row key, label how an item is
// named in buttons and messages. An action asks for confirmation (confirm) unless it says otherwise.
const views = {
  connectors: {
    caption: 'Connectors',
    path: null, // from /api/v1/broker
    key: (c) => c.name,
    columns: [
      col('Name', (c) => c.name),
      col('Protocols', (c) => c.protocols),
      col('Open', (c) => c.active, num),
      col('Accepted', (c) => c.accepted, num),
      col('Refused', (c) => c.refused, { fmt: fmtReasons }),
    ],
    actions: [],
    empty: 'No connectors.',
  },
  connections: {
    caption: 'Connections',
    path: () => vhostPath('/connections'),
    key: (c) => String(c.id),
    label: (c) => (c.client_id ? `${c.client_id} (connection ${c.id})` : `connection ${c.id}`),
    columns: [
      col('ID', (c) => c.id, num),
      col('Client ID', (c) => c.client_id),
      col('User', (c) => c.user),
      col('Protocol', (c) => [c.protocol, c.version].filter(Boolean).join(' ')),
      col('Transport', (c) => c.transport),
      col('Connector', (c) => c.connector),
      col('Remote', (c) => c.remote),
      col('Connected', (c) => c.since, since),
      col('Msgs in', (c) => c.messages_in, num),
      col('Msgs out', (c) => c.messages_out, num),
      col('Bytes in', (c) => c.bytes_in, bytes),
      col('Bytes out', (c) => c.bytes_out, bytes),
      col('Subs', (c) => c.subscriptions, count),
    ],
    actions: [
      {
        label: 'Disconnect',
        danger: true,
        text: (c, name) => `Close ${name}? The client sees its connection drop; an MQTT will is published.`,
        run: (c) => api('DELETE', vhostPath(`/connections/${enc(c.id)}`)),
        done: (c, name) => `Disconnected ${name}.`,
      },
    ],
    empty: 'No connections on this virtual host.',
  },
  sessions: {
    caption: 'MQTT sessions',
    path: () => vhostPath('/sessions'),
    key: (s) => s.client_id,
    label: (s) => `session ${s.client_id}`,
    columns: [
      col('Client ID', (s) => s.client_id),
      col('User', (s) => s.user),
      col('Online', (s) => s.online),
      col('Persistent', (s) => s.persistent),
      col('Subscriptions', (s) => s.subscriptions, count),
      col('Backlog', (s) => s.backlog, num),
      col('In flight', (s) => s.inflight, num),
      col('Expires', (s) => s.expires_at, until),
    ],
    actions: [
      {
        label: 'Delete',
        danger: true,
        when: (s) => !s.online,
        text: (s, name) => `Delete ${name} with its subscriptions and backlog?`,
        run: (s) => api('DELETE', vhostPath(`/sessions/${enc(s.client_id)}`)),
        done: (s, name) => `Deleted ${name}.`,
      },
    ],
    empty: 'No MQTT sessions on this virtual host.',
  },
  queues: {
    caption: 'Queues',
    path: () => vhostPath('/queues'),
    key: (q) => q.name,
    label: (q) => `queue ${q.name}`,
    columns: [
      col('Name', (q) => q.name),
      col('Depth', (q) => q.depth, num),
      col('Bytes', (q) => q.bytes, bytes),
      col('Consumers', (q) => q.consumers, num),
      col('Unacked', (q) => q.unacked, num),
      col('Enqueued', (q) => q.enqueued, num),
      col('Dequeued', (q) => q.dequeued, num),
      col('Durable', (q) => q.durable),
    ],
    actions: [
      {
        label: 'Purge',
        danger: true,
        text: (q, name) => `Remove every message of ${name}? Messages delivered but not acknowledged stay.`,
        run: (q) => api('DELETE', vhostPath(`/queues/${enc(q.name)}/messages`)),
        done: (q, name, res) => `Purged ${fmtNumber(res && res.purged)} messages from ${name}.`,
      },
      {
        label: 'Move to…',
        move: true,
        text: (q, name) => `Move the messages of ${name} to another queue (a dead-letter queue's replay).`,
        ok: 'Move',
        run: (q, f) => api('POST', vhostPath(`/queues/${enc(q.name)}/move`), { json: { to: f.to, max: f.max } }),
        done: (q, name, res, f) => `Moved ${fmtNumber(res && res.moved)} messages from ${name} to ${f.to}.`,
      },
      {
        label: 'Delete',
        danger: true,
        text: (q, name) => `Delete ${name} and its messages?`,
        run: (q) => api('DELETE', vhostPath(`/queues/${enc(q.name)}`)),
        done: (q, name) => `Deleted ${name}.`,
      },
    ],
    empty: 'No queues on this virtual host.',
  },
  topics: {
    caption: 'Topics',
    path: () => vhostPath('/topics'),
    key: (t) => t.name,
    label: (t) => `topic ${t.name}`,
    columns: [
      col('Name', (t) => t.name),
      col('Subscribers', (t) => t.subscribers, num),
      col('Durable subscribers', (t) => t.durable_subscribers, num),
      col('Shared subscribers', (t) => t.shared_subscribers, num),
      col('Retained', (t) => t.retained),
    ],
    actions: [
      {
        label: 'Publish…',
        confirm: false,
        when: (t) => !/[*{}]/.test(t.name), // a filter with wildcards is no topic to publish to
        run: (t) => {
          startPublish('topics', t.name);
          return null;
        },
      },
    ],
    empty: 'No topics with subscribers or retained messages on this virtual host.',
  },
  dsubs: {
    caption: 'Durable subscriptions',
    path: () => vhostPath('/dsubs'),
    key: (d) => d.id,
    columns: [
      col('ID', (d) => d.id),
      col('Filter', (d) => d.filter),
      col('Owner', (d) => d.owner),
      col('Depth', (d) => d.depth, num),
      col('Unacked', (d) => d.unacked, num),
      col('Bytes', (d) => d.bytes, bytes),
      col('Consumers', (d) => d.consumers, num),
    ],
    actions: [],
    empty: 'No durable subscriptions on this virtual host.',
  },
  retained: {
    caption: 'Retained messages',
    path: () => vhostPath('/retained'),
    key: (r) => r.topic,
    label: (r) => `the retained message of ${r.topic}`,
    columns: [
      col('Topic', (r) => r.topic),
      col('Size', (r) => r.size, bytes),
      col('Content type', (r) => r.content_type),
      col('Expires', (r) => r.expires_at, until),
    ],
    actions: [
      {
        label: 'Delete',
        danger: true,
        text: (r, name) => `Delete ${name}? New subscribers will no longer receive it.`,
        run: (r) => api('DELETE', vhostPath(`/retained/${enc(r.topic)}`)),
        done: (r, name) => `Deleted ${name}.`,
      },
    ],
    empty: 'No retained messages on this virtual host.',
  },
};

async function runAction(view, a, item) {
  const name = view.label(item);
  let fields = {};
  if (a.confirm !== false) {
    fields = await confirmAction({
      title: `${a.label.replace('…', '')} ${name}`,
      text: a.text(item, name),
      ok: a.ok || a.label,
      danger: a.danger,
      move: a.move,
    });
    if (!fields) return;
  }
  try {
    const res = await a.run(item, fields);
    if (a.done) {
      clearAlert();
      say(a.done(item, name, res, fields));
    }
  } catch (e) {
    fail(`${a.label.replace('…', '')} ${name}`, e);
  }
  if (a.done) refreshView();
}

// ---- pages ------------------------------------------------------------------------------------------

const pages = ['overview', 'connections', 'sessions', 'queues', 'topics', 'dsubs', 'retained', 'publish'];
let current = 'overview';

function showPage(focus) {
  const want = location.hash.slice(1);
  current = pages.includes(want) ? want : 'overview';
  for (const p of pages) $('page-' + p).hidden = p !== current;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === '#' + current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (focus) {
    clearAlert(); // it was about the page left
    $('h-' + current).focus();
  }
  if (current === 'overview') drawGraph();
  refreshView();
  pollHost();
}

let viewBusy = false;
let ready = false; // the virtual hosts are known

// refreshView reloads the table of the page shown, if it has one.
async function refreshView() {
  const view = views[current];
  if (!view || !view.path || !ready || viewBusy || $('login').open) return;
  viewBusy = true;
  const name = current;
  try {
    let page = await api('GET', `${view.path()}?page=${view.state.page}&page_size=${PAGE_SIZE}`);
    if (page.items.length === 0 && page.page > 1 && page.total > 0) {
      // The listing shrank under the page shown: show its last page.
      view.state.page = Math.ceil(page.total / (page.page_size || PAGE_SIZE));
      page = await api('GET', `${view.path()}?page=${view.state.page}&page_size=${PAGE_SIZE}`);
    }
    if (name !== current) return; // the user moved on meanwhile
    renderRows(view, page.items);
    renderPager(view, page);
  } catch (e) {
    fail(`Listing ${view.caption.toLowerCase()}`, e);
  } finally {
    viewBusy = false;
  }
}

// ---- overview: broker totals, rates and graph --------------------------------------------------------

// samples are the last WINDOW_S seconds of rates computed from successive polls of /api/v1/broker:
// {t: performance.now(), in, out} in messages per second.
const samples = [];
let last = null; // the previous poll's counters and time

function totalsOf(b) {
  const t = b.totals || b;
  const n = (v) => (typeof v === 'number' ? v : 0);
  return { mi: n(t.messages_in), mo: n(t.messages_out), bi: n(t.bytes_in), bo: n(t.bytes_out) };
}

let brokerBusy = false;

async function pollBroker() {
  if (brokerBusy || $('login').open) return;
  brokerBusy = true;
  let b;
  try {
    b = await api('GET', '/broker');
  } catch (e) {
    if (e instanceof HTTPError && e.status === 403) {
      // A virtual host's operator may not see the broker as a whole: say so on the overview only.
      $('ov-broker').hidden = true;
      $('ov-broker-note').textContent = 'The broker-wide figures need the monitor right on kind broker: ' + e.message;
      $('ov-broker-note').hidden = false;
    } else {
      fail('Reading the broker', e);
    }
    return;
  } finally {
    brokerBusy = false;
  }
  const now = performance.now();
  const c = totalsOf(b);
  $('ov-broker-note').hidden = true;
  $('ov-broker').hidden = false;
  $('ov-version').textContent = b.version || '–';
  $('ov-uptime').textContent = typeof b.uptime_seconds === 'number' ? fmtDuration(b.uptime_seconds) : '–';
  $('ov-total-in').textContent = fmtNumber(c.mi);
  $('ov-total-out').textContent = fmtNumber(c.mo);
  const connectors = Array.isArray(b.connectors) ? b.connectors : [];
  // A counter going down is a restarted broker: start the rates again.
  if (last && c.mi >= last.mi && c.mo >= last.mo && now > last.t) {
    const dt = (now - last.t) / 1000;
    const r = { t: now, in: (c.mi - last.mi) / dt, out: (c.mo - last.mo) / dt };
    samples.push(r);
    $('ov-rate-in').textContent = fmtRate(r.in);
    $('ov-rate-out').textContent = fmtRate(r.out);
    $('ov-brate-in').textContent = fmtBytes(Math.round((c.bi - last.bi) / dt)) + '/s';
    $('ov-brate-out').textContent = fmtBytes(Math.round((c.bo - last.bo) / dt)) + '/s';
  } else if (last) {
    samples.length = 0;
  }
  last = { t: now, ...c };
  while (samples.length && samples[0].t < now - WINDOW_S * 1000) samples.shift();
  renderRows(views.connectors, connectors);
  if (current === 'overview') drawGraph();
}

let hostBusy = false;

// pollHost shows the selected virtual host's figures on the overview.
async function pollHost() {
  if (current !== 'overview' || !ready || hostBusy || $('login').open) return;
  hostBusy = true;
  const name = vhost();
  try {
    const h = await api('GET', vhostPath(''));
    if (name !== vhost()) return;
    $('ov-host-name').textContent = h.name || name;
    $('ov-host-connections').textContent = fmtNumber(h.connections);
    $('ov-host-subscriptions').textContent = fmtNumber(h.subscriptions);
    $('ov-host-durables').textContent = h.durable_subscriptions ? `${fmtNumber(h.durable_subscriptions)} durable` : '';
    $('ov-host-queues').textContent = fmtNumber(h.queues);
    $('ov-host-retained').textContent = fmtNumber(h.retained);
    $('ov-host-published').textContent = fmtNumber(h.messages_published);
    $('ov-host-delivered').textContent = fmtNumber(h.messages_delivered);
    $('ov-host-dropped').textContent = fmtNumber(h.drops && typeof h.drops === 'object' ? h.drops.total : h.drops);
    $('ov-host-dead').textContent = fmtNumber(h.dead_lettered);
  } catch (e) {
    fail(`Reading virtual host ${name}`, e);
  } finally {
    hostBusy = false;
  }
}

function drawGraph() {
  drawRates($('rates-graph'), samples, WINDOW_S);
}

// ---- publish ----------------------------------------------------------------------------------------

function startPublish(kind, name) {
  const form = $('publish-form');
  form.elements.kind.value = kind;
  $('pub-name').value = name;
  kindChanged();
  location.hash = '#publish';
  $('pub-body').focus();
}

// kindChanged disables what a queue does not take: retain and a QoS are for topics.
function kindChanged() {
  const topic = $('publish-form').elements.kind.value === 'topics';
  $('pub-retain').disabled = !topic;
  $('pub-qos').disabled = !topic;
}

function setupPublish() {
  const form = $('publish-form');
  for (const r of form.elements.kind) r.addEventListener('change', kindChanged);
  kindChanged();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = $('pub-error');
    err.hidden = true;
    const kind = form.elements.kind.value;
    const name = $('pub-name').value.trim();
    const ttl = $('pub-ttl').value.trim();
    let problem = '';
    if (!name) problem = 'Name the topic or queue.';
    else if (ttl && !(Number.isInteger(Number(ttl)) && Number(ttl) > 0)) problem = 'The time to live is a whole number of seconds.';
    if (problem) {
      err.textContent = problem;
      err.hidden = false;
      return;
    }
    const q = new URLSearchParams();
    if ($('pub-persistent').checked) q.set('persistent', 'true');
    if (kind === 'topics') {
      if ($('pub-retain').checked) q.set('retain', 'true');
      if ($('pub-qos').value !== '') q.set('qos', $('pub-qos').value);
    }
    if (ttl) q.set('ttl', ttl + 's'); // the API takes a duration, or milliseconds
    const headers = {};
    const type = $('pub-type').value.trim();
    if (type) headers['Content-Type'] = type;
    const what = `${kind === 'topics' ? 'topic' : 'queue'} ${name}`;
    const submit = $('pub-submit');
    submit.disabled = true;
    try {
      // The body as bytes: a string would get a Content-Type of its own when the field is empty.
      const res = await api('POST', vhostPath(`/${kind}/${enc(name)}`) + (q.size ? '?' + q : ''),
        { body: new TextEncoder().encode($('pub-body').value), headers });
      clearAlert();
      say(`Published to ${what}` + (res && res.message_id ? ` (message ${res.message_id}).` : '.'));
    } catch (e) {
      fail(`Publishing to ${what}`, e);
    } finally {
      submit.disabled = false;
    }
  });
}

// ---- start ------------------------------------------------------------------------------------------

async function reloadAll() {
  await loadVhosts();
  await Promise.all([pollBroker(), pollHost(), refreshView()]);
}

let pollTimer = 0;

async function poll() {
  clearTimeout(pollTimer);
  await Promise.all([pollBroker(), pollHost(), refreshView()]);
  pollTimer = setTimeout(poll, POLL_MS);
}

async function start() {
  for (const [name, view] of Object.entries(views)) {
    buildTable(document.querySelector(`[data-table="${name}"]`), view, refreshView, runAction);
  }
  setupLogin();
  setupConfirm();
  setupPublish();
  showUser();
  $('alert-close').addEventListener('click', clearAlert);
  $('vhost').addEventListener('change', () => {
    sessionStorage.setItem(VHOST_KEY, $('vhost').value);
    for (const v of Object.values(views)) if (v.state) v.state.page = 1;
    clearAlert();
    refreshView();
    pollHost();
  });
  window.addEventListener('hashchange', () => showPage(true));
  new ResizeObserver(() => drawGraph()).observe($('rates-graph'));
  showPage(false);
  await loadVhosts();
  ready = true;
  poll();
}

start();
