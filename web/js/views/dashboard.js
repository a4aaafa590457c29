// A manager's dashboard: the unit tree below a chosen unit, each unit with its assessments by
// status, completion, overdue assessments and highest residual risk. Live through the
// `unitProgress` subscription.

import { gql } from '../gql.js';
import { subscribe } from '../live.js';
import { h, mount, statusLabel, humanize, announce, sizeBars } from '../dom.js';
import { session } from '../session.js';

const SUMMARY = `unit { id name parentId } depth byStatus { status count } requiredTotal requiredAnswered completion overdue highestResidual`;

export async function renderDashboard(el, unitId) {
  const { units } = await gql('{ units(first: 200) { nodes { id name parentId } } }');
  const all = units.nodes;
  const managed = session.user.isAdmin ? all.filter((u) => !u.parentId) : all.filter((u) => session.user.roles.some((r) => r.role === 'MANAGER' && r.unitId === u.id));
  if (!managed.length) {
    mount(el, h('h1', {}, 'Dashboard'), h('p', {}, 'You manage no unit.'));
    return null;
  }
  const current = unitId || managed[0].id;
  const picker = h('select', { id: 'dash-unit' }, all.map((u) => h('option', { value: u.id, selected: u.id === current }, u.name)));
  picker.addEventListener('change', () => {
    location.hash = `#/dashboard/${picker.value}`;
  });
  const body = h('div', { id: 'dashboard-body', 'aria-live': 'polite', 'aria-busy': 'true' });
  mount(el, h('div', { class: 'row-between' }, h('h1', {}, 'Unit dashboard'), h('div', { class: 'field inline-field' }, h('label', { for: 'dash-unit' }, 'Unit'), picker)), body);
  const data = await gql(`query($u: ID!) { unitDashboard(unitId: $u) { ${SUMMARY} } }`, { u: current });
  draw(body, data.unitDashboard);
  const stop = subscribe(`subscription($u: ID!) { unitProgress(unitId: $u) { ${SUMMARY} } }`, { u: current }, (d) => {
    draw(body, d.unitProgress);
    announce('Dashboard updated');
  });
  return stop;
}

/** The rows in tree order: each unit followed by the units inside it. */
function treeOrder(rows) {
  const ids = new Set(rows.map((r) => r.unit.id));
  const out = [];
  const visit = (parent) => {
    for (const r of rows.filter((x) => (ids.has(x.unit.parentId) ? x.unit.parentId : null) === parent)) {
      out.push(r);
      visit(r.unit.id);
    }
  };
  visit(null);
  return out.length === rows.length ? out : rows;
}

function draw(body, rows) {
  rows = treeOrder(rows);
  body.setAttribute('aria-busy', 'false');
  const statuses = ['DRAFT', 'IN_PROGRESS', 'RETURNED', 'SUBMITTED', 'APPROVED', 'ARCHIVED'];
  mount(
    body,
    h(
      'table',
      { class: 'table dashboard' },
      h('caption', { class: 'visually-hidden' }, 'Units with their assessments'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Unit'), statuses.map((s) => h('th', { scope: 'col', class: 'num' }, statusLabel(s))), h('th', { scope: 'col' }, 'Completion'), h('th', { scope: 'col', class: 'num' }, 'Overdue'), h('th', { scope: 'col' }, 'Highest residual risk'))),
      h(
        'tbody',
        {},
        rows.map((r) => {
          const pct = Math.round(r.completion * 100);
          return h(
            'tr',
            { 'data-unit': r.unit.id },
            h('th', { scope: 'row', class: `depth-${Math.min(r.depth, 5)}` }, h('a', { href: `#/dashboard/${r.unit.id}` }, r.unit.name)),
            statuses.map((s) => h('td', { class: 'num' }, String(r.byStatus.find((x) => x.status === s)?.count || 0))),
            h('td', {}, h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct, 'aria-label': `Completion of ${r.unit.name}` }, h('div', { class: 'progress-fill', dataset: { pct: String(pct) } }), h('span', { class: 'progress-text completion' }, `${r.requiredAnswered} of ${r.requiredTotal} (${pct}%)`))),
            h('td', { class: `num ${r.overdue.length ? 'overdue' : ''}` }, String(r.overdue.length)),
            h('td', {}, r.highestResidual ? h('span', { class: `level-pill level-${r.highestResidual}` }, humanize(r.highestResidual)) : '—'),
          );
        }),
      ),
    ),
  );
  sizeBars(body);
}
