// Overview: grid cells coloured by coverage, sites (on zoom) by owner kind and freshness, counts,
// open alerts by severity and each region's mode; kept live by the server-sent events.
import * as api from "../api.js";
import { badge, count, h, on, pct, qty, when } from "../app.js";
import { flowLayer, flowLegend, flowMaterials, mergeFlows, unplacedNote } from "../flows.js";

/** Coverage colour: red below 50 %, amber below 90 %, green from 90 %; grey without data. */
export function coverageColour(c) {
  if (c === null || c === undefined) return "#b8bec9";
  if (c < 0.5) return "#d0453b";
  if (c < 0.9) return "#e3a21a";
  return "#2e9e5b";
}
const esc = (s) => String(s).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const KIND_COLOURS = { government: "#14213d", enterprise: "#1f5fbf", ecommerce: "#7b3fbf", ngo: "#0f8b8d", household: "#c2571a" };
const SITES_FROM_ZOOM = 12;
const FRESH_COLOURS = { fresh: "#2e9e5b", stale: "#e3a21a", suspended: "#d0453b", "never reported": "#b8bec9" };

function freshness(last, status, staleAfter, now) {
  if (status === "suspended") return "suspended";
  if (last === null || last === undefined) return "never reported";
  return now - last > staleAfter ? "stale" : "fresh";
}

export async function render(root, ctx) {
  const data = await api.get("/console/overview");
  const state = { data, material: "", cells: new Map(), sites: null, siteLayer: null, map: null,
    flows: { data: null, layer: null, material: "", el: h("section", { "aria-label": "Flows" }), renderer: L.svg() } };
  const mapEl = h("div", { id: "map", role: "region", "aria-label": "Map of grid cells and sites" });
  const summary = h("div");
  root.replaceChildren(h("div", { class: "overview" }, mapEl, h("aside", { class: "side", "aria-label": "Summary" }, summary)));
  const map = L.map(mapEl, { preferCanvas: true, zoomSnap: 0.5, attributionControl: !!ctx.config.tile_url });
  if (ctx.config.tile_url) L.tileLayer(ctx.config.tile_url, { maxZoom: 19 }).addTo(map);
  state.map = map;
  drawCells(state);
  mapEl.dataset.cells = String(data.cells.length);
  const redraw = () => drawSummary(summary, state, ctx);
  redraw();
  mapEl.dataset.ready = "true";
  window.__vrReadyAt = performance.now();  // ms since navigation start: cells and summary drawn

  // Sites: loaded after the first render, drawn only when zoomed in (thousands of markers).
  api.get("/console/sites").then((s) => {
    if (state.closed) return;  // the page was left before the rows came
    state.sites = new Map(s.rows.map((r) => [r[0], r]));
    drawSites(state);
    window.__vrSitesAt = performance.now();
  });
  map.on("zoomend moveend", () => drawSites(state));
  const loadFlows = () => readFlows(state).catch(() => {});
  let flowTimer = null;
  const flowsLater = () => { clearTimeout(flowTimer); flowTimer = setTimeout(loadFlows, 500); };
  loadFlows();
  const offs = [
    on("plans", flowsLater), on("orders", flowsLater),
    on("stock", (ev) => { applyStock(state, ev); recordLatency(ev.readings); mapEl.dataset.lastEvent = String(ev.sent_at); redraw(); }),
    on("alerts", (counts) => { state.data.alerts = counts; redraw(); }),
    on("mode", (regions) => { state.data.regions = regions; redraw(); flowsLater(); }),
  ];
  // freshness moves with the clock: recount and redraw the markers now and then
  const tick = setInterval(() => { if (state.sites) { state.data.counts = recount(state); redraw(); drawSites(state); } }, 15000);
  return () => { state.closed = true; offs.forEach((off) => off()); clearInterval(tick); clearTimeout(flowTimer); map.remove(); };
}

function drawCells(state) {
  const { map, data } = state;
  const layer = L.layerGroup().addTo(map);
  const renderer = L.svg();  // cells as SVG paths (few, and addressable); sites on the canvas
  for (const c of data.cells) {
    const rect = L.rectangle(c.bounds, { renderer, className: "vr-cell", weight: 1, color: "#334",
      fillOpacity: 0.55, fillColor: coverageColour(c.coverage) });
    rect.bindTooltip(() => cellTooltip(state.cells.get(c.cell).data, state.material, data.materials));
    rect.on("click", () => { location.hash = `#/alerts/cell/${encodeURIComponent(c.cell)}`; });
    rect.addTo(layer);
    state.cells.set(c.cell, { data: c, rect });
  }
  if (data.cells.length) map.fitBounds(L.latLngBounds(data.cells.flatMap((c) => c.bounds)), { padding: [10, 10], animate: false });
  else map.setView([30.59, 114.3], 10);
}

