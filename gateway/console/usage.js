// A tenant's usage over the last minutes: small line charts drawn as inline SVG.

import { api, enc, h } from "./ui.js";

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

export async function usageSection(tenant) {
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
