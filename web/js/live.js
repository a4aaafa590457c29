// A graphql-transport-ws client for /graphql/ws. The browser sends the session cookie with the
// upgrade request, so `connection_init` carries no token. When the connection drops, it
// reconnects with growing pauses and starts every subscription again, asking each for the
// variables it wants now (an assessment's events resume after the last sequence number seen).

const PROTOCOL = 'graphql-transport-ws';

let socket = null;
let acknowledged = false;
let nextId = 1;
let retry = 0;
let retryTimer = null;
const subscriptions = new Map();
const statusListeners = new Set();

function url() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/graphql/ws`;
}

function setStatus(status) {
  statusListeners.forEach((fn) => fn(status));
}

/** Called with `connecting`, `open` or `closed` as the connection changes. */
export function onStatus(fn) {
  statusListeners.add(fn);
  return () => statusListeners.delete(fn);
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function start(id, sub) {
  send({ id, type: 'subscribe', payload: { query: sub.query, variables: sub.variables() } });
}

function connect() {
  if (socket) return;
  setStatus('connecting');
  acknowledged = false;
  const ws = new WebSocket(url(), PROTOCOL);
  socket = ws;
  ws.addEventListener('open', () => send({ type: 'connection_init', payload: {} }));
  ws.addEventListener('message', (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    switch (msg.type) {
      case 'connection_ack':
        acknowledged = true;
        retry = 0;
        setStatus('open');
        for (const [id, sub] of subscriptions) start(id, sub);
        break;
      case 'ping':
        send({ type: 'pong' });
        break;
      case 'next': {
        const sub = subscriptions.get(msg.id);
        if (!sub) break;
        if (msg.payload?.errors?.length) sub.onError?.(msg.payload.errors[0]);
        else if (msg.payload?.data) sub.onData(msg.payload.data);
        break;
      }
      case 'error': {
        const sub = subscriptions.get(msg.id);
        sub?.onError?.(Array.isArray(msg.payload) ? msg.payload[0] : msg.payload);
        break;
      }
      case 'complete':
        break;
      default:
        break;
    }
  });
  ws.addEventListener('close', () => {
    if (socket === ws) socket = null;
    acknowledged = false;
    // Only a connection lost while something listens is worth telling anyone about.
    setStatus(subscriptions.size > 0 ? 'closed' : 'idle');
    if (subscriptions.size > 0) scheduleReconnect();
  });
  ws.addEventListener('error', () => {
    // `close` follows and reconnects.
  });
}

function scheduleReconnect() {
  if (retryTimer) return;
  const delay = Math.min(30000, 500 * 2 ** retry) + Math.floor(Math.random() * 250);
  retry += 1;
  retryTimer = setTimeout(() => {
    retryTimer = null;
    connect();
  }, delay);
}

/**
 * Subscribes; `variables` is a function called at every (re)start. Returns a function that ends
 * the subscription.
 */
export function subscribe(query, variables, onData, onError) {
  const id = String(nextId++);
  const sub = { query, variables: typeof variables === 'function' ? variables : () => variables, onData, onError };
  subscriptions.set(id, sub);
  if (socket && acknowledged) start(id, sub);
  else connect();
  return () => {
    if (!subscriptions.delete(id)) return;
    send({ id, type: 'complete' });
    if (subscriptions.size === 0 && socket) {
      const ws = socket;
      socket = null;
      ws.close(1000, 'no subscriptions');
    }
  };
}

/** Closes the connection and forgets every subscription (at sign-out). */
export function closeAll() {
  subscriptions.clear();
  if (socket) {
    const ws = socket;
    socket = null;
    ws.close(1000, 'signed out');
  }
}
