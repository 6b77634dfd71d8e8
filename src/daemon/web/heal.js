// The heal page (#/heal, #/heal/NAME): make a plan from the latest diagnosis (what would run,
// exactly, and why a step is blocked), approve it (POST .../apply with the plan's hash and the
// token; the daemon re-checks the servers and refuses a stale plan), see what ran, and the
// audit log. Everything here that came from a server (names, commands, facts, output, details)
// is untrusted text: it reaches the page through textContent only (util.js's el/setText).
import {
  api, askToken, clock, el, enc, forgetToken, live, Poller, refreshMs, replace, setText, token,
} from './util.js';

const HISTORY_LIMIT = 50;

function paramsText(params) {
  if (!params || typeof params !== 'object') return '';
  return Object.entries(params).map(([key, value]) => `${key}=${value}`).join(' ');
}

function factsText(step) {
  return [...Object.entries(step.facts || {}), ...Object.entries(step.info || {})]
    .map(([key, value]) => `${key}=${value}`).join(' ');
}

export class HealPage {
  constructor(root, server = '') {
    this.root = root;
    this.server = server;
    this.plan = null;
    this.historyKey = '';
    this.build();
  }

  start() {
    this.poller = new Poller((signal) => this.poll(signal), refreshMs()).start();
  }

  stop() {
    this.poller.stop();
  }

  build() {
    this.target = el('input', {
      type: 'search', id: 'heal-target', value: this.server, placeholder: 'server names, comma-separated',
      'aria-label': 'Servers to plan for (names, comma-separated)', autocomplete: 'off', spellcheck: 'false',
    });
    this.all = el('input', { type: 'checkbox', id: 'heal-all' });
    this.planButton = el('button', { type: 'button', class: 'primary', id: 'heal-plan', text: 'Make a plan', onclick: () => this.makePlan() });
    this.planResult = el('p', { class: 'result', id: 'heal-plan-result', role: 'status', 'aria-live': 'polite' });
    this.planView = el('div', { id: 'heal-plan-view' });
    this.risk = el('select', { id: 'heal-risk', 'aria-label': 'Highest risk to allow' },
      el('option', { value: 'low', text: 'allow low risk' }),
      el('option', { value: 'medium', text: 'allow up to medium risk', selected: true }),
      el('option', { value: 'high', text: 'allow high risk (reboot)' }));
    this.approveButton = el('button', { type: 'button', class: 'primary', id: 'heal-approve', text: 'Approve and apply', disabled: true, onclick: () => this.approve() });
    this.applyResult = el('p', { class: 'result', id: 'heal-apply-result', role: 'status', 'aria-live': 'polite' });
    this.outcomeView = el('div', { id: 'heal-outcome' });
    this.historyBody = el('tbody');
    this.historyCaption = el('caption', { text: 'Loading the audit log…' });
    this.root.append(
      el('h1', { class: 'page-title', text: 'Heal' }),
      el('p', { class: 'muted intro', text: 'A plan lists exactly what would run on each server and a content hash. Applying it re-checks the servers first: if anything changed, nothing runs. See docs/healing.md.' }),
      el('section', { 'aria-labelledby': 'heal-plan-title' },
        el('h2', { id: 'heal-plan-title', text: 'Plan' }),
        el('div', { class: 'actions' }, this.target,
          el('label', {}, this.all, ' all servers'), this.planButton, this.planResult),
        this.planView,
        el('div', { class: 'actions' }, this.risk, this.approveButton, this.applyResult),
        this.outcomeView),
      el('section', { 'aria-labelledby': 'heal-history-title' },
        el('h2', { id: 'heal-history-title', text: 'History' }),
        el('div', { class: 'table-wrap' }, el('table', { class: 'checks heal-history' }, this.historyCaption,
          el('thead', {}, el('tr', {}, ['When', 'What', 'Server', 'Action', 'Result', 'Verification', 'By', 'Detail']
            .map((text) => el('th', { scope: 'col', text })))),
          this.historyBody))));
  }

  // --- the audit log ---------------------------------------------------------------------------

