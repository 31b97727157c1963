// Flows of a plan on a Leaflet map: supply site -> distribution centre -> rescue centre, one line per
// arc, its width by the planned quantity of the chosen material (each material in its own unit, so
// widths compare quantities of one material only), with a legend in that unit.
import { count, h, qty } from "./app.js";

export const LEG_COLOURS = { supply: "#1f5fbf", delivery: "#d0453b" };
export const PLACE_STYLE = {
  site: { radius: 4, color: "#14213d", fillColor: "#ffffff", label: "supply site" },
  distribution_centre: { radius: 8, color: "#14213d", fillColor: "#e3a21a", label: "distribution centre" },
  rescue_centre: { radius: 7, color: "#14213d", fillColor: "#d0453b", label: "rescue centre" },
};
export const MIN_WIDTH = 1.5;
export const MAX_WIDTH = 14;
const esc = (s) => String(s).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

/** Line width in pixels: proportional to the quantity's square root (area-like), between MIN and MAX. */
export function flowWidth(value, max) {
  if (!(max > 0) || !(value > 0)) return MIN_WIDTH;
  return MIN_WIDTH + (MAX_WIDTH - MIN_WIDTH) * Math.sqrt(Math.min(value, max) / max);
}

/** Materials of the drawn flows, each with its unit, the largest first by number of arcs. */
export function flowMaterials(data) {
  const by = new Map();
  for (const f of data.flows) {
    const m = by.get(f.material_id) || { material_id: f.material_id, unit: f.unit, arcs: 0 };
    m.arcs += 1;
    by.set(f.material_id, m);
  }
  return [...by.values()].sort((a, b) => b.arcs - a.arcs || a.material_id.localeCompare(b.material_id));
}

/** The flows of several emergencies (regions) as one document to draw. */
export function mergeFlows(docs) {
  const out = { flows: [], places: {}, unplaced: { flows: 0, qty_by_material: {}, ends_without_position: [] }, periods: [] };
  for (const d of docs) {
    out.flows.push(...d.flows);
    Object.assign(out.places, d.places);
    if (d.plan_id) out.periods.push({ emergency_id: d.emergency_id, period: d.period });
    const u = d.unplaced || { flows: 0, qty_by_material: {}, ends_without_position: [] };
    out.unplaced.flows += u.flows;
    for (const [m, f] of Object.entries(u.qty_by_material)) {
      const acc = (out.unplaced.qty_by_material[m] ||= { qty: 0, unit: f.unit });
      acc.qty += f.qty;
    }
    out.unplaced.ends_without_position = [...new Set([...out.unplaced.ends_without_position, ...u.ends_without_position])].sort();
  }
  return out;
}

/** Draw the arcs of one material and the places they join; returns the layer (add it to a map).
 * ``renderer``: e.g. L.svg() on a map that prefers the canvas (lines stay addressable elements). */
export function flowLayer(data, material, renderer) {
  const layer = L.featureGroup();
  const shown = data.flows.filter((f) => f.material_id === material);
  const max = Math.max(0, ...shown.map((f) => f.qty));
  for (const f of shown) {
    const a = data.places[f.origin], b = data.places[f.destination];
    const line = L.polyline([[a.lat, a.lon], [b.lat, b.lon]], { renderer, className: `vr-flow vr-flow-${f.leg}`,
      color: LEG_COLOURS[f.leg], weight: flowWidth(f.qty, max), opacity: 0.75, lineCap: "round" });
    line.bindTooltip(esc(`${f.leg === "supply" ? "supply" : "delivery"} ${f.origin} → ${f.destination}: ${qty(f.qty, f.unit)} ${f.material_id} (${count(f.orders)} order${f.orders === 1 ? "" : "s"})`));
    line.addTo(layer);
  }
  const used = new Set(shown.flatMap((f) => [f.origin, f.destination]));
  for (const id of used) {
    const p = data.places[id];
    const st = PLACE_STYLE[p.kind] || PLACE_STYLE.site;
    L.circleMarker([p.lat, p.lon], { renderer, className: `vr-place vr-place-${p.kind}`, radius: st.radius, weight: 2,
      color: st.color, fillColor: st.fillColor, fillOpacity: 1 }).bindTooltip(esc(`${st.label} ${p.name} (${id})`)).addTo(layer);
  }
  return layer;
}

/** The legend: what a line's width means in the material's unit, the legs' colours, the places. */
export function flowLegend(data, material) {
  const shown = data.flows.filter((f) => f.material_id === material);
  const unit = shown.length ? shown[0].unit : "";
  const max = Math.max(0, ...shown.map((f) => f.qty));
  const samples = max > 0 ? [max, max / 4, max / 16].map((v) => (v >= 10 ? Math.round(v) : v)) : [];
  const line = (w, colour) => h("span", { class: "flow-sample", style: `height:${w.toFixed(1)}px;background:${colour}` });
  return h("div", { class: "legend", role: "group", "aria-label": "Flow legend" },
    h("div", {}, line(6, LEG_COLOURS.supply), "supply: site → distribution centre"),
    h("div", {}, line(6, LEG_COLOURS.delivery), "delivery: distribution centre → rescue centre"),
    samples.map((v) => h("div", { class: "flow-width" }, line(flowWidth(v, max), "#667085"), qty(v, unit))),
    h("div", { class: "muted" }, `line width: planned quantity of ${material} per arc, in ${unit}`),
    Object.values(PLACE_STYLE).map((st) => h("span", { style: "margin-right:.6rem;white-space:nowrap" },
      h("span", { class: "swatch", style: `background:${st.fillColor};border-radius:50%` }), st.label)));
}

/** What the plan moves but the map cannot draw (an end without a position): said, not hidden. */
export function unplacedNote(data) {
  const u = data.unplaced;
  if (!u || !u.flows) return null;
  const totals = Object.entries(u.qty_by_material).map(([m, f]) => `${qty(f.qty, f.unit)} ${m}`).join(", ");
  return h("p", { class: "muted", role: "note" },
    `${count(u.flows)} arc${u.flows === 1 ? "" : "s"} not drawn: no position for ${u.ends_without_position.join(", ")} (${totals}).`);
}
