// The assessment editor: sections with progress, one control per question, notes, threaded
// comments, saving as you go with conflict resolution, live answers and presence from
// colleagues, status actions, and for a risk assessment the risk matrices and register.

import { gql } from '../gql.js';
import { subscribe, onStatus } from '../live.js';
import { h, mount, announce, formatTime, formatDate, statusBadge, progressBar, sizeBars, errorBox, initials, humanize } from '../dom.js';
import { makeControl, formatValue, isShown, sameValue } from '../controls.js';
import { session } from '../session.js';
import { renderRiskMatrices, renderRiskRegister } from './risk.js';

/** The pause in typing after which an answer is saved; a page may set
 * `data-save-delay-ms` on the root element to change it (the browser tests lengthen it). */
const SAVE_DELAY_MS = 700;
function saveDelay() {
  return Number(document.documentElement.dataset.saveDelayMs) || SAVE_DELAY_MS;
}

export const TEMPLATE_FIELDS = `template { id title kind version principles
  sections { id title description questions { id type prompt guidance required principles
    showIf { questionId values } choices { id label } minSelected maxSelected maxLength min max } }
  riskModel { likelihood { value label description } impact { value label description } levels { id label } matrix } }`;

const RISK_FIELDS = `riskRegister { highestResidual items { questionId sectionId mitigations
  inherent { likelihood impact level } residual { likelihood impact level } }
  inherentCounts { level count } residualCounts { level count } }`;

const PROGRESS_FIELDS = `progress { shown answered required requiredAnswered score level
  sections { sectionId required requiredAnswered answered shown score level } }`;

const ASSESSMENT = `query($id: ID!) { assessment(id: $id) {
  id title subject dueDate status overdue returnReason myRole stream updatedAt
  unit { id name }
  permissions { answer comment submit review manage readHistory }
  approval { approvedBy approvedAt headSeq headHash }
  members { userId role user { displayName } }
  assignments { sectionId userId }
  answers { questionId value note revision carriedOver updatedBy updatedAt }
  comments { id questionId parentId authorId authorName body createdAt resolved }
  ${PROGRESS_FIELDS}
  ${RISK_FIELDS}
  ${TEMPLATE_FIELDS}
} }`;

const SET_ANSWER = `mutation($i: SetAnswerInput!) { setAnswer(input: $i) {
  questionId value note revision carriedOver updatedBy updatedAt } }`;

const EVENTS = `subscription($id: ID!, $after: Int) { assessmentEvents(assessmentId: $id, afterSeq: $after) {
  seq type actor at payload } }`;

const PRESENCE = `subscription($id: ID!) { presence(assessmentId: $id) { userId displayName questionId typing since } }`;

const SET_PRESENCE = `mutation($id: ID!, $q: String, $t: Boolean) { setPresence(assessmentId: $id, questionId: $q, typing: $t) }`;

export async function renderEditor(el, id) {
  const data = await gql(ASSESSMENT, { id });
  const ed = new Editor(el, data.assessment);
  ed.render();
  return () => ed.destroy();
}

class Editor {
  constructor(el, a) {
    this.el = el;
    this.a = a;
    this.template = a.template;
    this.questions = new Map();
    for (const s of a.template.sections) for (const q of s.questions) this.questions.set(q.id, { q, section: s });
    this.answers = new Map(a.answers.map((x) => [x.questionId, x]));
    this.names = new Map(a.members.map((m) => [m.userId, m.user?.displayName || 'a colleague']));
    this.names.set(session.user.id, session.user.displayName);
    this.views = new Map();
    this.lastSeq = null;
    this.unsubs = [];
    this.presence = [];
    this.focused = null;
    this.refreshTimer = null;
    this.presenceTimer = null;
  }

  destroy() {
    this.unsubs.forEach((u) => u());
    clearTimeout(this.refreshTimer);
    clearInterval(this.presenceTimer);
    for (const v of this.views.values()) clearTimeout(v.timer);
    gql(SET_PRESENCE, { id: this.a.id, q: null, t: false }).catch(() => {});
  }

  editable() {
    return this.a.permissions.answer && !['SUBMITTED', 'APPROVED', 'ARCHIVED'].includes(this.a.status);
  }

  valueOf(qid) {
    const v = this.views.get(qid);
    if (v && v.dirty) return v.control.get();
    return this.answers.get(qid)?.value ?? null;
  }

