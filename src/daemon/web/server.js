// The server page (#/server/NAME): status and facts, the latest run's checks with messages and
// perfdata, the status timeline, metric charts over 1 h / 24 h / 7 d, recent runs, and
// "Diagnose now" (a POST with the token; the fresh run replaces the checks in place).
import {
  ago, api, askToken, badge, boardStatus, bytes, clock, el, enc, forgetToken, live, loadCharts, ms,
  number, percent, Poller, refreshMs, rank, replace, setBadge, setText, timeChart, token, until, updateChart,
} from './util.js';

const CHARTS_MS = 60000;
const RANGES = [['1h', '1 h', 3600e3], ['24h', '24 h', 86400e3], ['7d', '7 d', 7 * 86400e3]];
const remembered = { range: '24h' };

export class ServerPage {
  constructor(root, name) {
    this.root = root;
    this.name = name;
    this.base = `/api/v1/servers/${enc(name)}`;
    this.runId = undefined;
    this.transitionsKey = '';
    this.freshRun = null;
    this.charts = new Map();
    this.chartsAt = 0;
    this.chartsCollected = undefined;
    this.chartsEmpty = true;
    this.build();
  }

  start() {
    this.poller = new Poller((signal) => this.poll(signal), refreshMs()).start();
  }

  stop() {
    this.poller.stop();
    for (const chart of this.charts.values()) chart.chart && chart.chart.destroy();
    this.charts.clear();
  }

  // --- structure ---------------------------------------------------------------------------

  build() {
    this.badge = badge('PENDING', 'big');
    this.since = el('span', { class: 'since' });
    this.title = el('h1', { class: 'server-name', text: this.name });
    this.host = el('p', { class: 'host' });
    this.button = el('button', { type: 'button', class: 'primary', text: 'Diagnose now', onclick: () => this.diagnose() });
    this.result = el('p', { class: 'result', role: 'status', 'aria-live': 'polite' });
    this.facts = el('dl', { class: 'facts' });
    const header = el('section', { class: 'server-head', 'aria-label': 'Status' },
      el('p', { class: 'crumb' }, el('a', { href: '#/', text: '← Fleet' })),
      el('div', { class: 'title-line' }, this.badge, this.title, this.since),
      this.host,
      el('div', { class: 'actions' }, this.button, this.result,
        el('a', { href: `#/heal/${enc(this.name)}`, text: 'Heal…' })),
      this.facts);

    this.checksCaption = el('caption', { text: 'Checks of the latest run' });
    this.checksBody = el('tbody');
    const checks = el('section', { 'aria-labelledby': 'checks-title' },
      el('h2', { id: 'checks-title', text: 'Checks' }),
      el('div', { class: 'table-wrap' }, el('table', { class: 'checks' }, this.checksCaption,
        el('thead', {}, el('tr', {}, ['Status', 'Check', 'Message', 'Perfdata', 'Took']
          .map((text) => el('th', { scope: 'col', text })))),
        this.checksBody)));

    this.timeline = el('div', { class: 'timeline', role: 'img', 'aria-label': 'Status over the chosen range' });
    this.timelineScale = el('div', { class: 'timeline-scale' });
    this.transitions = el('ol', { class: 'transitions' });
    const timeline = el('section', { 'aria-labelledby': 'timeline-title' },
      el('h2', { id: 'timeline-title', text: 'Status timeline' }),
      this.timeline, this.timelineScale, this.transitions);

    this.rangeButtons = RANGES.map(([key, label]) => el('button', {
      type: 'button',
      class: 'range',
      'aria-pressed': key === remembered.range ? 'true' : 'false',
      text: label,
      onclick: () => this.setRange(key),
    }));
    this.chartGrid = el('div', { class: 'charts' });
    for (const [key, title] of [['cpu', 'CPU busy'], ['load', 'Load'], ['memory', 'Memory used'],
      ['disk', 'Disk used'], ['network', 'Network']]) {
      const canvas = el('canvas', { role: 'img', 'aria-label': `${title} chart` });
      const now = el('span', { class: 'now' });
      const card = el('figure', { class: 'chart-card' },
        el('figcaption', {}, el('span', { text: title }), now),
        el('div', { class: 'chart' }, canvas));
      this.charts.set(key, { canvas, now, chart: null });
      this.chartGrid.append(card);
    }
    const metrics = el('section', { 'aria-labelledby': 'metrics-title' },
      el('div', { class: 'section-head' }, el('h2', { id: 'metrics-title', text: 'Metrics' }),
        el('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' }, this.rangeButtons)),
      this.chartGrid);

