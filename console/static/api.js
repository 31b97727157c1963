// The console's only way to the server: the HTTP API under /api/v1 (session cookie + CSRF header).
export const BASE = "/api/v1";
export const EVENTS_URL = `${BASE}/console/events`;

export class AuthError extends Error {}
export class ApiError extends Error {
  constructor(status, code, message, fields) { super(message); this.status = status; this.code = code; this.fields = fields; }
}

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)vr_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

async function call(method, path, { body, form, query } = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const headers = { Accept: "application/json" };
  let payload;
  if (form) { payload = new URLSearchParams(form); }
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  const res = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (res.ok) return data;
  const err = (data && data.error) || {};
  if (res.status === 401 && !path.startsWith("/auth/session")) throw new AuthError(err.message || "log in again");
  throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText, err.fields);
}

export const get = (path, query) => call("GET", path, { query });
export const post = (path, body) => call("POST", path, { body: body ?? {} });

/** Every item of a paged list (follows next_offset; bounded). */
export async function all(path, query = {}, max = 10000) {
  const items = [];
  let offset = 0;
  while (offset !== null && items.length < max) {
    const page = await get(path, { ...query, limit: 1000, offset });
    items.push(...page.items);
    offset = page.next_offset;
  }
  return items;
}

export async function login(username, password) {
  const s = await call("POST", "/auth/session", { form: { username, password } });
  return { name: s.user, role: s.role };
}
export const logout = () => call("POST", "/auth/logout", {});
export async function me() {
  const m = await get("/auth/me");
  return m && m.kind === "user" ? { name: m.name, role: m.role } : null;
}
