// Administration: users, units, roles on units, and templates (importing one shows every
// problem with its path).

import { gql } from '../gql.js';
import { h, mount, announce, errorBox, formatTime } from '../dom.js';

const TABS = [
  ['users', 'Users'],
  ['units', 'Units'],
  ['roles', 'Roles'],
  ['templates', 'Templates'],
];

export async function renderAdmin(el, tab = 'users') {
  const panel = h('div', { id: 'admin-panel', role: 'tabpanel', 'aria-labelledby': `tab-${tab}` });
  mount(
    el,
    h('h1', {}, 'Administration'),
    h(
      'nav',
      { class: 'tabs', 'aria-label': 'Administration sections' },
      TABS.map(([id, label]) => h('a', { id: `tab-${id}`, href: `#/admin/${id}`, 'aria-current': id === tab ? 'page' : null }, label)),
    ),
    panel,
  );
  const render = { users: usersTab, units: unitsTab, roles: rolesTab, templates: templatesTab }[tab] || usersTab;
  await render(panel);
}

function form(title, fields, submitLabel, onSubmit) {
  const error = h('div');
  const f = h('form', { class: 'subcard' }, h('h2', {}, title), error, fields, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button-primary' }, submitLabel)));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    mount(error);
    try {
      await onSubmit();
    } catch (err) {
      mount(error, errorBox(err));
    }
  });
  return f;
}

/** A button handler that shows a refusal above the panel instead of failing silently. */
const guarded = (panel, fn) => async () => {
  try {
    await fn();
  } catch (e) {
    panel.prepend(errorBox(e));
  }
};

const field = (id, label, input) => h('div', { class: 'field' }, h('label', { for: id }, label), input);

