// Wharf console: a tenant's hostnames (and their certificates over ACME), routes, plugins, certificates, usage and audit trail, and
// the operator's tenants, quotas, keys and audit log, all through the same /v1 API (the console
// never shows what the API would refuse). The token lives in sessionStorage only. Every value
// from the API is inserted as text, never as HTML.

const TOKEN = "wharf.token";
const main = document.getElementById("main");
const message = document.getElementById("message");
let refresh = null;

// ---- helpers -------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function say(text, kind = "error") {
  message.textContent = text || "";
  message.className = text ? kind : "";
}

class ApiError extends Error {}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN) || ""}` };
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof ArrayBuffer)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const resp = await fetch(path, { method, headers, body: payload });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!resp.ok) {
    if (resp.status === 401) { sessionStorage.removeItem(TOKEN); }
    throw new ApiError((data && data.message) || `${resp.status} ${resp.statusText}`);
  }
  return data;
}

// Runs an action and re-renders, then shows `done`, or the error in words.
async function act(fn, done) {
  try {
    await fn();
    await route();
    say(done || "", "info");
  } catch (e) {
    say(e.message);
  }
}

function field(label, input) { return h("label", {}, label, input); }
function time(ms) { return new Date(ms).toLocaleString(); }
function enc(s) { return encodeURIComponent(s); }

// ---- sign in / out -------------------------------------------------------------------------

async function whoami() {
  if (!sessionStorage.getItem(TOKEN)) return null;
  try { return await api("GET", "/v1/whoami"); } catch { return null; }
}

function signinView() {
  const token = h("input", { type: "password", id: "token", autocomplete: "off", required: true });
  const form = h("form", { id: "signin", onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN, token.value.trim());
    const me = await whoami();
    if (!me) { sessionStorage.removeItem(TOKEN); say("That key or token was not accepted: check it and try again."); return; }
    say("");
    location.hash = me.operator ? "#/operator" : `#/tenant/${enc(me.tenant)}`;
  } }, field("Tenant API key or operator token", token), h("button", { type: "submit" }, "Sign in"));
  return [h("h1", {}, "Sign in"), h("section", {}, form,
    h("p", {}, "The key is kept in this tab's session storage only and sent as a bearer token."))];
}

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN);
  say("Signed out.", "info");
  location.hash = "#/signin";
});

// ---- charts --------------------------------------------------------------------------------

// A small line chart of one or more series over the minutes, as inline SVG.
function chart(title, minutes, series, unit = "") {
  const W = 600, H = 140, P = 24;
  const all = series.flatMap((s) => minutes.map(s.value)).filter((v) => Number.isFinite(v));
  const max = Math.max(1e-9, ...all);
  const x = (i) => P + (i * (W - 2 * P)) / Math.max(1, minutes.length - 1);
  const y = (v) => H - P - (v / max) * (H - 2 * P);
  const colors = ["#0b5cad", "#b42318", "#1a7f37", "#8250df", "#bc4c00"];
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  series.forEach((s, n) => {
    const pts = minutes.map((m, i) => [x(i), y(s.value(m) || 0)]);
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", pts.map((p) => p.join(",")).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", colors[n % colors.length]);
    line.setAttribute("stroke-width", "2");
    svg.append(line);
    // A dot per minute: one minute of history is still visible.
    for (const [cx, cy] of pts) {
      const dot = document.createElementNS(svg.namespaceURI, "circle");
      dot.setAttribute("cx", cx); dot.setAttribute("cy", cy); dot.setAttribute("r", "4");
      dot.setAttribute("fill", colors[n % colors.length]);
      svg.append(dot);
    }
  });
  const axis = document.createElementNS(svg.namespaceURI, "line");
  axis.setAttribute("x1", P); axis.setAttribute("x2", W - P);
  axis.setAttribute("y1", H - P); axis.setAttribute("y2", H - P);
  axis.setAttribute("stroke", "#d0d7de");
  svg.prepend(axis);
  const last = minutes.length ? minutes[minutes.length - 1] : null;
  const legend = series.map((s) => `${s.name}: ${last ? (+(s.value(last) || 0)).toFixed(2) : "0"}${unit}`).join(" · ");
  return h("div", { class: "chart", "data-title": title }, h("h3", {}, title), svg,
    h("div", { class: "legend" }, `now: ${legend} (max ${max.toFixed(2)}${unit})`));
}

function keysOf(minutes, pick) {
  return [...new Set(minutes.flatMap((m) => Object.keys(pick(m) || {})))];
}

