// Site: owner, contracts, trust, audits, alerts, live stock and a 30-day hourly stock chart; for a
// supervisor, the controls to record an audit (its findings shown at once) and to suspend / reinstate.
import * as api from "../api.js";
import { badge, count, h, may, money, on, pct, qty, table, when } from "../app.js";

export async function render(root, ctx) {
  const id = ctx.args[0];
  if (!id) { root.replaceChildren(h("p", {}, "Pick a site on the map (zoom in) or in an order or alert.")); return; }
  const [site, contracts, alerts, audits, history, changes] = await Promise.all([
    api.get(`/sites/${encodeURIComponent(id)}`), api.get("/contracts", { site_id: id, limit: 200 }),
    api.get("/alerts", { site_id: id, limit: 50 }), api.get("/audits", { site_id: id, limit: 20 }),
    api.get(`/console/sites/${encodeURIComponent(id)}/history`, { days: 30 }),
    api.get(`/console/sites/${encodeURIComponent(id)}/status-changes`)]);
  const stockBody = h("tbody");
  const stockCells = new Map();
  for (const m of site.materials) {
    const qtyCell = h("td", { class: "num", "data-material": m.material_id }, qty(m.reported_qty, m.unit));
    const atCell = h("td", {}, when(m.reported_at));
    stockCells.set(m.material_id, { qtyCell, atCell, unit: m.unit });
    stockBody.append(h("tr", {}, h("td", {}, m.name), h("td", { class: "num" }, qty(m.contracted_qty, m.unit)), qtyCell, atCell));
  }
  const charts = h("div", { class: "row" });
  const standing = h("div", { "aria-label": "Status and trust" });
  const auditList = h("div");
  const shown = { site, audits: audits.items, changes: changes.items };
  const refresh = async (change) => {
    const [s, a, c] = await Promise.all([api.get(`/sites/${encodeURIComponent(id)}`), api.get("/audits", { site_id: id, limit: 20 }),
      api.get(`/console/sites/${encodeURIComponent(id)}/status-changes`)]);
    Object.assign(shown, { site: s, audits: a.items, changes: withChange(c.items, change) });
    drawStanding(standing, shown, refresh);
    drawAudits(auditList, shown.audits);
  };
  drawStanding(standing, shown, refresh);
  drawAudits(auditList, shown.audits);
  const auditForm = may("supervisor") ? auditControls(site, refresh) : null;
  root.replaceChildren(
    h("h1", {}, `Site ${site.site_id}: ${site.name}`),
    h("div", { class: "row" },
      h("section", { class: "card grow", "aria-label": "Owner" }, h("h2", {}, "Owner"),
        h("p", {}, `${site.owner_id} (${site.owner_kind}), ${site.tier} site in ${site.region} / ${site.grid_cell}`),
        standing,
        h("p", { class: "muted" }, `${site.lat.toFixed(4)}°, ${site.lon.toFixed(4)}°`)),
      h("section", { class: "card grow", "aria-label": "Stock" }, h("h2", {}, "Stock now"),
        h("table", { "aria-label": "Stock per material" }, h("thead", {}, h("tr", {}, ["Material", "Contracted", "Reported", "Reading time"].map((c) => h("th", { scope: "col" }, c)))), stockBody))),
    h("section", { class: "card", "aria-label": "Stock history" }, h("h2", {}, "Stock, last 30 days (hourly)"), charts),
    h("section", { class: "card", "aria-label": "Contracts" }, h("h2", {}, "Contracts"),
      table([{ label: "Contract", cell: (c) => c.contract_id }, { label: "Material", cell: (c) => c.material_id },
        { label: "Committed", num: true, cell: (c) => qty(c.committed_qty, c.unit) },
        { label: "Valid", cell: (c) => `${c.valid_from} – ${c.valid_to}` },
        { label: "Standby fee / unit-day", num: true, cell: (c) => money(c.standby_fee_minor_per_unit_day, c.currency) },
        { label: "Call-off price / unit", num: true, cell: (c) => money(c.call_off_price_minor_per_unit, c.currency) },
        { label: "Penalty / unit", num: true, cell: (c) => money(c.penalty_minor_per_unit, c.currency) }], contracts.items)),
    h("section", { class: "card", "aria-label": "Audits" }, h("h2", {}, "Audits"), auditForm, auditList),
    h("section", { class: "card", "aria-label": "Alerts of this site" }, h("h2", {}, "Alerts"),
      alerts.items.length ? table([{ label: "Severity", cell: (a) => badge(a.severity) }, { label: "Kind", cell: (a) => a.kind },
        { label: "Message", cell: (a) => a.message }, { label: "Raised", cell: (a) => when(a.at) },
        { label: "Resolved", cell: (a) => when(a.resolved_at) }], alerts.items) : h("p", { class: "muted" }, "No alerts.")));
  const plots = drawCharts(charts, history);
  const off = on("stock", (ev) => {
    for (const [s, m, q, unit, ts] of ev.readings) {
      if (s !== id) continue;
      const c = stockCells.get(m);
      if (c) { c.qtyCell.textContent = qty(q, c.unit); c.atCell.textContent = when(ts); }
      const p = plots.get(m);
      if (p) { p.data[0].push(Date.parse(ts) / 1000); p.data[1].push(q); p.plot.setData(p.data); }
    }
  });
  return () => { off(); for (const p of plots.values()) p.plot.destroy(); };
}

