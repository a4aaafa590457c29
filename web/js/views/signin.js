// Signing in, and the password change required before anything else when
// `me.mustChangePassword` is set.

import { gql } from '../gql.js';
import { h, mount, announce } from '../dom.js';

export async function renderSignIn(el, { onSignedIn }) {
  const error = h('div', { id: 'signin-error', class: 'alert alert-error', role: 'alert', hidden: true });
  const email = h('input', { id: 'email', name: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'button-primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'card narrow', 'aria-describedby': 'signin-error', novalidate: false },
    h('h1', {}, 'Sign in to Attest'),
    h('p', { class: 'muted' }, 'Self-assessments for responsible AI in law enforcement.'),
    error,
    h('div', { class: 'field' }, h('label', { for: 'email' }, 'Email'), email),
    h('div', { class: 'field' }, h('label', { for: 'password' }, 'Password'), password),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      await gql(
        'mutation($e: String!, $p: String!) { login(email: $e, password: $p) { expiresAt user { id } } }',
        { e: email.value, p: password.value },
      );
      password.value = '';
      announce('Signed in');
      await onSignedIn();
    } catch (e) {
      error.textContent =
        e.code === 'RATE_LIMITED'
          ? `Too many failed attempts. Try again in ${Math.ceil((e.extensions.retryAfterSeconds || 60) / 60)} minute(s).`
          : e.code === 'UNAUTHENTICATED'
            ? 'The email or password is not right.'
            : e.message;
      error.hidden = false;
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  mount(el, h('div', { class: 'center' }, form));
  email.focus();
}

export async function renderChangePassword(el, { onChanged }) {
  const error = h('div', { class: 'alert alert-error', role: 'alert', hidden: true });
  const current = h('input', { id: 'current-password', type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', required: true, minlength: 12, 'aria-describedby': 'new-password-help' });
  const again = h('input', { id: 'new-password-again', type: 'password', autocomplete: 'new-password', required: true, minlength: 12 });
  const form = h(
    'form',
    { class: 'card narrow' },
    h('h1', {}, 'Choose a new password'),
    h('p', {}, 'Your password was set for you. Choose your own before you continue.'),
    error,
    h('div', { class: 'field' }, h('label', { for: 'current-password' }, 'Current password'), current),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'new-password' }, 'New password'),
      next,
      h('p', { id: 'new-password-help', class: 'help' }, '12 to 256 characters. A few unrelated words make a good one.'),
    ),
    h('div', { class: 'field' }, h('label', { for: 'new-password-again' }, 'New password again'), again),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button-primary' }, 'Change password')),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (next.value !== again.value) {
      error.textContent = 'The two new passwords differ.';
      error.hidden = false;
      again.focus();
      return;
    }
    try {
      await gql('mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) { id mustChangePassword } }', {
        c: current.value,
        n: next.value,
      });
      announce('Password changed');
      await onChanged();
    } catch (e) {
      error.textContent = e.code === 'INVALID_INPUT' ? e.extensions.reason || e.message : e.message;
      error.hidden = false;
    }
  });
  mount(el, h('div', { class: 'center' }, form));
  current.focus();
}
