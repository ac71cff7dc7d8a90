// Proxies: every profile's metering proxy with status, port and restarts; start and stop.
import { clown, enc } from "./api.js";
import { refreshOn } from "./events.js";
import { announce, badge, busy, emptyState, errorBox, formatDate, h, pageHeader, replace, section, table } from "./dom.js";

const RUNNING = new Set(["running", "starting", "backoff"]);

export function render(main) {
  const list = h("div", { id: "proxies-list", "aria-live": "polite" });
  main.append(pageHeader("Proxies"),
    h("p", { class: "hint", text: "A profile's proxy forwards its agent's API calls to the provider, adds the real key and meters every token." }),
    section("Proxies", list));

  async function load() {
    try {
      const [profiles, proxies] = await Promise.all([clown("GET", "/api/profiles"), clown("GET", "/api/proxy/status")]);
      const byProfile = new Map((proxies || []).map((p) => [p.profile, p]));
      const aliases = [...new Set([...profiles.map((p) => p.alias), ...byProfile.keys()])];
      replace(list, aliases.length
        ? proxyTable(aliases.map((alias) => byProfile.get(alias) || { profile: alias, status: "stopped" }), load)
        : emptyState("No profiles, so no proxies. Create a profile first.", "proxies-empty"));
    } catch (err) {
      replace(list, errorBox(err));
    }
  }

  load();
  return refreshOn(["proxy", "profiles", "workers"], load, 5000);
}

function proxyTable(proxies, reload) {
  return table("Proxies", ["Profile", "Status", "Port", "PID", "Restarts", "Started", "Actions"],
    proxies.map((p) => {
      const running = RUNNING.has(p.status);
      return h("tr", { "data-profile": p.profile, "data-status": p.status },
        h("td", { text: p.profile }),
        h("td", {}, badge(p.status)),
        h("td", { text: p.port ?? "–" }),
        h("td", { text: p.pid ?? "–" }),
        h("td", { class: "num", "data-value": p.restarts ?? 0, text: p.restarts ?? 0 }),
        h("td", { text: p.started_at ? formatDate(p.started_at) : "–" }),
        h("td", { class: "actions" },
          h("button", {
            type: "button", "data-action": "proxy-start", "data-profile": p.profile, disabled: running,
            "aria-label": `Start proxy for ${p.profile}`, text: "Start",
            onclick: (e) => act(e.currentTarget, p.profile, "start", reload),
          }),
          h("button", {
            type: "button", "data-action": "proxy-stop", "data-profile": p.profile, disabled: !running,
            "aria-label": `Stop proxy for ${p.profile}`, text: "Stop",
            onclick: (e) => act(e.currentTarget, p.profile, "stop", reload),
          })));
    }),
    { id: "proxies-table" });
}

async function act(button, alias, verb, reload) {
  try {
    const status = await busy(button, () => clown("POST", `/api/proxy/${enc(alias)}/${verb}`));
    announce(`Proxy for ${alias}: ${(status && status.status) || (verb === "start" ? "started" : "stopped")}.`);
  } catch (err) {
    announce(`Could not ${verb} the proxy for ${alias}: ${err.message}`);
  }
  reload();
}
