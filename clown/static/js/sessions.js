// Agent sessions: the list and the create form (#/sessions), and one session's live chat
// with its tool calls and results (#/sessions/<id>).
import { clown, enc, sessions as api } from "./api.js";
import { on, refreshOn, send, subscribeSession } from "./events.js";
import {
  announce, badge, busy, emptyState, errorBox, field, formatDate, h, pageHeader, replace, section, select, table,
} from "./dom.js";

const ACCESS_MODES = ["read-write", "read-only"];

export function render(main, id) {
  return id ? renderSession(main, id) : renderList(main);
}

function renderList(main) {
  const list = h("div", { id: "sessions-list" });
  const archived = h("input", { id: "sessions-show-archived", type: "checkbox", onchange: () => load() });
  main.append(pageHeader("Agent sessions"),
    section("Sessions",
      h("div", { class: "toolbar" }, h("div", { class: "field checkbox" }, archived, h("label", { for: "sessions-show-archived", text: "Show archived" }))),
      list),
    sessionForm());

  async function load() {
    try {
      const body = await api("GET", "/api/sessions", { query: { include_archived: archived.checked ? "true" : undefined } });
      const rows = body.sessions || [];
      replace(list, rows.length ? sessionsTable(rows, load) : emptyState("No agent sessions. Create one below.", "sessions-empty"));
    } catch (err) {
      replace(list, errorBox(err));
    }
  }

  load();
  return refreshOn(["sessions"], load, 10000);
}

function sessionsTable(rows, reload) {
  return table("Agent sessions", ["Session", "Agent", "Backend", "Access", "Status", "Repository", "Created", "Actions"],
    rows.map((s) => h("tr", { "data-session-id": s.id, class: s.archived ? "archived" : null },
      h("td", {}, h("a", { href: `#/sessions/${enc(s.id)}`, text: s.name || s.id })),
      h("td", { text: s.agent }),
      h("td", { text: s.backend }),
      h("td", { text: s.access_mode }),
      h("td", {}, badge(s.status), s.archived ? h("span", { class: "badge", text: "archived" }) : null),
      h("td", {}, h("code", { text: s.repo_path })),
      h("td", { text: formatDate(s.created_at) }),
      h("td", { class: "actions" }, sessionActions(s, reload)))),
    { id: "sessions-table" });
}

/** Archive/unarchive and delete buttons, shared by the list and the detail view. */
function sessionActions(s, after) {
  const label = s.name || s.id;
  return [
    h("button", {
      type: "button", "data-action": s.archived ? "session-unarchive" : "session-archive", "data-session-id": s.id,
      "aria-label": `${s.archived ? "Unarchive" : "Archive"} session ${label}`, text: s.archived ? "Unarchive" : "Archive",
      onclick: async (e) => {
        try {
          await busy(e.currentTarget, () => api("POST", `/api/sessions/${enc(s.id)}/${s.archived ? "unarchive" : "archive"}`));
          announce(`Session ${label} ${s.archived ? "unarchived" : "archived"}.`);
        } catch (err) { announce(err.message); }
        after();
      },
    }),
    h("button", {
      type: "button", class: "danger", "data-action": "session-delete", "data-session-id": s.id,
      "aria-label": `Delete session ${label}`, text: "Delete",
      onclick: async (e) => {
        if (!confirm(`Delete session ${label}? Its worktree and history are removed.`)) return;
        try {
          await busy(e.currentTarget, () => api("DELETE", `/api/sessions/${enc(s.id)}`, { query: { force: "true" } }));
          announce(`Session ${label} deleted.`);
          if (location.hash.startsWith("#/sessions/")) { location.hash = "#/sessions"; return; }
        } catch (err) { announce(err.message); }
        after();
      },
    }),
  ];
}

