// Emergency: declare (with the ideal shortage shown before anything is published), then live per
// period: plan status and gap, shortage per material against the ideal, orders by status; end.
import * as api from "../api.js";
import { badge, count, h, may, on, pct, qty, seconds, table, when } from "../app.js";
import { flowLayer, flowLegend, flowMaterials, unplacedNote } from "../flows.js";

const ORDER_STATUSES = ["open", "accepted", "in_transit", "delivered", "failed", "cancelled", "closed"];

export async function render(root, ctx) {
  const body = h("div");
  root.replaceChildren(h("h1", {}, "Emergency"), body);
  const maps = new Map();  // emergency id -> its flow map, kept across redraws (no flicker, zoom kept)
  maps.closed = false;     // set when the page is left: a draw still in flight then touches no map
  let timer = null;
  const refresh = () => { clearTimeout(timer); timer = setTimeout(() => draw(body, ctx, maps).catch(showError(body)), 300); };
  await draw(body, ctx, maps);
  const offs = [on("mode", refresh), on("plans", refresh), on("orders", refresh)];
  return () => {
    maps.closed = true;
    offs.forEach((off) => off());
    clearTimeout(timer);
    for (const m of maps.values()) if (m.map) m.map.remove();
  };
}

const showError = (el) => (err) => el.prepend(h("p", { class: "error", role: "alert" }, err.message));

async function draw(el, ctx, maps) {
  const [overview, emergencies] = await Promise.all([api.get("/console/overview"), api.get("/emergencies", { limit: 20 })]);
  const open = emergencies.items.filter((e) => !e.ended_at);
  const parts = [];
  parts.push(h("section", { "aria-label": "Regions" }, h("h2", {}, "Regions"),
    table([{ label: "Region", cell: (r) => r.region }, { label: "Mode", cell: (r) => badge(r.mode) },
      { label: "Period", cell: (r) => (r.mode === "emergency" ? `${count(r.period)} of ${count(r.periods)}` : "–") }], overview.regions)));
  const free = overview.regions.filter((r) => r.mode === "normal").map((r) => r.region);
  if (may("operator") && free.length) parts.push(declareForm(free, ctx));
  for (const e of open) parts.push(await running(e, ctx, await flowsSection(e, overview.cells, maps)));
  const ended = emergencies.items.filter((e) => e.ended_at);
  if (ended.length) parts.push(h("section", { "aria-label": "Ended emergencies" }, h("h2", {}, "Ended"),
    table([{ label: "Emergency", cell: (e) => e.emergency_id }, { label: "Region", cell: (e) => e.region },
      { label: "Declared", cell: (e) => `${when(e.declared_at)} by ${e.declared_by}` },
      { label: "Ended", cell: (e) => `${when(e.ended_at)} by ${e.ended_by || "–"}` },
      { label: "Orders", num: true, cell: (e) => count(e.orders) }], ended)));
  if (maps.closed) return;
  el.replaceChildren(...parts);
  for (const [id, entry] of maps) {
    if (!open.some((e) => e.emergency_id === id)) { if (entry.map) entry.map.remove(); maps.delete(id); continue; }
    showFlows(entry);
  }
}

function field(label, input) {
  return h("label", {}, label, input);
}

