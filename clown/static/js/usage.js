// Usage: period / profile / model filters, totals and costs, a chart per day, a table per
// profile and per model, and importing Claude Code and Codex transcripts with progress.
import { clown } from "./api.js";
import { onTopic, refreshOn } from "./events.js";
import {
  busy, emptyState, errorBox, field, formatCost, formatDate, formatDuration, formatNumber, h, pageHeader, replace,
  section, select, table, value,
} from "./dom.js";
import { dayTokens, drawUsageChart } from "./usage-chart.js";

const PERIODS = [["today", "Today"], ["yesterday", "Yesterday"], ["week", "This week"], ["month", "This month"],
  ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["all", "All time"]];
const filters = { period: "7d", profile: "", model: "" }; // kept while the page is open

export function render(main) {
  const period = select({ id: "usage-period", name: "period" }, PERIODS, filters.period);
  const profile = h("select", { id: "usage-profile", name: "profile" }, h("option", { value: "", text: "All profiles" }));
  const model = h("select", { id: "usage-model", name: "model" }, h("option", { value: "", text: "All models" }));
  const controls = h("form", { id: "usage-filters", class: "inline-form", "aria-label": "Usage filters", onsubmit: (e) => e.preventDefault() },
    field("Period", period), field("Profile", profile), field("Model", model));
  const totals = h("div", { id: "usage-totals", "aria-live": "polite" });
  const chart = h("div", { id: "usage-chart", class: "chart" });
  const byProfile = h("div", { id: "usage-profiles" });
  const byModel = h("div", { id: "usage-models" });

  main.append(pageHeader("Usage"), controls, totals,
    section("Tokens and cost per day", chart),
    section("By profile", byProfile),
    section("By model", byModel),
    importPanel(() => load()));

  for (const [el, key] of [[period, "period"], [profile, "profile"], [model, "model"]]) {
    el.addEventListener("change", () => { filters[key] = el.value; load(); });
  }

  let models = new Set();
  async function loadProfiles() {
    try {
      const profiles = await clown("GET", "/api/profiles");
      replace(profile, h("option", { value: "", text: "All profiles" }), profiles.map((p) => h("option", { value: p.alias, text: p.alias })));
      profile.value = filters.profile;
    } catch { /* the totals show the API error */ }
  }

  function fillModels(usage) {
    for (const name of Object.keys((usage.aggregates && usage.aggregates.by_model) || {})) models.add(name);
    if (filters.model) models.add(filters.model);
    replace(model, h("option", { value: "", text: "All models" }), [...models].sort().map((m) => h("option", { value: m, text: m })));
    model.value = filters.model;
  }

  let generation = 0;
  async function load() {
    const mine = ++generation;
    totals.setAttribute("aria-busy", "true");
    try {
      const usage = await clown("GET", "/api/usage", { query: filters });
      if (mine !== generation) return; // a newer filter choice is loading
      totals.removeAttribute("aria-busy");
      replace(totals, totalsView(usage));
      drawUsageChart(chart, (usage.aggregates && usage.aggregates.by_day) || {});
      replace(byProfile, profileTable(usage));
      replace(byModel, modelTable(usage));
      fillModels(usage);
    } catch (err) {
      if (mine !== generation) return;
      totals.removeAttribute("aria-busy");
      replace(totals, errorBox(err, "usage-error"));
    }
  }

  loadProfiles();
  load();
  const stopRefresh = refreshOn(["usage"], () => load());
  return stopRefresh;
}

function totalsView(usage) {
  const t = usage.total_tokens || {};
  const c = usage.total_cost || {};
  const all = dayTokens(t);
  const stat = (label, content) => h("div", { class: "stat" }, h("dt", { text: label }), h("dd", {}, content));
  return [
    h("p", { class: "period-label" }, "Period: ", h("strong", { id: "usage-period-label", text: usage.period || "" })),
    h("dl", { class: "stats" },
      stat("Total tokens", value("usage-total-tokens", all, formatNumber(all))),
      stat("Total cost", value("usage-total-cost", c.total_cost ?? 0, formatCost(c.total_cost ?? 0))),
      stat("Sessions", value("usage-sessions", usage.total_sessions, formatNumber(usage.total_sessions))),
      stat("Runtime", value("usage-runtime", usage.total_runtime_secs, formatDuration(usage.total_runtime_secs)))),
    table("Tokens and cost by kind", ["Kind", "Tokens", "Cost"], [
      ["Input", value("usage-input-tokens", t.input_tokens || 0, formatNumber(t.input_tokens || 0)), formatCost(c.input_cost)],
      ["Output", value("usage-output-tokens", t.output_tokens || 0, formatNumber(t.output_tokens || 0)), formatCost(c.output_cost)],
      ["Cache writes", value("usage-cache-creation-tokens", t.cache_creation_input_tokens || 0, formatNumber(t.cache_creation_input_tokens || 0)), formatCost(c.cache_creation_cost)],
      ["Cache reads", value("usage-cache-read-tokens", t.cache_read_input_tokens || 0, formatNumber(t.cache_read_input_tokens || 0)), formatCost(c.cache_read_cost)],
    ], { id: "usage-breakdown", class: "compact" }),
    (usage.unpriced_models || []).length
      ? h("p", { id: "usage-unpriced", class: "warning", role: "note", text: `No price known for: ${usage.unpriced_models.join(", ")}. Their tokens are counted, their cost is not.` })
      : null,
  ];
}

