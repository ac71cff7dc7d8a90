// Logs: the recent lines of the daemon's and each program's log (secrets redacted by the API).
import { clown, enc } from "./api.js";
import { emptyState, errorBox, field, formatNumber, h, pageHeader, replace, section } from "./dom.js";

let chosen = { program: "", lines: 200 };

export function render(main) {
  const program = h("select", { id: "logs-program", name: "program" });
  const lines = h("input", { id: "logs-lines", name: "lines", type: "number", min: 1, max: 5000, value: String(chosen.lines) });
  const follow = h("input", { id: "logs-follow", type: "checkbox" });
  const refresh = h("button", { id: "logs-refresh", type: "submit", text: "Show" });
  const output = h("pre", { id: "logs-output", class: "log", tabindex: "0", "aria-label": "Log lines" });
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { id: "logs-form", class: "inline-form", "aria-label": "Choose a log" },
    field("Program", program), field("Lines", lines), refresh,
    h("div", { class: "field checkbox" }, follow, h("label", { for: "logs-follow", text: "Follow (every 2 s)" })));
  main.append(pageHeader("Logs"), form, status, section("Log", output));

  async function loadPrograms() {
    try {
      const programs = (await clown("GET", "/api/logs")).map((p) => (typeof p === "string" ? { program: p } : p));
      if (!programs.length) {
        replace(status, emptyState("No program has written a log yet.", "logs-empty"));
        return;
      }
      replace(program, programs.map((p) => {
        const name = p.program || p.name;
        return h("option", { value: name, text: p.size_bytes === undefined ? name : `${name} (${formatNumber(p.size_bytes)} bytes)` });
      }));
      if (chosen.program && programs.some((p) => (p.program || p.name) === chosen.program)) program.value = chosen.program;
      await loadLines();
    } catch (err) {
      replace(status, errorBox(err));
    }
  }

  async function loadLines() {
    if (!program.value) return;
    chosen = { program: program.value, lines: Number(lines.value) || 200 };
    try {
      const log = await clown("GET", `/api/logs/${enc(chosen.program)}`, { query: { lines: chosen.lines } });
      replace(status);
      const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 20;
      output.textContent = (log.lines || []).join("\n");
      if (!log.lines || !log.lines.length) output.textContent = "(empty)";
      if (atBottom) output.scrollTop = output.scrollHeight;
    } catch (err) {
      replace(status, errorBox(err));
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); loadLines(); });
  program.addEventListener("change", loadLines);
  const timer = setInterval(() => { if (follow.checked) loadLines(); }, 2000);
  loadPrograms();
  return () => clearInterval(timer);
}