  async poll(signal) {
    try {
      const query = `?limit=${HISTORY_LIMIT}${this.server ? '&server=' + enc(this.server) : ''}`;
      const history = await api(`/api/v1/heal/history${query}`, { signal });
      this.showHistory(history.items);
      live(`live · ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      live(`no answer from the daemon: ${error.message}; retrying`, false);
    }
  }

  showHistory(items) {
    const key = JSON.stringify(items);
    if (key === this.historyKey) return;
    this.historyKey = key;
    setText(this.historyCaption, items.length
      ? `The latest ${items.length} heals, refusals and breaker changes${this.server ? ' of ' + this.server : ''}, newest first`
      : 'No heals recorded yet.');
    replace(this.historyBody, items.map((item) => {
      const bad = ['failed', 'error', 'timeout', 'interrupted', 'privilege_missing', 'stale', 'open'].includes(item.result) ||
        item.verification === 'failed';
      const detail = el('td', { class: 'message' }, item.detail);
      if (item.output) detail.append(el('pre', { class: 'output', text: item.output }));
      return el('tr', { class: bad ? 'r-critical' : '', dataset: { kind: item.kind } },
        el('td', { class: 'num', text: clock(item.at) }),
        el('td', { text: item.kind }),
        el('td', { text: item.server }),
        el('td', {}, item.action, el('span', { class: 'perfdata', text: ` ${paramsText(item.params)}` })),
        el('td', { class: 'heal-result', text: item.exit_code === null ? item.result : `${item.result} (exit ${item.exit_code})` }),
        el('td', { text: item.verification || '' }),
        el('td', { text: item.actor }),
        detail);
    }));
  }

  // --- plan and approve ------------------------------------------------------------------------

  async withToken(what) {
    let bearer = token();
    if (!bearer) bearer = await askToken(`${what} needs the API token.`);
    return bearer;
  }

  refused(node, error, verb) {
    node.className = 'result failed';
    if (error.status === 401) {
      forgetToken();
      window.dispatchEvent(new Event('healer:token'));
      setText(node, 'The daemon refused the token: set the right one and try again.');
    } else {
      setText(node, `${verb} failed: ${error.message}`);
    }
  }

  async makePlan() {
    const names = this.target.value.split(',').map((name) => name.trim()).filter(Boolean);
    if (!this.all.checked && names.length === 0) {
      this.planResult.className = 'result failed';
      setText(this.planResult, 'Name a server (or tick all servers).');
      return;
    }
    if (!(await this.withToken('Planning'))) {
      setText(this.planResult, 'No plan: no token.');
      return;
    }
    this.planButton.disabled = true;
    this.planResult.className = 'result busy';
    setText(this.planResult, 'Probing the servers…');
    try {
      const plan = await api('/api/v1/heal/plans', { method: 'POST', body: this.all.checked ? { all: true } : { names } });
      this.showPlan(plan);
      this.planResult.className = 'result done';
      setText(this.planResult, `Plan ${plan.hash.slice(0, 12)}…: ${plan.ready_steps} ready step${plan.ready_steps === 1 ? '' : 's'}.`);
    } catch (error) {
      this.plan = null;
      this.approveButton.disabled = true;
      replace(this.planView);
      this.refused(this.planResult, error, 'Planning');
    } finally {
      this.planButton.disabled = false;
    }
  }

  showPlan(plan) {
    this.plan = plan;
    replace(this.outcomeView);
    setText(this.applyResult, '');
    this.approveButton.disabled = plan.ready_steps === 0;
    const servers = plan.servers.map((server) => {
      const rows = server.steps.map((step) => el('tr', { class: step.ready ? '' : 'r-warning' },
        el('td', { text: step.ready ? 'ready' : 'blocked' }),
        el('th', { scope: 'row' }, step.action, el('span', { class: 'perfdata', text: ` ${paramsText(step.params)}` })),
        el('td', { text: step.risk }),
        el('td', { class: 'perfdata heal-command', text: step.command }),
        el('td', { class: 'perfdata', text: factsText(step) }),
        el('td', { class: 'message', text: step.ready ? (step.trigger ? `rule ${step.trigger.rule}: ${step.trigger.check} ${step.trigger.status}` : 'asked for') : step.blocked })));
      const notes = (server.notes || []).map((note) => el('p', { class: 'muted', text: note }));
      return el('div', { class: 'heal-server' },
        el('h3', { text: `${server.server}${server.status ? ' · ' + server.status : ''}` }),
        rows.length ? el('div', { class: 'table-wrap' }, el('table', { class: 'checks' },
          el('caption', { class: 'visually-hidden', text: `Steps on ${server.server}` }),
          el('thead', {}, el('tr', {}, ['', 'Action', 'Risk', 'Runs', 'Seen now', 'Why'].map((text) => el('th', { scope: 'col', text })))),
          el('tbody', {}, rows)))
          : el('p', { class: 'muted', text: 'Nothing to do.' }),
        notes);
    });
    replace(this.planView, el('p', { class: 'muted' }, 'Plan ', el('code', { class: 'heal-hash', text: plan.hash })), servers);
  }

  async approve() {
    const plan = this.plan;
    if (!plan) return;
    if (!(await this.withToken('Applying a plan'))) {
      setText(this.applyResult, 'Not applied: no token.');
      return;
    }
    this.approveButton.disabled = true;
    this.applyResult.className = 'result busy';
    setText(this.applyResult, 'Re-checking the servers, applying, then verifying after the grace period…');
    try {
      const outcome = await api(`/api/v1/heal/plans/${enc(plan.hash)}/apply`, {
        method: 'POST', body: { hash: plan.hash, allow_risk: this.risk.value },
      });
      this.showOutcome(outcome);
    } catch (error) {
      if (error.status === 409 && error.code === 'stale_plan') {
        this.applyResult.className = 'result failed';
        setText(this.applyResult, 'Refused: the servers changed since the plan was made. Nothing ran; make a new plan.');
      } else {
        this.refused(this.applyResult, error, 'Applying');
        this.approveButton.disabled = false;
      }
    } finally {
      this.poller.now();
    }
  }

  showOutcome(outcome) {
    const good = outcome.steps.every((step) => ['succeeded', 'would_run', 'skipped'].includes(step.result) &&
      (!step.verification || ['verified', 'unverifiable'].includes(step.verification.result)));
    this.applyResult.className = good ? 'result done' : 'result failed';
    setText(this.applyResult, `Plan ${outcome.status}: ${outcome.steps.length} step${outcome.steps.length === 1 ? '' : 's'}.`);
    replace(this.outcomeView, el('ul', { class: 'heal-steps' }, outcome.steps.map((step) => el('li', {},
      `${step.server}: ${step.action} ${paramsText(step.params)} → `,
      el('strong', { class: 'heal-step-result', text: step.result }),
      step.verification ? `, verification ${step.verification.result}` : '',
      step.detail ? el('span', { class: 'muted', text: ` ${step.detail}` }) : '',
      step.output ? el('pre', { class: 'output', text: step.output }) : ''))));
  }
}
