// Terminals: the list of terminal sessions, a form to start one, and the open panes
// (several at once). #/terminals/<id> opens that session's pane and focuses it.
import { clown, enc } from "./api.js";
import { refreshOn } from "./events.js";
import {
  announce, badge, busy, emptyState, errorBox, field, formatDate, h, pageHeader, replace, section, table,
} from "./dom.js";
import { TerminalPane } from "./terminal-pane.js";

const OPEN_KEY = "clown.openTerminals";
let page = null; // the live page while #/terminals is shown

/** Start a terminal for a profile and show it. */
export async function openTerminalFor(profileAlias, workingDir) {
  const body = { profile_alias: profileAlias, cols: 80, rows: 24 };
  if (workingDir) body.working_dir = workingDir;
  const created = await clown("POST", "/api/terminal/sessions", { body });
  location.hash = `#/terminals/${enc(created.session_id)}`;
  return created;
}

function savedOpenIds() {
  try { return JSON.parse(sessionStorage.getItem(OPEN_KEY)) || []; } catch { return []; }
}

function saveOpenIds(ids) {
  try { sessionStorage.setItem(OPEN_KEY, JSON.stringify(ids)); } catch { /* private mode */ }
}

export function render(main, param) {
  const panes = new Map();
  const paneArea = h("div", { id: "terminal-panes", "aria-label": "Open terminals" });
  const list = h("div", { id: "terminals-list" });
  let lastListing = "";

  const profile = h("select", { id: "terminal-profile", name: "profile_alias", required: true });
  const workingDir = h("input", { id: "terminal-working-dir", name: "working_dir", placeholder: "profile home", spellcheck: "false" });
  const createButton = h("button", { id: "new-terminal", type: "submit", class: "primary", text: "New terminal" });
  const formStatus = h("div", { "aria-live": "polite" });
  const form = h("form", { id: "terminal-form", class: "inline-form", "aria-label": "New terminal" },
    field("Profile", profile), field("Working directory", workingDir), createButton, formStatus);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(formStatus);
    if (!profile.value) { replace(formStatus, errorBox("Create a profile first.")); return; }
    try {
      await busy(createButton, () => openTerminalFor(profile.value, workingDir.value.trim()));
    } catch (err) {
      replace(formStatus, errorBox(err, "terminal-error"));
    }
  });

  const cleanupButton = h("button", { id: "terminals-cleanup", type: "button", text: "Remove terminated", onclick: async (e) => {
    try { await busy(e.currentTarget, () => clown("POST", "/api/terminal/cleanup")); announce("Terminated sessions removed."); } catch (err) { announce(err.message); }
    loadList();
  } });

  main.append(pageHeader("Terminals"), section("Start a terminal", form), paneArea, section("Terminal sessions", h("div", { class: "toolbar" }, cleanupButton), list));

  function open(id, focus) {
    if (!panes.has(id)) {
      const pane = new TerminalPane(id, { onClose: close });
      panes.set(id, pane);
      paneArea.append(pane.element);
      paneArea.dataset.count = panes.size;
      saveOpenIds([...panes.keys()]);
      if (focus) pane.focus();
      pane.start();
    } else if (focus) {
      panes.get(id).focus();
    }
  }

  function close(id) {
    const pane = panes.get(id);
    if (!pane) return;
    pane.dispose();
    panes.delete(id);
    paneArea.dataset.count = panes.size;
    saveOpenIds([...panes.keys()]);
    if (location.hash === `#/terminals/${enc(id)}`) history.replaceState(null, "", "#/terminals");
  }

  async function loadProfiles() {
    try {
      const profiles = await clown("GET", "/api/profiles");
      replace(profile, profiles.length ? profiles.map((p) => h("option", { value: p.alias, text: `${p.alias} (${p.agent_id})` })) : h("option", { value: "", text: "no profiles" }));
    } catch (err) {
      replace(formStatus, errorBox(err));
    }
  }

  async function loadList() {
    try {
      const sessions = await clown("GET", "/api/terminal/sessions");
      const listing = JSON.stringify(sessions);
      if (listing === lastListing) return; // keep focus and selection when nothing changed
      lastListing = listing;
      replace(list, sessions.length ? sessionsTable(sessions) : emptyState("No terminal sessions. Start one above.", "terminals-empty"));
    } catch (err) {
      lastListing = "";
      replace(list, errorBox(err));
    }
  }

  function sessionsTable(sessions) {
    return table("Terminal sessions", ["Session", "Profile", "State", "Started", "PID", "Size", "Clients", "Actions"],
      sessions.map((t) => h("tr", { "data-terminal-id": t.id },
        h("td", {}, h("code", { text: t.id.slice(0, 8) })),
        h("td", { text: t.profile_alias }),
        h("td", {}, badge(t.state)),
        h("td", { text: formatDate(t.created_at) }),
        h("td", { text: t.pid ?? "–" }),
        h("td", { text: `${t.cols}×${t.rows}` }),
        h("td", { class: "num", text: t.client_count ?? 0 }),
        h("td", { class: "actions" },
          h("a", { class: "button", href: `#/terminals/${enc(t.id)}`, "data-action": "terminal-attach", "data-session-id": t.id, "aria-label": `Attach to terminal ${t.id.slice(0, 8)}`, text: "Attach" }),
          t.state === "terminated" ? null : h("button", {
            type: "button", class: "danger", "data-action": "terminal-terminate", "data-session-id": t.id,
            "aria-label": `Terminate terminal ${t.id.slice(0, 8)}`, text: "Terminate",
            onclick: async (e) => {
              if (!confirm("Terminate this terminal session? Every process in it is killed.")) return;
              try { await busy(e.currentTarget, () => clown("DELETE", `/api/terminal/sessions/${enc(t.id)}`)); } catch (err) { announce(err.message); }
              loadList();
            },
          })))),
      { id: "terminals-table" });
  }

  for (const id of savedOpenIds()) open(id, false);
  if (param) open(param, true);
  loadProfiles();
  loadList();
  const stopRefresh = refreshOn(["workers", "sessions"], loadList, 3000);

  page = { open };
  return () => {
    stopRefresh();
    for (const pane of panes.values()) pane.dispose();
    panes.clear();
    page = null;
  };
}

/** Route change within #/terminals: open and focus the pane, keep the others. */
export function update(param) {
  if (page && param) page.open(param, true);
}
