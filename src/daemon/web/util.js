// Shared helpers of the dashboard. Everything the API returns is untrusted text (server names,
// check messages, error details come from servers and users): it only ever reaches the page
// through textContent, attribute values and numbers, never as markup.

/** Creates an element: attrs are properties/attributes, children are nodes or text. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces a node's children. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/** Sets text only when it changed (no needless layout work on updates). */
export function setText(node, text) {
  const value = text === null || text === undefined ? '' : String(text);
  if (node.textContent !== value) node.textContent = value;
}

const SVG = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// --- the API -------------------------------------------------------------------------------

const TOKEN_KEY = 'healer.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The API token of this tab (sessionStorage), or ''. */
export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: nothing kept
  }
}

let tokenPrompt = null;
/** Asks for the token once (a modal dialog); resolves to it, or '' when cancelled. */
export function askToken(reason = '') {
  if (tokenPrompt) return tokenPrompt;
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  const note = document.getElementById('token-reason');
  setText(note, reason);
  input.value = '';
  document.getElementById('token-forget').hidden = !token();
  tokenPrompt = new Promise((resolve) => {
    const done = (value) => {
      dialog.removeEventListener('close', onClose);
      tokenPrompt = null;
      resolve(value);
    };
    const onClose = () => {
      const value = dialog.returnValue === 'save' ? input.value.trim() : '';
      if (value) {
        try {
          sessionStorage.setItem(TOKEN_KEY, value);
        } catch {
          // kept for this call only
        }
      }
      done(value);
    };
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    input.focus();
  });
  return tokenPrompt;
}

/**
 * Calls the API: JSON in and out; the token (when this tab has one) goes in the Authorization
 * header, never in a URL. Throws ApiError with the API's stable error code.
 */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const bearer = token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'unreachable', 'the daemon does not answer');
  }
  const text = await response.text();
  let document = null;
  try {
    document = text ? JSON.parse(text) : null;
  } catch {
    document = null;
  }
  if (!response.ok) {
    const error = document && document.error ? document.error : {};
    throw new ApiError(response.status, String(error.code || 'http_' + response.status),
      String(error.message || response.statusText || 'request failed'));
  }
  return document;
}

/** Every page of a paginated list (items + next_cursor). */
export async function apiAll(path, options) {
  const items = [];
  await apiPages(path, options, (page) => items.push(...page));
  return items;
}

/**
 * Walks a cursor-paged list, calling onPage(items, more) after each page arrives (more: another
 * page follows), so a caller can show the first page before the last has arrived.
 */
export async function apiPages(path, options, onPage) {
  let cursor = null;
  for (let page = 0; page < 1000; ++page) {
    const separator = path.includes('?') ? '&' : '?';
    const url = cursor === null ? path : `${path}${separator}cursor=${encodeURIComponent(cursor)}`;
    const doc = await api(url, options);
    const more = doc.next_cursor !== null && doc.next_cursor !== undefined;
    onPage(doc.items, more);
    if (!more) break;
    cursor = doc.next_cursor;
  }
}

export const enc = encodeURIComponent;

// --- statuses ------------------------------------------------------------------------------

/**
 * Worst first. DOWN is a server the last diagnosis (or collection) could not reach: the API
 * says UNKNOWN with the reason, the board shows it red like Nagios shows a host that is down.
 */
export const STATUSES = ['DOWN', 'CRITICAL', 'UNKNOWN', 'WARNING', 'PENDING', 'OK'];
const RANK = new Map(STATUSES.map((status, index) => [status, index]));
export const STATUS_HELP = new Map([
  ['DOWN', 'unreachable'],
  ['CRITICAL', 'a check is critical'],
  ['UNKNOWN', 'a check could not tell'],
  ['WARNING', 'a check warns'],
  ['PENDING', 'not diagnosed yet'],
  ['OK', 'every check is OK'],
]);

export function rank(status) {
  return RANK.has(status) ? RANK.get(status) : RANK.get('UNKNOWN');
}

