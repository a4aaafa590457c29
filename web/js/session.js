// Who is signed in: `undefined` before the first check, `null` when nobody is.

export const session = { user: undefined };

export function setUser(user) {
  session.user = user;
}

/** Whether the signed-in user manages some unit (or administers the agency). */
export function isManager() {
  const u = session.user;
  return !!u && (u.isAdmin || u.roles.some((r) => r.role === 'MANAGER'));
}
