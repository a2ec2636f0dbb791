// The console's building blocks: elements, messages, the API call, and the audit table every view
// shows. Every value from the API is inserted as text, never as HTML.

export const TOKEN = "wharf.token";
const message = document.getElementById("message");

// What an action re-renders once done (the router, set by app.js).
let rerender = async () => {};
export function setRerender(fn) { rerender = fn; }

// ---- helpers -------------------------------------------------------------------------------

export function h(tag, attrs = {}, ...children) {
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

export function say(text, kind = "error") {
  message.textContent = text || "";
  message.className = text ? kind : "";
}

export class ApiError extends Error {}

export async function api(method, path, body) {
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
export async function act(fn, done) {
  try {
    await fn();
    await rerender();
    say(done || "", "info");
  } catch (e) {
    say(e.message);
  }
}

export function field(label, input) { return h("label", {}, label, input); }
export function time(ms) { return new Date(ms).toLocaleString(); }
export function enc(s) { return encodeURIComponent(s); }

export function auditTable(entries) {
  return h("table", {}, h("thead", {}, h("tr", {}, ["When", "Who", "What", "Target", "Version"].map((c) => h("th", {}, c)))),
    h("tbody", {}, entries.map((e) => h("tr", {}, h("td", {}, time(e.at_ms)), h("td", {}, e.actor),
      h("td", {}, e.action), h("td", {}, h("code", {}, e.target)), h("td", {}, e.config_version)))));
}