function sessionForm() {
  const repo = h("input", { id: "session-repo", name: "repo_path", required: true, placeholder: "/home/you/project", spellcheck: "false" });
  const prompt = h("textarea", { id: "session-prompt", name: "prompt", rows: 4, required: true });
  const agent = h("select", { id: "session-agent", name: "agent" });
  const profile = h("select", { id: "session-profile", name: "profile" });
  const backend = h("select", { id: "session-backend", name: "backend" });
  const access = select({ id: "session-access", name: "access_mode" }, ACCESS_MODES, "read-write");
  const noPlan = h("input", { id: "session-no-plan-mode", name: "no_plan_mode", type: "checkbox" });
  const submit = h("button", { id: "session-create", type: "submit", class: "primary", text: "Create session" });
  const status = h("div", { id: "session-form-status", "aria-live": "polite" });
  const form = h("form", { id: "session-form", class: "panel form", "aria-label": "Create agent session" },
    h("h2", { text: "New agent session" }),
    h("div", { class: "fields" },
      field("Repository", repo, "Absolute path of a git repository"),
      field("Agent", agent),
      field("Profile", profile, "Empty: the agent's most recently used profile"),
      field("Backend", backend),
      field("Access mode", access),
      h("div", { class: "field checkbox" }, noPlan, h("label", { for: "session-no-plan-mode", text: "Skip plan mode" }))),
    field("Prompt", prompt),
    status, submit);

  let profiles = [];
  function fillProfiles() {
    const mine = profiles.filter((p) => p.agent_id === agent.value);
    replace(profile, h("option", { value: "", text: "(most recently used)" }), mine.map((p) => h("option", { value: p.alias, text: p.alias })));
  }
  agent.addEventListener("change", fillProfiles);

  (async () => {
    try {
      const [config, agents, profileList] = await Promise.all([
        api("GET", "/api/config"), clown("GET", "/api/agents"), clown("GET", "/api/profiles")]);
      profiles = profileList;
      replace(agent, agents.map((a) => h("option", { value: a.id, text: `${a.name || a.id}${a.installed ? "" : " (not installed)"}` })));
      if (config.default_agent && agents.some((a) => a.id === config.default_agent)) agent.value = config.default_agent;
      const backends = config.backends ? Object.entries(config.backends) : [[config.default_backend, true]];
      replace(backend, backends.map(([name, available]) => h("option", { value: name, disabled: !available, text: available ? name : `${name} (not available)` })));
      if (config.default_backend) backend.value = config.default_backend;
      fillProfiles();
    } catch (err) {
      replace(status, errorBox(err));
    }
  })();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    const body = {
      repo_path: repo.value.trim(), prompt: prompt.value, agent: agent.value, backend: backend.value,
      access_mode: access.value, no_plan_mode: noPlan.checked,
    };
    if (profile.value) body.profile = profile.value;
    replace(status);
    try {
      const created = await busy(submit, () => api("POST", "/api/sessions", { body }));
      location.hash = `#/sessions/${enc(created.id)}`;
    } catch (err) {
      replace(status, errorBox(err, "session-error"));
    }
  });
  return form;
}