function declareForm(regions, ctx) {
  const region = h("select", { name: "region", "aria-label": "Region" }, regions.map((r) => h("option", { value: r }, r)));
  const pack = h("input", { name: "scenario", value: "wuhan", "aria-label": "Demand pack", size: 10 });
  const file = h("input", { type: "file", name: "demand_file", accept: ".yaml,.yml,.json", "aria-label": "Demand file (instead of a pack)" });
  const periods = h("input", { type: "number", name: "periods", value: 4, min: 1, max: 366, "aria-label": "Periods" });
  const length = h("input", { type: "number", name: "period_length_s", value: 60, min: 1, "aria-label": "Period length (seconds)" });
  const reason = h("input", { name: "reason", value: "", required: true, "aria-label": "Reason", size: 30 });
  const msg = h("p", { role: "status" });
  const check = h("button", { type: "submit" }, "Declare emergency…");
  const form = h("form", { class: "card filters", "aria-label": "Declare an emergency" },
    field("Region", region), field("Demand pack", pack), field("or demand file", file), field("Periods", periods),
    field("Period length (s)", length), field("Reason", reason), check, msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    msg.textContent = "Checking…";
    msg.className = "";
    try {
      let source = { scenario: pack.value.trim() };
      if (file.files.length) {
        const text = await file.files[0].text();
        const res = await fetch(`${api.BASE}/demand-files`, { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": file.files[0].name.endsWith(".json") ? "application/json" : "application/yaml",
            "X-CSRF-Token": (document.cookie.match(/(?:^|;\s*)vr_csrf=([^;]+)/) || [])[1] || "" }, body: text });
        const out = await res.json();
        if (!res.ok) throw new Error(out.error ? out.error.message : res.statusText);
        source = { demand_file_id: out.demand_file_id };
      }
      const decl = { region: region.value, reason: reason.value.trim(), periods: Number(periods.value),
        period_length_s: Number(length.value), ...source };
      const preview = await api.post("/console/declare-preview", { region: decl.region, periods: decl.periods,
        demand_source: source.scenario || source.demand_file_id });
      msg.textContent = "";
      confirmDeclare(decl, preview, msg);
    } catch (err) {
      msg.textContent = err.message;
      msg.className = "error";
    }
  });
  return h("section", { "aria-label": "Declare" }, h("h2", {}, "Declare an emergency"), form);
}

function idealTable(materials) {
  const rows = Object.entries(materials).map(([m, f]) => ({ m, ...f }));
  return table([{ label: "Material", cell: (r) => r.m },
    { label: "Demand over the horizon", num: true, cell: (r) => qty(r.demand, r.unit) },
    { label: "Centres' usable stock", num: true, cell: (r) => qty(r.centres_usable, r.unit) },
    { label: "Live supply available", num: true, cell: (r) => qty(r.live_available, r.unit) },
    { label: "Ideal shortage", num: true, cell: (r) => `${qty(r.ideal_shortage, r.unit)} (${pct(r.ideal_shortage_rate)})` }], rows);
}

function confirmDeclare(decl, preview, msg) {
  const publish = h("button", { type: "button", class: "danger" }, "Publish declaration");
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const dlg = h("dialog", { "aria-label": "Confirm the declaration" },
    h("h2", {}, `Declare an emergency in ${decl.region}?`),
    h("p", {}, `${count(decl.periods)} periods of ${seconds(decl.period_length_s)}; demand: ${decl.scenario || decl.demand_file_id}; reason: ${decl.reason}`),
    h("p", {}, "Ideal shortage: what no plan can cover even using every unit available now. Nothing is published until you confirm."),
    idealTable(preview.materials),
    preview.notes.length ? h("ul", { class: "muted" }, preview.notes.map((n) => h("li", {}, n))) : null,
    h("p", { class: "row" }, publish, cancel));
  document.body.append(dlg);
  dlg.showModal();
  cancel.addEventListener("click", () => { dlg.close(); dlg.remove(); msg.textContent = "Not declared."; });
  publish.addEventListener("click", async () => {
    publish.disabled = true;
    try {
      const out = await api.post("/emergencies", { ...decl, wait_s: 10 });
      msg.textContent = out.verdict === "rejected" ? `Rejected by the dispatcher: ${out.error}` : `Declared (${out.verdict}${out.emergency_id ? ": " + out.emergency_id : ""}).`;
      msg.className = out.verdict === "rejected" ? "error" : "";
    } catch (err) {
      msg.textContent = err.message;
      msg.className = "error";
    } finally {
      dlg.close();
      dlg.remove();
    }
  });
}

