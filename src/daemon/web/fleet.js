// The fleet page (#/): every server, worst first, with its failing checks, last run, key figures
// and a 24 h sparkline; counts per status; filters; live. The list is windowed: only the rows in
// view exist in the DOM (fixed row height), so 500 or 10,000 servers render as fast as 30. It
// loads the list's summary view (what a row shows) and, on the first load, shows each page as
// it arrives: the first screen does not wait for the whole fleet.
import {
  STATUSES, STATUS_HELP, ago, api, apiPages, askToken, boardStatus, drawSparkline, el, enc, live,
  number, percent, Poller, refreshMs, rank, replace, setBadge, setText, svg, until,
} from './util.js';

const TRENDS_MS = 60000;
const OVERSCAN = 6;
const SPARK_W = 96;
const SPARK_H = 22;

// Kept while the tab lives, so coming back from a server page restores the view.
const remembered = { text: '', tag: '', statuses: new Set(), scrollY: 0, focusName: null };

export class FleetPage {
  constructor(root) {
    this.root = root;
    this.servers = [];
    this.view = [];
    this.trend = new Map();
    this.trendAt = 0;
    this.tags = '';
    this.rows = new Map();  // view index -> row element
    this.spare = [];        // row elements out of view, reused
    this.rowHeight = 0;
    this.first = true;
    this.complete = false;  // a whole list has arrived once
    this.loading = false;   // this.servers is the first pages of one
    this.frame = 0;
    this.onScroll = () => this.schedule();
    this.onResize = () => {
      this.rowHeight = 0;
      this.schedule();
    };
    this.build();
  }

  start() {
    window.addEventListener('scroll', this.onScroll, { passive: true });
    window.addEventListener('resize', this.onResize);
    this.poller = new Poller((signal) => this.poll(signal), refreshMs()).start();
  }

  stop() {
    remembered.scrollY = window.scrollY;
    this.poller.stop();
    cancelAnimationFrame(this.frame);
    window.removeEventListener('scroll', this.onScroll);
    window.removeEventListener('resize', this.onResize);
  }

  // --- structure ---------------------------------------------------------------------------

  build() {
    this.countButtons = new Map();
    const counts = el('div', { class: 'counts', role: 'group', 'aria-label': 'Servers per status (press to filter)' });
    for (const status of STATUSES) {
      const value = el('span', { class: 'n', text: '0' });
      const button = el('button', {
        type: 'button',
        class: `count s-${status.toLowerCase()}`,
        'aria-pressed': remembered.statuses.has(status) ? 'true' : 'false',
        title: `${status}: ${STATUS_HELP.get(status)}`,
        dataset: { status },
        onclick: () => this.toggleStatus(status, button),
      }, el('span', { class: 'label', text: status }), value);
      this.countButtons.set(status, { button, value });
      counts.append(button);
    }
    this.total = el('span', { class: 'total', text: '' });
    counts.append(this.total);

    this.search = el('input', {
      type: 'search',
      placeholder: 'Filter: name, host, tag, check  ( / )',
      'aria-label': 'Filter servers by name, host, tag or failing check',
      autocomplete: 'off',
      spellcheck: 'false',
    });
    this.search.value = remembered.text;
    this.search.addEventListener('input', () => {
      remembered.text = this.search.value;
      this.apply();
    });
    this.search.addEventListener('keydown', (event) => {
      if (event.key === 'ArrowDown' && this.view.length) {
        event.preventDefault();
        this.focusIndex(0);
      } else if (event.key === 'Escape' && this.search.value) {
        this.search.value = '';
        remembered.text = '';
        this.apply();
      }
    });
    this.tagSelect = el('select', { 'aria-label': 'Filter servers by tag' }, el('option', { value: '', text: 'All tags' }));
    this.tagSelect.addEventListener('change', () => {
      remembered.tag = this.tagSelect.value;
      this.apply();
    });
    this.shown = el('span', { class: 'shown', text: '' });
    const filters = el('div', { class: 'filters' }, this.search, this.tagSelect, this.shown);

    const headers = ['Status', 'Server', 'Problems', 'Last run', 'Load', 'Memory', 'Disk', 'Load, 24 h'];
    const classes = ['c-status', 'c-name', 'c-problems', 'c-age', 'c-load', 'c-mem', 'c-disk', 'c-spark'];
    const head = el('div', { class: 'row head', role: 'row', 'aria-rowindex': 1 },
      headers.map((text, i) => el('div', { class: classes[i], role: 'columnheader', text })));
    this.body = el('div', { class: 'body', role: 'rowgroup' });
    this.body.addEventListener('keydown', (event) => this.onKey(event));
    this.grid = el('div', { class: 'grid', role: 'table', 'aria-label': 'Servers, worst first', 'aria-rowcount': 1 },
      el('div', { role: 'rowgroup', class: 'heads' }, head), this.body);
    this.empty = el('p', { class: 'empty', hidden: true, text: '' });
    this.root.append(el('h1', { class: 'visually-hidden', text: 'Fleet' }), counts, filters, this.grid, this.empty);
  }

