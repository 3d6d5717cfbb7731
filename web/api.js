// Talking to the API: the signed-in token (kept in sessionStorage, so it goes
// with the tab), JSON requests, errors, and downloads that need the token.

const TOKEN_KEY = "rota.token";

const ROLES = ["viewer", "operator", "admin"];

export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  // From GET /v1/whoami.
  name: null,
  role: null,
  auth: true,
};

export function setToken(token) {
  session.token = token || null;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Whether the signed-in role includes `role` (roles include the ones before them).
export function can(role) {
  return ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders() {
  return session.token ? { Authorization: `Bearer ${session.token}` } : {};
}

export const enc = encodeURIComponent;

// A JSON request; throws ApiError with the server's code and message. A 401
// also tells the shell, which shows the sign-in page.
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    if (resp.status === 401) window.dispatchEvent(new CustomEvent("rota:unauthorized"));
    throw new ApiError(resp.status, e.code || `http_${resp.status}`, e.message || resp.statusText);
  }
  return data;
}

// Every item of a paged list (`{"items", "next"}`), following `next`.
export async function all(path, { signal, max = 5000 } = {}) {
  const items = [];
  let after = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(after ? `${path}${sep}after=${enc(after)}` : path, { signal });
    items.push(...page.items);
    after = page.next;
    if (!after || items.length >= max) return items;
  }
}

export async function whoami() {
  const me = await api("/v1/whoami");
  session.name = me.token;
  session.role = me.role;
  session.auth = me.auth;
  return me;
}

// Downloads a file that needs the token (a plain link cannot send it).
export async function download(path, filename) {
  const resp = await fetch(path, { headers: authHeaders() });
  if (!resp.ok) throw new ApiError(resp.status, `http_${resp.status}`, `download failed (${resp.status})`);
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