async function running(e, ctx, flows) {
  const [plans, orders, ideal] = await Promise.all([
    api.get(`/emergencies/${encodeURIComponent(e.emergency_id)}/plans`, { limit: 1000 }),
    api.all("/orders", { emergency_id: e.emergency_id }),
    api.get(`/console/emergencies/${encodeURIComponent(e.emergency_id)}/ideal`)]);
  const elapsed = (Date.now() - new Date(e.declared_at).getTime()) / 1000;
  const period = Math.min(e.periods, Math.max(1, Math.floor(elapsed / e.period_length_s) + 1));
  const byPeriod = new Map();
  for (const o of orders) {
    const p = byPeriod.get(o.period) || Object.fromEntries(ORDER_STATUSES.map((s) => [s, 0]));
    p[o.status] += 1;
    byPeriod.set(o.period, p);
  }
  const end = may("operator") ? endButton(e) : null;
  const materials = [...new Set(plans.items.flatMap((p) => Object.keys(p.materials || {})))].sort();
  return h("section", { class: "card", "aria-label": `Emergency ${e.emergency_id}`, "data-emergency": e.emergency_id },
    h("h2", {}, `${e.region}: ${e.emergency_id} `, badge("emergency")),
    h("p", {}, `Declared ${when(e.declared_at)} by ${e.declared_by} (${e.reason}); period ${count(period)} of ${count(e.periods)}, each ${seconds(e.period_length_s)}; demand ${e.demand_source}.`),
    end,
    h("h3", {}, "Plans per period"),
    table([{ label: "Period", num: true, cell: (p) => count(p.period) },
      { label: "Plan status", cell: (p) => badge(p.status) },
      { label: "Gap", num: true, cell: (p) => (p.gap === null ? "–" : pct(p.gap)) },
      { label: "Solve time", num: true, cell: (p) => seconds(p.solve_seconds) },
      { label: "Orders", num: true, cell: (p) => count(p.orders) },
      ...materials.map((m) => ({ label: `${m} short`, num: true, cell: (p) => {
        const f = (p.materials || {})[m];
        return f ? `${qty(f.planned_shortage, f.unit)} (${pct(f.shortage_rate)})` : "–";
      } }))], plans.items, "shortage = planned shortage of what was due in the period (with backlog)"),
    flows,
    h("h3", {}, "Shortage against the ideal"),
    ideal.materials && Object.keys(ideal.materials).length ? idealVsPlanned(ideal.materials, plans.items) : h("p", { class: "muted" }, "No plan yet."),
    h("h3", {}, "Orders by status"),
    table([{ label: "Period", num: true, cell: (r) => count(r[0]) },
      ...ORDER_STATUSES.map((s) => ({ label: s.replace("_", " "), num: true, cell: (r) => count(r[1][s]) }))],
      [...byPeriod.entries()].sort((a, b) => a[0] - b[0]), `${count(orders.length)} orders`),
    h("p", {}, h("a", { href: `#/orders/${encodeURIComponent(e.emergency_id)}` }, "All orders of this emergency")));
}

function idealVsPlanned(ideal, plans) {
  const rows = Object.entries(ideal).map(([m, f]) => {
    let short = 0, due = 0;
    for (const p of plans) {
      const x = (p.materials || {})[m];
      if (x) { short = x.planned_shortage; due = x.due_with_backlog; }
    }
    return { m, ...f, short, due };
  });
  return table([{ label: "Material", cell: (r) => r.m },
    { label: "Demand (horizon)", num: true, cell: (r) => qty(r.demand, r.unit) },
    { label: "Ideal shortage", num: true, cell: (r) => `${qty(r.ideal_shortage, r.unit)} (${pct(r.ideal_shortage_rate)})` },
    { label: "Latest plan: short of due", num: true, cell: (r) => `${qty(r.short, r.unit)} of ${qty(r.due, r.unit)}` }], rows,
  "ideal = demand − centres' usable stock − live supply the first plan saw, if every unit were used");
}

