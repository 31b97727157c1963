// Assessment: the sites and owners that supplied an emergency, ranked by how they served it
// (GET /api/v1/assessments, the same code as `vreserve assess`), every figure with its unit.
import * as api from "../api.js";
import { count, h, pct, table, when } from "../app.js";

const minutes = (v) => (v === null || v === undefined ? "–" : `${new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 }).format(v)} min`);
/** A share 0..1 as a percentage; "–" (not available) when the part could not be measured. */
const share = (v) => (v === null || v === undefined ? h("span", { title: "not available" }, "–") : pct(v));
const FIGURES = [
  { label: "Fulfilment (% of ordered units delivered)", num: true, cell: (r) => share(r.fulfilment_share) },
  { label: "Median response (min)", num: true, cell: (r) => minutes(r.median_response_minutes) },
  { label: "On time (% of delivered orders)", num: true, cell: (r) => share(r.on_time_share) },
  { label: "Data reliability (% of readings on time)", num: true, cell: (r) => share(r.reliability_share) },
  { label: "Audit discrepancies (% of audits failed)", num: true, cell: (r) => share(r.audit_discrepancy_share) },
];

export async function render(root, ctx) {
  const emergencies = (await api.get("/emergencies", { limit: 100 })).items;
  if (!emergencies.length) { root.replaceChildren(h("h1", {}, "Assessment"), h("p", { class: "muted" }, "No emergency has been declared yet: nothing to assess.")); return; }
  const chosen = ctx.args[0] && emergencies.some((e) => e.emergency_id === ctx.args[0]) ? ctx.args[0] : emergencies[0].emergency_id;
  const select = h("select", { "aria-label": "Emergency to assess" }, emergencies.map((e) =>
    h("option", { value: e.emergency_id, selected: e.emergency_id === chosen }, `${e.emergency_id} (${e.region}, declared ${when(e.declared_at)}${e.ended_at ? "" : ", running"})`)));
  select.addEventListener("change", () => { location.hash = `#/assessment/${encodeURIComponent(select.value)}`; });
  const out = h("div", {}, h("p", { class: "muted", role: "status" }, "Assessing…"));
  root.replaceChildren(h("h1", {}, "Assessment"), h("div", { class: "filters" }, h("label", {}, "Emergency", select)), out);
  let data;
  try { data = await readAll(chosen); } catch (err) {
    if (err instanceof api.AuthError) throw err;
    out.replaceChildren(h("p", { class: "error", role: "alert" }, err.message));
    return;
  }
  out.replaceChildren(...summary(data));
}

/** The whole ranking: the first page carries owners and owner kinds; further pages only more sites. */
async function readAll(emergencyId) {
  const first = await api.get("/assessments", { emergency_id: emergencyId, limit: 1000 });
  const items = [...first.items];
  for (let next = first.next_offset; next !== null && next !== undefined && items.length < 100000;) {
    const page = await api.get("/assessments", { emergency_id: emergencyId, limit: 1000, offset: next });
    items.push(...page.items);
    next = page.next_offset;
  }
  return { ...first, items };
}

function summary(d) {
  const w = d.window || {};
  const names = { fulfilment: "fulfilment", on_time: "on time", reliability: "data reliability", audit: "audits passed" };
  const weights = Object.entries(d.weights || {}).map(([k, v]) => `${names[k] || k} ${pct(v)}`).join(", ");
  if (!d.items.length) return [h("p", { class: "muted" }, `No supply orders in ${d.emergency_id}: nothing to assess.`)];
  return [
    h("p", {}, `${d.emergency_id}: ${count(d.items.length)} site${d.items.length === 1 ? "" : "s"} of ${count(d.owners.length)} owner${d.owners.length === 1 ? "" : "s"} supplied it. `,
      `Readings judged from ${when(w.from)} to ${when(w.to)} (${count(w.seconds)} s, one reading expected every ${count(w.reading_interval_s)} s).`),
    h("p", { class: "muted" }, `Score = weighted mean of the parts that could be measured (${weights}); shown as a percentage. "–": not measurable (e.g. no delivery yet).`),
    h("section", { "aria-label": "Owners ranked" }, h("h2", {}, "Owners"),
      table([{ label: "Rank", num: true, cell: (r) => count(r.rank) }, { label: "Owner", cell: (r) => r.owner_id },
        { label: "Kind", cell: (r) => r.owner_kind }, { label: "Sites", num: true, cell: (r) => count(r.sites) },
        { label: "Orders", num: true, cell: (r) => count(r.orders) }, { label: "Score (%)", num: true, cell: (r) => pct(r.score) },
        ...FIGURES], d.owners, "owner's score = mean of its sites' scores")),
    h("section", { "aria-label": "Sites ranked" }, h("h2", {}, "Sites"),
      table([{ label: "Rank", num: true, cell: (r) => count(r.rank) },
        { label: "Site", cell: (r) => h("a", { href: `#/site/${encodeURIComponent(r.site_id)}` }, r.site_id) },
        { label: "Owner", cell: (r) => `${r.owner_id} (${r.owner_kind})` }, { label: "Orders", num: true, cell: (r) => count(r.orders) },
        { label: "Score (%)", num: true, cell: (r) => h("span", { class: r.score < 0.5 ? "error" : "" }, pct(r.score)) }, ...FIGURES], d.items)),
    d.owner_kinds.length ? h("section", { "aria-label": "Owner kinds" }, h("h2", {}, "By owner kind"),
      table([{ label: "Owner kind", cell: (r) => r.owner_kind }, { label: "Sites", num: true, cell: (r) => count(r.sites) }, ...FIGURES],
        d.owner_kinds, "pooled over the kind's sites")) : null,
  ].filter(Boolean);
}
