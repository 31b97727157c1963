// Alerts: filter, acknowledge, resolve with a note; who did what and when.
import * as api from "../api.js";
import { badge, count, h, may, on, when } from "../app.js";

export async function render(root, ctx) {
  const cell = ctx.args[0] === "cell" ? ctx.args[1] : "";
  const openOnly = h("input", { type: "checkbox", checked: true, "aria-label": "Open alerts only" });
  const severity = h("select", { "aria-label": "Severity" }, ["", "critical", "warning", "info"].map((s) => h("option", { value: s }, s || "all")));
  const kind = h("input", { "aria-label": "Kind", placeholder: "e.g. stale", size: 12 });
  const site = h("input", { "aria-label": "Site", placeholder: "site id", size: 14 });
  const gridCell = h("input", { "aria-label": "Grid cell", value: cell, size: 14 });
  const out = h("div");
  async function load() {
    const items = await api.all("/alerts", { open: openOnly.checked, kind: kind.value.trim(), site_id: site.value.trim(), grid_cell: gridCell.value.trim() }, 2000);
    const shown = items.filter((a) => !severity.value || a.severity === severity.value);
    out.replaceChildren(h("p", { class: "muted" }, `${count(shown.length)} alert${shown.length === 1 ? "" : "s"}`),
      h("table", {}, h("thead", {}, h("tr", {}, ["Severity", "Kind", "Where", "Message", "Raised", "Acknowledged", "Resolved", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, shown.map((a) => alertRow(a, load)))));
  }
  for (const el of [openOnly, severity]) el.addEventListener("change", load);
  for (const el of [kind, site, gridCell]) el.addEventListener("change", load);
  root.replaceChildren(h("h1", {}, "Alerts"),
    h("form", { class: "filters", "aria-label": "Filter alerts", onsubmit: (e) => { e.preventDefault(); load(); } },
      h("label", {}, "Open only", openOnly), h("label", {}, "Severity", severity), h("label", {}, "Kind", kind),
      h("label", {}, "Site", site), h("label", {}, "Grid cell", gridCell)), out);
  await load();
  let timer = null;
  const off = on("alerts", () => { clearTimeout(timer); timer = setTimeout(load, 500); });
  return () => { off(); clearTimeout(timer); };
}

function alertRow(a, reload) {
  const actions = h("td");
  if (may("operator") && !a.resolved_at) {
    const note = h("input", { "aria-label": `Note for alert ${a.alert_id}`, placeholder: "note", size: 14 });
    const ack = h("button", { type: "button", class: "secondary", "aria-label": `Acknowledge alert ${a.alert_id}`, disabled: !!a.acknowledged_at }, "Acknowledge");
    const res = h("button", { type: "button", "aria-label": `Resolve alert ${a.alert_id}` }, "Resolve");
    const msg = h("span", { role: "status" });
    const act = (what) => async () => {
      try {
        await api.post(`/alerts/${encodeURIComponent(a.alert_id)}/${what}`, { note: note.value.trim() || null });
        await reload();
      } catch (err) { msg.textContent = ` ${err.message}`; }
    };
    ack.addEventListener("click", act("acknowledge"));
    res.addEventListener("click", act("resolve"));
    actions.append(note, " ", ack, " ", res, msg);
  }
  const where = [a.site_id ? h("a", { href: `#/site/${encodeURIComponent(a.site_id)}` }, a.site_id) : null,
    a.grid_cell ? ` ${a.grid_cell}` : null, a.material_id ? ` · ${a.material_id}` : null];
  return h("tr", { "data-alert": a.alert_id },
    h("td", {}, badge(a.severity)), h("td", {}, a.kind), h("td", {}, where), h("td", {}, a.message), h("td", {}, when(a.at)),
    h("td", {}, a.acknowledged_at ? `${when(a.acknowledged_at)} by ${a.acknowledged_by}${a.acknowledge_note ? ": " + a.acknowledge_note : ""}` : "–"),
    h("td", {}, a.resolved_at ? `${when(a.resolved_at)}${a.resolved_by ? " by " + a.resolved_by : ""}${a.resolve_note ? ": " + a.resolve_note : ""}` : "–"), actions);
}