function drawCharts(el, history) {
  const plots = new Map();
  const width = Math.max(280, Math.min(520, (el.clientWidth || 900) / 2 - 20));
  for (const [m, s] of Object.entries(history.series)) {
    const unit = history.units[m] || "";
    const box = h("figure", { "aria-label": `Stock of ${m}, ${unit}`, style: "margin:0" }, h("figcaption", {}, `${m} (${unit})`));
    el.append(box);
    const data = [s.t.slice(), s.qty.slice()];
    const plot = new uPlot({ width, height: 160, legend: { show: false },
      series: [{}, { label: m, stroke: "#1f5fbf", width: 2, points: { show: s.t.length < 3 } }],
      axes: [{}, { values: (u, v) => v.map((x) => qty(x)), size: 72 }] }, data, box);
    plots.set(m, { plot, data });
  }
  if (!plots.size) el.append(h("p", { class: "muted" }, "No readings in the last 30 days."));
  return plots;
}

/** Status, trust and who suspended / reinstated the site and why; a supervisor's suspend / reinstate control. */
function drawStanding(el, shown, refresh) {
  const { site, changes } = shown;
  el.replaceChildren(h("div", {},
    h("p", {}, "Status ", h("span", { id: "site-status" }, badge(site.status, site.status === "active" ? "normal" : "critical")),
      " · trust ", h("b", { id: "site-trust" }, pct(site.trust)),
      h("span", { class: "muted" }, " (share of reported stock the planner counts on)")),
    changes.length ? h("ul", { class: "timeline", "aria-label": "Status changes" }, changes.map((c) =>
      h("li", {}, `${when(c.at)}: ${c.status === "suspended" ? "suspended" : "reinstated"} by ${c.actor}${c.reason ? ": " + c.reason : ""}`))) : null,
    may("supervisor") ? statusControl(site, refresh) : null));
}

/** The server's answer to a suspend / reinstate is shown even before the audit trail (written as the
 * request ends) has its row. */
function withChange(changes, change) {
  if (!change) return changes;
  const top = changes[0];
  const there = top && top.status === change.status && top.actor === change.actor && top.reason === change.reason;
  return there ? changes : [change, ...changes];
}

