// Home: my assessments, the sections assigned to me, what is due soon or overdue, and what
// changed recently; and starting a new assessment.

import { gql } from '../gql.js';
import { h, mount, formatDate, formatTime, statusBadge, progressBar, sizeBars, errorBox, announce } from '../dom.js';
import { session } from '../session.js';

const HOME = `query {
  assessments(first: 100) { nodes {
    id title subject dueDate status overdue updatedAt
    unit { id name } template { title kind }
    progress { required requiredAnswered }
  } }
  myAssignments { sectionId assessment { id title status dueDate overdue template { sections { id title } } } }
}`;

const DAY = 24 * 3600 * 1000;

function assessmentLink(a) {
  return h('a', { href: `#/assessments/${a.id}` }, a.title);
}

function table(caption, rows, columns) {
  if (!rows.length) return h('p', { class: 'muted' }, `Nothing here yet.`);
  return h(
    'table',
    { class: 'table' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', { scope: 'col' }, title)))),
    h('tbody', {}, rows.map((row) => h('tr', {}, columns.map(([, cell]) => h('td', {}, cell(row)))))),
  );
}

export async function renderHome(el) {
  const data = await gql(HOME);
  const all = data.assessments.nodes;
  const today = new Date();
  today.setHours(0, 0, 0, 0);
  const open = all.filter((a) => !['APPROVED', 'ARCHIVED'].includes(a.status));
  const due = open
    .filter((a) => a.dueDate && (a.overdue || new Date(`${a.dueDate}T00:00:00`) - today <= 14 * DAY))
    .sort((a, b) => a.dueDate.localeCompare(b.dueDate));
  const recent = [...all].sort((a, b) => b.updatedAt.localeCompare(a.updatedAt)).slice(0, 5);

  const columns = [
    ['Assessment', (a) => h('div', {}, assessmentLink(a), a.subject ? h('div', { class: 'muted small' }, a.subject) : null)],
    ['Unit', (a) => a.unit.name],
    ['Status', (a) => statusBadge(a.status)],
    ['Due', (a) => (a.dueDate ? h('span', { class: a.overdue ? 'overdue' : '' }, formatDate(a.dueDate), a.overdue ? ' (overdue)' : '') : '—')],
    ['Required answered', (a) => progressBar(a.progress.requiredAnswered, a.progress.required, `Required questions answered for ${a.title}`)],
  ];

  const assigned = data.myAssignments.map((m) => {
    const section = m.assessment.template.sections.find((s) => s.id === m.sectionId);
    return { ...m, sectionTitle: section ? section.title : m.sectionId };
  });

  mount(
    el,
    h('h1', {}, `Welcome, ${session.user.displayName}`),
    h(
      'div',
      { class: 'grid-2' },
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'h-assigned' },
        h('h2', { id: 'h-assigned' }, 'Assigned to me'),
        assigned.length
          ? h(
              'ul',
              { class: 'plain-list' },
              assigned.map((m) =>
                h(
                  'li',
                  {},
                  h('a', { href: `#/assessments/${m.assessment.id}?section=${encodeURIComponent(m.sectionId)}` }, m.sectionTitle),
                  ' in ',
                  m.assessment.title,
                  ' ',
                  statusBadge(m.assessment.status),
                ),
              ),
            )
          : h('p', { class: 'muted' }, 'No sections are assigned to you.'),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'h-due' },
        h('h2', { id: 'h-due' }, 'Due soon or overdue'),
        due.length
          ? h(
              'ul',
              { class: 'plain-list' },
              due.map((a) =>
                h('li', {}, assessmentLink(a), ' — ', h('span', { class: a.overdue ? 'overdue' : '' }, a.overdue ? 'overdue since ' : 'due ', formatDate(a.dueDate))),
              ),
            )
          : h('p', { class: 'muted' }, 'Nothing is due in the next two weeks.'),
      ),
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'h-recent' },
      h('h2', { id: 'h-recent' }, 'Recently changed'),
      recent.length
        ? h('ul', { class: 'plain-list' }, recent.map((a) => h('li', {}, assessmentLink(a), ' ', h('span', { class: 'muted small' }, formatTime(a.updatedAt)))))
        : h('p', { class: 'muted' }, 'No assessments yet.'),
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'h-mine' },
      h('div', { class: 'row-between' }, h('h2', { id: 'h-mine' }, 'My assessments'), newAssessmentButton(el)),
      table('My assessments', all, columns),
    ),
  );
  sizeBars(el);
}

function newAssessmentButton(el) {
  const button = h('button', { type: 'button', class: 'button', 'aria-expanded': 'false' }, 'New assessment');
  button.addEventListener('click', async () => {
    const existing = el.querySelector('#new-assessment');
    if (existing) {
      existing.remove();
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    button.setAttribute('aria-expanded', 'true');
    const form = await newAssessmentForm();
    button.closest('section').insertBefore(form, button.closest('.row-between').nextSibling);
    form.querySelector('input,select')?.focus();
  });
  return button;
}

async function newAssessmentForm() {
  const data = await gql('{ units(first: 200) { nodes { id name parentId } } templates { id title version kind } }');
  const error = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const unit = h('select', { id: 'na-unit', required: true }, data.units.nodes.map((u) => h('option', { value: u.id }, u.name)));
  const template = h('select', { id: 'na-template', required: true }, data.templates.map((t) => h('option', { value: t.id }, `${t.title} (v${t.version})`)));
  const title = h('input', { id: 'na-title', required: true });
  const subject = h('input', { id: 'na-subject' });
  const due = h('input', { id: 'na-due', type: 'date' });
  const self = h('input', { id: 'na-self', type: 'checkbox', checked: true });
  const form = h(
    'form',
    { id: 'new-assessment', class: 'subcard' },
    h('h3', {}, 'New assessment'),
    error,
    h('div', { class: 'field' }, h('label', { for: 'na-title' }, 'Title'), title),
    h('div', { class: 'field' }, h('label', { for: 'na-subject' }, 'What is assessed (for example the AI system)'), subject),
    h('div', { class: 'field' }, h('label', { for: 'na-unit' }, 'Unit'), unit),
    h('div', { class: 'field' }, h('label', { for: 'na-template' }, 'Template'), template),
    h('div', { class: 'field' }, h('label', { for: 'na-due' }, 'Due date (optional)'), due),
    h('div', { class: 'field' }, h('label', { class: 'choice', for: 'na-self' }, self, ' I will answer it myself (editor)')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button-primary' }, 'Create')),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const res = await gql('mutation($i: CreateAssessmentInput!) { createAssessment(input: $i) { id } }', {
        i: {
          unitId: unit.value,
          templateId: template.value,
          title: title.value,
          subject: subject.value,
          dueDate: due.value || null,
          members: self.checked ? [{ userId: session.user.id, role: 'EDITOR' }] : [],
        },
      });
      announce('Assessment created');
      location.hash = `#/assessments/${res.createAssessment.id}`;
    } catch (e) {
      error.replaceWith(errorBox(e));
    }
  });
  return form;
}
