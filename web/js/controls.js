// One input control per question type, and a plain-text rendering of any answer value.
// Values follow the server's shapes: a choice or scale is the chosen id, a multiple choice a
// list of ids, yes/no one of `yes`, `no`, `unknown`, `not_applicable`, a risk item
// `{ inherent: { likelihood, impact }, mitigations, residual: { likelihood, impact } }`.

import { h, uid } from './dom.js';

export const YES_NO = [
  ['yes', 'Yes'],
  ['no', 'No'],
  ['unknown', 'Unknown'],
  ['not_applicable', 'Not applicable'],
];

/**
 * Builds the control for a question. `onInput(immediate)` fires on every change; `immediate`
 * is true for discrete choices, false while typing. Returns `{ el, get, set, setDisabled }`.
 */
export function makeControl(question, value, { onInput = () => {}, riskModel = null, idPrefix = 'q' } = {}) {
  const base = `${idPrefix}-${question.id}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const labelId = `${base}-label`;
  switch (question.type) {
    case 'single_choice':
    case 'scale':
      return radios(question, base, labelId, question.choices.map((c) => [c.id, c.label]), value, onInput, question.type === 'scale');
    case 'yes_no':
      return radios(question, base, labelId, YES_NO, value, onInput, true);
    case 'multiple_choice':
      return checkboxes(question, base, labelId, value, onInput);
    case 'number':
      return single(h('input', { id: `${base}-input`, type: 'number', 'aria-labelledby': labelId, min: question.min ?? null, max: question.max ?? null, step: 'any' }), value, onInput, (s) => (s === '' ? null : Number(s)));
    case 'date':
      return single(h('input', { id: `${base}-input`, type: 'date', 'aria-labelledby': labelId }), value, onInput, (s) => s || null);
    case 'risk':
      return risk(question, base, labelId, value, onInput, riskModel);
    case 'text':
    default:
      return single(h('textarea', { id: `${base}-input`, rows: 4, 'aria-labelledby': labelId, maxlength: question.maxLength ?? null }), value, onInput, (s) => (s === '' ? null : s), false);
  }
}

function single(input, value, onInput, parse, immediate = true) {
  const set = (v) => {
    input.value = v === null || v === undefined ? '' : String(v);
  };
  set(value);
  input.addEventListener('input', () => onInput(false));
  if (immediate) input.addEventListener('change', () => onInput(true));
  return { el: input, get: () => parse(input.value), set, setDisabled: (d) => (input.disabled = d), focusable: input };
}

function radios(question, base, labelId, options, value, onInput, inline) {
  const name = uid(base);
  const inputs = options.map(([id, label]) => {
    const input = h('input', { type: 'radio', name, value: id, id: `${name}-${id}` });
    input.addEventListener('change', () => onInput(true));
    return [input, h('label', { class: 'choice', for: `${name}-${id}` }, input, ' ', label)];
  });
  const clear = h('button', { type: 'button', class: 'button-link small' }, 'Clear');
  clear.addEventListener('click', () => {
    inputs.forEach(([i]) => (i.checked = false));
    onInput(true);
  });
  const el = h('div', { role: 'radiogroup', 'aria-labelledby': labelId, class: inline ? 'choices inline' : 'choices' }, inputs.map(([, l]) => l), clear);
  const set = (v) => inputs.forEach(([i]) => (i.checked = i.value === v));
  set(value);
  return {
    el,
    get: () => inputs.find(([i]) => i.checked)?.[0].value ?? null,
    set,
    setDisabled: (d) => {
      inputs.forEach(([i]) => (i.disabled = d));
      clear.hidden = d;
    },
    focusable: inputs[0]?.[0],
  };
}

function checkboxes(question, base, labelId, value, onInput) {
  const name = uid(base);
  const inputs = question.choices.map((c) => {
    const input = h('input', { type: 'checkbox', name, value: c.id, id: `${name}-${c.id}` });
    input.addEventListener('change', () => onInput(true));
    return [input, h('label', { class: 'choice', for: `${name}-${c.id}` }, input, ' ', c.label)];
  });
  const el = h('div', { role: 'group', 'aria-labelledby': labelId, class: 'choices' }, inputs.map(([, l]) => l));
  const set = (v) => inputs.forEach(([i]) => (i.checked = Array.isArray(v) && v.includes(i.value)));
  set(value);
  return {
    el,
    get: () => {
      const chosen = inputs.filter(([i]) => i.checked).map(([i]) => i.value);
      return chosen.length ? chosen : null;
    },
    set,
    setDisabled: (d) => inputs.forEach(([i]) => (i.disabled = d)),
    focusable: inputs[0]?.[0],
  };
}

function ratingSelects(base, which, title, model, onInput) {
  const make = (axis, steps) => {
    const id = `${base}-${which}-${axis}`;
    const select = h('select', { id }, h('option', { value: '' }, '—'), steps.map((s) => h('option', { value: String(s.value), title: s.description }, `${s.value} · ${s.label}`)));
    select.addEventListener('change', () => onInput(true));
    return [select, h('div', { class: 'field inline-field' }, h('label', { for: id }, axis === 'likelihood' ? 'Likelihood' : 'Impact'), select)];
  };
  const [l, lField] = make('likelihood', model?.likelihood || steps5());
  const [i, iField] = make('impact', model?.impact || steps5());
  const level = h('span', { class: 'risk-level', 'aria-live': 'off' });
  const box = h('fieldset', { class: 'rating' }, h('legend', {}, title), lField, iField, level);
  const update = () => {
    const lv = levelOf(model, Number(l.value), Number(i.value));
    level.textContent = lv ? `Level: ${lv.label}` : '';
    level.className = `risk-level ${lv ? `level-${lv.id}` : ''}`;
  };
  l.addEventListener('change', update);
  i.addEventListener('change', update);
  return {
    el: box,
    get: () => (l.value && i.value ? { likelihood: Number(l.value), impact: Number(i.value) } : null),
    set: (r) => {
      l.value = r ? String(r.likelihood) : '';
      i.value = r ? String(r.impact) : '';
      update();
    },
    selects: [l, i],
  };
}

function steps5() {
  return [1, 2, 3, 4, 5].map((v) => ({ value: v, label: String(v), description: '' }));
}

/** The level `{ id, label }` of a likelihood × impact cell, or null. */
export function levelOf(model, likelihood, impact) {
  if (!model || !likelihood || !impact) return null;
  const id = model.matrix[likelihood - 1]?.[impact - 1];
  return model.levels.find((lv) => lv.id === id) || (id ? { id, label: id } : null);
}

function risk(question, base, labelId, value, onInput, model) {
  const inherent = ratingSelects(base, 'inherent', 'Inherent risk (before mitigation)', model, onInput);
  const mitigationsId = `${base}-mitigations`;
  const mitigations = h('textarea', { id: mitigationsId, rows: 3 });
  mitigations.addEventListener('input', () => onInput(false));
  const residual = ratingSelects(base, 'residual', 'Residual risk (after mitigation)', model, onInput);
  const el = h(
    'div',
    { class: 'risk-control', role: 'group', 'aria-labelledby': labelId },
    inherent.el,
    h('div', { class: 'field' }, h('label', { for: mitigationsId }, 'Mitigations: what the agency does or will do to reduce this risk'), mitigations),
    residual.el,
  );
  const set = (v) => {
    inherent.set(v?.inherent || null);
    residual.set(v?.residual || null);
    mitigations.value = v?.mitigations || '';
  };
  set(value);
  return {
    el,
    get: () => {
      const inh = inherent.get();
      if (!inh) return null;
      const out = { inherent: inh };
      if (mitigations.value) out.mitigations = mitigations.value;
      const res = residual.get();
      if (res) out.residual = res;
      return out;
    },
    set,
    setDisabled: (d) => {
      [...inherent.selects, ...residual.selects, mitigations].forEach((x) => (x.disabled = d));
    },
    focusable: inherent.selects[0],
  };
}

/** An answer value as plain text, for conflict dialogs, history and the report. */
export function formatValue(question, value, riskModel) {
  if (value === null || value === undefined) return '(no answer)';
  if (!question) return typeof value === 'string' ? value : JSON.stringify(value);
  const label = (id) => question.choices?.find((c) => c.id === id)?.label ?? id;
  switch (question.type) {
    case 'single_choice':
    case 'scale':
      return label(value);
    case 'multiple_choice':
      return Array.isArray(value) ? value.map(label).join(', ') : String(value);
    case 'yes_no':
      return YES_NO.find(([id]) => id === value)?.[1] ?? String(value);
    case 'risk': {
      const r = (x) => {
        if (!x) return 'not rated';
        const lv = levelOf(riskModel, x.likelihood, x.impact);
        return `likelihood ${x.likelihood}, impact ${x.impact}${lv ? ` (${lv.label})` : ''}`;
      };
      const parts = [`Inherent: ${r(value.inherent)}`];
      if (value.mitigations) parts.push(`Mitigations: ${value.mitigations}`);
      parts.push(`Residual: ${r(value.residual)}`);
      return parts.join('. ');
    }
    default:
      return String(value);
  }
}

/** Whether a question is shown, given the current values (`showIf` on another answer). */
export function isShown(question, valueOf) {
  if (!question.showIf) return true;
  const v = valueOf(question.showIf.questionId);
  if (v === null || v === undefined) return false;
  const vals = Array.isArray(v) ? v : [String(v)];
  return vals.some((x) => question.showIf.values.includes(String(x)));
}

/** Whether two JSON values are equal. */
export function sameValue(a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}
