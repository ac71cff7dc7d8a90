// Agents and providers: what is installed (with versions), each provider's endpoints and models.
import { clown, enc } from "./api.js";
import { badge, emptyState, errorBox, h, pageHeader, replace, section, table } from "./dom.js";

export function render(main) {
  const agents = h("div", { id: "agents-list" }, h("p", { class: "loading", text: "Loading…" }));
  const providers = h("div", { id: "providers-list" }, h("p", { class: "loading", text: "Loading…" }));
  main.append(pageHeader("Agents & providers"), section("Agents", agents), section("Providers", providers));
  loadAgents(agents);
  loadProviders(providers);
}

async function loadAgents(el) {
  try {
    const list = await clown("GET", "/api/agents");
    const details = await Promise.all(list.map((a) => clown("GET", `/api/agents/${enc(a.id)}`).catch(() => a)));
    replace(el, list.length
      ? table("Agents", ["Agent", "Installed", "Version", "Binary", "Models", "Profiles"],
        details.map((a, i) => h("tr", { "data-agent": a.id },
          h("td", {}, h("strong", { text: a.name || a.id }), h("br"), h("code", { text: a.id })),
          h("td", {}, badge(a.installed ? "installed" : "missing")),
          h("td", { text: a.version || "–" }),
          h("td", {}, h("code", { text: a.binary_path || a.binary || "–" })),
          h("td", {}, modelList(a.supported_models, a.default_model)),
          h("td", { class: "num", text: list[i].profile_count ?? "–" }))),
        { id: "agents-table" })
      : emptyState("No agents are known to the daemon.", "agents-empty"));
  } catch (err) {
    replace(el, errorBox(err));
  }
}

async function loadProviders(el) {
  try {
    const list = await clown("GET", "/api/providers");
    const details = await Promise.all(list.map((p) => clown("GET", `/api/providers/${enc(p.id)}`).catch(() => p)));
    replace(el, list.length
      ? table("Providers", ["Provider", "Type", "Endpoints", "Models"],
        details.map((p) => h("tr", { "data-provider": p.id },
          h("td", {}, h("strong", { text: p.name || p.id }), h("br"), h("code", { text: p.id })),
          h("td", { text: p.type }),
          h("td", {}, endpointList(p.endpoints, p.default_endpoint)),
          h("td", {}, modelList(p.models, p.default_model)))),
        { id: "providers-table" })
      : emptyState("No providers are known to the daemon.", "providers-empty"));
  } catch (err) {
    replace(el, errorBox(err));
  }
}

function endpointList(endpoints, defaultName) {
  const entries = Object.entries(endpoints || {});
  if (!entries.length) return "–";
  return h("ul", { class: "plain" }, entries.map(([name, url]) => h("li", {},
    h("span", { text: name }), name === defaultName ? h("em", { text: " (default)" }) : null, " ", h("code", { text: url }))));
}

function modelList(models, defaultModel) {
  if (!models || !models.length) return defaultModel || "–";
  return h("ul", { class: "plain" }, models.map((m) => h("li", {}, h("code", { text: m }), m === defaultModel ? h("em", { text: " (default)" }) : null)));
}
