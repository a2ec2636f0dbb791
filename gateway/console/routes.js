// A route: its form (targets one a line), its settings and its targets as this node sees them.

import { ApiError, act, api, enc, field, h } from "./ui.js";

// Targets as the form shows them: one a line, an address or URL, then its weight unless 1.
function targetsText(upstreams) {
  return upstreams.map((u) => (u.weight && u.weight !== 1 ? `${u.addr} ${u.weight}` : u.addr)).join("\n");
}

// The form's targets as the API takes them; a weight that is not a whole number is refused here,
// naming the line, rather than sent as null.
function parseTargets(text) {
  return text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean).map((line) => {
    const [addr, weight = "1", ...rest] = line.split(/\s+/);
    if (!/^\d+$/.test(weight) || rest.length) throw new ApiError(`Target "${line}": write an address or URL, then optionally a whole-number weight.`);
    return { addr, weight: Number(weight) };
  });
}

export function routeForm(tenant, existing, certificates = []) {
  const r = existing || { id: "", path_prefix: "/", methods: [], upstreams: [], timeouts: {}, retries: 2,
    host_header: "client", upstream_protocol: "http1", upstream_tls: {} };
  const tls = r.upstream_tls || {};
  const option = (value, label, current) => h("option", { value, selected: value === current }, label);
  const id = h("input", { id: "route-id", value: r.id, required: true, readonly: existing ? true : false });
  const prefix = h("input", { id: "route-prefix", value: r.path_prefix, required: true });
  const methods = h("input", { id: "route-methods", value: r.methods.join(","), placeholder: "GET,POST (empty: all)" });
  const ups = h("textarea", { id: "route-upstreams", placeholder: "10.0.0.5:8080\napi.internal:8080 2\nhttps://api.example.com", required: true });
  ups.value = targetsText(r.upstreams);
  const read = h("input", { id: "route-read-ms", type: "number", value: (r.timeouts && r.timeouts.read_ms) || "" });
  const retries = h("input", { id: "route-retries", type: "number", min: "0", max: "5", value: r.retries ?? 2 });
  const hostHeader = h("select", { id: "route-host-header" },
    option("client", "the client's", r.host_header), option("upstream", "the target's name", r.host_header));
  const protocol = h("select", { id: "route-protocol" },
    option("http1", "HTTP/1.1", r.upstream_protocol), option("http2", "HTTP/2 (h2c, or h2 by ALPN over TLS)", r.upstream_protocol));
  const serverName = h("input", { id: "route-tls-server-name", value: tls.server_name || "", placeholder: "each target's name" });
  const ca = h("textarea", { id: "route-tls-ca", placeholder: "PEM (empty: the system's roots)" });
  ca.value = tls.ca_pem || "";
  const clientCert = h("select", { id: "route-tls-client-certificate" }, option("", "none", tls.client_certificate || ""),
    certificates.map((c) => option(c.name, c.name, tls.client_certificate)));
  return h("form", { id: existing ? `edit-${r.id}` : "route-form", onsubmit: (e) => {
    e.preventDefault();
    act(() => {
      // What the form does not show (timeouts besides read, the health check) is kept as it is.
      const body = {
        path_prefix: prefix.value,
        methods: methods.value.split(",").map((s) => s.trim()).filter(Boolean),
        upstreams: parseTargets(ups.value),
        timeouts: { ...(r.timeouts || {}) },
        retries: Number(retries.value),
        host_header: hostHeader.value,
        upstream_protocol: protocol.value,
        upstream_tls: {},
      };
      if (read.value) body.timeouts.read_ms = Number(read.value);
      if (r.health_check) body.health_check = r.health_check;
      if (serverName.value.trim()) body.upstream_tls.server_name = serverName.value.trim();
      if (ca.value.trim()) body.upstream_tls.ca_pem = ca.value.trim() + "\n";
      if (clientCert.value) body.upstream_tls.client_certificate = clientCert.value;
      return api("PUT", `/v1/tenants/${enc(tenant)}/routes/${enc(id.value)}`, body);
    }, `Route ${id.value} saved.`);
  } }, field("Route id", id), field("Path prefix", prefix), field("Methods", methods),
    field("Targets (ip:port, host:port or http(s)://host[:port], one a line, then a weight)", ups),
    field("Read timeout (ms)", read), field("Retries (0-5)", retries), field("Host sent upstream", hostHeader),
    field("Upstream protocol", protocol),
    h("fieldset", {}, h("legend", {}, "TLS to https:// targets"), field("Server name", serverName),
      field("CA bundle", ca), field("Client certificate", clientCert)),
    h("button", { type: "submit" }, existing ? "Save route" : "Create route"));
}

// The targets as written: an address or URL, and its weight unless 1.
export function targetList(upstreams) {
  return upstreams.map((u) => (u.weight !== 1 ? `${u.addr} (weight ${u.weight})` : u.addr)).join(", ");
}

// A route's settings, its form, and its targets as this node sees them (refreshed).
export async function routeView(tenant, id) {
  const r = await api("GET", `/v1/tenants/${enc(tenant)}/routes/${enc(id)}`);
  const { certificates } = await api("GET", `/v1/tenants/${enc(tenant)}/certificates`);
  const tls = r.upstream_tls || {};
  const cas = (tls.ca_pem || "").split("BEGIN CERTIFICATE").length - 1;
  const row = (k, v) => h("tr", {}, h("th", {}, k), h("td", {}, v));
  return [
    h("h1", {}, `Route ${r.id} of ${tenant}`),
    h("p", {}, h("a", { href: `#/tenant/${enc(tenant)}` }, "All routes of this tenant")),
    targetsSection(r),
    h("section", { id: "route-settings" }, h("h2", {}, "Settings"),
      h("table", {}, h("tbody", {},
        row("Path prefix", h("code", {}, r.path_prefix)),
        row("Methods", r.methods.length ? r.methods.join(", ") : "all"),
        row("Targets", targetList(r.upstreams)),
        row("Upstream protocol", r.upstream_protocol === "http2" ? "HTTP/2" : "HTTP/1.1"),
        row("Retries", `${r.retries}, within the route's retry budget`),
        row("Host sent upstream", r.host_header === "upstream" ? "the target's name" : "the client's"),
        row("Active health check", r.health_check ? `${r.health_check.kind} every ${r.health_check.interval_ms} ms` : "none"),
        row("TLS server name", tls.server_name || "each target's name"),
        row("TLS CA bundle", cas ? `${cas} certificate${cas === 1 ? "" : "s"} of the route` : "the system's roots"),
        row("Client certificate", tls.client_certificate || "none"))),
      routeForm(tenant, r, certificates)),
  ];
}

// Each address the route's balancer has now: the name it was resolved from, active health
// (probes) and passive health (ejected after failures), on the node that served the console.
export function targetsSection(r) {
  const checked = Boolean(r.health_check);
  return h("section", { id: "route-targets" }, h("h2", {}, "Targets now (this node)"),
    r.targets.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Address", "Resolved from", "Active health", "Passive health"].map((c) => h("th", {}, c)))),
      h("tbody", {}, r.targets.map((t) => h("tr", { "data-target": t.addr },
        h("td", {}, h("code", {}, t.addr)), h("td", {}, t.name ? h("code", {}, t.name) : "written as an address"),
        h("td", {}, checked ? (t.healthy ? "healthy" : "unhealthy") : "not checked (no health check)"),
        h("td", {}, t.ejected ? "ejected after failures" : "in rotation")))))
      : h("p", {}, "No address to dial yet: a name still resolving, or every address refused by the egress policy."));
}
