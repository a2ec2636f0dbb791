// A tenant's page: hostnames and their certificates over ACME, routes, plugins, certificates,
// usage and the audit trail.

import { act, api, auditTable, enc, field, h, say, time } from "./ui.js";
import { routeForm, targetList } from "./routes.js";
import { usageSection } from "./usage.js";

function uploadForm(tenant) {
  const name = h("input", { id: "plugin-name", required: true, placeholder: "auth" });
  const file = h("input", { id: "plugin-file", type: "file", accept: ".wasm" });
  let dropped = null;
  const drop = h("div", { class: "drop", id: "plugin-drop", tabindex: "0" }, "…or drop a .wasm file here");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    dropped = e.dataTransfer.files[0] || null;
    drop.textContent = dropped ? `Ready: ${dropped.name}` : "…or drop a .wasm file here";
  });
  return h("form", { id: "upload-form", onsubmit: (e) => {
    e.preventDefault();
    const f = file.files[0] || dropped;
    if (!f) { say("Choose a .wasm file to upload."); return; }
    act(async () => {
      const v = await api("PUT", `/v1/tenants/${enc(tenant)}/plugins/${enc(name.value.trim())}`, await f.arrayBuffer());
      return v;
    }, `Plugin ${name.value.trim()} uploaded as a new version.`);
  } }, field("Plugin name", name), field("Component (.wasm)", file), drop, h("button", { type: "submit" }, "Upload"));
}

// A certificate chain (leaf first) and its private key, as PEM files; the key is sealed by the
// gateway and never shown again.
function certificateForm(tenant) {
  const name = h("input", { id: "cert-name", required: true, placeholder: "main" });
  const chain = h("input", { id: "cert-chain", type: "file", accept: ".pem,.crt" });
  const key = h("input", { id: "cert-key", type: "file", accept: ".pem,.key" });
  return h("form", { id: "cert-form", onsubmit: (e) => {
    e.preventDefault();
    const [c, k] = [chain.files[0], key.files[0]];
    if (!c || !k) { say("Choose the certificate chain and its private key (PEM files)."); return; }
    act(async () => {
      const v = await api("PUT", `/v1/tenants/${enc(tenant)}/certificates/${enc(name.value.trim())}`,
        { chain_pem: await c.text(), key_pem: await k.text() });
      return v;
    }, `Certificate ${name.value.trim()} stored: served by SNI on every node.`);
  } }, field("Name", name), field("Chain (PEM, leaf first)", chain), field("Private key (PEM)", key),
  h("button", { type: "submit" }, "Upload certificate"));
}

