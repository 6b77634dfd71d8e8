// The pool page (#/pool): the seed's "visualize pool usage and performance". Totals across the
// fleet, the pool over the last hour (all servers or one), and every server's connections,
// channels, hit ratio, reuse, latencies, evictions, circuits and backoffs, live.
import {
  api, el, enc, live, loadCharts, ms, number, percent, Poller, refreshMs, replace, setText, timeChart,
  updateChart,
} from './util.js';

const remembered = { server: '', text: '' };

const COLUMNS = [
  ['server', 'Server'], ['connections', 'Connections'], ['channels', 'Channels in use'],
  ['waiters', 'Waiting'], ['acquisitions', 'Leases'], ['commands', 'Commands'],
  ['hit', 'Hit ratio'], ['reuse', 'Reuse'], ['wait', 'Queue wait p50 / p99'],
  ['handshake', 'Handshake p50 / p99'], ['evictions', 'Evictions'], ['state', 'State'],
];

export class PoolPage {
  constructor(root) {
    this.root = root;
    this.rows = new Map();
    this.order = '';
    this.charts = new Map();
    this.options = '';
    this.build();
  }

  start() {
    this.poller = new Poller((signal) => this.poll(signal), refreshMs()).start();
  }

  stop() {
    this.poller.stop();
    for (const slot of this.charts.values()) slot.chart && slot.chart.destroy();
  }

  build() {
    this.cards = new Map();
    const cards = el('div', { class: 'cards' });
    for (const [key, title] of [['connections', 'Connections open'], ['channels', 'Channels in use'],
      ['waiters', 'Callers waiting'], ['hit', 'Hit ratio'], ['reuse', 'Reuse'],
      ['wait', 'Queue wait'], ['handshake', 'Handshakes'], ['evictions', 'Cleanups and evictions'],
      ['trouble', 'Circuits and backoffs']]) {
      const value = el('span', { class: 'value', text: '–' });
      const sub = el('span', { class: 'sub', text: '' });
      const card = el('div', { class: `card k-${key}` }, el('span', { class: 'label', text: title }), value, sub);
      this.cards.set(key, { card, value, sub });
      cards.append(card);
    }

    this.scope = el('select', { 'aria-label': 'Whose pool the charts show' }, el('option', { value: '', text: 'All servers' }));
    this.scope.addEventListener('change', () => {
      remembered.server = this.scope.value;
      this.poller.now();
    });
    this.historyNote = el('span', { class: 'muted' });
    this.chartGrid = el('div', { class: 'charts' });
    for (const [key, title] of [['usage', 'Connections and channels'], ['work', 'Work per interval'],
      ['latency', 'Latency (upper bound, ms)'], ['hit', 'Hit ratio per interval'],
      ['trouble', 'Trouble per interval']]) {
      const canvas = el('canvas', { role: 'img', 'aria-label': `${title} chart` });
      const card = el('figure', { class: 'chart-card' }, el('figcaption', {}, el('span', { text: title })),
        el('div', { class: 'chart' }, canvas));
      this.charts.set(key, { canvas, chart: null });
      this.chartGrid.append(card);
    }

    this.search = el('input', {
      type: 'search', placeholder: 'Filter servers  ( / )', 'aria-label': 'Filter servers by name',
      autocomplete: 'off', spellcheck: 'false',
    });
    this.search.value = remembered.text;
    this.search.addEventListener('input', () => {
      remembered.text = this.search.value;
      this.showServers();
    });
    this.tbody = el('tbody');
    this.shown = el('span', { class: 'shown' });
    this.root.append(
      el('h1', { class: 'page-title', text: 'Connection pool' }),
      el('p', { class: 'muted intro', text: 'One SSH connection carries many command channels; a new one opens only while callers wait and every connection is full.' }),
      cards,
      el('section', { 'aria-labelledby': 'pool-history' },
        el('div', { class: 'section-head' }, el('h2', { id: 'pool-history', text: 'Over the last hour' }), this.scope, this.historyNote),
        this.chartGrid),
      el('section', { 'aria-labelledby': 'pool-servers' },
        el('div', { class: 'section-head' }, el('h2', { id: 'pool-servers', text: 'Per server' }), this.search, this.shown),
        el('div', { class: 'table-wrap' }, el('table', { class: 'pool' },
          el('caption', { class: 'visually-hidden', text: 'Pool per server, busiest and troubled first' }),
          el('thead', {}, el('tr', {}, COLUMNS.map(([key, text]) => el('th', { scope: 'col', class: `f-${key}`, text })))),
          this.tbody))));
  }

