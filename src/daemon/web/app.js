// The dashboard's shell: routes (#/ fleet, #/server/NAME, #/pool, #/heal[/NAME]), the header and the token
// dialog. Pages are objects with start() and stop().
import { FleetPage } from './fleet.js';
import { HealPage } from './heal.js';
import { PoolPage } from './pool.js';
import { ServerPage } from './server.js';
import { askToken, forgetToken, setText, token } from './util.js';

const main = document.getElementById('main');
let page = null;

function parseRoute(hash) {
  const path = hash.replace(/^#/, '');
  if (path.startsWith('/server/')) {
    try {
      return { name: 'server', server: decodeURIComponent(path.slice('/server/'.length)) };
    } catch {
      return { name: 'fleet' };
    }
  }
  if (path === '/pool') return { name: 'pool' };
  if (path === '/heal') return { name: 'heal', server: '' };
  if (path.startsWith('/heal/')) {
    try {
      return { name: 'heal', server: decodeURIComponent(path.slice('/heal/'.length)) };
    } catch {
      return { name: 'heal', server: '' };
    }
  }
  return { name: 'fleet' };
}

function route() {
  const target = parseRoute(location.hash);
  if (page) page.stop();
  main.replaceChildren();
  if (target.name === 'server') page = new ServerPage(main, target.server);
  else if (target.name === 'pool') page = new PoolPage(main);
  else if (target.name === 'heal') page = new HealPage(main, target.server);
  else page = new FleetPage(main);
  for (const link of document.querySelectorAll('nav a[data-nav]')) {
    if (link.dataset.nav === target.name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  page.start();
}

function tokenButton() {
  const button = document.getElementById('token-button');
  setText(button, token() ? 'Token ✓' : 'Token');
  button.setAttribute('aria-label', token() ? 'API token set: change or forget it' : 'Set the API token');
}

function setUp() {
  const dialog = document.getElementById('token-dialog');
  document.getElementById('token-cancel').addEventListener('click', () => dialog.close('cancel'));
  document.getElementById('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    dialog.close('save');
  });
  dialog.addEventListener('close', () => setTimeout(tokenButton));
  document.getElementById('token-forget').addEventListener('click', () => {
    forgetToken();
    dialog.close('cancel');
  });
  document.getElementById('token-button').addEventListener('click', async () => {
    await askToken(token() ? 'A token is set for this tab: save another one or forget it.' : '');
    tokenButton();
  });
  window.addEventListener('healer:token', tokenButton);
  // "/" focuses the page's filter, as on many dashboards.
  document.addEventListener('keydown', (event) => {
    if (event.key !== '/' || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
        target instanceof HTMLSelectElement || dialog.open) {
      return;
    }
    const filter = main.querySelector('input[type=search]');
    if (filter) {
      event.preventDefault();
      filter.focus();
    }
  });
  window.addEventListener('hashchange', route);
  tokenButton();
  route();
}

setUp();