  render() {
    const a = this.a;
    this.header = h('div', { class: 'editor-header' });
    this.sectionNav = h('nav', { class: 'section-nav', 'aria-label': 'Sections' });
    this.body = h('div', { class: 'editor-body' });
    this.riskBox = h('div', { class: 'risk-box' });
    this.saveStatus = h('p', { class: 'save-status muted', role: 'status', 'aria-live': 'polite' });
    this.presenceBar = h('div', { class: 'presence-bar', 'aria-live': 'polite', 'aria-label': 'Who is here' });
    mount(this.el, this.header, h('div', { class: 'editor-layout' }, h('aside', { class: 'editor-aside' }, this.sectionNav, this.saveStatus, this.presenceBar), h('div', { class: 'editor-main' }, this.riskBox, this.body)));
    this.renderHeader();
    for (const section of this.template.sections) this.body.append(this.renderSection(section));
    this.renderProgress();
    this.renderRisk();
    this.applyVisibility();
    this.startLive();
    const wanted = new URLSearchParams(location.hash.split('?')[1] || '').get('section');
    if (wanted) document.getElementById(`section-${wanted}`)?.scrollIntoView();
  }

  renderHeader() {
    const a = this.a;
    const p = a.permissions;
    const actions = [];
    const act = (label, fn, cls = 'button') => h('button', { type: 'button', class: cls, onclick: fn }, label);
    if (p.submit && ['DRAFT', 'IN_PROGRESS', 'RETURNED'].includes(a.status)) actions.push(act('Submit for review', () => this.transition('submitAssessment'), 'button-primary'));
    if (p.review && a.status === 'SUBMITTED') {
      actions.push(act('Approve', () => this.transition('approveAssessment'), 'button-primary'));
      actions.push(act('Return with reason…', () => this.askReason('Return to editors', 'Why is it returned?', true, (reason) => this.transition('returnAssessment', { reason }))));
    }
    if (p.manage && ['APPROVED', 'ARCHIVED'].includes(a.status)) actions.push(act('Reopen…', () => this.askReason('Reopen', 'Why is it reopened? (optional)', false, (reason) => this.transition('reopenAssessment', { reason: reason || null }))));
    if (p.manage && a.status !== 'ARCHIVED') actions.push(act('Archive', () => this.transition('archiveAssessment')));
    if (p.manage && ['APPROVED', 'ARCHIVED'].includes(a.status)) actions.push(act('Start the next cycle', () => this.nextCycle()));
    mount(
      this.header,
      h('p', { class: 'breadcrumbs' }, h('a', { href: '#/' }, 'Home'), ' / ', a.unit.name),
      h('div', { class: 'row-between' }, h('h1', {}, a.title), h('div', { class: 'status-line' }, statusBadge(a.status))),
      h(
        'p',
        { class: 'muted' },
        a.subject ? `${a.subject} · ` : '',
        `${this.template.title} v${this.template.version}`,
        a.dueDate ? ` · due ${formatDate(a.dueDate)}` : '',
        a.overdue ? h('strong', { class: 'overdue' }, ' (overdue)') : '',
        a.myRole ? ` · you are ${a.myRole.toLowerCase()}` : '',
      ),
      a.status === 'RETURNED' && a.returnReason ? h('div', { class: 'alert alert-warn', role: 'note' }, h('strong', {}, 'Returned: '), a.returnReason) : null,
      a.approval ? h('div', { class: 'alert alert-ok', role: 'note' }, `Approved ${formatTime(a.approval.approvedAt)} by ${this.names.get(a.approval.approvedBy) || 'a reviewer'} at event ${a.approval.headSeq}. The assessment is locked.`) : null,
      h(
        'div',
        { class: 'actions' },
        actions,
        p.readHistory ? h('a', { class: 'button', href: `#/assessments/${a.id}/history` }, 'History') : null,
        h('a', { class: 'button', href: `#/assessments/${a.id}/report` }, 'Printable report'),
      ),
      h('div', { id: 'action-error' }),
      p.manage ? this.detailsPanel() : null,
      p.manage ? this.peoplePanel() : null,
    );
  }

