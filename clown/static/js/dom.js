// Small DOM and formatting helpers shared by the views.

/**
 * Create an element. `attrs` keys: `class`, `text`, `on<event>` (a listener), `dataset`
 * (object), `style`, boolean properties (hidden, disabled, checked, selected, required),
 * everything else as an attribute (id, aria-*, data-*, type, ...). Children are nodes,
 * strings or arrays of them; null/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (["hidden", "disabled", "checked", "selected", "required", "open", "value"].includes(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A page heading plus an optional toolbar; the heading takes focus after navigation. */
export function pageHeader(title, ...tools) {
  return h("header", { class: "page-header" },
    h("h1", { tabindex: "-1" }, title),
    tools.length ? h("div", { class: "toolbar" }, tools) : null);
}

export function section(title, ...children) {
  return h("section", { class: "panel", "aria-label": title }, h("h2", { text: title }), children);
}

export function emptyState(text, testid) {
  return h("p", { class: "empty", "data-testid": testid || "empty-state", text });
}

/** An error box (role=alert) with the API's message. */
export function errorBox(error, testid = "error") {
  return h("p", { class: "error", role: "alert", "data-testid": testid, text: errorText(error) });
}

export function errorText(error) {
  if (!error) return "";
  return typeof error === "string" ? error : error.message || String(error);
}

/** A <table> with a caption read by screen readers; `rows` are arrays of cells or <tr>s. */
export function table(caption, headings, rows, attrs = {}) {
  return h("table", attrs,
    h("caption", { class: "visually-hidden", text: caption }),
    h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, rows.map((row) => (row instanceof Node ? row : h("tr", {}, row.map((c) => h("td", {}, c)))))));
}

export function badge(status) {
  const value = status === null || status === undefined ? "unknown" : String(status);
  return h("span", { class: `badge status-${value.toLowerCase().replace(/[^a-z0-9-]/g, "")}`, "data-status": value, text: value });
}

/** A labelled form field. `control` is an <input>, <select> or <textarea> with an id. */
export function field(label, control, hint) {
  return h("div", { class: "field" },
    h("label", { for: control.id, text: label }),
    control,
    hint ? h("small", { class: "hint", text: hint }) : null);
}

export function select(attrs, options, selected) {
  return h("select", attrs, options.map((opt) => {
    const [value, label] = Array.isArray(opt) ? opt : [opt, opt];
    return h("option", { value, selected: value === selected, text: label });
  }));
}

/** Briefly announce a result in the page's status line (aria-live). */
export function announce(text) {
  const el = document.getElementById("notice");
  if (!el) return;
  el.textContent = text;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => { el.textContent = ""; }, 6000);
}

/** Disable a button while `work` runs; return its result. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

const numberFormat = new Intl.NumberFormat();

export function formatNumber(n) {
  return n === null || n === undefined || Number.isNaN(Number(n)) ? "–" : numberFormat.format(Number(n));
}

export function formatCost(n) {
  if (n === null || n === undefined) return "–";
  const value = Number(n);
  return `$${value.toFixed(value !== 0 && Math.abs(value) < 1 ? 4 : 2)}`;
}

export function formatDuration(secs) {
  if (secs === null || secs === undefined) return "–";
  let s = Math.max(0, Math.floor(Number(secs)));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${hr}h ${m}m`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function formatDate(iso) {
  if (!iso) return "never";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** A number shown formatted, with the raw value in data-value for tests and copy. */
export function value(id, raw, text) {
  return h("span", { id, "data-value": raw === null || raw === undefined ? "" : String(raw), text });
}