    this.runsBody = el('tbody');
    const runs = el('section', { 'aria-labelledby': 'runs-title' },
      el('h2', { id: 'runs-title', text: 'Recent runs' }),
      el('div', { class: 'table-wrap' }, el('table', { class: 'runs' },
        el('thead', {}, el('tr', {}, ['Started', 'Status', 'Checks', 'Not OK', 'Took']
          .map((text) => el('th', { scope: 'col', text })))),
        this.runsBody)));

    this.missing = el('p', { class: 'empty', hidden: true });
    this.content = el('div', { class: 'server' }, header, checks, timeline, metrics, runs);
    this.root.append(this.missing, this.content);
  }

  // --- data --------------------------------------------------------------------------------

  async poll(signal) {
    let summary;
    try {
      summary = await api(this.base, { signal });
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      if (error.status === 404) {
        this.content.hidden = true;
        this.missing.hidden = false;
        replace(this.missing, `No server named “${this.name}”. `, el('a', { href: '#/', text: 'Back to the fleet' }));
        live('live');
        return;
      }
      live(`no answer from the daemon: ${error.message}; retrying`, false);
      return;
    }
    this.content.hidden = false;
    this.missing.hidden = true;
    this.showSummary(summary);
    const runId = summary.last_run ? summary.last_run.run_id : null;
    const work = [];
    if (runId !== this.runId) {
      this.runId = runId;
      work.push(this.loadRuns(signal));
    }
    const key = `${summary.status}|${summary.status_since}|${runId}`;
    if (key !== this.transitionsKey) {
      this.transitionsKey = key;
      work.push(this.loadTransitions(signal));
    }
    // Charts follow new collections: at once while they are empty, else at most every minute.
    const collected = summary.metrics ? summary.metrics.collected_at : null;
    if (collected !== this.chartsCollected &&
        (this.chartsEmpty || Date.now() - this.chartsAt >= CHARTS_MS)) {
      this.chartsCollected = collected;
      this.chartsAt = Date.now();
      work.push(this.loadCharts(signal));
    }
    await Promise.all(work);
    live(`live · ${new Date().toLocaleTimeString()}`);
  }

  showSummary(server) {
    this.summary = server;
    const status = boardStatus(server);
    setBadge(this.badge, status);
    this.badge.classList.add('big');
    document.title = `${status} ${server.name} · healer`;
    setText(this.since, server.status_since ? `since ${clock(server.status_since)} (${ago(server.status_since)})` : '');
    const tags = server.tags.length ? ` · tags: ${server.tags.join(', ')}` : '';
    const owner = server.owner ? ` · polled by node ${server.owner}` : ' · no node holds its lease yet';
    setText(this.host, `${server.user ? server.user + '@' : ''}${server.host}:${server.port} · ${server.auth} auth${tags}${owner}`);
    const run = server.last_run;
    const metrics = server.metrics;
    const schedule = server.schedule || {};
    const facts = [
      ['Last diagnosis', run ? `${clock(run.started_at)} (${ago(run.started_at)}), ${run.checks} checks in ${ms(run.duration_ms)}` : 'none yet'],
      ['Next diagnosis', schedule.diagnose && schedule.diagnose.interval_seconds
        ? `${until(schedule.diagnose.next_due)}, every ${schedule.diagnose.interval_seconds} s${schedule.diagnose.running ? ' (running now)' : ''}`
        : 'not scheduled'],
      ['Metrics', metrics ? `${metrics.headline || '–'} · collected ${ago(metrics.collected_at)}` : 'none yet'],
      ['Next collection', schedule.metrics && schedule.metrics.interval_seconds
        ? `${until(schedule.metrics.next_due)}, every ${schedule.metrics.interval_seconds} s`
        : 'not scheduled'],
    ];
    if (run && run.error) facts.splice(1, 0, ['Unreachable', `${run.error.name}: ${run.error.message}`]);
    if (metrics && metrics.error) facts.push(['Last collection', `failed: ${metrics.error.name}: ${metrics.error.message}`]);
    const labels = Object.entries(server.labels || {});
    if (labels.length) facts.push(['Labels', labels.map(([k, v]) => `${k}=${v}`).join(', ')]);
    replace(this.facts, facts.map(([term, value]) => el('div', {}, el('dt', { text: term }), el('dd', { text: value }))));
  }

  async loadRuns(signal) {
    const runs = await api(`${this.base}/runs?limit=10`, { signal });
    replace(this.runsBody, runs.items.map((run) => {
      const failing = run.checks.filter((check) => check.status !== 'OK').map((check) => check.name);
      return el('tr', {},
        el('td', { text: clock(run.started_at) }),
        el('td', {}, badge(run.status)),
        el('td', { class: 'num', text: run.checks.length }),
        el('td', { text: failing.join(', ') || '–' }),
        el('td', { class: 'num', text: ms(run.finished_at - run.started_at) }));
    }));
    if (!runs.items.length) {
      replace(this.runsBody, el('tr', {}, el('td', { colspan: 5, text: 'No runs yet.' })));
      this.showChecks([], null);
      return;
    }
    const latest = runs.items[0];
    if (this.freshRun && this.freshRun.id === latest.id) return;  // already shown in place
    this.showChecks(latest.checks, { id: latest.id, at: latest.started_at, took: latest.finished_at - latest.started_at });
  }

  showChecks(checks, run, fresh = false) {
    if (!run) {
      setText(this.checksCaption, 'No diagnosis yet.');
      replace(this.checksBody);
      return;
    }
    setText(this.checksCaption, `Run #${run.id} · ${clock(run.at)} · ${ms(run.took)}${fresh ? ' · fresh: diagnosed just now' : ''}`);
    this.checksCaption.classList.toggle('fresh', fresh);
    const sorted = [...checks].sort((a, b) => rank(a.status) - rank(b.status) || (a.name < b.name ? -1 : 1));
    replace(this.checksBody, sorted.map((check) => el('tr', { class: `r-${String(check.status).toLowerCase()}` },
      el('td', {}, badge(check.status)),
      el('th', { scope: 'row', text: check.name }),
      el('td', { class: 'message', text: check.message }),
      el('td', { class: 'perfdata', text: perfdataText(check.perfdata) }),
      el('td', { class: 'num', text: ms(check.duration_ms) }))));
  }

  async loadTransitions(signal) {
    const transitions = await api(`${this.base}/transitions?limit=200`, { signal });
    this.transitionItems = transitions.items;
    this.drawTimeline();
    replace(this.transitions, transitions.items.slice(0, 12).map((t) => el('li', {},
      el('time', { text: clock(t.at) }), ' ',
      t.from ? badge(t.from, 'small') : el('span', { class: 'muted', text: 'first run' }),
      ' → ', badge(t.to, 'small'),
      t.run_id ? el('span', { class: 'muted', text: ` run #${t.run_id}` }) : null)));
    if (!transitions.items.length) replace(this.transitions, el('li', { class: 'muted', text: 'No status change recorded yet.' }));
  }

  drawTimeline() {
    const items = this.transitionItems || [];
    const range = RANGES.find(([key]) => key === remembered.range)[2];
    const end = Date.now();
    // Zoomed to what is known when the history is shorter than the range.
    const earliest = items.length ? Math.min(...items.map((t) => t.at)) : null;
    const start = earliest !== null && earliest > end - range
      ? Math.max(end - range, earliest - Math.max(1000, (end - earliest) * 0.05))
      : end - range;
    const span = end - start;
    // Oldest first: each transition starts a segment that lasts until the next one.
    const ordered = [...items].reverse();
    const segments = [];
    let current = null;
    let from = start;
    for (const t of ordered) {
      if (t.at <= start) {
        current = t.to;
        continue;
      }
      if (current === null && t.from) current = t.from;
      if (current !== null) segments.push([from, t.at, current]);
      current = t.to;
      from = t.at;
    }
    if (current !== null) segments.push([from, end, current]);
    replace(this.timeline, segments.map(([a, b, status]) => {
      const part = el('span', {
        class: `segment s-${status.toLowerCase()}`,
        title: `${status} from ${clock(a)} to ${b === end ? 'now' : clock(b)}`,
      });
      const width = Math.max(0.3, ((b - a) / span) * 100);
      part.style.left = `${Math.min(100 - width, ((a - start) / span) * 100)}%`;
      part.style.width = `${width}%`;
      return part;
    }));
    if (!segments.length) replace(this.timeline, el('span', { class: 'muted none', text: 'no status in this range' }));
    this.timeline.setAttribute('aria-label', segments.length
      ? `Status over ${RANGES.find(([key]) => key === remembered.range)[1]}: ` +
        segments.map(([a, , status]) => `${status} from ${clock(a)}`).join(', ')
      : 'No status in this range');
    replace(this.timelineScale, el('span', { text: clock(start) }), el('span', { text: 'now' }));
  }

  setRange(key) {
    remembered.range = key;
    for (const button of this.rangeButtons) {
      button.setAttribute('aria-pressed', button.textContent === RANGES.find(([k]) => k === key)[1] ? 'true' : 'false');
    }
    this.drawTimeline();
    this.chartsAt = Date.now();
    this.loadCharts(this.poller.controller.signal).catch((error) => {
      if (error.name !== 'AbortError') live(`charts: ${error.message}`, false);
    });
  }

  // --- charts ------------------------------------------------------------------------------

  async series(name, since, step, signal) {
    const doc = await api(`${this.base}/metrics?name=${enc(name)}&since=${since}&step=${step}`, { signal });
    return doc.series;
  }

  async loadCharts(signal) {
    const [key, , span] = RANGES.find(([k]) => k === remembered.range);
    const step = Math.max(1, Math.round(span / 1000 / 300));
    const names = ['healer_cpu_busy_percent', 'node_load1', 'node_load5', 'node_load15',
      'node_memory_MemTotal_bytes', 'node_memory_MemAvailable_bytes', 'node_filesystem_size_bytes',
      'node_filesystem_free_bytes', 'node_filesystem_avail_bytes',
      'healer_network_receive_bytes_per_second', 'healer_network_transmit_bytes_per_second'];
    const [Chart, ...all] = await Promise.all([loadCharts(),
      ...names.map((name) => this.series(name, key, step, signal))]);
    const got = new Map(names.map((name, i) => [name, all[i]]));
    this.chartsEmpty = all.every((series) => series.every((one) => one.points.length === 0));
    const points = (series) => series.points.map(([x, y]) => ({ x, y }));
    const first = (name) => (got.get(name)[0] ? points(got.get(name)[0]) : []);

    const cpu = first('healer_cpu_busy_percent');
    this.draw(Chart, 'cpu', [{ label: 'CPU busy %', data: cpu }], { unit: '%', max: 100, spanMs: span },
      cpu.length ? percent(cpu[cpu.length - 1].y, 1) : '–');

    const load = ['node_load1', 'node_load5', 'node_load15'].map((name) => ({ label: name.slice(5), data: first(name) }));
    this.draw(Chart, 'load', load, { spanMs: span },
      load[0].data.length ? number(load[0].data[load[0].data.length - 1].y) : '–');

    const available = new Map(first('node_memory_MemAvailable_bytes').map((p) => [p.x, p.y]));
    const memory = first('node_memory_MemTotal_bytes').filter((p) => available.has(p.x) && p.y > 0)
      .map((p) => ({ x: p.x, y: (100 * (p.y - available.get(p.x))) / p.y }));
    this.draw(Chart, 'memory', [{ label: 'memory used %', data: memory }], { unit: '%', max: 100, spanMs: span },
      memory.length ? percent(memory[memory.length - 1].y, 1) : '–');

    // df's "use%": used / (used + available to users), per mount point; root first, at most 6.
    const byMount = (name) => new Map(got.get(name).map((s) => [s.labels.mountpoint, new Map(s.points)]));
    const free = byMount('node_filesystem_free_bytes');
    const avail = byMount('node_filesystem_avail_bytes');
    const mounts = got.get('node_filesystem_size_bytes')
      .filter((s) => free.has(s.labels.mountpoint) && avail.has(s.labels.mountpoint))
      .sort((a, b) => (a.labels.mountpoint === '/' ? -1 : b.labels.mountpoint === '/' ? 1 : a.labels.mountpoint < b.labels.mountpoint ? -1 : 1))
      .slice(0, 6);
    const disk = mounts.map((s) => {
      const f = free.get(s.labels.mountpoint);
      const a = avail.get(s.labels.mountpoint);
      const data = [];
      for (const [x, size] of s.points) {
        if (!f.has(x) || !a.has(x)) continue;
        const used = size - f.get(x);
        if (used + a.get(x) > 0) data.push({ x, y: (100 * used) / (used + a.get(x)) });
      }
      return { label: String(s.labels.mountpoint), data };
    });
    const root = disk.find((d) => d.label === '/') || disk[0];
    this.draw(Chart, 'disk', disk, { unit: '%', max: 100, spanMs: span },
      root && root.data.length ? `${root.label} ${percent(root.data[root.data.length - 1].y, 1)}` : '–');

    const network = [];
    for (const [name, direction] of [['healer_network_receive_bytes_per_second', 'in'], ['healer_network_transmit_bytes_per_second', 'out']]) {
      for (const s of got.get(name)) {
        if (s.labels.device === 'lo') continue;
        network.push({ label: `${s.labels.device || '?'} ${direction}`, data: points(s) });
      }
    }
    const shown = network.slice(0, 8);
    const rate = shown.reduce((sum, set) => sum + (set.data.length ? set.data[set.data.length - 1].y : 0), 0);
    this.draw(Chart, 'network', shown, { unit: 'B/s', spanMs: span }, shown.length ? `${bytes(rate)}/s` : '–');
  }

  draw(Chart, key, datasets, options, now) {
    const slot = this.charts.get(key);
    if (!slot) return;
    setText(slot.now, now);
    slot.canvas.setAttribute('aria-label', `${key}: now ${now}`);
    // Zoomed to the data when it covers less than the range (a server added an hour ago).
    const end = Date.now();
    let earliest = end;
    for (const set of datasets) {
      if (set.data.length) earliest = Math.min(earliest, set.data[0].x);
    }
    const pad = Math.max(5000, (end - earliest) * 0.03);
    const xRange = { min: Math.max(end - options.spanMs, earliest - pad), max: end };
    if (slot.chart) {
      slot.chart.options.scales.x.min = xRange.min;
      slot.chart.options.scales.x.max = xRange.max;
      updateChart(slot.chart, datasets);
      return;
    }
    slot.chart = timeChart(Chart, slot.canvas, { datasets, ...options });
    slot.chart.options.scales.x.min = xRange.min;
    slot.chart.options.scales.x.max = xRange.max;
    slot.chart.update('none');
  }

  // --- diagnose now --------------------------------------------------------------------------

  async diagnose() {
    let bearer = token();
    if (!bearer) bearer = await askToken('“Diagnose now” needs the API token.');
    if (!bearer) {
      setText(this.result, 'Not diagnosed: no token.');
      return;
    }
    this.button.disabled = true;
    this.result.className = 'result busy';
    setText(this.result, 'Diagnosing…');
    const asked = Date.now();
    try {
      const outcome = await api(`${this.base}/diagnose`, { method: 'POST', body: {} });
      const diagnosis = outcome.servers[0];
      this.freshRun = { id: diagnosis.run_id };
      this.showChecks(diagnosis.checks, { id: diagnosis.run_id, at: diagnosis.started_at_ms, took: diagnosis.duration_ms }, true);
      this.result.className = 'result done';
      const reason = diagnosis.error ? ` (${diagnosis.error.name}: ${diagnosis.error.message})` : '';
      setText(this.result, `Fresh run #${diagnosis.run_id}: ${diagnosis.status}${reason} at ${clock(diagnosis.started_at_ms)}, ${ms(Date.now() - asked)} round trip.`);
      this.poller.now();
    } catch (error) {
      this.result.className = 'result failed';
      if (error.status === 401) {
        forgetToken();
        window.dispatchEvent(new Event('healer:token'));
        setText(this.result, 'The daemon refused the token: set the right one and try again.');
      } else {
        setText(this.result, `Diagnose failed: ${error.message}`);
      }
    } finally {
      this.button.disabled = false;
    }
  }
}

// Stored runs keep Nagios perfdata text; a fresh run's outcome has it structured.
function perfdataText(perfdata) {
  if (typeof perfdata === 'string') return perfdata;
  if (!Array.isArray(perfdata)) return '';
  return perfdata.map((p) => {
    const limits = [p.warn, p.crit].map((v) => (v === null || v === undefined ? '' : v)).join(';');
    return `${p.label}=${p.value}${p.unit || ''}${limits !== ';' ? ';' + limits : ''}`;
  }).join(' ');
}