async function usageSection(tenant) {
  const { minutes, source } = await api("GET", `/v1/tenants/${enc(tenant)}/usage/history`);
  const plugin = keysOf(minutes, (m) => m.plugin_calls);
  const host = keysOf(minutes, (m) => m.host_calls);
  const quota = keysOf(minutes, (m) => m.quota_rejections);
  const total = minutes.reduce((n, m) => n + m.requests, 0);
  return h("section", { id: "usage" }, h("h2", {}, `Usage, last hour, per minute (${source})`),
    h("p", { id: "usage-total" }, `${total} requests in the last hour`),
    h("div", { class: "grid" },
      chart("Requests per second", minutes, [{ name: "req/s", value: (m) => m.requests_per_second }]),
      chart("Error rate (5xx)", minutes, [{ name: "errors", value: (m) => m.error_rate * 100 }], "%"),
      chart("Latency", minutes, [{ name: "p50", value: (m) => m.p50_ms }, { name: "p99", value: (m) => m.p99_ms }], " ms"),
      chart("Plugin calls by outcome", minutes, plugin.map((k) => ({ name: k, value: (m) => m.plugin_calls[k] || 0 }))),
      chart("Fuel used", minutes, [{ name: "fuel", value: (m) => m.fuel }]),
      chart("Host calls", minutes, host.map((k) => ({ name: k, value: (m) => m.host_calls[k] || 0 }))),
      chart("Quota rejections", minutes, quota.map((k) => ({ name: k, value: (m) => m.quota_rejections[k] || 0 })))));
}

// ---- tenant view ---------------------------------------------------------------------------

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

function routeForm(tenant, existing, certificates = []) {
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
function targetList(upstreams) {
  return upstreams.map((u) => (u.weight !== 1 ? `${u.addr} (weight ${u.weight})` : u.addr)).join(", ");
}

// A route's settings, its form, and its targets as this node sees them (refreshed).
async function routeView(tenant, id) {
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
function targetsSection(r) {
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
function hostnamesSection(tenant, hostnames, acme) {
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

async function tenantView(tenant) {
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

function auditTable(entries) {
  return h("table", {}, h("thead", {}, h("tr", {}, ["When", "Who", "What", "Target", "Version"].map((c) => h("th", {}, c)))),
    h("tbody", {}, entries.map((e) => h("tr", {}, h("td", {}, time(e.at_ms)), h("td", {}, e.actor),
      h("td", {}, e.action), h("td", {}, h("code", {}, e.target)), h("td", {}, e.config_version)))));
}

// ---- operator view -------------------------------------------------------------------------

async function operatorView() {
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

async function operatorTenantView(tenant) {
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

// ---- routing -------------------------------------------------------------------------------

async function route() {
  clearInterval(refresh);
  const me = await whoami();
  const hash = location.hash || "#/";
  const signout = document.getElementById("signout");
  const nav = document.getElementById("nav");
  if (!me) {
    signout.hidden = true; nav.replaceChildren(); document.getElementById("who").textContent = "";
    main.replaceChildren(...signinView());
    return;
  }
  signout.hidden = false;
  document.getElementById("who").textContent = me.operator ? "Signed in as the operator" : `Signed in as tenant ${me.tenant}`;
  nav.replaceChildren(me.operator ? h("a", { href: "#/operator" }, "Tenants") : h("a", { href: `#/tenant/${enc(me.tenant)}` }, "My tenant"));
  try {
    let m;
    if ((m = hash.match(/^#\/tenant\/([^/]+)$/))) {
      const tenant = decodeURIComponent(m[1]);
      main.replaceChildren(...(await tenantView(tenant)));
      // Usage and the hostnames' ACME orders change on their own: the rest of the page stays put.
      refresh = setInterval(async () => {
        const old = document.getElementById("usage");
        if (old) old.replaceWith(await usageSection(tenant).catch(() => old));
        const names = document.getElementById("hostnames");
        if (names) names.replaceWith(await Promise.all([api("GET", `/v1/tenants/${enc(tenant)}`),
          api("GET", `/v1/tenants/${enc(tenant)}/acme`)])
          .then(([t, a]) => hostnamesSection(tenant, t.hostnames, a.hostnames)).catch(() => names));
      }, 3000);
    } else if ((m = hash.match(/^#\/tenant\/([^/]+)\/route\/([^/]+)$/))) {
      const path = `/v1/tenants/${m[1]}/routes/${m[2]}`;
      main.replaceChildren(...(await routeView(decodeURIComponent(m[1]), decodeURIComponent(m[2]))));
      // The live targets change with DNS, probes and ejections: the rest of the page stays put.
      refresh = setInterval(async () => {
        const old = document.getElementById("route-targets");
        if (old) old.replaceWith(await api("GET", path).then(targetsSection).catch(() => old));
      }, 2000);
    } else if (me.operator && (m = hash.match(/^#\/operator\/tenant\/([^/]+)$/))) {
      main.replaceChildren(...(await operatorTenantView(decodeURIComponent(m[1]))));
    } else if (me.operator) {
      main.replaceChildren(...(await operatorView()));
    } else {
      location.hash = `#/tenant/${enc(me.tenant)}`;
    }
  } catch (e) {
    main.replaceChildren(h("h1", {}, "Not available"), h("p", {}, e.message));
  }
}

window.addEventListener("hashchange", () => { say(""); route(); });
route();