  async poll(signal) {
    try {
      const history = `/api/v1/pool/history${remembered.server ? '?server=' + enc(remembered.server) : ''}`;
      const [pool, series] = await Promise.all([
        api('/api/v1/pool', { signal }),
        api(history, { signal }).catch((error) => {
          if (error.status === 404) return null;  // no sample of that server yet
          throw error;
        }),
      ]);
      this.pool = pool;
      if (series) this.limits = series.limits;
      this.showTotals(pool.totals);
      this.showServers();
      this.showScope(pool.servers);
      await this.showHistory(series);
      live(`live · ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      live(`no answer from the daemon: ${error.message}; retrying`, false);
    }
  }

  showTotals(t) {
    const limits = this.limits || {};
    const set = (key, value, sub, alarm = false) => {
      const card = this.cards.get(key);
      setText(card.value, value);
      setText(card.sub, sub);
      card.card.classList.toggle('alarm', alarm);
    };
    const open = t.sessions_ready + t.sessions_draining;
    set('connections', String(open),
      `${t.sessions_connecting} connecting · ${t.sessions_draining} draining · ≤ ${limits.max_connections ?? '?'} per server`);
    set('channels', String(t.channels_in_use),
      `of ${t.sessions_ready * (limits.max_channels ?? 0)} on open connections · ≤ ${limits.max_concurrent ?? '?'} per server`);
    set('waiters', String(t.waiters), `${t.exhausted} exhausted · ${t.timeouts} timed out`, t.waiters > 0);
    set('hit', percent(100 * t.hit_rate, 1), `${t.served_by_existing} of ${t.acquisitions} leases on a warm connection`);
    set('reuse', number(t.reuse, 1), `commands per connection: ${t.commands} on ${t.sessions_opened}`);
    set('wait', `${ms(t.wait_ms_p99)}`, `p99 · p50 ${ms(t.wait_ms_p50)}`);
    set('handshake', `${ms(t.handshake_ms_p99)}`,
      `p99 · p50 ${ms(t.handshake_ms_p50)} · ${t.handshakes_started} started, ${t.handshakes_failed} failed`,
      t.handshakes_failed > 0);
    const ev = t.evictions;
    const evicted = Object.values(ev).reduce((a, b) => a + b, 0);
    set('evictions', String(evicted),
      `idle ${ev.idle} · lifetime ${ev.lifetime} · dead ${ev.dead} · error ${ev.error} · ${t.cleanup_runs} cleanups`);
    set('trouble', `${t.circuits_open} / ${t.backing_off}`, 'circuits open / servers backing off',
      t.circuits_open + t.backing_off > 0);
  }

  showServers() {
    if (!this.pool) return;
    const text = remembered.text.trim().toLowerCase();
    const limits = this.limits || {};
    const servers = this.pool.servers.filter((s) => !text || s.server.toLowerCase().includes(text));
    const trouble = (s) => (s.circuits_open ? 2 : 0) + (s.backing_off ? 1 : 0);
    servers.sort((a, b) => trouble(b) - trouble(a) || b.channels_in_use - a.channels_in_use ||
      b.waiters - a.waiters || (a.server < b.server ? -1 : a.server > b.server ? 1 : 0));
    const seen = new Set();
    for (const s of servers) {
      seen.add(s.server);
      let row = this.rows.get(s.server);
      if (!row) {
        row = this.makeRow(s.server);
        this.rows.set(s.server, row);
      }
      const c = row._cells;
      setText(c.connections, `${s.sessions_ready + s.sessions_draining}${s.sessions_connecting ? ` (+${s.sessions_connecting})` : ''} / ${limits.max_connections ?? '?'}`);
      setText(c.channels, `${s.channels_in_use} / ${limits.max_concurrent ?? '?'}`);
      setText(c.waiters, String(s.waiters));
      setText(c.acquisitions, String(s.acquisitions));
      setText(c.commands, String(s.commands));
      setText(c.hit, s.acquisitions ? percent(100 * s.hit_rate, 1) : '–');
      setText(c.reuse, s.sessions_opened ? number(s.reuse, 1) : '–');
      setText(c.wait, `${ms(s.wait_ms_p50)} / ${ms(s.wait_ms_p99)}`);
      setText(c.handshake, s.handshakes_started ? `${ms(s.handshake_ms_p50)} / ${ms(s.handshake_ms_p99)}` : '–');
      setText(c.evictions, String(Object.values(s.evictions).reduce((a, b) => a + b, 0)));
      const state = s.circuits_open ? 'circuit open' : s.backing_off ? 'backing off' : s.sessions_ready ? 'connected' : 'idle';
      setText(c.state, state);
      row.className = s.circuits_open || s.backing_off ? 'trouble' : '';
    }
    for (const [name, row] of this.rows) {
      if (!seen.has(name)) {
        row.remove();
        this.rows.delete(name);
      }
    }
    const order = servers.map((s) => s.server).join('\n');
    if (order !== this.order) {
      this.order = order;
      this.tbody.replaceChildren(...servers.map((s) => this.rows.get(s.server)));
    }
    setText(this.shown, servers.length === this.pool.servers.length ? '' : `showing ${servers.length} of ${this.pool.servers.length}`);
  }

  makeRow(name) {
    const cells = {};
    const row = el('tr');
    for (const [key] of COLUMNS) {
      if (key === 'server') {
        row.append(el('th', { scope: 'row', class: 'f-server' }, el('a', { href: `#/server/${enc(name)}`, text: name })));
        continue;
      }
      cells[key] = el('td', { class: `f-${key}` });
      row.append(cells[key]);
    }
    row._cells = cells;
    return row;
  }

