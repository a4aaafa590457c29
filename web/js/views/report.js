// A printable report of an assessment: every section with its answers, notes and open
// comments, and for a risk assessment the matrices and register. The browser's print to PDF
// turns it into a clean document.

import { gql } from '../gql.js';
import { h, mount, formatDate, formatTime, statusLabel, humanize } from '../dom.js';
import { formatValue, isShown } from '../controls.js';
import { TEMPLATE_FIELDS } from './editor.js';
import { renderRiskMatrices, renderRiskRegister } from './risk.js';

export async function renderReport(el, id) {
  const { assessment: a, agency } = await gql(
    `query($id: ID!) { agency { name } assessment(id: $id) { id title subject dueDate status stream updatedAt returnReason
      unit { name } approval { approvedAt headSeq headHash }
      members { role user { displayName } }
      answers { questionId value note }
      comments { questionId parentId authorName body resolved createdAt }
      progress { required requiredAnswered score level sections { sectionId required requiredAnswered score level } }
      riskRegister { highestResidual items { questionId sectionId mitigations inherent { likelihood impact level } residual { likelihood impact level } } inherentCounts { level count } residualCounts { level count } }
      ${TEMPLATE_FIELDS} } }`,
    { id },
  );
  const byQ = new Map(a.answers.map((x) => [x.questionId, x]));
  const valueOf = (qid) => byQ.get(qid)?.value ?? null;
  const model = a.template.riskModel;
  const titles = new Map(a.template.sections.flatMap((s) => s.questions.map((q) => [q.id, q.prompt])));
  const p = a.progress;
  mount(
    el,
    h('div', { class: 'no-print actions' }, h('a', { class: 'button', href: `#/assessments/${a.id}` }, 'Back to the assessment'), h('button', { type: 'button', class: 'button-primary', onclick: () => window.print() }, 'Print or save as PDF')),
    h(
      'article',
      { class: 'report' },
      h('header', {}, h('p', { class: 'muted' }, agency.name, ' · ', a.unit.name), h('h1', {}, a.title), a.subject ? h('p', { class: 'lead' }, a.subject) : null),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Template'),
        h('dd', {}, `${a.template.title}, version ${a.template.version}`),
        h('dt', {}, 'Status'),
        h('dd', {}, statusLabel(a.status)),
        a.dueDate ? [h('dt', {}, 'Due'), h('dd', {}, formatDate(a.dueDate))] : null,
        h('dt', {}, 'Required questions answered'),
        h('dd', {}, `${p.requiredAnswered} of ${p.required}`),
        p.level ? [h('dt', {}, 'Level'), h('dd', {}, humanize(p.level))] : null,
        h('dt', {}, 'People'),
        h('dd', {}, a.members.map((m) => `${m.user?.displayName || '—'} (${m.role.toLowerCase()})`).join(', ') || '—'),
        a.approval ? [h('dt', {}, 'Approved'), h('dd', {}, `${formatTime(a.approval.approvedAt)}, event ${a.approval.headSeq}, hash ${a.approval.headHash}`)] : null,
        h('dt', {}, 'Printed'),
        h('dd', {}, formatTime(new Date().toISOString())),
      ),
      model && a.riskRegister ? h('section', { class: 'report-section' }, h('h2', {}, 'Risk overview'), renderRiskMatrices(model, a.riskRegister), renderRiskRegister(model, a.riskRegister, titles)) : null,
      a.template.sections.map((s) =>
        h(
          'section',
          { class: 'report-section' },
          h('h2', {}, s.title),
          h(
            'dl',
            { class: 'answers' },
            s.questions
              .filter((q) => isShown(q, valueOf))
              .map((q) => {
                const ans = byQ.get(q.id);
                const open = a.comments.filter((c) => c.questionId === q.id && !c.resolved);
                return [
                  h('dt', {}, q.prompt),
                  h('dd', {}, h('p', { class: ans?.value == null ? 'muted' : '' }, formatValue(q, ans?.value ?? null, model)), ans?.note ? h('p', { class: 'note-print' }, `Note: ${ans.note}`) : null, open.length ? h('ul', { class: 'comments-print' }, open.map((c) => h('li', {}, `${c.authorName}: ${c.body}`))) : null),
                ];
              }),
          ),
        ),
      ),
      h('footer', { class: 'report-footer muted small' }, `Event stream ${a.stream}. Every change to this assessment is recorded in a hash-chained log.`),
    ),
  );
}
