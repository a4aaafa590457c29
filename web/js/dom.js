// Small helpers to build the page from data without ever parsing data as HTML.

/**
 * Creates an element: `h('a', { href: '#/', class: 'x', onclick: fn }, 'text', child)`.
 * Attributes starting with `on` become listeners; `null`/`false` attributes are left out.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'value' && 'value' in el) el.value = value;
    else if (key === 'checked' || key === 'disabled' || key === 'selected' || key === 'hidden') el[key] = !!value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's content. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Says something to screen-reader users through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

let idCounter = 0;
/** A unique element id with a readable prefix. */
export function uid(prefix = 'el') {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** `2026-11-27T21:00:00Z` → a short local date and time. */
export function formatTime(value) {
  if (!value) return '';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function formatDate(value) {
  if (!value) return '';
  const d = new Date(`${value}T00:00:00`);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleDateString(undefined, { dateStyle: 'medium' });
}

/** Initials of a display name, for avatars. */
export function initials(name) {
  const parts = String(name || '?').replace(/@.*/, '').split(/[\s._-]+/).filter(Boolean);
  return ((parts[0]?.[0] || '?') + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
}

/** Human words for a status enum. */
export function statusLabel(status) {
  return {
    DRAFT: 'Draft',
    IN_PROGRESS: 'In progress',
    SUBMITTED: 'Submitted',
    APPROVED: 'Approved',
    RETURNED: 'Returned',
    ARCHIVED: 'Archived',
  }[status] || status;
}

export function statusBadge(status) {
  return h('span', { class: `badge status-${String(status).toLowerCase()}` }, statusLabel(status));
}

/** A progress bar with a text equivalent. */
export function progressBar(done, total, label) {
  const pct = total > 0 ? Math.round((done / total) * 100) : 100;
  return h(
    'div',
    { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct, 'aria-label': label || 'Progress' },
    h('div', { class: 'progress-fill', style: null, dataset: { pct: String(pct) } }),
    h('span', { class: 'progress-text' }, `${done} of ${total} (${pct}%)`),
  );
}

/** Sets bar widths after mounting (the CSP forbids inline style attributes). */
export function sizeBars(root) {
  root.querySelectorAll('.progress-fill').forEach((el) => {
    el.style.width = `${el.dataset.pct}%`;
  });
}

/** An error message box. */
export function errorBox(err) {
  return h('div', { class: 'alert alert-error', role: 'alert' }, err?.message || String(err));
}

/** A human name for a principle id such as `minimization_of_harm`. */
export function humanize(id) {
  const s = String(id || '').replace(/_/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}
