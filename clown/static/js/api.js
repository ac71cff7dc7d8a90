// HTTP client for both API families served by clown.
//
// clown family (/api/profiles, /api/usage, ...): {"success":true,"data":...} or
// {"success":false,"error":"..."}; `clown()` returns `data`.
// sessions family (/api/sessions, /api/config, /api/credentials, /api/auth, /health): bare
// objects, errors {"error":{"code","message"}}; `sessions()` returns the body.
// A 401 from either asks the sign-in form for a token, then retries the request.

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code || null;
  }
}

let signIn = null;
let pendingSignIn = null;

/** Register the function that shows the sign-in form; it resolves once signed in. */
export function onUnauthorized(handler) {
  signIn = handler;
}

function waitForSignIn() {
  if (!signIn) return Promise.reject(new ApiError("Sign-in required", 401, "UNAUTHORIZED"));
  pendingSignIn ??= signIn().finally(() => { pendingSignIn = null; });
  return pendingSignIn;
}

function url(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, val] of Object.entries(query)) {
    if (val !== undefined && val !== null && val !== "") params.set(key, String(val));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

function messageOf(body, response) {
  const error = body && body.error;
  if (typeof error === "string") return { message: error, code: null };
  if (error && typeof error === "object") return { message: error.message || error.code, code: error.code };
  return { message: `${response.status} ${response.statusText || "request failed"}`, code: null };
}

async function request(method, path, { query, body } = {}) {
  for (;;) {
    let response;
    try {
      response = await fetch(url(path, query), {
        method,
        credentials: "same-origin",
        headers: body === undefined ? { Accept: "application/json" } : { Accept: "application/json", "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(`Cannot reach the clown daemon (${err.message})`, 0, "NETWORK");
    }
    let parsed = null;
    const text = await response.text();
    if (text) {
      try { parsed = JSON.parse(text); } catch { parsed = null; }
    }
    if (response.status === 401 && !path.startsWith("/api/auth/")) {
      await waitForSignIn();
      continue;
    }
    if (!response.ok || (parsed && parsed.success === false)) {
      const { message, code } = messageOf(parsed, response);
      throw new ApiError(message, response.status, code);
    }
    return parsed;
  }
}

/** Call the clown API; returns the envelope's `data` (the whole body if it has none). */
export async function clown(method, path, options) {
  const body = await request(method, path, options);
  return body && Object.prototype.hasOwnProperty.call(body, "data") ? body.data : body;
}

/** Call the sessions API; returns the response body as is. */
export function sessions(method, path, options) {
  return request(method, path, options);
}

/** POST the token to /api/auth/login, which sets the clown_session cookie. */
export async function login(token) {
  await request("POST", "/api/auth/login", { body: { token } });
}

export const enc = encodeURIComponent;
