// The 5 × 5 risk matrices (inherent and residual) and the risk register table.

import { h, humanize } from '../dom.js';

/** Two likelihood × impact grids counting the risk items in each cell. */
export function renderRiskMatrices(model, register) {
  if (!model) return null;
  return h('div', { class: 'matrices' }, matrix(model, register.items, 'inherent', 'Inherent risk'), matrix(model, register.items, 'residual', 'Residual risk'));
}

function matrix(model, items, which, title) {
  const count = (l, i) => items.filter((x) => x[which] && x[which].likelihood === l && x[which].impact === i).length;
  const likelihoods = [...model.likelihood].sort((a, b) => b.value - a.value);
  const levelLabel = (id) => model.levels.find((lv) => lv.id === id)?.label || humanize(id);
  return h(
    'table',
    { class: `risk-matrix matrix-${which}` },
    h('caption', {}, title, h('span', { class: 'muted small' }, ' — items per cell; likelihood down, impact across')),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Likelihood')), model.impact.map((s) => h('th', { scope: 'col', title: s.description }, `${s.value} ${s.label}`)))),
    h(
      'tbody',
      {},
      likelihoods.map((l) =>
        h(
          'tr',
          {},
          h('th', { scope: 'row', title: l.description }, `${l.value} ${l.label}`),
          model.impact.map((i) => {
            const level = model.matrix[l.value - 1][i.value - 1];
            const n = count(l.value, i.value);
            return h('td', { class: `cell level-${level} ${n ? 'has-items' : ''}`, 'aria-label': `likelihood ${l.value}, impact ${i.value}: ${levelLabel(level)}, ${n} item${n === 1 ? '' : 's'}` }, n ? String(n) : '');
          }),
        ),
      ),
    ),
  );
}

/** Every risk item with its ratings and mitigations. */
export function renderRiskRegister(model, register, titles) {
  const level = (r) => (r ? h('span', { class: `level-pill level-${r.level}` }, `${model?.levels.find((lv) => lv.id === r.level)?.label || humanize(r.level)} (${r.likelihood}×${r.impact})`) : h('span', { class: 'muted' }, 'not rated'));
  return h(
    'div',
    {},
    register.highestResidual ? h('p', {}, 'Highest residual risk: ', h('span', { class: `level-pill level-${register.highestResidual}` }, model?.levels.find((lv) => lv.id === register.highestResidual)?.label || humanize(register.highestResidual))) : null,
    h(
      'table',
      { class: 'table risk-register' },
      h('caption', { class: 'visually-hidden' }, 'Risk register'),
      h('thead', {}, h('tr', {}, ['Risk', 'Inherent', 'Mitigations', 'Residual'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, register.items.map((it) => h('tr', {}, h('td', {}, titles.get(it.questionId) || it.questionId), h('td', {}, level(it.inherent)), h('td', {}, it.mitigations || '—'), h('td', {}, level(it.residual))))),
    ),
  );
}
