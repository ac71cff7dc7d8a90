// The /ws event socket, shared by every view: daemon topics (profiles, proxy, usage,
// workers, sessions) and agent session messages. Reconnects with backoff and replays the
// subscriptions; pings to keep idle proxies from closing it.

const TOPICS = ["profiles", "proxy", "usage", "workers", "sessions"];
const PING_MS = 25000;

const listeners = new Map(); // message type -> Set of functions
const sessionSubscriptions = new Map(); // session id -> count of subscribers
let socket = null;
let retryMs = 500;
let pingTimer = null;
let retryTimer = null;

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function connect() {
  clearTimeout(retryTimer);
  clearInterval(pingTimer);
  const ws = new WebSocket(socketUrl());
  socket = ws;
  ws.addEventListener("open", () => {
    if (ws !== socket) return;
    retryMs = 500;
    send({ type: "subscribe", topics: TOPICS });
    for (const id of sessionSubscriptions.keys()) send({ type: "subscribe", session_id: id });
    pingTimer = setInterval(() => send({ type: "ping" }), PING_MS);
    emit({ type: "socket_open" });
  });
  ws.addEventListener("message", (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    if (message && typeof message.type === "string") emit(message);
  });
  ws.addEventListener("close", () => {
    if (ws !== socket) return; // replaced by reconnect()
    clearInterval(pingTimer);
    emit({ type: "socket_closed" });
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  });
}

function emit(message) {
  for (const fn of listeners.get(message.type) || []) {
    try { fn(message); } catch (err) { console.error(err); }
  }
}

/** Connect now if the socket is down (e.g. right after signing in). */
export function reconnect() {
  if (socket && socket.readyState <= WebSocket.OPEN) return;
  retryMs = 500;
  connect();
}

/** Send a JSON message; returns false when the socket is not open. */
export function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(message));
  return true;
}

export function isOpen() {
  return Boolean(socket && socket.readyState === WebSocket.OPEN);
}

/** Listen for one message type; returns a function that stops listening. */
export function on(type, fn) {
  if (!socket) connect();
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type).delete(fn);
}

/** Listen for daemon events of one topic ({type:"event", topic, event, data}). */
export function onTopic(topic, fn) {
  return on("event", (message) => { if (message.topic === topic) fn(message); });
}

/** Subscribe to an agent session's messages; returns the unsubscribe function. */
export function subscribeSession(id) {
  if (!socket) connect();
  const count = sessionSubscriptions.get(id) || 0;
  sessionSubscriptions.set(id, count + 1);
  if (count === 0) send({ type: "subscribe", session_id: id });
  return () => {
    const left = (sessionSubscriptions.get(id) || 1) - 1;
    if (left > 0) { sessionSubscriptions.set(id, left); return; }
    sessionSubscriptions.delete(id);
    send({ type: "unsubscribe", session_id: id });
  };
}

/**
 * Call `load` again whenever one of `topics` has an event (at most every 300 ms) and,
 * when `everyMs` is set, on that interval. Returns the function that stops it.
 */
export function refreshOn(topics, load, everyMs = 0) {
  let timer = null;
  const soon = () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; load(); }, 300);
  };
  const stops = topics.map((topic) => onTopic(topic, soon));
  const interval = everyMs ? setInterval(load, everyMs) : null;
  return () => {
    stops.forEach((stop) => stop());
    clearTimeout(timer);
    clearInterval(interval);
  };
}
