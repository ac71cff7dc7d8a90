// Profiles: list, create (agent, provider, endpoint and model offered from the API; the key
// is write-only), delete, open in a terminal.
import { clown, enc } from "./api.js";
import { refreshOn } from "./events.js";
import {
  announce, busy, emptyState, errorBox, field, formatDate, h, pageHeader, replace, section, select, table,
} from "./dom.js";
import { openTerminalFor } from "./terminals.js";

export function render(main) {
  const list = h("div", { id: "profiles-list", "aria-live": "polite" });
  const form = profileForm(() => load());
  main.append(pageHeader("Profiles"), section("Profiles", list), form);

  async function load() {
    try {
      const profiles = await clown("GET", "/api/profiles");
      replace(list, profiles.length ? profilesTable(profiles, load) : emptyState("No profiles yet. Create one below.", "profiles-empty"));
    } catch (err) {
      replace(list, errorBox(err));
    }
  }

  load();
  return refreshOn(["profiles"], load);
}

function profilesTable(profiles, reload) {
  return table("Profiles", ["Alias", "Agent", "Provider", "Endpoint", "Model", "Last used", "Actions"],
    profiles.map((p) => h("tr", { "data-profile": p.alias },
      h("td", { text: p.alias }),
      h("td", { text: p.agent_id }),
      h("td", { text: p.provider_id }),
      h("td", { text: p.endpoint_id || "default" }),
      h("td", { text: p.model || "–" }),
      h("td", { text: formatDate(p.last_used) }),
      h("td", { class: "actions" },
        h("button", {
          type: "button", "data-action": "profile-open-terminal", "data-profile": p.alias,
          "aria-label": `Open ${p.alias} in a terminal`, text: "Open terminal",
          onclick: (e) => busy(e.currentTarget, () => openTerminalFor(p.alias)).catch((err) => announce(err.message)),
        }),
        h("button", {
          type: "button", class: "danger", "data-action": "profile-delete", "data-profile": p.alias,
          "aria-label": `Delete profile ${p.alias}`, text: "Delete",
          onclick: (e) => deleteProfile(e.currentTarget, p.alias, reload),
        })))),
    { id: "profiles-table" });
}

async function deleteProfile(button, alias, reload) {
  if (!confirm(`Delete profile "${alias}"? Its home directory and stored key are removed.`)) return;
  try {
    await busy(button, () => clown("DELETE", `/api/profiles/${enc(alias)}`));
    announce(`Profile ${alias} deleted.`);
  } catch (err) {
    announce(`Could not delete ${alias}: ${err.message}`);
  }
  reload();
}

function profileForm(onCreated) {
  const alias = h("input", { id: "profile-alias", name: "alias", required: true, autocomplete: "off", pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]*", spellcheck: "false" });
  const agent = h("select", { id: "profile-agent", name: "agent_id", required: true });
  const provider = h("select", { id: "profile-provider", name: "provider_id", required: true });
  const endpoint = h("select", { id: "profile-endpoint", name: "endpoint_id" });
  const model = h("select", { id: "profile-model", name: "model" });
  const key = h("input", { id: "profile-key", name: "api_key", type: "password", autocomplete: "new-password", spellcheck: "false" });
  const proxy = h("input", { id: "profile-proxy", name: "proxy", type: "checkbox" });
  const submit = h("button", { id: "profile-create", type: "submit", class: "primary", text: "Create profile" });
  const status = h("div", { id: "profile-form-status", "aria-live": "polite" });
  const form = h("form", { id: "profile-form", class: "panel form", "aria-label": "Create profile", novalidate: false },
    h("h2", { text: "New profile" }),
    h("div", { class: "fields" },
      field("Alias", alias, "Letters, digits, dot, dash, underscore"),
      field("Agent", agent),
      field("Provider", provider),
      field("Endpoint", endpoint),
      field("Model", model),
      field("API key", key, "Stored in clown's secrets; never shown again. Leave empty for providers that need none."),
      h("div", { class: "field checkbox" }, proxy, h("label", { for: "profile-proxy", text: "Route through the metering proxy" }))),
    status,
    submit);

  const agentDetails = new Map();
  const providerDetails = new Map();

  async function detail(cache, path, id) {
    if (!id) return null;
    if (!cache.has(id)) cache.set(id, clown("GET", `${path}/${enc(id)}`).catch((err) => { cache.delete(id); throw err; }));
    return cache.get(id);
  }

  async function fillChoices() {
    try {
      const [agents, providers] = await Promise.all([clown("GET", "/api/agents"), clown("GET", "/api/providers")]);
      replace(agent, agents.map((a) => h("option", { value: a.id, text: `${a.name || a.id}${a.installed ? "" : " (not installed)"}` })));
      replace(provider, providers.map((p) => h("option", { value: p.id, text: `${p.name || p.id} (${p.type})` })));
      const firstInstalled = agents.find((a) => a.installed);
      if (firstInstalled) agent.value = firstInstalled.id;
      if (!agents.length || !providers.length) replace(status, errorBox("No agents or providers are known to the daemon."));
      await fillProviderChoices();
    } catch (err) {
      replace(status, errorBox(err));
    }
  }

  let choicesGeneration = 0;
  async function fillProviderChoices() {
    const mine = ++choicesGeneration;
    try {
      const [p, a] = await Promise.all([
        detail(providerDetails, "/api/providers", provider.value),
        detail(agentDetails, "/api/agents", agent.value),
      ]);
      if (mine !== choicesGeneration) return; // the agent or provider changed meanwhile
      const endpoints = Object.entries((p && p.endpoints) || {});
      const defaultName = p && p.default_endpoint;
      replace(endpoint,
        h("option", { value: "default", text: defaultName ? `default (${defaultName})` : "default" }),
        endpoints.map(([name, url]) => h("option", { value: name, text: `${name} — ${url}` })));
      const providerModels = (p && p.models) || [];
      const models = providerModels.length ? providerModels : (a && a.supported_models) || [];
      const preferred = providerModels.length ? p.default_model : (a && a.default_model);
      replace(model,
        models.length ? null : h("option", { value: "", text: "(agent's default)" }),
        models.map((m) => h("option", { value: m, selected: m === preferred, text: m })));
      key.placeholder = p && p.type === "self" ? "not needed: the agent's own login" : "";
    } catch (err) {
      if (mine === choicesGeneration) replace(status, errorBox(err));
    }
  }

  agent.addEventListener("change", fillProviderChoices);
  provider.addEventListener("change", fillProviderChoices);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    const body = { alias: alias.value.trim(), agent_id: agent.value, provider_id: provider.value, endpoint_id: endpoint.value || "default" };
    if (model.value) body.model = model.value;
    if (key.value) body.api_key = key.value;
    if (proxy.checked) body.proxy = true;
    replace(status);
    try {
      const created = await busy(submit, () => clown("POST", "/api/profiles", { body }));
      key.value = "";
      alias.value = "";
      replace(status, h("p", { class: "success", "data-testid": "profile-created", text: `Profile ${created.alias || body.alias} created.` }));
      onCreated();
    } catch (err) {
      replace(status, errorBox(err, "profile-error"));
    }
  });

  fillChoices();
  return form;
}
