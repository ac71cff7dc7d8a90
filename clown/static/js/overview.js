// Overview: daemon status and uptime, supervised programs and their restarts, active
// proxies, running terminal and agent sessions.
import { clown, sessions } from "./api.js";
import { refreshOn } from "./events.js";
import {
  badge, emptyState, errorBox, formatDate, formatDuration, h, pageHeader, replace, section, table, value,
} from "./dom.js";

const ACTIVE_AGENT_STATUSES = new Set(["starting", "running", "idle", "waiting"]);

export function render(main) {
  const body = h("div", { id: "overview", "aria-busy": "true" });
  main.append(pageHeader("Overview"), body);

  async function load() {
    const [daemon, proxies, terms, agentSessions] = await Promise.allSettled([
      clown("GET", "/api/daemon/status"),
      clown("GET", "/api/proxy/status"),
      clown("GET", "/api/terminal/sessions"),
      sessions("GET", "/api/sessions"),
    ]);
    body.removeAttribute("aria-busy");
    replace(body,
      daemonPanel(daemon),
      programsPanel(daemon),
      proxiesPanel(proxies),
      sessionsPanel(terms, agentSessions));
  }

  load();
  return refreshOn(["workers", "proxy", "sessions", "profiles"], load, 5000);
}

function daemonPanel(result) {
  if (result.status === "rejected") return section("Daemon", errorBox(result.reason));
  const d = result.value || {};
  const item = (label, content) => h("div", { class: "stat" }, h("dt", { text: label }), h("dd", {}, content));
  return section("Daemon",
    h("dl", { class: "stats", id: "overview-daemon" },
      item("Status", h("span", { id: "overview-status" }, badge(d.status))),
      item("Uptime", value("overview-uptime", d.uptime_secs, formatDuration(d.uptime_secs))),
      item("Version", value("overview-version", d.version, d.version || "–")),
      item("PID", value("overview-pid", d.pid, d.pid ?? "–")),
      item("Profiles", h("a", { href: "#/profiles" }, value("overview-profiles-count", d.profiles_count, d.profiles_count ?? "–"))),
      item("Active proxies", h("a", { href: "#/proxies" }, value("overview-active-proxies", d.active_proxies, d.active_proxies ?? "–")))));
}

function programsPanel(result) {
  if (result.status === "rejected") return null;
  const programs = (result.value && result.value.programs) || [];
  if (!programs.length) return section("Programs", emptyState("No supervised programs reported.", "programs-empty"));
  return section("Programs", table("Supervised programs", ["Program", "State", "PID", "Restarts"],
    programs.map((p) => h("tr", { "data-program": p.name },
      h("td", { text: p.name }),
      h("td", {}, badge(p.state)),
      h("td", { text: p.pid ?? "–" }),
      h("td", { class: "num", "data-value": p.restarts ?? 0, text: p.restarts ?? 0 }))),
    { id: "overview-programs" }));
}

function proxiesPanel(result) {
  if (result.status === "rejected") return section("Active proxies", errorBox(result.reason));
  const running = (result.value || []).filter((p) => p.status !== "stopped");
  if (!running.length) return section("Active proxies", emptyState("No proxy is running. Start one on the Proxies page.", "proxies-empty"));
  return section("Active proxies", table("Active proxies", ["Profile", "Status", "Port", "Restarts", "Started"],
    running.map((p) => h("tr", { "data-profile": p.profile },
      h("td", { text: p.profile }),
      h("td", {}, badge(p.status)),
      h("td", { text: p.port ?? "–" }),
      h("td", { class: "num", text: p.restarts ?? 0 }),
      h("td", { text: formatDate(p.started_at) }))),
    { id: "overview-proxies" }));
}

function sessionsPanel(terms, agentSessions) {
  const rows = [];
  if (terms.status === "fulfilled") {
    for (const t of terms.value || []) {
      if (t.state === "terminated") continue;
      rows.push(h("tr", { "data-terminal-id": t.id },
        h("td", {}, h("a", { href: `#/terminals/${encodeURIComponent(t.id)}`, text: `Terminal ${t.id.slice(0, 8)}` })),
        h("td", { text: t.profile_alias }),
        h("td", {}, badge(t.state)),
        h("td", { text: formatDate(t.created_at) })));
    }
  }
  if (agentSessions.status === "fulfilled") {
    for (const s of (agentSessions.value && agentSessions.value.sessions) || []) {
      if (!ACTIVE_AGENT_STATUSES.has(s.status)) continue;
      rows.push(h("tr", { "data-session-id": s.id },
        h("td", {}, h("a", { href: `#/sessions/${encodeURIComponent(s.id)}`, text: s.name || s.id })),
        h("td", { text: s.agent }),
        h("td", {}, badge(s.status)),
        h("td", { text: formatDate(s.created_at) })));
    }
  }
  const errors = [terms, agentSessions].filter((r) => r.status === "rejected").map((r) => errorBox(r.reason));
  return section("Running sessions", errors,
    rows.length
      ? table("Running sessions", ["Session", "Profile / agent", "Status", "Started"], rows, { id: "overview-sessions" })
      : emptyState("No terminal or agent session is running.", "sessions-empty"));
}
