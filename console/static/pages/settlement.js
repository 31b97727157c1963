// Settlement: statements per emergency (download each as CSV). Supervisor role.
import * as api from "../api.js";
import { count, h, may, money, table, when } from "../app.js";

const CSV_COLUMNS = ["line_no", "owner_id", "owner_kind", "site_id", "material_id", "unit", "kind", "qty", "rate_minor", "amount_minor", "currency", "contract_id"];

export async function render(root) {
  if (!may("supervisor")) { root.replaceChildren(h("p", {}, "Settlement is for supervisors.")); return; }
  const statements = await api.all("/settlement/statements");
  root.replaceChildren(h("h1", {}, "Settlement"),
    statements.length ? table([{ label: "Statement", cell: (s) => s.statement_id }, { label: "Emergency", cell: (s) => s.emergency_id },
      { label: "Version", num: true, cell: (s) => count(s.version) }, { label: "Kind", cell: (s) => s.kind },
      { label: "Period", cell: (s) => `${s.period_from} – ${s.period_to}` }, { label: "Issued", cell: (s) => when(s.issued_at) },
      { label: "Total", num: true, cell: (s) => money(s.total_minor, s.currency) },
      { label: "", cell: (s) => h("button", { type: "button", class: "secondary", "aria-label": `Download statement ${s.statement_id} as CSV`, onclick: () => download(s) }, "Download CSV") }],
    statements) : h("p", { class: "muted" }, "No statement yet (vreserve settle --emergency EM-…)."));
}

function csvCell(v) {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

async function download(s) {
  const lines = await api.all(`/settlement/statements/${encodeURIComponent(s.statement_id)}/lines`, {}, 1000000);
  const text = [CSV_COLUMNS.join(","), ...lines.map((l) => CSV_COLUMNS.map((c) => csvCell(l[c])).join(","))].join("\n") + "\n";
  const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: `${s.statement_id}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
}
