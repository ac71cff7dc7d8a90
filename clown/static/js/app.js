// Entry point: hash routing, navigation state, sign-in and the connection indicator.
import { login, onUnauthorized } from "./api.js";
import { on, reconnect } from "./events.js";
import { errorBox } from "./dom.js";
import * as overview from "./overview.js";
import * as profiles from "./profiles.js";
import * as agents from "./agents.js";
import * as terminals from "./terminals.js";
import * as sessions from "./sessions.js";
import * as usage from "./usage.js";
import * as proxies from "./proxies.js";
import * as logs from "./logs.js";

// Each view: render(main, param) -> optional cleanup function, called on leaving.
const views = { overview, profiles, agents, terminals, sessions, usage, proxies, logs };

const main = document.getElementById("main");
let cleanup = null;

function parseHash() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: views[name] ? name : "overview", param: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

function route() {
  const { name, param } = parseHash();
  // A view with update() keeps its state across its own routes (#/terminals -> #/terminals/<id>).
  if (main.dataset.view === name && views[name].update && cleanup) {
    views[name].update(param);
    return;
  }
  if (!location.hash || !views[location.hash.replace(/^#\/?/, "").split("/")[0]]) {
    history.replaceState(null, "", "#/overview");
  }
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.route === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (cleanup) {
    try { cleanup(); } catch (err) { console.error(err); }
    cleanup = null;
  }
  main.replaceChildren();
  main.dataset.view = name;
  try {
    cleanup = views[name].render(main, param) || (() => {});
  } catch (err) {
    main.append(errorBox(err));
  }
  const heading = main.querySelector("h1");
  if (heading && document.activeElement && !main.contains(document.activeElement)) heading.focus({ preventScroll: true });
}

function showSignIn() {
  const dialog = document.getElementById("signin-dialog");
  const form = document.getElementById("signin-form");
  const input = document.getElementById("signin-token");
  const error = document.getElementById("signin-error");
  return new Promise((resolve) => {
    async function submit(event) {
      event.preventDefault();
      error.hidden = true;
      try {
        await login(input.value);
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
        input.select();
        return;
      }
      input.value = "";
      form.removeEventListener("submit", submit);
      dialog.removeEventListener("cancel", keepOpen);
      dialog.close();
      reconnect();
      resolve();
    }
    function keepOpen(event) { event.preventDefault(); }
    form.addEventListener("submit", submit);
    dialog.addEventListener("cancel", keepOpen);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

function trackConnection() {
  const indicator = document.getElementById("connection");
  const show = (state, text) => { indicator.dataset.state = state; indicator.textContent = text; };
  on("socket_open", () => show("open", "live"));
  on("socket_closed", () => show("closed", "reconnecting…"));
}

onUnauthorized(showSignIn);
trackConnection();
window.addEventListener("hashchange", route);
route();