/** The latest plan's flows of every region in emergency, over the cells, with their legend aside. */
async function readFlows(state) {
  const running = state.data.regions.filter((r) => r.mode === "emergency" && r.emergency_id);
  const docs = await Promise.all(running.map((r) => api.get(`/console/emergencies/${encodeURIComponent(r.emergency_id)}/flows`)));
  if (state.closed) return;
  state.flows.data = docs.length ? mergeFlows(docs) : null;
  drawFlows(state);
}

function drawFlows(state) {
  const f = state.flows;
  if (f.layer) { state.map.removeLayer(f.layer); f.layer = null; }
  if (!f.data) { f.el.replaceChildren(); return; }
  const mats = flowMaterials(f.data);
  if (!mats.some((m) => m.material_id === f.material)) f.material = mats.length ? mats[0].material_id : "";
  if (f.material) f.layer = flowLayer(f.data, f.material, f.renderer).addTo(state.map);
  const select = h("select", { "aria-label": "Flows of material" }, mats.map((m) =>
    h("option", { value: m.material_id, selected: m.material_id === f.material }, `${m.material_id} (${m.unit})`)));
  select.addEventListener("change", () => { f.material = select.value; drawFlows(state); });
  const periods = f.data.periods.map((p) => `${p.emergency_id} period ${count(p.period)}`).join(", ");
  f.el.replaceChildren(h("h2", {}, "Flows of the current plans"),
    h("p", { class: "muted" }, periods || "no plan yet"),
    mats.length ? h("label", {}, "Material ", select) : null, f.material ? flowLegend(f.data, f.material) : null,
    unplacedNote(f.data) || "");
}

function drawSites(state) {
  const { map } = state;
  if (!state.sites) return;
  if (state.siteLayer) { map.removeLayer(state.siteLayer); state.siteLayer = null; }
  if (map.getZoom() < SITES_FROM_ZOOM && state.sites.size > 400) return;
  const now = Date.now() / 1000;
  const layer = L.layerGroup();
  const bounds = map.getBounds().pad(0.2);
  for (const r of state.sites.values()) {
    if (!bounds.contains([r[3], r[4]])) continue;
    const f = freshness(r[7], r[5], state.data.stale_after_s, now);
    const m = L.circleMarker([r[3], r[4]], { radius: r[2] === "centralized" ? 7 : 4, weight: 2,
      color: KIND_COLOURS[r[1]] || "#333", fillColor: FRESH_COLOURS[f], fillOpacity: 0.9 });
    m.bindTooltip(esc(`${r[0]} · ${r[1]} ${r[2]} · ${f}${r[7] ? " · last reading " + when(r[7]) : ""}`));
    m.on("click", () => { location.hash = `#/site/${encodeURIComponent(r[0])}`; });
    layer.addLayer(m);
  }
  state.siteLayer = layer.addTo(map);
}

function recolour(state) {
  for (const { data: c, rect } of state.cells.values()) {
    const cov = state.material ? (c.materials[state.material] || {}).coverage : c.coverage;
    rect.setStyle({ fillColor: coverageColour(cov) });
  }
}

/** A stock event: changed cells' coverage, sites' last reading, counts. */
function applyStock(state, ev) {
  for (const [cell, fig] of Object.entries(ev.cells)) {
    const entry = state.cells.get(cell);
    if (entry) { entry.data.coverage = fig.coverage; entry.data.materials = fig.materials; }
  }
  if (state.sites) for (const [site, last] of Object.entries(ev.sites)) {
    const r = state.sites.get(site);
    if (r) r[7] = Math.max(r[7] || 0, last);
  }
  recolour(state);
  state.data.counts = recount(state);
}

/** Reading time -> drawn on the map, per reading (the benchmark and the tests read it; last 5,000 kept). */
function recordLatency(readings) {
  const drawn = Date.now();
  const lat = (window.__vrStockLatencyMs ||= []);
  for (const r of readings) lat.push(drawn - Date.parse(r[4]));
  if (lat.length > 5000) lat.splice(0, lat.length - 5000);
  window.__vrStockDrawn = (window.__vrStockDrawn || 0) + readings.length;
}