function unreachable(error) {
  return !!error && (error.category === 'ssh' || error.category === 'pool');
}

/** The board's status of a server summary. */
export function boardStatus(server) {
  const run = server.last_run;
  if (!run) return unreachable(server.metrics && server.metrics.error) ? 'DOWN' : 'PENDING';
  if (run.error) return 'DOWN';
  if (unreachable(server.metrics && server.metrics.error) &&
      server.metrics.collected_at > run.started_at) {
    return 'DOWN';
  }
  const status = String(server.status || run.status || 'UNKNOWN');
  return RANK.has(status) ? status : 'UNKNOWN';
}

/** A status badge: the word is the text alternative to its colour. */
export function badge(status, extra = '') {
  const known = RANK.has(status) ? status : 'UNKNOWN';
  return el('span', {
    class: `badge s-${known.toLowerCase()}${extra ? ' ' + extra : ''}`,
    text: known,
    title: STATUS_HELP.get(known),
  });
}

export function setBadge(node, status) {
  const known = RANK.has(status) ? status : 'UNKNOWN';
  const cls = `badge s-${known.toLowerCase()}`;
  if (!node.className.startsWith(cls) || node.className.length !== cls.length) node.className = cls;
  setText(node, known);
  node.title = STATUS_HELP.get(known);
}

// --- formatting ----------------------------------------------------------------------------

export function ago(ms, now = Date.now()) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  return duration(Math.max(0, now - ms)) + ' ago';
}

export function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function until(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return '–';
  const left = ms - now;
  return left <= 0 ? 'due now' : 'in ' + duration(left);
}

export function clock(ms) {
  if (ms === null || ms === undefined) return '–';
  const date = new Date(ms);
  const today = new Date();
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  if (date.toDateString() === today.toDateString()) return time;
  return `${date.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

export function number(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return value.toFixed(digits);
}

export function percent(value, digits = 0) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return `${value.toFixed(digits)} %`;
}

export function bytes(value) {
  if (!Number.isFinite(value)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = value;
  let unit = 0;
  while (Math.abs(v) >= 1024 && unit < units.length - 1) {
    v /= 1024;
    ++unit;
  }
  return `${v.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function ms(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–';
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

// --- sparklines (hand-drawn: a Chart.js instance per row would not render 500 rows in time) --

/** Draws values (null: gap) into an SVG path `line` sized width x height. */
export function drawSparkline(line, values, width, height) {
  let max = 0;
  let min = Infinity;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    max = Math.max(max, v);
    min = Math.min(min, v);
  }
  if (min === Infinity) {
    line.setAttribute('d', '');
    return;
  }
  const low = Math.min(0, min);
  const span = max - low || 1;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  let d = '';
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      return;
    }
    const x = (values.length > 1 ? i * step : width).toFixed(1);
    const y = (height - 1 - ((v - low) / span) * (height - 2)).toFixed(1);
    d += `${pen ? 'L' : 'M'}${x} ${y}`;
    // A lone point shows as a short tick.
    const next = values[i + 1];
    if (!pen && (next === null || next === undefined || !Number.isFinite(next))) {
      d += `h${-Math.min(4, Number(x))}`;
    }
    pen = true;
  });
  line.setAttribute('d', d);
}

// --- charts (Chart.js from Debian's libjs-chart.js, loaded only by the pages that draw) ----

let chartLoader = null;
export function loadCharts() {
  if (!chartLoader) {
    chartLoader = new Promise((resolve, reject) => {
      if (window.Chart) {
        resolve(window.Chart);
        return;
      }
      const script = el('script', { src: '/chart.min.js' });
      script.addEventListener('load', () => resolve(window.Chart));
      script.addEventListener('error', () => {
        chartLoader = null;
        reject(new Error('chart.min.js did not load'));
      });
      document.head.append(script);
    });
  }
  return chartLoader;
}

export const PALETTE = ['#1f6fb2', '#c2410c', '#15803d', '#7c3aed', '#b91c1c', '#0f766e',
  '#a16207', '#be185d'];

