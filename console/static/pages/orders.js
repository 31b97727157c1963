// Orders: a filterable table of dispatch orders, each with its status timeline on demand.
import * as api from "../api.js";
import { badge, count, h, may, on, qty, table, when } from "../app.js";

const STATUSES = ["", "open", "accepted", "in_transit", "delivered", "failed", "cancelled", "closed"];

export async function render(root, ctx) {
  const emergencies = await api.get("/emergencies", { limit: 100 });
  const em = h("select", { "aria-label": "Emergency" }, h("option", { value: "" }, "all"),
    emergencies.items.map((e) => h("option", { value: e.emergency_id, selected: e.emergency_id === ctx.args[0] }, `${e.emergency_id} (${e.region})`)));
  const status = h("select", { "aria-label": "Status" }, STATUSES.map((s) => h("option", { value: s }, s || "all")));
  const leg = h("select", { "aria-label": "Leg" }, ["", "supply", "delivery"].map((s) => h("option", { value: s }, s || "all")));
  const text = h("input", { "aria-label": "Site, centre or material contains", placeholder: "site, centre, material", size: 18 });
  const out = h("div");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "More orders");
  let offset = 0;
  let rows = [];
  async function load(reset) {
    if (reset) { offset = 0; rows = []; }
    const page = await api.get("/orders", { emergency_id: em.value, status: status.value, limit: 200, offset });
    rows.push(...page.items);
    offset = page.next_offset;
    more.hidden = offset === null;
    draw();
  }
  function draw() {
    const t = text.value.trim().toLowerCase();
    const shown = rows.filter((o) => (!leg.value || o.leg === leg.value)
      && (!t || [o.origin, o.destination, o.material_id, o.order_id].some((v) => String(v).toLowerCase().includes(t))));
    out.replaceChildren(h("p", { class: "muted" }, `${count(shown.length)} of ${count(rows.length)} loaded orders`),
      h("table", {}, h("thead", {}, h("tr", {}, ["Order", "Period", "Leg", "From → to", "Material", "Quantity", "Delivered", "Status", "Since", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, shown.map(orderRow))));
  }
  for (const el of [em, status]) el.addEventListener("change", () => load(true));
  for (const el of [leg, text]) el.addEventListener("input", draw);
  more.addEventListener("click", () => load(false));
  const held = h("section", { "aria-label": "Held webhook deliveries" });
  if (may("operator")) await drawHeld(held);
  root.replaceChildren(h("h1", {}, "Orders"), held,
    h("form", { class: "filters", "aria-label": "Filter orders", onsubmit: (e) => e.preventDefault() },
      h("label", {}, "Emergency", em), h("label", {}, "Status", status), h("label", {}, "Leg", leg), h("label", {}, "Search", text)),
    out, more);
  await load(true);
  let timer = null;
  const off = on("orders", () => { clearTimeout(timer); timer = setTimeout(() => load(true), 1000); });
  return () => { off(); clearTimeout(timer); };
}

function orderRow(o) {
  const timeline = h("td", { colspan: 10 });
  const detail = h("tr", { hidden: true }, timeline);
  const btn = h("button", { type: "button", class: "secondary", "aria-label": `Timeline of order ${o.order_id}`, "aria-expanded": "false" }, "Timeline");
  btn.addEventListener("click", async () => {
    if (!detail.hidden) { detail.hidden = true; btn.setAttribute("aria-expanded", "false"); return; }
    const full = await api.get(`/orders/${encodeURIComponent(o.order_id)}`);
    timeline.replaceChildren(h("ol", { class: "timeline", "aria-label": `Status timeline of ${o.order_id}` },
      h("li", {}, `${when(full.created_at)}: created (open), ${qty(full.qty, full.unit)}`),
      full.history.map((e) => h("li", {}, `${when(e.at)}: ${e.status}${e.qty !== null ? ", " + qty(e.qty, e.unit) : ""}${e.reason ? " (" + e.reason + ")" : ""}${e.actor ? " by " + e.actor : ""}`)),
      full.superseded_by ? h("li", {}, `superseded by plan ${full.superseded_by}`) : null));
    detail.hidden = false;
    btn.setAttribute("aria-expanded", "true");
  });
  const tr = h("tr", { "data-order": o.order_id },
    h("td", {}, h("code", {}, o.order_id)), h("td", { class: "num" }, count(o.period)), h("td", {}, o.leg),
    h("td", {}, o.leg === "supply" ? h("a", { href: `#/site/${encodeURIComponent(o.origin)}` }, o.origin) : o.origin, " → ", o.destination),
    h("td", {}, o.material_id), h("td", { class: "num" }, qty(o.qty, o.unit)), h("td", { class: "num" }, qty(o.delivered_qty, o.unit)),
    h("td", {}, badge(o.status)), h("td", {}, when(o.status_at)), h("td", {}, btn));
  const frag = document.createDocumentFragment();
  frag.append(tr, detail);
  return frag;
}

/** Carriers whose webhook deliveries are held after repeated failures (operators may release them). */
async function drawHeld(el) {
  const page = await api.get("/webhooks/held");
  if (!page.items.length) { el.replaceChildren(); return; }
  el.replaceChildren(h("h2", {}, "Held webhook deliveries"),
    table([{ label: "Carrier", cell: (r) => r.carrier_id }, { label: "Held since", cell: (r) => when(r.held_at) },
      { label: "Reason", cell: (r) => r.held_reason }, { label: "Waiting", num: true, cell: (r) => count(r.waiting) },
      { label: "First waiting order", cell: (r) => r.first_waiting_order || "–" },
      { label: "", cell: (r) => h("button", { type: "button", "aria-label": `Release deliveries to ${r.carrier_id}`,
        onclick: async () => { await api.post(`/webhooks/${encodeURIComponent(r.carrier_id)}/release`); await drawHeld(el); } }, "Release") }],
    page.items));
}
