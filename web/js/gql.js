// GraphQL over HTTP. The session travels in the HttpOnly cookie that `login` sets, so the page
// never holds the token itself.

/** A GraphQL error with its `extensions.code` and the rest of its extensions. */
export class GqlError extends Error {
  constructor(error) {
    super(error.message || 'request failed');
    this.code = error.extensions?.code || 'INTERNAL';
    this.extensions = error.extensions || {};
    this.path = error.path;
  }
}

const listeners = new Set();

/** Called with every error whose code is UNAUTHENTICATED, so the app can send people to sign in. */
export function onUnauthenticated(fn) {
  listeners.add(fn);
}

/** Runs one operation and returns its `data`; throws the first error as a GqlError. */
export async function gql(query, variables = {}) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ query, variables }),
    });
  } catch (e) {
    throw new GqlError({ message: 'The server cannot be reached. Check the connection and try again.', extensions: { code: 'NETWORK' } });
  }
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new GqlError({ message: `The server answered ${response.status}.`, extensions: { code: 'INTERNAL' } });
  }
  if (body.errors && body.errors.length) {
    const err = new GqlError(body.errors[0]);
    err.all = body.errors.map((e) => new GqlError(e));
    if (err.code === 'UNAUTHENTICATED') listeners.forEach((fn) => fn(err));
    throw err;
  }
  return body.data;
}