  showScope(servers) {
    const names = servers.map((s) => s.server).sort();
    const key = names.join('\n');
    if (key === this.options) return;
    this.options = key;
    replace(this.scope, el('option', { value: '', text: 'All servers' }), names.map((name) => el('option', { value: name, text: name })));
    this.scope.value = names.includes(remembered.server) ? remembered.server : '';
  }

  async showHistory(history) {
    if (!history) {
      setText(this.historyNote, 'no samples of this server yet (one a minute)');
      return;
    }
    setText(this.historyNote, `${history.points} sample${history.points === 1 ? '' : 's'}, one every ${history.interval_seconds} s, since the daemon started`);
    const Chart = await loadCharts();
    const s = history.series;
    const line = (field, label) => ({ label, data: s.at.map((x, i) => ({ x, y: s[field][i] })) });
    const ratio = s.at.map((x, i) => ({
      x, y: s.acquisitions[i] ? (100 * s.served_by_existing[i]) / s.acquisitions[i] : null,
    }));
    const end = Date.now();
    const spanMs = 3600e3;
    const draw = (key, datasets, options = {}) => {
      const slot = this.charts.get(key);
      if (!slot.chart) slot.chart = timeChart(Chart, slot.canvas, { datasets, spanMs, ...options });
      else updateChart(slot.chart, datasets);
      slot.chart.options.scales.x.min = s.at.length ? Math.min(s.at[0], end - 60e3) : end - spanMs;
      slot.chart.options.scales.x.max = end;
      slot.chart.update('none');
    };
    draw('usage', [line('sessions_ready', 'connections'), line('sessions_connecting', 'connecting'),
      line('channels_in_use', 'channels in use'), line('waiters', 'waiting')]);
    draw('work', [line('acquisitions', 'leases'), line('commands', 'commands'), line('handshakes', 'handshakes')]);
    draw('latency', [line('wait_ms_p50', 'queue wait p50'), line('wait_ms_p99', 'queue wait p99'),
      line('handshake_ms_p99', 'handshake p99')], { unit: 'ms' });
    draw('hit', [{ label: 'hit ratio %', data: ratio }], { unit: '%', max: 100 });
    draw('trouble', [line('circuits_open', 'circuits open'), line('backing_off', 'backing off'),
      line('evictions', 'evictions'), line('exhausted', 'exhausted'), line('timeouts', 'timeouts')]);
  }
}