/** A line chart over time (x: Unix ms) in `canvas`; datasets: [{label, data: [{x, y}]}]. */
export function timeChart(Chart, canvas, { datasets, unit = '', max, min = 0, spanMs }) {
  // Ticks as the visible span needs them: days, hours and minutes, or seconds.
  const tick = function tick(value) {
    const date = new Date(value);
    const span = Number.isFinite(this.max - this.min) ? this.max - this.min : spanMs;
    if (span > 2 * 86400000) return date.toLocaleDateString([], { month: 'short', day: 'numeric' });
    if (span < 15 * 60000) {
      return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    }
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  };
  return new Chart(canvas, {
    type: 'line',
    data: { datasets: styled(datasets) },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      spanGaps: false,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      // Points show only where there are few (a fresh server's first collections).
      elements: {
        point: { radius: (ctx) => (ctx.dataset.data.length < 30 ? 2.5 : 0), hitRadius: 6 },
        line: { borderWidth: 1.5, tension: 0 },
      },
      scales: {
        x: { type: 'linear', ticks: { callback: tick, maxTicksLimit: 7, maxRotation: 0 } },
        y: {
          min,
          max,
          beginAtZero: true,
          ticks: { maxTicksLimit: 5, callback: (v) => `${formatAxis(v)}${unit ? ' ' + unit : ''}` },
        },
      },
      plugins: {
        legend: { display: datasets.length > 1, labels: { boxWidth: 10, boxHeight: 10 } },
        tooltip: { callbacks: { title: (items) => items.length ? clock(items[0].parsed.x) : '' } },
      },
    },
  });
}

function formatAxis(v) {
  if (Math.abs(v) >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

function styled(datasets) {
  return datasets.map((set, i) => ({
    borderColor: PALETTE[i % PALETTE.length],
    backgroundColor: PALETTE[i % PALETTE.length],
    ...set,
  }));
}

/** Replaces a chart's datasets in place (no re-creation, no layout change). */
export function updateChart(chart, datasets) {
  chart.data.datasets = styled(datasets);
  chart.options.plugins.legend.display = datasets.length > 1;
  chart.update('none');
}

// --- polling -------------------------------------------------------------------------------

/** How often pages ask for news: 5 s, or ?refresh=N seconds (1 to 5) in the page's address. */
export function refreshMs() {
  const asked = Number(new URLSearchParams(location.search).get('refresh'));
  return Number.isFinite(asked) && asked >= 1 && asked <= 5 ? asked * 1000 : 5000;
}

/**
 * Calls `task` now and then every `everyMs` after it settles, until stopped; skips while the
 * tab is hidden. The AbortSignal passed to task is aborted on stop().
 */
export class Poller {
  constructor(task, everyMs) {
    this.task = task;
    this.everyMs = everyMs;
    this.timer = null;
    this.controller = new AbortController();
    this.stopped = false;
    this.onVisible = () => {
      if (!document.hidden && this.timer === null && !this.running) this.run();
    };
  }

  start() {
    document.addEventListener('visibilitychange', this.onVisible);
    this.run();
    return this;
  }

  async run() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = null;
    if (document.hidden) return;  // resumed by visibilitychange
    this.running = true;
    try {
      await this.task(this.controller.signal);
    } catch (error) {
      if (error.name !== 'AbortError') console.warn('healer: poll failed:', error.message);
    } finally {
      this.running = false;
    }
    if (!this.stopped) this.timer = setTimeout(() => this.run(), this.everyMs);
  }

  /** Runs now (after a user action), without waiting for the next tick. */
  now() {
    if (!this.running) this.run();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.controller.abort();
    document.removeEventListener('visibilitychange', this.onVisible);
  }
}

/** The header's "live" line: when data last came, or why it did not. */
export function live(text, ok = true) {
  const node = document.getElementById('live');
  setText(node, text);
  node.classList.toggle('stale', !ok);
}
