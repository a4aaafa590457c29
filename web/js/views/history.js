// An assessment's history: the timeline of changes, a slider over the event sequence showing
// the assessment as it was, the differences between two points, and whether the hash chain
// checks out.

import { gql } from '../gql.js';
import { h, mount, formatTime, statusBadge, errorBox, progressBar, sizeBars } from '../dom.js';
import { formatValue } from '../controls.js';
import { TEMPLATE_FIELDS } from './editor.js';

const SNAPSHOT = `query($id: ID!, $seq: Int) { assessmentAt(id: $id, seq: $seq) {
  id seq at title subject dueDate status returnReason
  answers { questionId value note revision updatedBy }
  comments { id questionId parentId authorName body resolved createdAt }
  progress { required requiredAnswered } } }`;

export async function renderHistory(el, id) {
  const base = await gql(`query($id: ID!) { assessment(id: $id) { id title stream ${TEMPLATE_FIELDS} } }`, { id });
  const a = base.assessment;
  const questions = new Map();
  for (const s of a.template.sections) for (const q of s.questions) questions.set(q.id, q);
  const model = a.template.riskModel;

  const badge = h('div', { class: 'verify', role: 'status', 'aria-live': 'polite' }, 'Checking the record…');
  const timeline = h('ol', { class: 'timeline' });
  const slider = h('input', { id: 'history-seq', type: 'range', min: 1, max: 1, value: 1, step: 1, 'aria-describedby': 'history-seq-label' });
  const sliderLabel = h('output', { id: 'history-seq-label', for: 'history-seq' });
  const snapshot = h('div', { class: 'snapshot', 'aria-live': 'polite' });
  const fromSel = h('select', { id: 'diff-from' });
  const toSel = h('select', { id: 'diff-to' });
  const diffOut = h('div', { class: 'diff', 'aria-live': 'polite' });

  mount(
    el,
    h('p', { class: 'breadcrumbs' }, h('a', { href: '#/' }, 'Home'), ' / ', h('a', { href: `#/assessments/${a.id}` }, a.title)),
    h('div', { class: 'row-between' }, h('h1', {}, `History of ${a.title}`), badge),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'h-asof' },
      h('h2', { id: 'h-asof' }, 'As it was'),
      h('div', { class: 'field' }, h('label', { for: 'history-seq' }, 'Point in the history (event number)'), slider, sliderLabel),
      snapshot,
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'h-diff' },
      h('h2', { id: 'h-diff' }, 'What changed between two points'),
      h('div', { class: 'row' }, h('div', { class: 'field inline-field' }, h('label', { for: 'diff-from' }, 'From'), fromSel), h('div', { class: 'field inline-field' }, h('label', { for: 'diff-to' }, 'To'), toSel), h('button', { type: 'button', class: 'button', id: 'diff-run' }, 'Compare')),
      diffOut,
    ),
    h('section', { class: 'card', 'aria-labelledby': 'h-timeline' }, h('h2', { id: 'h-timeline' }, 'Timeline'), timeline),
  );

  gql('query($s: String!) { verifyStream(stream: $s) { ok eventsChecked headHash problemSeq problem } }', { s: a.stream })
    .then(({ verifyStream: v }) => {
      badge.className = `verify ${v.ok ? 'verify-ok' : 'verify-bad'}`;
      badge.textContent = v.ok
        ? `✓ Record verified: ${v.eventsChecked} events, chain intact`
        : `✗ Record does not verify at event ${v.problemSeq}: ${v.problem}`;
      badge.title = `Head hash ${v.headHash}`;
    })
    .catch((e) => {
      badge.className = 'verify';
      badge.textContent = `Verification unavailable: ${e.message}`;
    });

  let entries = [];
  try {
    entries = (await gql('query($id: ID!) { assessmentHistory(id: $id) { seq at type actor actorName questionId summary before after } }', { id })).assessmentHistory;
  } catch (e) {
    timeline.replaceWith(errorBox(e));
  }
  const maxSeq = entries.reduce((m, e) => Math.max(m, e.seq), 1);
  slider.max = String(maxSeq);
  slider.value = String(maxSeq);
  mount(
    timeline,
    [...entries].reverse().map((e) =>
      h(
        'li',
        { 'data-seq': e.seq },
        h('button', { type: 'button', class: 'button-link', onclick: () => show(e.seq) }, `#${e.seq}`),
        ' ',
        h('span', { class: 'muted small' }, formatTime(e.at)),
        ' · ',
        h('strong', {}, e.actorName || e.actor),
        ' ',
        e.summary,
        e.questionId && questions.get(e.questionId) ? h('span', { class: 'muted' }, ` — ${questions.get(e.questionId).prompt}`) : null,
      ),
    ),
  );
  const option = (e, sel) => h('option', { value: e.seq, selected: sel }, `#${e.seq} ${e.summary}`.slice(0, 80));
  mount(fromSel, entries.map((e, i) => option(e, i === Math.max(0, entries.length - 2))));
  mount(toSel, entries.map((e, i) => option(e, i === entries.length - 1)));

  let timer = null;
  let shown = null;
  async function show(seq) {
    slider.value = String(seq);
    sliderLabel.textContent = `Event ${seq} of ${maxSeq}`;
    if (shown === seq) return;
    shown = seq;
    try {
      const { assessmentAt: s } = await gql(SNAPSHOT, { id, seq });
      if (shown !== seq) return;
      const byQ = new Map(s.answers.map((x) => [x.questionId, x]));
      mount(
        snapshot,
        h('p', {}, h('strong', {}, s.title), ' ', statusBadge(s.status), h('span', { class: 'muted small' }, ` as of event ${s.seq}, ${formatTime(s.at)}`)),
        progressBar(s.progress.requiredAnswered, s.progress.required, 'Required questions answered at this point'),
        a.template.sections.map((sec) =>
          h(
            'div',
            { class: 'snapshot-section' },
            h('h3', {}, sec.title),
            h('dl', { class: 'answers' }, sec.questions.filter((q) => byQ.has(q.id) && byQ.get(q.id).value !== null).map((q) => [h('dt', {}, q.prompt), h('dd', { 'data-question': q.id }, formatValue(q, byQ.get(q.id).value, model))])),
          ),
        ),
      );
      sizeBars(snapshot);
    } catch (e) {
      mount(snapshot, errorBox(e));
    }
  }
  slider.addEventListener('input', () => {
    sliderLabel.textContent = `Event ${slider.value} of ${maxSeq}`;
    clearTimeout(timer);
    timer = setTimeout(() => show(Number(slider.value)), 250);
  });

  async function compare() {
    try {
      const { assessmentDiff } = await gql('query($id: ID!, $f: Int!, $t: Int!) { assessmentDiff(id: $id, fromSeq: $f, toSeq: $t) { questionId field before after } }', { id, f: Number(fromSel.value), t: Number(toSel.value) });
      if (!assessmentDiff.length) {
        mount(diffOut, h('p', { class: 'muted' }, 'No differences.'));
        return;
      }
      const fmt = (d, v) => (d.field === 'value' ? formatValue(questions.get(d.questionId), v, model) : v === null || v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v));
      mount(
        diffOut,
        h(
          'table',
          { class: 'table' },
          h('caption', { class: 'visually-hidden' }, 'Differences'),
          h('thead', {}, h('tr', {}, ['Question', 'What', 'Before', 'After'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, assessmentDiff.map((d) => h('tr', {}, h('td', {}, d.questionId ? questions.get(d.questionId)?.prompt || d.questionId : 'The assessment'), h('td', {}, d.field), h('td', { class: 'diff-before' }, h('del', {}, fmt(d, d.before))), h('td', { class: 'diff-after' }, h('ins', {}, fmt(d, d.after)))))),
        ),
      );
    } catch (e) {
      mount(diffOut, errorBox(e));
    }
  }
  el.querySelector('#diff-run').addEventListener('click', compare);
  await show(maxSeq);
  return () => clearTimeout(timer);
}