async function usersTab(panel) {
  const { users } = await gql('{ users(first: 200) { nodes { id email displayName isAdmin disabled mustChangePassword createdAt } } }');
  const email = h('input', { id: 'nu-email', type: 'email', required: true });
  const name = h('input', { id: 'nu-name', required: true });
  const password = h('input', { id: 'nu-password', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' });
  const isAdmin = h('input', { id: 'nu-admin', type: 'checkbox' });
  const rerender = async () => usersTab(panel);
  mount(
    panel,
    h(
      'table',
      { class: 'table' },
      h('caption', {}, 'Users of the agency'),
      h('thead', {}, h('tr', {}, ['Name', 'Email', 'Administrator', 'State', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        {},
        users.nodes.map((u) =>
          h(
            'tr',
            {},
            h('td', {}, u.displayName),
            h('td', {}, u.email),
            h('td', {}, u.isAdmin ? 'Yes' : 'No'),
            h('td', {}, u.disabled ? 'Disabled' : u.mustChangePassword ? 'Must change password' : 'Active'),
            h(
              'td',
              {},
              h('button', { type: 'button', class: 'button-link', onclick: guarded(panel, async () => { await gql('mutation($id: ID!, $d: Boolean!) { setUserDisabled(id: $id, disabled: $d) { id } }', { id: u.id, d: !u.disabled }); announce(u.disabled ? 'Account enabled' : 'Account disabled'); rerender(); }) }, u.disabled ? 'Enable' : 'Disable'),
              ' ',
              h('button', { type: 'button', class: 'button-link', onclick: guarded(panel, async () => { await gql('mutation($id: ID!, $a: Boolean!) { setAdministrator(id: $id, isAdmin: $a) { id } }', { id: u.id, a: !u.isAdmin }); rerender(); }) }, u.isAdmin ? 'Remove administrator' : 'Make administrator'),
            ),
          ),
        ),
      ),
    ),
    form(
      'Create a user',
      [field('nu-email', 'Email', email), field('nu-name', 'Display name', name), field('nu-password', 'Initial password (12 characters or more; to be changed at first sign-in)', password), h('div', { class: 'field' }, h('label', { class: 'choice', for: 'nu-admin' }, isAdmin, ' Agency administrator'))],
      'Create user',
      async () => {
        await gql('mutation($i: CreateUserInput!) { createUser(input: $i) { id } }', { i: { email: email.value, displayName: name.value, password: password.value, isAdmin: isAdmin.checked } });
        announce('User created');
        rerender();
      },
    ),
  );
}

function tree(units) {
  const children = (id) => units.filter((u) => (u.parentId || null) === id);
  const branch = (id) => {
    const kids = children(id);
    return kids.length ? h('ul', { class: 'tree' }, kids.map((u) => h('li', {}, h('span', { class: 'unit-name' }, u.name), branch(u.id)))) : null;
  };
  return branch(null);
}

async function unitsTab(panel) {
  const { units } = await gql('{ units(first: 200) { nodes { id name parentId } } }');
  const name = h('input', { id: 'nunit-name', required: true });
  const parent = h('select', { id: 'nunit-parent' }, h('option', { value: '' }, '(top level)'), units.nodes.map((u) => h('option', { value: u.id }, u.name)));
  mount(
    panel,
    h('section', { class: 'card' }, h('h2', {}, 'Unit tree'), tree(units.nodes) || h('p', { class: 'muted' }, 'No units yet.')),
    form('Create a unit', [field('nunit-name', 'Name', name), field('nunit-parent', 'Inside', parent)], 'Create unit', async () => {
      await gql('mutation($n: String!, $p: ID) { createUnit(name: $n, parentId: $p) { id } }', { n: name.value, p: parent.value || null });
      announce('Unit created');
      unitsTab(panel);
    }),
  );
}

async function rolesTab(panel) {
  const data = await gql('{ units(first: 200) { nodes { id name } } users(first: 200) { nodes { id displayName email roles { unitId role grantedAt } } } }');
  const unitName = new Map(data.units.nodes.map((u) => [u.id, u.name]));
  const user = h('select', { id: 'gr-user' }, data.users.nodes.map((u) => h('option', { value: u.id }, `${u.displayName} (${u.email})`)));
  const unit = h('select', { id: 'gr-unit' }, data.units.nodes.map((u) => h('option', { value: u.id }, u.name)));
  const role = h('select', { id: 'gr-role' }, h('option', { value: 'MEMBER' }, 'Member'), h('option', { value: 'MANAGER' }, 'Manager'));
  const rows = data.users.nodes.flatMap((u) => u.roles.map((r) => ({ u, r })));
  mount(
    panel,
    h(
      'table',
      { class: 'table' },
      h('caption', {}, 'Roles on units'),
      h('thead', {}, h('tr', {}, ['Person', 'Unit', 'Role', 'Since', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        {},
        rows.map(({ u, r }) =>
          h('tr', {}, h('td', {}, u.displayName), h('td', {}, unitName.get(r.unitId) || r.unitId), h('td', {}, r.role === 'MANAGER' ? 'Manager' : 'Member'), h('td', {}, formatTime(r.grantedAt)), h('td', {}, h('button', { type: 'button', class: 'button-link', onclick: guarded(panel, async () => { await gql('mutation($u: ID!, $n: ID!) { revokeRole(userId: $u, unitId: $n) }', { u: u.id, n: r.unitId }); announce('Role removed'); rolesTab(panel); }) }, 'Remove'))),
        ),
      ),
    ),
    form('Grant a role', [field('gr-user', 'Person', user), field('gr-unit', 'Unit (and the units inside it)', unit), field('gr-role', 'Role', role)], 'Grant role', async () => {
      await gql('mutation($u: ID!, $n: ID!, $r: UnitRole!) { grantRole(userId: $u, unitId: $n, role: $r) { role } }', { u: user.value, n: unit.value, r: role.value });
      announce('Role granted');
      rolesTab(panel);
    }),
  );
}

async function templatesTab(panel) {
  const { templates } = await gql('{ templates { id key version title kind builtIn createdAt sections { id } } }');
  const source = h('textarea', { id: 'tpl-source', rows: 8, class: 'mono', required: true, spellcheck: 'false' });
  const checkOnly = h('input', { id: 'tpl-check', type: 'checkbox' });
  const result = h('div', { id: 'tpl-result', 'aria-live': 'polite' });
  const f = h(
    'form',
    { class: 'subcard' },
    h('h2', {}, 'Import a template'),
    h('p', { class: 'help' }, 'Paste a template in YAML or JSON. Every problem is listed with its path; any problem rejects the whole template.'),
    field('tpl-source', 'Template', source),
    h('div', { class: 'field' }, h('label', { class: 'choice', for: 'tpl-check' }, checkOnly, ' Only check, do not publish')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button-primary' }, 'Import')),
    result,
  );
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    mount(result);
    try {
      const res = await gql('mutation($s: String!, $c: Boolean) { importTemplate(source: $s, checkOnly: $c) { key version title } }', { s: source.value, c: checkOnly.checked });
      const t = res.importTemplate;
      mount(result, h('div', { class: 'alert alert-ok', role: 'status' }, checkOnly.checked ? 'The template is valid.' : `Published ${t.title} (${t.key} version ${t.version}).`));
      if (!checkOnly.checked) setTimeout(() => templatesTab(panel), 1500);
    } catch (err) {
      const problems = err.extensions?.problems;
      mount(
        result,
        Array.isArray(problems)
          ? h('div', { class: 'alert alert-error', role: 'alert' }, h('p', {}, `${problems.length} problem${problems.length === 1 ? '' : 's'} found:`), h('ul', { class: 'problems' }, problems.map((p) => h('li', { class: 'mono' }, p))))
          : errorBox(err),
      );
      result.scrollIntoView({ block: 'nearest' });
    }
  });
  mount(
    panel,
    h(
      'table',
      { class: 'table' },
      h('caption', {}, 'Templates'),
      h('thead', {}, h('tr', {}, ['Title', 'Key', 'Version', 'Kind', 'Sections', 'Origin'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, templates.map((t) => h('tr', {}, h('td', {}, t.title), h('td', { class: 'mono' }, t.key), h('td', {}, String(t.version)), h('td', {}, t.kind), h('td', {}, String(t.sections.length)), h('td', {}, t.builtIn ? 'Built in' : `Imported ${formatTime(t.createdAt)}`)))),
    ),
    f,
  );
}