  /** Title, subject and due date, for those who manage the assessment. */
  detailsPanel() {
    const a = this.a;
    const title = h('input', { id: 'details-title', value: a.title, required: true });
    const subject = h('input', { id: 'details-subject', value: a.subject });
    const due = h('input', { id: 'details-due', type: 'date', value: a.dueDate || '' });
    const error = h('div');
    const form = h(
      'form',
      { class: 'details-form' },
      error,
      h('div', { class: 'field' }, h('label', { for: 'details-title' }, 'Title'), title),
      h('div', { class: 'field' }, h('label', { for: 'details-subject' }, 'What is assessed'), subject),
      h('div', { class: 'field' }, h('label', { for: 'details-due' }, 'Due date'), due),
      h('button', { type: 'submit', class: 'button' }, 'Save details'),
    );
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      mount(error);
      try {
        const res = await gql(
          'mutation($id: ID!, $t: String, $s: String, $d: String) { updateAssessment(id: $id, title: $t, subject: $s, dueDate: $d) { title subject dueDate overdue } }',
          { id: a.id, t: title.value, s: subject.value, d: due.value || null },
        );
        Object.assign(a, res.updateAssessment);
        this.renderHeader();
        announce('Details saved');
      } catch (err) {
        mount(error, errorBox(err));
      }
    });
    return h('details', { class: 'card details-card' }, h('summary', {}, 'Details'), form);
  }

  /** Who works on the assessment, in which role, and which sections each editor is assigned. */
  peoplePanel() {
    const a = this.a;
    const body = h('div', { class: 'people' });
    const details = h('details', { class: 'card people-card' }, h('summary', {}, `People (${a.members.length})`), body);
    details.addEventListener('toggle', async () => {
      if (!details.open || body.dataset.loaded) return;
      body.dataset.loaded = '1';
      await this.renderPeople(body);
    });
    return details;
  }

  async renderPeople(body) {
    const a = this.a;
    let users = [];
    try {
      users = (await gql('{ users(first: 200) { nodes { id displayName email disabled } } }')).users.nodes.filter((u) => !u.disabled);
    } catch (e) {
      // Without the list, people can still be changed; only adding someone needs it.
    }
    const roleLabel = { EDITOR: 'Editor', REVIEWER: 'Reviewer', VIEWER: 'Viewer' };
    const run = async (query, vars, message) => {
      try {
        const res = await gql(query, vars);
        const updated = Object.values(res)[0];
        a.members = updated.members;
        a.assignments = updated.assignments;
        for (const m of a.members) if (m.user) this.names.set(m.userId, m.user.displayName);
        announce(message);
        await this.renderPeople(body);
      } catch (e) {
        body.append(errorBox(e));
      }
    };
    const after = 'members { userId role user { displayName } } assignments { sectionId userId }';
    const setRole = (userId, role, message) =>
      run(`mutation($a: ID!, $u: ID!, $r: AssessmentRole) { setAssessmentMember(assessmentId: $a, userId: $u, role: $r) { ${after} } }`, { a: a.id, u: userId, r: role }, message);
    const assign = (sectionId, userId, assigned) =>
      run(`mutation($a: ID!, $s: String!, $u: ID!, $on: Boolean!) { assignSection(assessmentId: $a, sectionId: $s, userId: $u, assigned: $on) { ${after} } }`, { a: a.id, s: sectionId, u: userId, on: assigned }, assigned ? 'Section assigned' : 'Assignment withdrawn');
    const editors = a.members.filter((m) => m.role === 'EDITOR');
    const newUser = h('select', { id: 'people-new-user' }, users.filter((u) => !a.members.some((m) => m.userId === u.id)).map((u) => h('option', { value: u.id }, `${u.displayName} (${u.email})`)));
    const newRole = h('select', { id: 'people-new-role' }, Object.entries(roleLabel).map(([v, l]) => h('option', { value: v }, l)));
    mount(
      body,
      h(
        'table',
        { class: 'table' },
        h('caption', { class: 'visually-hidden' }, 'People on this assessment'),
        h('thead', {}, h('tr', {}, ['Person', 'Role', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          {},
          a.members.map((m) => {
            const id = `people-role-${m.userId}`;
            const select = h('select', { id, 'aria-label': `Role of ${m.user?.displayName || 'this person'}` }, Object.entries(roleLabel).map(([v, l]) => h('option', { value: v, selected: v === m.role }, l)));
            select.addEventListener('change', () => setRole(m.userId, select.value, 'Role changed'));
            return h('tr', {}, h('td', {}, m.user?.displayName || m.userId), h('td', {}, select), h('td', {}, h('button', { type: 'button', class: 'button-link', onclick: () => setRole(m.userId, null, 'Person removed') }, 'Remove')));
          }),
        ),
      ),
      users.length
        ? h('div', { class: 'row' }, h('div', { class: 'field' }, h('label', { for: 'people-new-user' }, 'Add a person'), newUser), h('div', { class: 'field' }, h('label', { for: 'people-new-role' }, 'as'), newRole), h('div', { class: 'field' }, h('button', { type: 'button', class: 'button', onclick: () => newUser.value && setRole(newUser.value, newRole.value, 'Person added') }, 'Add')))
        : null,
      editors.length
        ? h(
            'table',
            { class: 'table' },
            h('caption', {}, 'Sections assigned to editors'),
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Section'), editors.map((m) => h('th', { scope: 'col' }, m.user?.displayName || m.userId)))),
            h(
              'tbody',
              {},
              this.template.sections.map((s) =>
                h(
                  'tr',
                  {},
                  h('th', { scope: 'row' }, s.title),
                  editors.map((m) => {
                    const on = a.assignments.some((x) => x.sectionId === s.id && x.userId === m.userId);
                    const box = h('input', { type: 'checkbox', checked: on, 'aria-label': `${s.title}: ${m.user?.displayName || 'editor'}` });
                    box.addEventListener('change', () => assign(s.id, m.userId, box.checked));
                    return h('td', {}, box);
                  }),
                ),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'Add an editor to assign sections.'),
    );
  }

  async transition(mutation, args = {}) {
    const params = Object.keys(args).map((k) => `$${k}: String${k === 'reason' && mutation === 'returnAssessment' ? '!' : ''}`);
    const vars = Object.keys(args).map((k) => `${k}: $${k}`);
    const q = `mutation($id: ID!${params.length ? ', ' + params.join(', ') : ''}) { ${mutation}(id: $id${vars.length ? ', ' + vars.join(', ') : ''}) { id status returnReason permissions { answer comment submit review manage readHistory } approval { approvedBy approvedAt headSeq headHash } } }`;
    const box = this.header.querySelector('#action-error');
    try {
      const res = await gql(q, { id: this.a.id, ...args });
      Object.assign(this.a, res[mutation]);
      this.renderHeader();
      this.applyEditable();
      announce(`Status is now ${this.a.status.toLowerCase().replace('_', ' ')}`);
    } catch (e) {
      mount(box, errorBox(e));
    }
  }

  async nextCycle() {
    const box = this.header.querySelector('#action-error');
    try {
      const res = await gql('mutation($id: ID!) { startNextCycle(previousId: $id) { id } }', { id: this.a.id });
      announce('Next cycle started');
      location.hash = `#/assessments/${res.startNextCycle.id}`;
    } catch (e) {
      mount(box, errorBox(e));
    }
  }

  askReason(title, prompt, required, then) {
    const input = h('textarea', { id: 'reason-input', rows: 3, required });
    const dialog = h(
      'dialog',
      { class: 'dialog', 'aria-labelledby': 'reason-title' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'reason-title' }, title),
        h('div', { class: 'field' }, h('label', { for: 'reason-input' }, prompt), input),
        h('div', { class: 'actions' }, h('button', { value: 'ok', class: 'button-primary' }, title), h('button', { value: 'cancel', class: 'button', formnovalidate: true }, 'Cancel')),
      ),
    );
    dialog.addEventListener('close', () => {
      if (dialog.returnValue === 'ok') then(input.value.trim());
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  }

  renderSection(section) {
    const nav = h('button', { type: 'button', class: 'section-link', 'data-section': section.id }, h('span', { class: 'section-title' }, section.title), h('span', { class: 'section-progress' }));
    nav.addEventListener('click', () => {
      const target = document.getElementById(`section-${section.id}`);
      target.scrollIntoView({ behavior: 'smooth', block: 'start' });
      target.querySelector('h2').focus();
    });
    this.sectionNav.append(nav);
    const assigned = this.a.assignments.filter((x) => x.sectionId === section.id).map((x) => this.names.get(x.userId) || 'an editor');
    return h(
      'section',
      { id: `section-${section.id}`, class: 'section', 'aria-labelledby': `section-h-${section.id}` },
      h('h2', { id: `section-h-${section.id}`, tabindex: '-1' }, section.title),
      section.description ? h('p', { class: 'section-desc' }, section.description) : null,
      assigned.length ? h('p', { class: 'muted small' }, `Assigned to ${assigned.join(', ')}`) : null,
      section.questions.map((q) => this.renderQuestion(q)),
    );
  }

  renderQuestion(q) {
    const answer = this.answers.get(q.id);
    const labelId = `q-${q.id}-label`.replace(/[^A-Za-z0-9_-]/g, '_');
    const view = { q, timer: null, dirty: false, saving: false, revision: answer?.revision ?? 0 };
    view.control = makeControl(q, answer?.value ?? null, { riskModel: this.template.riskModel, onInput: (immediate) => this.changed(view, immediate) });
    const noteId = `q-${q.id}-note`.replace(/[^A-Za-z0-9_-]/g, '_');
    view.note = h('textarea', { id: noteId, rows: 2, maxlength: 5000 });
    view.note.value = answer?.note || '';
    view.note.addEventListener('input', () => this.changed(view, false));
    view.avatars = h('span', { class: 'avatars', 'aria-label': 'Also here' });
    view.meta = h('p', { class: 'answer-meta muted small' });
    view.commentsBox = h('div', { class: 'comments' });
    view.el = h(
      'article',
      { class: 'question', id: `question-${q.id}`, 'data-question': q.id, 'data-type': q.type },
      h(
        'div',
        { class: 'question-head' },
        h('h3', { id: labelId, class: 'prompt' }, q.prompt, q.required ? h('span', { class: 'required', 'aria-label': 'required' }, ' *') : null),
        view.avatars,
      ),
      q.principles?.length ? h('p', { class: 'tags' }, q.principles.map((p) => h('span', { class: 'tag' }, humanize(p)))) : null,
      q.guidance ? h('details', { class: 'guidance' }, h('summary', {}, 'Guidance'), h('p', {}, q.guidance)) : null,
      view.control.el,
      h('details', { class: 'note', open: answer?.note ? true : null }, h('summary', {}, 'Note'), h('label', { for: noteId, class: 'visually-hidden' }, 'Note'), view.note),
      view.meta,
      view.commentsBox,
    );
    view.el.addEventListener('focusin', () => this.focus(q.id));
    this.views.set(q.id, view);
    this.renderMeta(view);
    this.renderComments(view);
    if (!this.editable()) {
      view.control.setDisabled(true);
      view.note.disabled = true;
    }
    return view.el;
  }

  applyEditable() {
    const on = this.editable();
    for (const v of this.views.values()) {
      v.control.setDisabled(!on);
      v.note.disabled = !on;
    }
  }

  renderMeta(view) {
    const a = this.answers.get(view.q.id);
    if (!a || a.revision === 0) {
      view.meta.textContent = '';
      return;
    }
    const who = this.names.get(a.updatedBy) || (a.updatedBy === 'system' ? 'the system' : 'a colleague');
    mount(
      view.meta,
      `${a.carriedOver ? 'Carried over from the previous cycle. ' : ''}Last changed by ${who}, ${formatTime(a.updatedAt)}.`,
      a.carriedOver && this.editable() ? [' ', h('button', { type: 'button', class: 'button-link small', onclick: () => this.confirm(view) }, 'Confirm it still holds')] : null,
    );
  }

  /** Confirms an answer carried over from the previous cycle without changing it. */
  async confirm(view) {
    try {
      const res = await gql(
        'mutation($id: ID!, $q: String!, $r: Int) { confirmAnswer(assessmentId: $id, questionId: $q, expectedRevision: $r) { questionId value note revision carriedOver updatedBy updatedAt } }',
        { id: this.a.id, q: view.q.id, r: view.revision },
      );
      this.answers.set(view.q.id, res.confirmAnswer);
      view.revision = res.confirmAnswer.revision;
      this.renderMeta(view);
      announce('Answer confirmed');
    } catch (e) {
      if (e.code === 'CONFLICT' && e.extensions.current) this.conflict(view, e.extensions.current, { value: view.control.get(), note: view.note.value });
      else view.meta.append(errorBox(e));
    }
  }

  applyVisibility() {
    for (const v of this.views.values()) {
      const shown = isShown(v.q, (id) => this.valueOf(id));
      v.el.hidden = !shown;
    }
  }

  changed(view, immediate) {
    view.dirty = true;
    this.typing(view.q.id);
    clearTimeout(view.timer);
    this.saveStatus.textContent = 'Unsaved changes…';
    view.timer = setTimeout(() => this.save(view), immediate ? 150 : saveDelay());
    if (immediate) this.applyVisibility();
  }

  async save(view, { expectedRevision = view.revision } = {}) {
    if (view.saving) {
      // Save again once the write in flight is done, with the revision it returns.
      view.again = true;
      return;
    }
    view.saving = true;
    view.dirty = false;
    const value = view.control.get();
    const note = view.note.value;
    this.saveStatus.textContent = 'Saving…';
    try {
      const res = await gql(SET_ANSWER, { i: { assessmentId: this.a.id, questionId: view.q.id, value, note, expectedRevision } });
      const answer = res.setAnswer;
      this.answers.set(view.q.id, answer);
      view.revision = answer.revision;
      this.renderMeta(view);
      this.saveStatus.textContent = `All changes saved ${new Date().toLocaleTimeString()}.`;
      this.scheduleRefresh();
      if (this.a.status === 'DRAFT') {
        this.a.status = 'IN_PROGRESS';
        this.renderHeader();
      }
    } catch (e) {
      if (e.code === 'CONFLICT' && e.extensions.current) {
        this.saveStatus.textContent = 'Someone else changed this answer.';
        view.saving = false;
        this.conflict(view, e.extensions.current, { value, note });
        return;
      }
      view.dirty = true;
      this.saveStatus.textContent = '';
      this.saveStatus.append(errorBox(e));
    } finally {
      view.saving = false;
    }
    this.applyVisibility();
    if (view.again) {
      view.again = false;
      this.save(view);
    }
  }

  /** Shows their answer and mine; the person keeps theirs, keeps mine, or merges by hand. */
  conflict(view, current, mine) {
    const q = view.q;
    const model = this.template.riskModel;
    const who = this.names.get(current.updated_by) || 'a colleague';
    const when = current.updated_at ? formatTime(current.updated_at) : '';
    const merge = makeControl(q, mine.value, { riskModel: model, idPrefix: 'merge' });
    const mergeNote = h('textarea', { id: 'merge-note', rows: 2 });
    mergeNote.value = mine.note || current.note || '';
    const mergeBox = h(
      'div',
      { class: 'merge', hidden: true },
      h('h3', { id: `merge-${q.id}-label`.replace(/[^A-Za-z0-9_-]/g, '_') }, 'Your merged answer'),
      merge.el,
      h('div', { class: 'field' }, h('label', { for: 'merge-note' }, 'Note'), mergeNote),
    );
    const saveMerge = h('button', { type: 'button', class: 'button-primary', hidden: true, 'data-choice': 'save-merge' }, 'Save merged answer');
    const dialog = h(
      'dialog',
      { class: 'dialog conflict-dialog', 'aria-labelledby': 'conflict-title', 'aria-describedby': 'conflict-desc' },
      h('h2', { id: 'conflict-title' }, 'This answer was changed meanwhile'),
      h('p', { id: 'conflict-desc' }, `${who} saved a different answer to “${q.prompt}” ${when ? `(${when})` : ''} while you were editing.`),
      h(
        'div',
        { class: 'conflict-columns' },
        h('div', { class: 'conflict-col' }, h('h3', {}, 'Their answer'), h('p', { class: 'conflict-theirs' }, formatValue(q, current.value, model)), current.note ? h('p', { class: 'muted' }, `Note: ${current.note}`) : null),
        h('div', { class: 'conflict-col' }, h('h3', {}, 'Your answer'), h('p', { class: 'conflict-mine' }, formatValue(q, mine.value, model)), mine.note ? h('p', { class: 'muted' }, `Note: ${mine.note}`) : null),
      ),
      mergeBox,
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', class: 'button', 'data-choice': 'theirs' }, 'Keep theirs'),
        h('button', { type: 'button', class: 'button', 'data-choice': 'mine' }, 'Keep mine'),
        h('button', { type: 'button', class: 'button', 'data-choice': 'merge' }, 'Merge by hand'),
        saveMerge,
      ),
    );
    const close = () => {
      dialog.close();
      dialog.remove();
    };
    dialog.addEventListener('cancel', (e) => {
      // Escape keeps theirs, the safe choice: nothing is overwritten.
      e.preventDefault();
      this.keepTheirs(view, current);
      close();
    });
    dialog.addEventListener('click', (e) => {
      const choice = e.target.closest('[data-choice]')?.dataset.choice;
      if (!choice) return;
      if (choice === 'theirs') {
        this.keepTheirs(view, current);
        close();
      } else if (choice === 'mine') {
        close();
        this.save(view, { expectedRevision: current.revision });
      } else if (choice === 'merge') {
        mergeBox.hidden = false;
        saveMerge.hidden = false;
        merge.focusable?.focus();
      } else if (choice === 'save-merge') {
        view.control.set(merge.get());
        view.note.value = mergeNote.value;
        close();
        this.save(view, { expectedRevision: current.revision });
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector('[data-choice="theirs"]').focus();
  }

  keepTheirs(view, current) {
    const answer = {
      questionId: view.q.id,
      value: current.value,
      note: current.note,
      revision: current.revision,
      carriedOver: !!current.carried_over,
      updatedBy: current.updated_by,
      updatedAt: current.updated_at,
    };
    this.answers.set(view.q.id, answer);
    view.revision = current.revision;
    view.dirty = false;
    view.control.set(current.value);
    view.note.value = current.note || '';
    this.renderMeta(view);
    this.applyVisibility();
    this.saveStatus.textContent = 'Kept their answer.';
  }

  // -- comments ---------------------------------------------------------------------------

  renderComments(view) {
    const all = this.a.comments.filter((c) => c.questionId === view.q.id);
    const open = all.filter((c) => !c.resolved && !c.parentId).length;
    const details = view.commentsBox.querySelector('details');
    const wasOpen = details?.open;
    const roots = all.filter((c) => !c.parentId);
    const thread = (c) =>
      h(
        'li',
        { class: `comment ${c.resolved ? 'resolved' : ''}`, 'data-comment': c.id },
        h('p', { class: 'comment-head' }, h('span', { class: 'avatar small', 'aria-hidden': 'true' }, initials(c.authorName)), h('strong', {}, c.authorName), ' ', h('span', { class: 'muted small' }, formatTime(c.createdAt)), c.resolved ? h('span', { class: 'badge' }, 'Resolved') : null),
        h('p', { class: 'comment-body' }, c.body),
        this.a.permissions.comment
          ? h(
              'div',
              { class: 'comment-actions' },
              h('button', { type: 'button', class: 'button-link small', onclick: () => this.replyForm(view, c) }, 'Reply'),
              c.parentId ? null : h('button', { type: 'button', class: 'button-link small', onclick: () => this.resolve(view, c) }, c.resolved ? 'Reopen' : 'Resolve'),
            )
          : null,
        h('ul', { class: 'replies' }, all.filter((r) => r.parentId === c.id).map(thread)),
      );
    mount(
      view.commentsBox,
      h(
        'details',
        { open: wasOpen ? true : null },
        h('summary', {}, `Comments (${all.length}${open ? `, ${open} open` : ''})`),
        h('ul', { class: 'comment-list' }, roots.map(thread)),
        this.a.permissions.comment ? this.commentForm(view, null) : null,
      ),
    );
  }

  commentForm(view, parent) {
    const id = `c-${view.q.id}-${parent ? parent.id : 'new'}`.replace(/[^A-Za-z0-9_-]/g, '_');
    const input = h('textarea', { id, rows: 2, required: true });
    const form = h('form', { class: 'comment-form' }, h('label', { for: id }, parent ? 'Reply' : 'Add a comment'), input, h('button', { type: 'submit', class: 'button small' }, parent ? 'Reply' : 'Comment'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!input.value.trim()) return;
      try {
        const res = await gql('mutation($i: AddCommentInput!) { addComment(input: $i) { id questionId parentId authorId authorName body createdAt resolved } }', {
          i: { assessmentId: this.a.id, questionId: view.q.id, body: input.value, parentId: parent ? parent.id : null },
        });
        this.a.comments.push(res.addComment);
        this.renderComments(view);
        view.commentsBox.querySelector('details').open = true;
        announce('Comment added');
      } catch (err) {
        form.append(errorBox(err));
      }
    });
    return form;
  }

  replyForm(view, parent) {
    const form = this.commentForm(view, parent);
    const li = view.commentsBox.querySelector(`li[data-comment="${CSS.escape(parent.id)}"]`);
    (li || view.commentsBox).append(form);
    form.querySelector('textarea').focus();
  }

  async resolve(view, c) {
    try {
      const res = await gql('mutation($id: ID!, $r: Boolean!) { setCommentResolved(id: $id, resolved: $r) { id resolved } }', { id: c.id, r: !c.resolved });
      c.resolved = res.setCommentResolved.resolved;
      this.renderComments(view);
      announce(c.resolved ? 'Comment resolved' : 'Comment reopened');
    } catch (err) {
      view.commentsBox.append(errorBox(err));
    }
  }

  // -- progress and risk ------------------------------------------------------------------

  renderProgress() {
    const p = this.a.progress;
    for (const btn of this.sectionNav.querySelectorAll('.section-link')) {
      const s = p.sections.find((x) => x.sectionId === btn.dataset.section);
      const box = btn.querySelector('.section-progress');
      if (s) mount(box, progressBar(s.requiredAnswered, s.required, `Required questions answered in ${btn.querySelector('.section-title').textContent}`));
    }
    let overall = this.sectionNav.querySelector('.overall');
    if (!overall) {
      overall = h('div', { class: 'overall' });
      this.sectionNav.prepend(overall);
    }
    mount(overall, h('p', { class: 'small' }, h('strong', {}, 'Overall'), p.level ? ` · level ${humanize(p.level)}` : ''), progressBar(p.requiredAnswered, p.required, 'Required questions answered overall'));
    sizeBars(this.sectionNav);
  }

  renderRisk() {
    if (this.template.kind !== 'risk' || !this.a.riskRegister) {
      mount(this.riskBox);
      return;
    }
    const titles = new Map([...this.questions.values()].map(({ q }) => [q.id, q.prompt]));
    mount(
      this.riskBox,
      h('section', { class: 'card', 'aria-labelledby': 'risk-h' }, h('h2', { id: 'risk-h' }, 'Risk overview'), renderRiskMatrices(this.template.riskModel, this.a.riskRegister), h('details', {}, h('summary', {}, 'Risk register'), renderRiskRegister(this.template.riskModel, this.a.riskRegister, titles))),
    );
  }

  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(async () => {
      try {
        const res = await gql(`query($id: ID!) { assessment(id: $id) { status returnReason ${PROGRESS_FIELDS} ${RISK_FIELDS} comments { id questionId parentId authorId authorName body createdAt resolved } } }`, { id: this.a.id });
        const before = this.a.status;
        Object.assign(this.a, res.assessment);
        this.renderProgress();
        this.renderRisk();
        for (const v of this.views.values()) this.renderComments(v);
        if (before !== this.a.status) {
          this.renderHeader();
          this.applyEditable();
        }
      } catch (e) {
        // The next change tries again.
      }
    }, 400);
  }

  // -- live -------------------------------------------------------------------------------

  startLive() {
    this.unsubs.push(
      subscribe(
        EVENTS,
        () => ({ id: this.a.id, after: this.lastSeq }),
        (data) => this.onEvent(data.assessmentEvents),
      ),
    );
    this.unsubs.push(subscribe(PRESENCE, { id: this.a.id }, (data) => this.onPresence(data.presence)));
    // After a lost connection, catch up on the answers too: the event stream resumes after the
    // last event seen, but nothing was seen yet when the connection dropped before the first.
    let lost = false;
    this.unsubs.push(
      onStatus((status) => {
        if (status === 'closed') lost = true;
        else if (status === 'open' && lost) {
          lost = false;
          this.catchUp();
        }
      }),
    );
    this.sendPresence(null, false);
    // Presence fades on the server when not renewed.
    this.presenceTimer = setInterval(() => this.sendPresence(this.focused, false), 30000);
  }

  onEvent(ev) {
    if (!ev) return;
    if (this.lastSeq !== null && ev.seq <= this.lastSeq) return;
    this.lastSeq = ev.seq;
    const p = ev.payload || {};
    if ((ev.type === 'answer.set' || ev.type === 'answer.cleared' || ev.type === 'answer.confirmed') && p.question_id) {
      const view = this.views.get(p.question_id);
      const after = p.after || {};
      if (!view) return;
      if (typeof after.revision === 'number' && after.revision <= view.revision) return;
      const answer = {
        questionId: p.question_id,
        value: after.value ?? null,
        note: after.note ?? null,
        revision: after.revision ?? view.revision,
        carriedOver: !!after.carried_over,
        updatedBy: ev.actor,
        updatedAt: ev.at,
      };
      if (!view.dirty && !view.saving) {
        this.answers.set(p.question_id, answer);
        view.revision = answer.revision;
        view.control.set(answer.value);
        view.note.value = answer.note || '';
        this.renderMeta(view);
        this.applyVisibility();
      }
      if (ev.actor !== session.user.id) {
        this.flash(view);
        announce(`${this.names.get(ev.actor) || 'A colleague'} changed “${view.q.prompt}”`);
      }
      this.scheduleRefresh();
    } else {
      this.scheduleRefresh();
    }
  }

  async catchUp() {
    try {
      const res = await gql('query($id: ID!) { assessment(id: $id) { answers { questionId value note revision carriedOver updatedBy updatedAt } } }', { id: this.a.id });
      for (const answer of res.assessment.answers) {
        const view = this.views.get(answer.questionId);
        if (!view || answer.revision <= view.revision || view.dirty || view.saving) continue;
        this.answers.set(answer.questionId, answer);
        view.revision = answer.revision;
        view.control.set(answer.value);
        view.note.value = answer.note || '';
        this.renderMeta(view);
        this.flash(view);
      }
      this.applyVisibility();
      this.scheduleRefresh();
    } catch (e) {
      // The next reconnection tries again.
    }
  }

  flash(view) {
    view.el.classList.remove('flash');
    // Restart the animation.
    void view.el.offsetWidth;
    view.el.classList.add('flash');
    setTimeout(() => view.el.classList.remove('flash'), 2500);
  }

  onPresence(list) {
    this.presence = list || [];
    for (const p of this.presence) this.names.set(p.userId, p.displayName);
    for (const v of this.views.values()) {
      const here = this.presence.filter((p) => p.questionId === v.q.id && p.userId !== session.user.id);
      mount(v.avatars, here.map((p) => avatar(p)));
      v.el.classList.toggle('has-others', here.length > 0);
    }
    mount(this.presenceBar, h('h2', { class: 'small-heading' }, 'Here now'), h('ul', { class: 'presence-list' }, this.presence.map((p) => h('li', {}, avatar(p), ' ', p.displayName, p.userId === session.user.id ? ' (you)' : ''))));
  }

  focus(qid) {
    if (this.focused === qid) return;
    this.focused = qid;
    this.sendPresence(qid, false);
  }

  typing(qid) {
    const now = Date.now();
    if (this.lastTyping && now - this.lastTyping < 3000) return;
    this.lastTyping = now;
    this.sendPresence(qid, true);
  }

  sendPresence(qid, typing) {
    gql(SET_PRESENCE, { id: this.a.id, q: qid, t: typing }).catch(() => {
      // Presence is a courtesy; the editor works without it.
    });
  }
}

function avatar(p) {
  return h('span', { class: `avatar ${p.typing ? 'typing' : ''}`, title: `${p.displayName}${p.typing ? ' is typing' : ''}`, 'data-user': p.userId }, initials(p.displayName), h('span', { class: 'visually-hidden' }, ` ${p.displayName}${p.typing ? ' (typing)' : ''}`));
}