function statusControl(site, refresh) {
  const suspending = site.status !== "suspended";
  const verb = suspending ? "Suspend" : "Reinstate";
  const reason = h("input", { "aria-label": `Reason to ${verb.toLowerCase()}`, placeholder: `reason to ${verb.toLowerCase()}`, size: 28, maxlength: 500 });
  const btn = h("button", { type: "button", class: suspending ? "danger" : "" }, `${verb} site`);
  const msg = h("span", { role: "status" });
  btn.addEventListener("click", async () => {
    if (!reason.value.trim()) { msg.textContent = " Give a reason."; msg.className = "error"; return; }
    btn.disabled = true;
    try {
      const out = await api.post(`/sites/${encodeURIComponent(site.site_id)}/${suspending ? "suspend" : "reinstate"}`, { reason: reason.value.trim() });
      await refresh({ at: new Date().toISOString(), actor: out.by, status: out.status, reason: out.reason });
    } catch (err) { msg.textContent = ` ${err.message}`; msg.className = "error"; btn.disabled = false; }
  });
  return h("p", { class: "filters", "aria-label": `${verb} this site` }, reason, btn, msg);
}

function drawAudits(el, audits) {
  el.replaceChildren(audits.length ? table([{ label: "When", cell: (a) => when(a.at) }, { label: "Auditor", cell: (a) => a.auditor },
    { label: "Result", cell: (a) => badge(a.passed ? "passed" : "failed", a.passed ? "normal" : "critical") },
    { label: "Missing", num: true, cell: (a) => pct(a.shortfall_share) },
    { label: "Trust", cell: (a) => `${pct(a.trust_before)} → ${pct(a.trust_after)}` },
    { label: "Status", cell: (a) => (a.status_before === a.status_after ? a.status_after : `${a.status_before} → ${a.status_after}`) }], audits)
    : h("p", { class: "muted" }, "No audit yet."));
}

/** Record an audit: what was counted per material (in its unit); the findings are shown at once. */
function auditControls(site, refresh) {
  const inputs = site.materials.map((m) => ({ m, input: h("input", { type: "number", min: 0, step: "any", size: 10,
    "aria-label": `Counted ${m.name} (${m.unit})`, placeholder: `reported ${qty(m.reported_qty, m.unit)}` }) }));
  const msg = h("div", { role: "status", "aria-label": "Audit findings" });
  const submit = h("button", { type: "submit" }, "Record audit");
  const form = h("form", { class: "filters", "aria-label": "Record an audit" },
    inputs.map(({ m, input }) => h("label", {}, `${m.name} (${m.unit})`, input)), submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const counts = inputs.filter(({ input }) => input.value !== "")
      .map(({ m, input }) => ({ material: m.material_id, counted_qty: Number(input.value), unit: m.unit }));
    if (!counts.length) { msg.replaceChildren(h("p", { class: "error" }, "Enter what was counted for at least one material.")); return; }
    submit.disabled = true;
    try {
      const r = await api.post("/audits", { site_id: site.site_id, counts });
      msg.replaceChildren(auditFindings(r, counts, site));
      inputs.forEach(({ input }) => { input.value = ""; });
      await refresh();
    } catch (err) { msg.replaceChildren(h("p", { class: "error" }, err.message)); }
    finally { submit.disabled = false; }
  });
  return h("div", { class: "card", "aria-label": "Audit controls" }, h("h3", {}, "Record an audit"),
    h("p", { class: "muted" }, "What the auditor counted on site, per material in its unit; compared with the reported stock."), form, msg);
}

function auditFindings(r, counts, site) {
  const unit = Object.fromEntries(site.materials.map((m) => [m.material_id, m.unit]));
  return h("p", { class: r.passed ? "" : "error", "data-audit": r.audit_id },
    `Audit ${r.audit_id}${r.duplicate ? " (recorded before, nothing changed)" : ""}: `, badge(r.passed ? "passed" : "failed", r.passed ? "normal" : "critical"),
    ` · ${pct(r.shortfall_share)} of the reported units missing · trust ${pct(r.trust_before)} → ${pct(r.trust_after)}`,
    ` · status ${r.status_before} → ${r.status_after}`,
    r.alerts.length ? ` · ${count(r.alerts.length)} discrepancy alert${r.alerts.length === 1 ? "" : "s"} raised` : "",
    h("br"), h("span", { class: "muted" }, `counted: ${counts.map((c) => `${c.material} ${qty(c.counted_qty, unit[c.material])}`).join(", ")}`));
}
