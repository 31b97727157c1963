// The console's shell: session, role checks, formatting, live events and the hash router.
// Pages are ES modules in pages/; each exports render(root, ctx) and may return a cleanup function.
import * as api from "./api.js";

const pages = {
  overview: () => import("./pages/overview.js"),
  emergency: () => import("./pages/emergency.js"),
  orders: () => import("./pages/orders.js"),
  alerts: () => import("./pages/alerts.js"),
  site: () => import("./pages/site.js"),
  settlement: () => import("./pages/settlement.js"),
  assessment: () => import("./pages/assessment.js"),
  login: () => import("./pages/login.js"),
};

const ctx = { user: null, config: null, events: null, listeners: {} };
let cleanup = null;

// ------------------------------------------------------------------ formatting (operator's locale and time zone)
const numberFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const wholeFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const pctFmt = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
const timeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** A quantity with thousands separators and its unit: "12,345 box". */
export function qty(value, unit) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "–";
  const v = Number(value);
  return `${(Math.abs(v) >= 100 ? wholeFmt : numberFmt).format(v)}${unit ? " " + unit : ""}`;
}
export const count = (v) => (v === null || v === undefined ? "–" : wholeFmt.format(Number(v)));
export const pct = (v) => (v === null || v === undefined ? "–" : pctFmt.format(Number(v)));
/** Money from integer minor units, with its currency: "¥1,234.50" / "CN¥1,234.50". */
export function money(minor, currency) {
  if (minor === null || minor === undefined) return "–";
  const cur = currency || (ctx.config && ctx.config.currency) || "CNY";
  const digits = new Intl.NumberFormat(undefined, { style: "currency", currency: cur }).resolvedOptions().maximumFractionDigits;
  return new Intl.NumberFormat(undefined, { style: "currency", currency: cur }).format(Number(minor) / 10 ** digits);
}
/** A time in the operator's time zone; accepts ISO strings or epoch seconds. */
export function when(t) {
  if (t === null || t === undefined || t === "") return "–";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : timeFmt.format(d);
}
export function seconds(s) {
  if (s === null || s === undefined) return "–";
  return s >= 60 ? `${numberFmt.format(s / 60)} min` : `${numberFmt.format(s)} s`;
}

// ------------------------------------------------------------------ small DOM helpers
/** Element builder: h("button", {type: "button", onclick}, "Text"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
export const badge = (text, cls) => h("span", { class: `badge ${cls || text}` }, text);
export function table(columns, rows, caption) {
  return h("table", {},
    caption ? h("caption", { class: "muted" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null, scope: "col" }, c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r)))))));
}

// ------------------------------------------------------------------ roles
const ROLES = ["viewer", "operator", "supervisor", "admin"];
/** Whether the signed-in person may use a control that needs ``role``. */
export function may(role) {
  return !!(ctx.user && ctx.user.role && ROLES.indexOf(ctx.user.role) >= ROLES.indexOf(role));
}

// ------------------------------------------------------------------ live events (server-sent)
export function on(type, fn) {
  (ctx.listeners[type] ||= new Set()).add(fn);
  return () => ctx.listeners[type].delete(fn);
}
function startEvents() {
  stopEvents();
  const live = document.getElementById("live");
  const es = new EventSource(api.EVENTS_URL);
  es.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  es.onerror = () => { live.textContent = "reconnecting"; live.classList.remove("on"); };
  for (const type of ["stock", "alerts", "mode", "plans", "orders"]) {
    es.addEventListener(type, (ev) => {
      const data = JSON.parse(ev.data);
      for (const fn of ctx.listeners[type] || []) fn(data);
    });
  }
  ctx.events = es;
}
function stopEvents() {
  if (ctx.events) ctx.events.close();
  ctx.events = null;
}

// ------------------------------------------------------------------ router
let routeSeq = 0;
/** Show the page the hash names. Each page renders into a view of its own: a slow page whose hash
 * has been left meanwhile (a quick second navigation) is cleaned up, never drawn over the newer one. */
async function route() {
  const seq = ++routeSeq;
  const [name, ...rest] = (location.hash.replace(/^#\/?/, "") || "overview").split("/");
  if (!ctx.user && name !== "login") { location.hash = "#/login"; return; }
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  const page = pages[name] ? name : "overview";
  document.querySelectorAll("header nav a").forEach((a) => {
    a.classList.toggle("active", a.getAttribute("href") === `#/${page}`);
    if (a.getAttribute("href") === `#/${page}`) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  const view = h("div", { class: "view", dataset: { page } }, h("p", { class: "muted" }, "Loading…"));
  document.getElementById("page").replaceChildren(view);
  const t0 = performance.now();
  try {
    const mod = await pages[page]();
    const done = await mod.render(view, { ...ctx, args: rest.map(decodeURIComponent) });
    if (seq !== routeSeq) { if (typeof done === "function") done(); return; }
    cleanup = done;
  } catch (err) {
    if (seq !== routeSeq) return;
    if (err instanceof api.AuthError) { await signedOut(); return; }
    view.replaceChildren(h("p", { class: "error", role: "alert" }, `Could not show this page: ${err.message}`));
  }
  window.__vrRendered = { page, ms: performance.now() - t0 };
}

export async function signedIn(user, config) {
  ctx.user = user;
  ctx.config = config || await api.get("/console/config");
  document.getElementById("top").hidden = false;
  document.getElementById("who").textContent = `${user.name} (${user.role})`;
  document.getElementById("tz").textContent = timeZone;
  document.querySelectorAll("[data-role]").forEach((el) => { el.hidden = !may(el.dataset.role); });
  startEvents();
  if (location.hash.startsWith("#/login") || !location.hash) location.hash = "#/overview"; else route();
}

async function signedOut() {
  stopEvents();
  ctx.user = null;
  document.getElementById("top").hidden = true;
  location.hash = "#/login";
  route();
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api.logout(); } finally { await signedOut(); }
});
window.addEventListener("hashchange", route);

(async () => {
  // who is signed in and the console's settings in parallel (one round trip less before the first page)
  const [user, config] = await Promise.all([api.me().catch(() => null), api.get("/console/config").catch(() => null)]);
  if (user) await signedIn(user, config); else { location.hash = "#/login"; route(); }
})();