function recount(state) {
  const staleAfter = state.data.stale_after_s;
  if (!state.sites) return state.data.counts;
  const now = Date.now() / 1000;
  const c = { sites: state.sites.size, reporting: 0, stale: 0, never: 0, suspended: 0 };
  for (const r of state.sites.values()) {
    if (r[5] === "suspended") c.suspended += 1;
    if (r[7] === null || r[7] === undefined) c.never += 1;
    else if (now - r[7] > staleAfter) c.stale += 1;
    else c.reporting += 1;
  }
  return c;
}

function cellTooltip(c, material, materials) {
  const unit = Object.fromEntries(materials.map((m) => [m.material_id, m.unit]));
  const lines = Object.entries(c.materials)
    .filter(([m]) => !material || m === material)
    .map(([m, f]) => esc(`${m}: ${qty(f.available, unit[m])} of ${qty(f.reference_qty, unit[m])} ${f.reference} (${pct(f.coverage)})`));
  return `<b>${esc(c.cell)}</b> · ${count(c.sites)} sites · coverage ${pct(material ? (c.materials[material] || {}).coverage : c.coverage)}<br>${lines.join("<br>")}`;
}

function drawSummary(el, state, ctx) {
  const d = state.data;
  const select = h("select", { id: "coverage-material", "aria-label": "Coverage of material" },
    h("option", { value: "" }, "all materials"),
    d.materials.map((m) => h("option", { value: m.material_id, selected: m.material_id === state.material }, `${m.name} (${m.unit})`)));
  select.addEventListener("change", () => { state.material = select.value; recolour(state); });
  const stat = (label, value, id) => h("div", { class: "stat", id }, h("b", {}, count(value)), label);
  el.replaceChildren(
    h("h1", {}, "Overview"),
    h("section", { "aria-label": "Regions" }, h("h2", {}, "Regions"),
      d.regions.map((r) => h("p", { "data-region": r.region }, h("b", {}, r.region), " ", badge(r.mode),
        r.mode === "emergency" ? ` period ${count(r.period)} of ${count(r.periods)}` : ""))),
    state.flows.el,
    h("section", { "aria-label": "Sites" }, h("h2", {}, "Sites"),
      h("div", { class: "stats" }, stat("reporting", d.counts.reporting, "count-reporting"), stat("stale", d.counts.stale, "count-stale"),
        stat("never reported", d.counts.never, "count-never"), stat("suspended", d.counts.suspended, "count-suspended")),
      h("p", { class: "muted" }, `${count(d.counts.sites)} sites in ${count(d.cells.length)} grid cells; stale = no reading for ${count(d.stale_after_s)} s`)),
    h("section", { "aria-label": "Open alerts" }, h("h2", {}, "Open alerts"),
      h("p", {}, ["critical", "warning", "info"].map((s) => h("a", { href: "#/alerts", style: "margin-right:.6rem", "aria-label": `${d.alerts[s] || 0} ${s} alerts` },
        badge(`${count(d.alerts[s] || 0)} ${s}`, s))))),
    h("section", { "aria-label": "Coverage" }, h("h2", {}, "Coverage"),
      h("label", {}, "Colour cells by ", select),
      h("div", { class: "legend" },
        [[null, "no data"], [0.2, "below 50 %"], [0.7, "50 – 90 %"], [1, "90 % or more"]].map(([c, t]) =>
          h("div", {}, h("span", { class: "swatch", style: `background:${coverageColour(c)}` }), t)),
        h("p", { class: "muted" }, "coverage = (reported − reserved) ÷ safety level (or contracted where no safety level is set)"))),
    h("section", { "aria-label": "Site legend" }, h("h2", {}, "Sites on the map"),
      h("div", { class: "legend" },
        Object.entries(FRESH_COLOURS).map(([f, c]) => h("div", {}, h("span", { class: "swatch", style: `background:${c};border-radius:50%` }), f)),
        h("div", {}, "ring: ", Object.entries(KIND_COLOURS).map(([k, c]) => h("span", { style: `color:${c};margin-right:.4rem;font-weight:600` }, k))),
        h("p", { class: "muted" }, "larger circles are depots; sites are drawn when zoomed in (all of them in small registries)"))));
}