function attachForm(tenant, routes, plugins) {
  const names = [...new Set(plugins.map((p) => p.name))];
  const route = h("select", { id: "attach-route" }, routes.map((r) => h("option", { value: r.id }, r.id)));
  const plugin = h("select", { id: "attach-plugin" }, names.map((n) => h("option", { value: n }, n)));
  const version = h("input", { id: "attach-version", type: "number", placeholder: "newest" });
  const position = h("input", { id: "attach-position", type: "number", placeholder: "last" });
  const config = h("textarea", { id: "attach-config", placeholder: "key=value, one per line" });
  const open = h("input", { id: "attach-fail-open", type: "checkbox" });
  const outbound = h("textarea", { id: "attach-outbound", placeholder: "https://auth.example.com, one per line (none: no outbound HTTP)" });
  return h("form", { id: "attach-form", onsubmit: (e) => {
    e.preventDefault();
    const cfg = {};
    for (const line of config.value.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) cfg[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    const body = { config: cfg, on_error: open.checked ? "fail-open" : "fail-closed" };
    const hosts = outbound.value.split("\n").map((l) => l.trim()).filter((l) => l);
    if (hosts.length) body.allowed_outbound_hosts = hosts;
    if (version.value) body.version = Number(version.value);
    if (position.value) body.position = Number(position.value);
    act(() => api("PUT", `/v1/tenants/${enc(tenant)}/routes/${enc(route.value)}/plugins/${enc(plugin.value)}`, body),
      `Plugin ${plugin.value} attached to ${route.value}.`);
  } }, field("Route", route), field("Plugin", plugin), field("Version", version), field("Position", position),
    field("Config", config), field("May call (outbound HTTP)", outbound), h("label", {}, "Fail open", open),
    h("button", { type: "submit" }, "Attach"));
}

// Each hostname with its certificate over ACME: state, expiry, next order, the CA's last error,
// and a switch (exact names only: a wildcard cannot be validated over HTTP-01 or TLS-ALPN-01).
export function hostnamesSection(tenant, hostnames, acme) {
  const byHost = Object.fromEntries(acme.map((a) => [a.hostname, a]));
  const path = (n) => `/v1/tenants/${enc(tenant)}/acme/${enc(n)}`;
  const rows = hostnames.map((n) => {
    const a = byHost[n];
    const toggle = n.startsWith("*.") ? "upload a certificate" : a
      ? h("button", { class: "danger", type: "button", onclick: () => act(() => api("DELETE", path(n)), `ACME off for ${n}.`) }, "Turn ACME off")
      : h("button", { class: "secondary", type: "button", onclick: () => act(() => api("PUT", path(n)), `ACME on for ${n}: a certificate is being ordered.`) }, "Turn ACME on");
    return h("tr", { "data-hostname": n }, h("td", {}, h("code", {}, n)),
      h("td", { class: "acme-state" }, a ? a.state : "off"),
      h("td", {}, a && a.not_after_ms ? time(a.not_after_ms) : "—"),
      h("td", {}, a ? time(a.next_attempt_ms) : "—"),
      h("td", { class: "acme-error" }, a && a.last_error ? a.last_error : "—"),
      h("td", {}, toggle));
  });
  return h("section", { id: "hostnames" }, h("h2", {}, "Hostnames"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Hostname", "Certificate over ACME", "Expires", "Next order", "Last error", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)));
}

export async function tenantView(tenant) {
  const t = await api("GET", `/v1/tenants/${enc(tenant)}`);
  const { routes } = await api("GET", `/v1/tenants/${enc(tenant)}/routes`);
  const { plugins } = await api("GET", `/v1/tenants/${enc(tenant)}/plugins`);
  const { certificates } = await api("GET", `/v1/tenants/${enc(tenant)}/certificates`);
  const { entries } = await api("GET", `/v1/tenants/${enc(tenant)}/audit?limit=50`);
  const { hostnames: acme } = await api("GET", `/v1/tenants/${enc(tenant)}/acme`);
  const byName = {};
  for (const p of plugins) (byName[p.name] = byName[p.name] || []).push(p);

  const routeRows = routes.map((r) => h("tr", { "data-route": r.id },
    h("td", {}, h("a", { href: `#/tenant/${enc(tenant)}/route/${enc(r.id)}` }, h("code", {}, r.id))),
    h("td", {}, h("code", {}, r.path_prefix)),
    h("td", {}, r.methods.length ? r.methods.join(", ") : "all"),
    h("td", {}, targetList(r.upstreams), r.retries !== 2 ? `, ${r.retries} ${r.retries === 1 ? "retry" : "retries"}` : null),
    h("td", {}, r.plugins.length ? r.plugins.map((a, i) => h("div", {},
      `${i + 1}. ${a.plugin} v${a.version} (${a.on_error === "fail-open" ? "fail open" : "fail closed"}) `,
      (a.allowed_outbound_hosts || []).length ? `may call ${a.allowed_outbound_hosts.join(", ")} ` : null,
      h("button", { class: "danger", type: "button", onclick: () => act(() => api("DELETE",
        `/v1/tenants/${enc(tenant)}/routes/${enc(r.id)}/plugins/${enc(a.plugin)}`), `Detached ${a.plugin}.`) }, `Detach ${a.plugin}`))) : "none"),
    h("td", {},
      h("button", { class: "secondary", type: "button", onclick: (e) => e.target.closest("td").append(routeForm(tenant, r, certificates)) }, "Edit"), " ",
      h("button", { class: "danger", type: "button", onclick: () => {
        if (confirm(`Delete route ${r.id}?`)) act(() => api("DELETE", `/v1/tenants/${enc(tenant)}/routes/${enc(r.id)}`), `Route ${r.id} deleted.`);
      } }, "Delete"))));

  const pluginRows = Object.entries(byName).map(([name, versions]) => {
    const inUse = routes.flatMap((r) => r.plugins.filter((a) => a.plugin === name).map((a) => `${r.id}: v${a.version}`));
    const pick = h("select", { "aria-label": `Version of ${name} to roll back to` },
      versions.map((v) => h("option", { value: v.version }, `v${v.version}`)));
    return h("tr", { "data-plugin": name }, h("td", {}, h("code", {}, name)),
      h("td", {}, versions.map((v) => `v${v.version} (${v.sha256.slice(0, 12)}…, ${time(v.created_at_ms)})`).join("; ")),
      h("td", {}, inUse.join(", ") || "not attached"),
      h("td", {}, pick, " ", h("button", { type: "button", class: "secondary", onclick: () => act(() =>
        api("POST", `/v1/tenants/${enc(tenant)}/plugins/${enc(name)}/rollback`, { version: Number(pick.value) }),
        `Every route running ${name} now runs v${pick.value}.`) }, "Roll back")));
  });

  return [
    h("h1", {}, `${t.display_name} (${t.id})`),
    hostnamesSection(tenant, t.hostnames, acme),
    h("section", { id: "routes" }, h("h2", {}, "Routes"),
      h("table", {}, h("thead", {}, h("tr", {}, ["Id", "Prefix", "Methods", "Targets", "Plugin chain", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, routeRows)),
      routeForm(tenant, null, certificates)),
    h("section", { id: "plugins" }, h("h2", {}, "Plugins"),
      h("table", {}, h("thead", {}, h("tr", {}, ["Plugin", "Versions", "Attached", "Roll back"].map((c) => h("th", {}, c)))),
        h("tbody", {}, pluginRows)),
      uploadForm(tenant), routes.length && plugins.length ? attachForm(tenant, routes, plugins) : null),
    h("section", { id: "certificates" }, h("h2", {}, "TLS certificates"),
      certificates.length ? h("ul", {}, certificates.map((c) => h("li", { "data-certificate": c.name },
        `${c.name}: ${c.hostnames.join(", ")}, expires ${time(c.not_after_ms)} `,
        h("button", { class: "danger", type: "button", onclick: () => {
          if (confirm(`Remove certificate ${c.name}?`)) act(() => api("DELETE", `/v1/tenants/${enc(tenant)}/certificates/${enc(c.name)}`), `Certificate ${c.name} removed.`);
        } }, "Remove"))))
        : h("p", {}, "None yet."),
      certificateForm(tenant)),
    await usageSection(tenant),
    h("section", { id: "audit" }, h("h2", {}, "Changes (audit trail)"), auditTable(entries)),
  ];
}