function renderSession(main, id) {
  const title = h("span", { text: "Agent session" });
  const info = h("div", { id: "session-info" });
  const chat = h("ol", { id: "chat-log", class: "chat", "aria-label": "Conversation", "aria-live": "polite" });
  const input = h("textarea", { id: "chat-input", name: "content", rows: 3, required: true, "aria-label": "Message to the agent" });
  const sendButton = h("button", { id: "chat-send", type: "submit", class: "primary", text: "Send" });
  const chatStatus = h("div", { "aria-live": "polite" });
  const chatForm = h("form", { id: "chat-form", class: "chat-form", "aria-label": "Send a message" }, input, h("div", {}, sendButton, h("small", { class: "hint", text: " Ctrl+Enter sends" })), chatStatus);
  main.append(
    h("p", {}, h("a", { href: "#/sessions", text: "← All agent sessions" })),
    pageHeader(title), info, section("Conversation", chat, chatForm));

  let session = null;
  const pending = []; // our messages not yet echoed back by the server

  function showInfo() {
    title.textContent = session.name || session.id;
    const mode = select({ id: "session-access-mode", "aria-label": "Access mode" }, ACCESS_MODES, session.access_mode);
    mode.addEventListener("change", async () => {
      try {
        const result = await api("PUT", `/api/sessions/${enc(id)}/access-mode`, { body: { access_mode: mode.value } });
        session.access_mode = result.access_mode || mode.value;
        announce(`Access mode set to ${session.access_mode}.`);
      } catch (err) {
        mode.value = session.access_mode;
        announce(`Could not change the access mode: ${err.message}`);
      }
    });
    const item = (label, content) => h("div", { class: "stat" }, h("dt", { text: label }), h("dd", {}, content));
    replace(info, h("dl", { class: "stats" },
      item("Status", h("span", { id: "session-status" }, badge(session.status))),
      item("Agent", session.agent), item("Backend", session.backend),
      item("Access mode", mode),
      item("Repository", h("code", { text: session.repo_path })),
      item("Worktree", h("code", { text: session.worktree_path || "–" })),
      item("Created", formatDate(session.created_at))),
    h("div", { class: "toolbar" }, sessionActions(session, load)));
  }

  async function load() {
    try {
      session = await api("GET", `/api/sessions/${enc(id)}`);
      showInfo();
      replace(chat, (session.chat_history || []).flatMap(historyItems));
      if (!chat.children.length) chat.append(h("li", { class: "empty", text: "No messages yet." }));
      chat.lastElementChild?.scrollIntoView({ block: "end" });
    } catch (err) {
      replace(info, errorBox(err));
    }
  }

  function appendItem(item) {
    chat.querySelector(":scope > li.empty")?.remove();
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    chat.append(item);
    if (atBottom) item.scrollIntoView({ block: "end" });
  }

  const stops = [
    subscribeSession(id),
    on("chat_message", (m) => {
      if (m.session_id !== id || !m.message) return;
      const echoed = m.message.role === "user" && pending.findIndex((p) => p.content === contentText(m.message.content));
      if (echoed !== false && echoed >= 0) {
        pending.splice(echoed, 1)[0].element.classList.remove("pending");
        return;
      }
      historyItems(m.message).forEach(appendItem);
    }),
    on("tool_call", (m) => { if (m.session_id === id) appendItem(toolItem("tool-call", m.tool)); }),
    on("tool_result", (m) => { if (m.session_id === id) appendItem(toolItem("tool-result", m.tool)); }),
    on("session_status", (m) => {
      if (m.session_id !== id || !session) return;
      session.status = m.status;
      const el = document.getElementById("session-status");
      if (el) replace(el, badge(m.status));
    }),
    on("error", (m) => { if (m.error) replace(chatStatus, errorBox(m.error.message || m.error.code)); }),
    on("socket_open", () => load()), // catch up on what was said while disconnected
  ];

  chatForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    replace(chatStatus);
    if (!send({ type: "send_message", session_id: id, content })) {
      replace(chatStatus, errorBox("Not connected to the daemon; the message was not sent. Try again in a moment."));
      return;
    }
    const element = messageItem({ role: "user", content });
    element.classList.add("pending");
    pending.push({ content, element });
    appendItem(element);
    input.value = "";
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) chatForm.requestSubmit();
  });

  load();
  return () => stops.forEach((stop) => stop());
}

/** Text of a message's content: a string, or content blocks ({type:"text", text}). */
function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.filter((b) => b && b.type === "text").map((b) => b.text).join("\n");
  return content === null || content === undefined ? "" : JSON.stringify(content);
}

/** Chat history entries become list items; content blocks with tool use are shown as tools. */
function historyItems(message) {
  if (message.tool) return [toolItem(message.type === "tool_result" || message.role === "tool" ? "tool-result" : "tool-call", message.tool)];
  if (!Array.isArray(message.content)) return [messageItem(message)];
  const items = [];
  const text = contentText(message.content);
  if (text) items.push(messageItem({ role: message.role, content: text }));
  for (const block of message.content) {
    if (block && block.type === "tool_use") items.push(toolItem("tool-call", { name: block.name, input: block.input }));
    if (block && block.type === "tool_result") items.push(toolItem("tool-result", { name: block.name || block.tool_use_id, output: block.content }));
  }
  return items;
}

function messageItem(message) {
  const role = message.role || "assistant";
  return h("li", { class: `message role-${role}`, "data-role": role },
    h("span", { class: "who", text: role === "user" ? "You" : role === "assistant" ? "Agent" : role }),
    h("div", { class: "content", text: contentText(message.content) }));
}

function toolItem(kind, tool = {}) {
  const payload = kind === "tool-call" ? tool.input : tool.output;
  const text = typeof payload === "string" ? payload : JSON.stringify(payload, null, 2);
  return h("li", { class: `tool ${kind}`, "data-kind": kind, "data-tool": tool.name || "" },
    h("details", { open: kind === "tool-call" || (text || "").length <= 2000 }, // long results start folded
      h("summary", {}, h("span", { class: "who", text: kind === "tool-call" ? "Tool call" : "Tool result" }), " ", h("code", { text: tool.name || "tool" })),
      h("pre", { text: text ?? "" })));
}