function endButton(e) {
  const reason = h("input", { "aria-label": "Reason to end", placeholder: "reason to end", size: 24 });
  const btn = h("button", { type: "button", class: "danger" }, "End emergency");
  const msg = h("span", { role: "status" });
  btn.addEventListener("click", async () => {
    if (!reason.value.trim()) { msg.textContent = " Give a reason."; return; }
    btn.disabled = true;
    try {
      const out = await api.post(`/emergencies/${encodeURIComponent(e.emergency_id)}/end`, { reason: reason.value.trim(), wait_s: 10 });
      msg.textContent = ` End ${out.verdict}.`;
    } catch (err) { msg.textContent = ` ${err.message}`; btn.disabled = false; }
  });
  return h("p", { class: "filters" }, reason, btn, msg);
}

/** The flows of the emergency's latest plan: a map (kept across redraws) and its legend. */
async function flowsSection(e, cells, maps) {
  const data = await api.get(`/console/emergencies/${encodeURIComponent(e.emergency_id)}/flows`);
  let entry = maps.get(e.emergency_id);
  if (!entry) {
    entry = { id: e.emergency_id, region: e.region, cells, map: null, layer: null, material: "", fitted: false,
      mapEl: h("div", { class: "flow-map", role: "region", "aria-label": `Flows of ${e.emergency_id} on the map` }),
      select: h("select", { "aria-label": "Flows of material" }), side: h("div"), title: h("h3") };
    entry.select.addEventListener("change", () => { entry.material = entry.select.value; showFlows(entry); });
    maps.set(e.emergency_id, entry);
  }
  entry.data = data;
  const mats = flowMaterials(data);
  if (!mats.some((m) => m.material_id === entry.material)) entry.material = mats.length ? mats[0].material_id : "";
  entry.select.replaceChildren(...mats.map((m) => h("option", { value: m.material_id, selected: m.material_id === entry.material },
    `${m.material_id} (${m.unit})`)));
  entry.title.textContent = data.plan_id ? `Flows of period ${count(data.period)}'s plan` : "Flows (no plan yet)";
  return h("section", { "aria-label": `Flows of ${e.emergency_id}` }, entry.title,
    h("div", { class: "flows" }, entry.mapEl, h("div", {}, h("label", {}, "Material ", entry.select), entry.side)));
}

/** (Re)draw one emergency's flows once its map element is in the page (Leaflet needs its size). */
function showFlows(entry) {
  if (!entry.map) {
    entry.map = L.map(entry.mapEl, { zoomSnap: 0.25, attributionControl: false });
    const region = entry.cells.filter((c) => c.region === entry.region);
    for (const c of region) L.rectangle(c.bounds, { weight: 1, color: "#99a", fillOpacity: 0.08, fillColor: "#99a", interactive: false }).addTo(entry.map);
    const all = region.flatMap((c) => c.bounds);
    if (all.length) entry.map.fitBounds(L.latLngBounds(all), { padding: [10, 10] }); else entry.map.setView([30.59, 114.3], 10);
  } else entry.map.invalidateSize();
  if (entry.layer) entry.map.removeLayer(entry.layer);
  entry.layer = entry.material ? flowLayer(entry.data, entry.material).addTo(entry.map) : null;
  if (entry.layer && !entry.fitted && entry.layer.getBounds().isValid()) {
    entry.map.fitBounds(entry.layer.getBounds(), { padding: [30, 30], maxZoom: 14, animate: false });  // the flows, not the whole region
    entry.fitted = true;
  }
  const drawn = entry.data.flows.filter((f) => f.material_id === entry.material).length;
  entry.mapEl.dataset.flows = String(drawn);
  entry.side.replaceChildren(...[entry.material ? flowLegend(entry.data, entry.material) : null,
    !entry.data.flows.length && entry.data.plan_id ? h("p", { class: "muted" }, "Nothing to draw for this plan.") : null,
    unplacedNote(entry.data)].filter(Boolean));
}
