// The console's router and poll loop: each page mounts once and then
// refreshes every poll interval (2 s; ?poll=MS in the page's address
// changes it), so figures move without a reload.

import * as overview from './views/overview.js';
import * as topics from './views/topics.js';
import * as topic from './views/topic.js';
import * as groups from './views/groups.js';
import * as group from './views/group.js';
import * as shareGroup from './views/sharegroup.js';
import * as apps from './views/apps.js';
import * as application from './views/app.js';

const routes = [
  [/^\/$/, overview, 'overview'],
  [/^\/topics$/, topics, 'topics'],
  [/^\/topics\/(.+)$/, topic, 'topics'],
  [/^\/groups$/, groups, 'groups'],
  [/^\/groups\/(.+)$/, group, 'groups'],
  [/^\/share-groups\/(.+)$/, shareGroup, 'groups'],
  [/^\/apps$/, apps, 'apps'],
  [/^\/apps\/(.+)$/, application, 'apps'],
];

const pollMs = Number(new URLSearchParams(location.search).get('poll')) || 2000;
const viewEl = document.getElementById('view');
const statusEl = document.getElementById('status');
const errorEl = document.getElementById('error');

let current = null; // {page}: the mounted page
let generation = 0;
let timer = null;

function showError(err) {
  if (err) {
    errorEl.textContent = err.message || String(err);
    errorEl.hidden = false;
  } else {
    errorEl.hidden = true;
  }
}

async function refresh(gen) {
  if (!current || gen !== generation) return;
  try {
    await current.page.refresh();
    if (gen !== generation) return;
    showError(null);
    statusEl.textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (err) {
    if (gen !== generation) return;
    showError(err);
    statusEl.textContent = 'update failed';
  }
  clearTimeout(timer);
  timer = setTimeout(() => refresh(gen), pollMs);
}

function route() {
  const path = location.hash.replace(/^#/, '') || '/';
  generation++;
  clearTimeout(timer);
  let match = null;
  for (const [re, mod, nav] of routes) {
    const m = path.match(re);
    if (!m) continue;
    try {
      match = {mod, nav, args: m.slice(1).map(decodeURIComponent)};
    } catch {
      match = null; // a malformed escape: no such page
    }
    break;
  }
  for (const a of document.querySelectorAll('header nav a')) {
    a.classList.toggle('active', match !== null && a.dataset.nav === match.nav);
  }
  viewEl.replaceChildren();
  showError(null);
  if (!match) {
    current = null;
    viewEl.textContent = 'No such page.';
    return;
  }
  current = {page: match.mod.mount(viewEl, ...match.args)};
  refresh(generation);
}

window.addEventListener('hashchange', route);
route();