function profileTable(usage) {
  const rows = Object.entries((usage.aggregates && usage.aggregates.by_profile) || {});
  if (!rows.length) return emptyState("No usage by any profile in this period.", "usage-profiles-empty");
  return table("Usage by profile", ["Profile", "Input", "Output", "Cache writes", "Cache reads", "Cost", "Sessions", "Runtime", "Last used"],
    rows.map(([name, p]) => {
      const t = p.tokens || {};
      return h("tr", { "data-profile": name },
        h("td", { text: p.profile || name || "(no profile)" }), // '' = imported from outside any profile
        h("td", { class: "num", text: formatNumber(t.input_tokens || 0) }),
        h("td", { class: "num", text: formatNumber(t.output_tokens || 0) }),
        h("td", { class: "num", text: formatNumber(t.cache_creation_input_tokens || 0) }),
        h("td", { class: "num", text: formatNumber(t.cache_read_input_tokens || 0) }),
        h("td", { class: "num", "data-value": (p.cost && p.cost.total_cost) ?? 0, text: formatCost((p.cost && p.cost.total_cost) ?? 0) }),
        h("td", { class: "num", text: formatNumber(p.sessions) }),
        h("td", { text: formatDuration(p.runtime_secs) }),
        h("td", { text: formatDate(p.last_used) }));
    }),
    { id: "usage-by-profile" });
}

function modelTable(usage) {
  const rows = Object.entries((usage.aggregates && usage.aggregates.by_model) || {});
  if (!rows.length) return emptyState("No usage by any model in this period.", "usage-models-empty");
  return table("Usage by model", ["Model", "Tokens", "Cost"],
    rows.map(([name, m]) => h("tr", { "data-model": name },
      h("td", {}, h("code", { text: name })),
      h("td", { class: "num", text: formatNumber(dayTokens(m.tokens)) }),
      h("td", { class: "num", text: (usage.unpriced_models || []).includes(name) ? "no price" : formatCost((m.cost && m.cost.total_cost) ?? 0) }))),
    { id: "usage-by-model" });
}

function importPanel(onDone) {
  const progress = h("progress", { id: "import-progress", max: 1, value: 0, "aria-label": "Import progress", hidden: true });
  const progressText = h("span", { id: "import-progress-text", "aria-live": "polite" });
  const result = h("div", { id: "import-result", "aria-live": "polite" });
  const claudeDir = h("input", { id: "import-claude-dir", name: "claude_dir", placeholder: "~/.claude", spellcheck: "false" });
  const codexDir = h("input", { id: "import-codex-dir", name: "codex_dir", placeholder: "~/.codex", spellcheck: "false" });

  async function run(button, path, param, dir) {
    replace(result);
    progress.hidden = false;
    progress.removeAttribute("value"); // indeterminate until the first progress event
    progressText.textContent = "Starting…";
    const stop = onTopic("usage", (m) => {
      if (m.event !== "import_progress" || !m.data) return;
      const { done_bytes: done, total_bytes: total, events } = m.data;
      progress.max = total || 1;
      progress.value = Math.min(done || 0, total || 1);
      progressText.textContent = `${formatNumber(done)} of ${formatNumber(total)} bytes, ${formatNumber(events)} events`;
    });
    try {
      const message = await busy(button, () => clown("POST", path, { query: { [param]: dir.value.trim() } }));
      progress.max = 1;
      progress.value = 1;
      progressText.textContent = "Done.";
      replace(result, h("p", { class: "success", "data-testid": "import-done", text: typeof message === "string" ? message : JSON.stringify(message) }));
      onDone();
    } catch (err) {
      progress.hidden = true;
      progressText.textContent = "";
      replace(result, errorBox(err, "import-error"));
    } finally {
      stop();
    }
  }

  const claudeButton = h("button", { id: "import-claude", type: "button", text: "Import Claude Code data", onclick: (e) => run(e.currentTarget, "/api/usage/import-claude", "claude_dir", claudeDir) });
  const codexButton = h("button", { id: "import-codex", type: "button", text: "Import Codex data", onclick: (e) => run(e.currentTarget, "/api/usage/import-codex", "codex_dir", codexDir) });
  return section("Import transcripts",
    h("p", { class: "hint", text: "Reads the usage recorded in an agent's own files. Events already imported are not counted twice. Leave the directory empty for the default." }),
    h("div", { class: "inline-form" }, field("Claude directory", claudeDir), claudeButton),
    h("div", { class: "inline-form" }, field("Codex directory", codexDir), codexButton),
    h("div", { class: "import-status" }, progress, " ", progressText),
    result);
}
