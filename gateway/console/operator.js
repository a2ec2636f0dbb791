// The operator's pages: the fleet, tenants, and each tenant's quotas and keys.

import { act, api, auditTable, enc, field, h, say, time } from "./ui.js";

export async function operatorView() {
  const { tenants } = await api("GET", "/v1/tenants");
  const { entries } = await api("GET", "/v1/audit?limit=50");
  const health = await fetch("/healthz").then((r) => r.json()).catch(() => ({}));
  const fleet = await api("GET", "/v1/nodes");
  const id = h("input", { id: "new-tenant-id", required: true, placeholder: "acme" });
  const host = h("input", { id: "new-tenant-host", placeholder: "api.acme.test" });
  return [
    h("h1", {}, "Operator"),
    h("section", { id: "node" }, h("h2", {}, "Fleet"),
      h("p", {}, `Store config version ${fleet.store_version}. This node serves ${health.config_version ?? "?"}, store ${health.store_up ? "reachable" : "unreachable (serving last good config)"}.`),
      h("table", { id: "nodes" }, h("thead", {}, h("tr", {}, ["Node", "Config version", "Last report", "Started"].map((c) => h("th", {}, c)))),
        h("tbody", {}, fleet.nodes.map((n) => h("tr", {}, h("td", {}, h("code", {}, n.id)),
          h("td", {}, n.config_version < fleet.store_version ? `${n.config_version} (behind)` : String(n.config_version)),
          h("td", {}, time(n.seen_at_ms)), h("td", {}, time(n.started_at_ms))))))),
    h("section", { id: "tenants" }, h("h2", {}, "Tenants"),
      h("table", {}, h("thead", {}, h("tr", {}, ["Id", "Name", "Hostnames", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, tenants.map((t) => h("tr", { "data-tenant": t.id }, h("td", {}, h("a", { href: `#/tenant/${enc(t.id)}` }, t.id)),
          h("td", {}, t.display_name), h("td", {}, t.hostnames.join(", ")),
          h("td", {}, h("a", { href: `#/operator/tenant/${enc(t.id)}` }, "Quotas and keys")))))),
      h("form", { id: "tenant-form", onsubmit: (e) => {
        e.preventDefault();
        act(() => api("POST", "/v1/tenants", { id: id.value.trim(), hostnames: host.value ? [host.value.trim()] : [] }), `Tenant ${id.value} created.`);
      } }, field("Tenant id", id), field("Hostname", host), h("button", { type: "submit" }, "Create tenant"))),
    h("section", { id: "audit" }, h("h2", {}, "Audit log (all tenants)"), auditTable(entries)),
  ];
}

export async function operatorTenantView(tenant) {
  const t = await api("GET", `/v1/tenants/${enc(tenant)}`);
  const { keys } = await api("GET", `/v1/tenants/${enc(tenant)}/api-keys`);
  const inputs = Object.entries(t.quotas).map(([k, v]) =>
    field(k, h("input", { name: k, "data-quota": k, value: typeof v === "object" ? JSON.stringify(v) : v })));
  const form = h("form", { id: "quota-form", onsubmit: (e) => {
    e.preventDefault();
    const patch = {};
    for (const input of form.querySelectorAll("[data-quota]")) {
      const old = t.quotas[input.dataset.quota];
      const now = typeof old === "number" ? Number(input.value) : input.value;
      if (String(now) !== String(old)) patch[input.dataset.quota] = now;
    }
    act(() => api("PATCH", `/v1/tenants/${enc(tenant)}/quotas`, patch), "Quotas saved.");
  } }, inputs, h("button", { type: "submit" }, "Save quotas"));
  const issued = h("div", { id: "issued-key" });
  return [
    h("h1", {}, `Tenant ${t.id}: quotas and keys`),
    h("section", { id: "quotas" }, h("h2", {}, "Quotas"), form),
    h("section", { id: "keys" }, h("h2", {}, "API keys"),
      h("ul", {}, keys.map((k) => h("li", { "data-key": k.id }, `${k.id}: created ${time(k.created_at_ms)}${k.revoked ? ", revoked" : ""} `,
        k.revoked ? null : h("button", { class: "danger", type: "button", onclick: () =>
          act(() => api("DELETE", `/v1/tenants/${enc(tenant)}/api-keys/${enc(k.id)}`), `Key ${k.id} revoked.`) }, "Revoke")))),
      h("button", { id: "issue-key", type: "button", onclick: async () => {
        try {
          const k = await api("POST", `/v1/tenants/${enc(tenant)}/api-keys`);
          issued.replaceChildren(h("p", { class: "secret" }, "New key (shown once, copy it now): ", h("code", { id: "new-key" }, k.key)));
          say("");
        } catch (e) { say(e.message); }
      } }, "Issue a key"), issued),
  ];
}
