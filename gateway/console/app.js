// Wharf console: a tenant's hostnames (and their certificates over ACME), routes, plugins, certificates, usage and audit trail, and
// the operator's tenants, quotas, keys and audit log, all through the same /v1 API (the console
// never shows what the API would refuse). The token lives in sessionStorage only. Every value
// from the API is inserted as text, never as HTML.

import { TOKEN, api, enc, field, h, say, setRerender } from "./ui.js";
import { usageSection } from "./usage.js";
import { routeView, targetsSection } from "./routes.js";
import { hostnamesSection, tenantView } from "./tenant.js";
import { operatorTenantView, operatorView } from "./operator.js";

const main = document.getElementById("main");
let refresh = null;

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

setRerender(route);
window.addEventListener("hashchange", () => { say(""); route(); });
route();
