// Site: owner, contracts, trust, audits, alerts, live stock and a 30-day hourly stock chart.
import * as api from "../api.js";
import { badge, count, h, money, on, pct, qty, table, when } from "../app.js";

export async function render(root, ctx) {
  const id = ctx.args[0];
  if (!id) { root.replaceChildren(h("p", {}, "Pick a site on the map (zoom in) or in an order or alert.")); return; }
  const [site, contracts, alerts, audits, history] = await Promise.all([
    api.get(`/sites/${encodeURIComponent(id)}`), api.get("/contracts", { site_id: id, limit: 200 }),
    api.get("/alerts", { site_id: id, limit: 50 }), api.get("/audits", { site_id: id, limit: 20 }),
    api.get(`/console/sites/${encodeURIComponent(id)}/history`, { days: 30 })]);
  const stockBody = h("tbody");
  const stockCells = new Map();
  for (const m of site.materials) {
    const qtyCell = h("td", { class: "num", "data-material": m.material_id }, qty(m.reported_qty, m.unit));
    const atCell = h("td", {}, when(m.reported_at));
    stockCells.set(m.material_id, { qtyCell, atCell, unit: m.unit });
    stockBody.append(h("tr", {}, h("td", {}, m.name), h("td", { class: "num" }, qty(m.contracted_qty, m.unit)), qtyCell, atCell));
  }
  const charts = h("div", { class: "row" });
  root.replaceChildren(
    h("h1", {}, `Site ${site.site_id}: ${site.name}`),
    h("div", { class: "row" },
      h("section", { class: "card grow", "aria-label": "Owner" }, h("h2", {}, "Owner"),
        h("p", {}, `${site.owner_id} (${site.owner_kind}), ${site.tier} site in ${site.region} / ${site.grid_cell}`),
        h("p", {}, "Status ", badge(site.status, site.status === "active" ? "normal" : "critical"), ` · trust ${pct(site.trust)}`),
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
    h("section", { class: "card", "aria-label": "Audits" }, h("h2", {}, "Audits"),
      audits.items.length ? table([{ label: "When", cell: (a) => when(a.at) }, { label: "Auditor", cell: (a) => a.auditor },
        { label: "Result", cell: (a) => badge(a.passed ? "passed" : "failed", a.passed ? "normal" : "critical") },
        { label: "Missing", num: true, cell: (a) => pct(a.shortfall_share) },
        { label: "Trust", cell: (a) => `${pct(a.trust_before)} → ${pct(a.trust_after)}` }], audits.items) : h("p", { class: "muted" }, "No audit yet.")),
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
      axes: [{}, { values: (u, v) => v.map((x) => qty(x)), size: 60 }] }, data, box);
    plots.set(m, { plot, data });
  }
  if (!plots.size) el.append(h("p", { class: "muted" }, "No readings in the last 30 days."));
  return plots;
}