  toggleStatus(status, button) {
    if (remembered.statuses.has(status)) remembered.statuses.delete(status);
    else remembered.statuses.add(status);
    button.setAttribute('aria-pressed', remembered.statuses.has(status) ? 'true' : 'false');
    this.apply();
  }

  // --- data --------------------------------------------------------------------------------

  async poll(signal) {
    try {
      const wantTrend = this.complete && Date.now() - this.trendAt >= TRENDS_MS;
      const trendAsked = wantTrend ? this.loadTrend(signal) : null;
      const items = [];
      const tags = new Set();
      // Until the first complete list, each page is shown as it arrives; afterwards a refresh
      // replaces the complete list only once the new one is complete.
      const partial = !this.complete;
      await apiPages('/api/v1/servers?view=summary&limit=1000', { signal }, (page, more) => {
        for (const server of page) {
          prepare(server);
          for (const tag of server.tags) tags.add(tag);
          items.push(server);
        }
        if (partial && more) {
          this.ingest(items, tags, true);
          this.apply();
        }
      });
      await trendAsked;
      this.ingest(items, tags, false);
      this.apply();
      if (!this.complete) {
        this.complete = true;
        performance.mark('healer:fleet-complete');
        // The sparklines come after the first whole list: at 10,000 servers their answer is
        // megabytes that the first screen should not wait for.
        this.loadTrend(signal);
      }
      live(`live · ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      if (error.status === 401) {
        live('the API needs the token', false);
        if (await askToken('This daemon asks for the token to read too.')) this.poller.now();
        return;
      }
      live(`no answer from the daemon: ${error.message}; retrying`, false);
    }
  }

  // Every server's load over 24 h (drawn in the rows in view); errors leave the old ones.
  async loadTrend(signal) {
    const trend = await api('/api/v1/trends?figure=load1', { signal }).catch(() => null);
    if (!trend) return;
    this.trendAt = Date.now();
    this.trend = new Map(trend.servers.map((entry) => [entry.server, entry.values]));
    this.render();
  }

  // The list so far (loading: more pages follow) and the tags it holds.
  ingest(items, tags, loading) {
    this.servers = items;
    this.loading = loading;
    const tagList = [...tags].sort();
    const key = tagList.join('\n');
    if (key !== this.tags) {
      this.tags = key;
      const selected = remembered.tag;
      replace(this.tagSelect, el('option', { value: '', text: 'All tags' }),
        tagList.map((tag) => el('option', { value: tag, text: tag })));
      this.tagSelect.value = tagList.includes(selected) ? selected : '';
    }
  }

  apply() {
    const started = performance.now();
    const text = remembered.text.trim().toLowerCase();
    const tag = this.tagSelect.value;
    const statuses = remembered.statuses;
    const counts = new Map(STATUSES.map((status) => [status, 0]));
    const view = [];
    for (const server of this.servers) {
      counts.set(server._status, counts.get(server._status) + 1);
      if (statuses.size && !statuses.has(server._status)) continue;
      if (tag && !server.tags.includes(tag)) continue;
      if (text && !server._search.includes(text)) continue;
      view.push(server);
    }
    view.sort((a, b) => a._rank - b._rank || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.view = view;
    for (const [status, { value, button }] of this.countButtons) {
      setText(value, counts.get(status));
      button.classList.toggle('zero', counts.get(status) === 0);
    }
    setText(this.total, `${this.servers.length} server${this.servers.length === 1 ? '' : 's'}` +
      (this.loading ? ' so far, loading…' : ''));
    setText(this.shown, view.length === this.servers.length ? '' : `showing ${view.length} of ${this.servers.length}`);
    this.grid.setAttribute('aria-rowcount', String(view.length + 1));
    this.empty.hidden = view.length !== 0;
    setText(this.empty, this.servers.length === 0
      ? 'No servers yet: add one with “healer server add NAME --host HOST …”; it appears here within a few seconds.'
      : 'No server matches the filter.');
    this.render();
    performance.measure('healer:fleet-render', { start: started, end: performance.now() });
    if (this.first && this.servers.length) {
      this.first = false;
      performance.mark('healer:fleet-ready');
      if (remembered.scrollY) window.scrollTo(0, remembered.scrollY);
      // The frame that shows it: what a person sees, by the browser's own clock.
      requestAnimationFrame(() => setTimeout(() => performance.mark('healer:fleet-painted'), 0));
    }
  }

  // --- the window of rows --------------------------------------------------------------------

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    if (!this.rowHeight) {
      this.rowHeight = parseFloat(getComputedStyle(this.body).getPropertyValue('--row-h')) || 48;
    }
    const h = this.rowHeight;
    const count = this.view.length;
    this.body.style.height = `${count * h}px`;
    const top = this.body.getBoundingClientRect().top;
    const first = Math.max(0, Math.floor(-top / h) - OVERSCAN);
    const last = Math.min(count - 1, Math.ceil((window.innerHeight - top) / h) + OVERSCAN);
    for (const [index, row] of this.rows) {
      if (index < first || index > last) {
        this.rows.delete(index);
        this.spare.push(row);
      }
    }
    const focused = this.body.contains(document.activeElement);
    for (let i = first; i <= last; ++i) {
      let row = this.rows.get(i);
      if (!row) {
        row = this.spare.pop() || this.makeRow();
        this.rows.set(i, row);
      }
      this.fill(row, this.view[i], i);
      if (!row.parentNode) this.body.append(row);
    }
    for (const row of this.spare) row.remove();
    // Focus follows its server when the order changes under it.
    if (focused && remembered.focusName) {
      const index = this.view.findIndex((s) => s.name === remembered.focusName);
      const row = this.rows.get(index);
      if (row && document.activeElement !== row._link) row._link.focus({ preventScroll: true });
    }
  }

  makeRow() {
    const row = el('div', { class: 'row', role: 'row' });
    row._badge = el('span', { class: 'badge' });
    row._link = el('a', { class: 'name' });
    row._host = el('span', { class: 'sub' });
    row._problems = el('span', { class: 'main' });
    row._message = el('span', { class: 'sub' });
    row._age = el('span', { class: 'main' });
    row._next = el('span', { class: 'sub' });
    row._load = el('span', { class: 'num' });
    row._mem = meter();
    row._disk = meter();
    row._line = svg('path', { class: 'line' });
    row._spark = svg('svg', { width: SPARK_W, height: SPARK_H, viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, role: 'img' });
    row._spark.append(row._line);
    row.append(
      el('div', { class: 'c-status', role: 'cell' }, row._badge),
      el('div', { class: 'c-name', role: 'cell' }, row._link, row._host),
      el('div', { class: 'c-problems', role: 'cell' }, row._problems, row._message),
      el('div', { class: 'c-age', role: 'cell' }, row._age, row._next),
      el('div', { class: 'c-load', role: 'cell' }, row._load),
      el('div', { class: 'c-mem', role: 'cell' }, row._mem.node),
      el('div', { class: 'c-disk', role: 'cell' }, row._disk.node),
      el('div', { class: 'c-spark', role: 'cell' }, row._spark));
    row._link.addEventListener('focus', () => {
      remembered.focusName = row._server;
    });
    return row;
  }

  fill(row, server, index) {
    const y = `translateY(${index * this.rowHeight}px)`;
    if (row.style.transform !== y) row.style.transform = y;
    row.setAttribute('aria-rowindex', String(index + 2));
    const status = server._status;
    if (row._status !== status) {
      row.className = `row r-${status.toLowerCase()}`;
      row._status = status;
    }
    setBadge(row._badge, status);
    if (row._server !== server.name) {
      row._server = server.name;
      row._link.href = `#/server/${enc(server.name)}`;
      setText(row._link, server.name);
      row._link.title = server.name;
    }
    const tabbable = remembered.focusName === null ? index === 0 : remembered.focusName === server.name;
    row._link.tabIndex = tabbable ? 0 : -1;
    const tags = server.tags.length ? ` · ${server.tags.join(', ')}` : '';
    // The node that polls it (several healer nodes on one database share the fleet).
    const owner = server.owner ? ` · node ${server.owner}` : '';
    setText(row._host, `${server.user ? server.user + '@' : ''}${server.host}:${server.port}${tags}${owner}`);
    setText(row._problems, server._problems);
    row._problems.title = server._problems;
    setText(row._message, server._message);
    row._message.title = server._message;
    const run = server.last_run;
    setText(row._age, run ? ago(run.started_at) : '–');
    const next = server.schedule && server.schedule.diagnose;
    setText(row._next, next && next.next_due ? `next ${until(next.next_due)}` : '');
    const figures = server.metrics || {};
    setText(row._load, number(figures.load1));
    row._mem.set(figures.memory_used_percent, 'memory used');
    row._disk.set(figures.disk_used_percent, 'root disk used');
    const values = this.trend.get(server.name) || null;
    if (row._trend !== values) {
      row._trend = values;
      drawSparkline(row._line, values || [], SPARK_W, SPARK_H);
      const known = (values || []).filter((v) => v !== null);
      row._spark.setAttribute('aria-label', known.length
        ? `load1 over 24 h: ${Math.min(...known)} to ${Math.max(...known)}`
        : 'no load history yet');
    }
  }

  // --- keyboard ------------------------------------------------------------------------------

  onKey(event) {
    if (!(event.target instanceof HTMLAnchorElement)) return;
    const index = this.view.findIndex((s) => s.name === remembered.focusName);
    const page = Math.max(1, Math.floor(window.innerHeight / this.rowHeight) - 2);
    const moves = {
      ArrowDown: index + 1, j: index + 1, ArrowUp: index - 1, k: index - 1,
      PageDown: index + page, PageUp: index - page, Home: 0, End: this.view.length - 1,
    };
    if (!(event.key in moves) || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    if (moves[event.key] < 0 && (event.key === 'ArrowUp' || event.key === 'k')) {
      this.search.focus();
      return;
    }
    this.focusIndex(moves[event.key]);
  }

  focusIndex(wanted) {
    if (!this.view.length) return;
    const index = Math.max(0, Math.min(this.view.length - 1, wanted));
    remembered.focusName = this.view[index].name;
    const head = this.grid.querySelector('.heads').getBoundingClientRect().height;
    const rowTop = this.body.getBoundingClientRect().top + window.scrollY + index * this.rowHeight;
    if (rowTop - head < window.scrollY) window.scrollTo(0, rowTop - head);
    else if (rowTop + this.rowHeight > window.scrollY + window.innerHeight) {
      window.scrollTo(0, rowTop + this.rowHeight - window.innerHeight);
    }
    this.render();
    const row = this.rows.get(index);
    if (row) row._link.focus({ preventScroll: true });
  }
}

// What a row shows of a server, worked out once per poll: its board status, problems, message
// and the text the filter searches.
function prepare(server) {
  const status = boardStatus(server);
  const run = server.last_run;
  server._status = status;
  server._rank = rank(status);
  let problems = '';
  let message = '';
  if (status === 'DOWN') {
    const error = (run && run.error) || (server.metrics && server.metrics.error) || {};
    problems = 'unreachable';
    message = `${error.name || 'error'}: ${error.message || ''}`;
  } else if (status === 'PENDING') {
    problems = 'not diagnosed yet';
    message = `first diagnosis ${until(server.schedule && server.schedule.diagnose.next_due)}`;
  } else if (run && run.failing.length) {
    problems = run.failing.map((check) => check.name).join(', ');
    message = run.failing[0].message;
  } else if (run) {
    problems = `${run.checks} checks OK`;
    message = server.metrics ? server.metrics.headline : '';
  }
  if (server.metrics && server.metrics.error && status !== 'DOWN') {
    message = `metrics: ${server.metrics.error.message}` + (message ? ` · ${message}` : '');
  }
  server._problems = problems;
  server._message = message;
  server._search = [server.name, server.host, status, problems, ...server.tags]
    .join('\n').toLowerCase();
}

// A percentage as a bar and its number; the bar turns amber past 80 % and red past 90 %.
function meter() {
  const fill = el('span', { class: 'fill' });
  const value = el('span', { class: 'num' });
  const node = el('span', { class: 'meter' }, el('span', { class: 'bar' }, fill), value);
  return {
    node,
    set(percentUsed, what) {
      const known = Number.isFinite(percentUsed);
      const width = known ? `${Math.max(0, Math.min(100, percentUsed)).toFixed(1)}%` : '0%';
      if (fill.style.width !== width) fill.style.width = width;
      const level = !known ? '' : percentUsed >= 90 ? 'crit' : percentUsed >= 80 ? 'warn' : '';
      if (fill.className !== `fill ${level}`) fill.className = `fill ${level}`;
      setText(value, percent(percentUsed));
      node.title = known ? `${percent(percentUsed, 1)} ${what}` : `${what}: not collected yet`;
    },
  };
}
