// The application shell: who is signed in, the navigation, and the hash router that picks a
// screen. Routes are `#/`, `#/assessments/<id>`, `#/assessments/<id>/history`,
// `#/assessments/<id>/report`, `#/dashboard`, `#/dashboard/<unitId>`, `#/admin` and `#/signin`.

import { gql, onUnauthenticated } from './gql.js';
import { closeAll, onStatus } from './live.js';
import { h, mount, announce } from './dom.js';
import { session, setUser } from './session.js';
import { renderSignIn, renderChangePassword } from './views/signin.js';
import { renderHome } from './views/home.js';
import { renderDashboard } from './views/dashboard.js';
import { renderEditor } from './views/editor.js';
import { renderHistory } from './views/history.js';
import { renderAdmin } from './views/admin.js';
import { renderReport } from './views/report.js';

const main = () => document.getElementById('main');
let cleanup = null;

const ME = `{ me { id email displayName isAdmin mustChangePassword roles { unitId role } } }`;

const routes = [
  [/^\/$/, () => renderHome],
  [/^\/dashboard(?:\/([^/]+))?$/, () => renderDashboard],
  [/^\/assessments\/([^/]+)$/, () => renderEditor],
  [/^\/assessments\/([^/]+)\/history$/, () => renderHistory],
  [/^\/assessments\/([^/]+)\/report$/, () => renderReport],
  [/^\/admin(?:\/([a-z]+))?$/, () => renderAdmin],
];

function currentPath() {
  const hash = location.hash.replace(/^#/, '').split('?')[0];
  return hash.startsWith('/') ? hash : '/';
}

export function navigate(path) {
  if (currentPath() === path) route();
  else location.hash = `#${path}`;
}

async function loadMe() {
  try {
    const data = await gql(ME);
    setUser(data.me);
  } catch (e) {
    setUser(null);
  }
}

function renderNav() {
  const nav = document.getElementById('nav');
  const who = document.getElementById('whoami');
  const user = session.user;
  if (!user || user.mustChangePassword) {
    mount(nav);
    mount(who, user ? user.displayName : '');
    return;
  }
  const path = currentPath();
  const link = (href, text, active) =>
    h('a', { href: `#${href}`, 'aria-current': active ? 'page' : null }, text);
  const manages = user.isAdmin || user.roles.some((r) => r.role === 'MANAGER');
  mount(
    nav,
    h(
      'ul',
      {},
      h('li', {}, link('/', 'Home', path === '/')),
      manages ? h('li', {}, link('/dashboard', 'Dashboard', path.startsWith('/dashboard'))) : null,
      user.isAdmin ? h('li', {}, link('/admin', 'Administration', path.startsWith('/admin'))) : null,
    ),
  );
  mount(
    who,
    h('span', { class: 'who-name' }, user.displayName),
    h('button', { type: 'button', class: 'button-link', onclick: signOut }, 'Sign out'),
  );
}

async function signOut() {
  try {
    await gql('mutation { logout }');
  } catch (e) {
    // Signed out either way.
  }
  closeAll();
  setUser(null);
  announce('Signed out');
  navigate('/signin');
}

async function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      // A screen that fails to clean up must not block the next one.
    }
    cleanup = null;
  }
  const path = currentPath();
  const el = main();
  if (session.user === undefined) await loadMe();
  renderNav();
  if (!session.user) {
    cleanup = await renderSignIn(el, { onSignedIn: afterSignIn });
    return;
  }
  if (session.user.mustChangePassword) {
    cleanup = await renderChangePassword(el, { onChanged: afterSignIn });
    return;
  }
  if (path === '/signin') {
    navigate('/');
    return;
  }
  for (const [pattern, view] of routes) {
    const m = path.match(pattern);
    if (m) {
      mount(el, h('p', { class: 'muted' }, 'Loading…'));
      try {
        cleanup = (await view()(el, ...m.slice(1).map((p) => (p ? decodeURIComponent(p) : p)))) || null;
      } catch (e) {
        mount(el, h('h1', {}, 'Something went wrong'), h('div', { class: 'alert alert-error', role: 'alert' }, e.message || String(e)));
      }
      focusMain();
      return;
    }
  }
  mount(el, h('h1', {}, 'Not found'), h('p', {}, 'There is no page here. ', h('a', { href: '#/' }, 'Go home')));
  focusMain();
}

let firstRoute = true;
function focusMain() {
  // Move focus to the new screen's heading for keyboard and screen-reader users, except on load.
  if (firstRoute) {
    firstRoute = false;
    return;
  }
  const heading = main().querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
}

async function afterSignIn() {
  await loadMe();
  if (currentPath() === '/signin') navigate('/');
  else route();
}

onUnauthenticated(() => {
  if (session.user) {
    closeAll();
    setUser(null);
    route();
  }
});

onStatus((status) => {
  document.documentElement.dataset.live = status;
  const el = document.getElementById('connection');
  if (!el) return;
  el.dataset.status = status;
  el.textContent = status === 'closed' ? 'Live updates are reconnecting…' : '';
});

// The skip link must not change the hash, which belongs to the router.
document.querySelector('.skip-link')?.addEventListener('click', (event) => {
  event.preventDefault();
  main().focus();
});

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', route);
