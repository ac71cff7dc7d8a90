// One attached terminal: an xterm.js screen joined to /ws/terminal/{id}.
//
// Output arrives as binary frames and goes to term.write(Uint8Array) untouched; xterm
// parses in time slices and renders once per frame, so a flood does not freeze the tab.
// At most IN_FLIGHT_BYTES are handed to xterm at a time; the rest waits in a queue, and a
// queue past MAX_QUEUED_BYTES is dropped and the pane resyncs from the server's scrollback
// (what the server does to a client that is too slow), so memory stays bounded. Keystrokes
// go back as binary frames (UTF-8). After a drop (or close code 4008, "client too slow")
// the pane reconnects, clears the screen and lets the server replay its scrollback.
import { clown, enc } from "./api.js";
import { announce, badge, h, replace } from "./dom.js";

const TOO_SLOW = 4008;
const IN_FLIGHT_BYTES = 2 * 1024 * 1024;
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
const RESET = Symbol("reset");
const encoder = new TextEncoder();

let xterm = null;

/** Load xterm.js, its fit addon and its CSS once (not part of the first page load). */
function loadXterm() {
  xterm ??= (async () => {
    document.head.append(h("link", { rel: "stylesheet", href: new URL("../vendor/xterm.css", import.meta.url).href }));
    const [{ Terminal }, { FitAddon }] = await Promise.all([import("../vendor/xterm.js"), import("../vendor/addon-fit.js")]);
    return { Terminal, FitAddon };
  })();
  xterm.catch(() => { xterm = null; });
  return xterm;
}

export class TerminalPane {
  /** `onClose(id)` is called when the user closes (detaches) the pane. */
  constructor(id, { onClose }) {
    this.id = id;
    this.onClose = onClose;
    this.ws = null;
    this.term = null;
    this.queue = []; // Uint8Array chunks and RESET markers, oldest first
    this.queued = 0;
    this.inFlight = 0;
    this.retryMs = 250;
    this.retryTimer = null;
    this.finished = false; // terminated, or the server said it cannot attach
    this.disposed = false;

    const short = id.slice(0, 8);
    this.stateEl = h("span", { class: "terminal-state" }, badge("connecting"));
    this.exitEl = h("span", { class: "terminal-exit", "data-testid": "terminal-exit-code", hidden: true });
    this.messageEl = h("span", { class: "terminal-message", role: "status", "aria-live": "polite" });
    this.screen = h("div", { class: "terminal-screen", "data-testid": "terminal-screen" });
    this.element = h("section", { class: "terminal-view", "data-session-id": id, "aria-label": `Terminal ${short}` },
      h("header", { class: "terminal-header" },
        h("h2", { class: "terminal-title" }, h("a", { href: `#/terminals/${enc(id)}`, text: `Terminal ${short}` })),
        this.stateEl, this.exitEl, this.messageEl,
        h("span", { class: "spacer" }),
        h("button", { type: "button", "data-action": "terminal-interrupt", "data-session-id": id, "aria-label": `Send Ctrl-C to terminal ${short}`, text: "Ctrl-C", onclick: () => this.sendControl({ type: "signal", signal: 2 }) }),
        h("button", { type: "button", "data-action": "terminal-terminate", "data-session-id": id, class: "danger", "aria-label": `Terminate terminal ${short}`, text: "Terminate", onclick: () => this.terminate() }),
        h("button", { type: "button", "data-action": "terminal-close", "data-session-id": id, "aria-label": `Close terminal ${short} (it keeps running)`, text: "Close", onclick: () => this.onClose(id) })),
      this.screen,
      h("p", { class: "hint", text: "F6 moves focus from the terminal to its buttons." }));
  }

  async start() {
    let modules;
    try {
      modules = await loadXterm();
    } catch (err) {
      this.setMessage(`Cannot load the terminal (xterm.js): ${err.message}. Was the web UI built?`);
      return;
    }
    if (this.disposed) return;
    const { Terminal, FitAddon } = modules;
    this.term = new Terminal({ cursorBlink: true, scrollback: 10000, fontFamily: "ui-monospace, Menlo, Consolas, monospace", fontSize: 14 });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(this.screen);
    this.term.textarea?.setAttribute("aria-label", `Terminal ${this.id.slice(0, 8)} input`);
    this.term.onData((data) => this.sendBytes(encoder.encode(data)));
    this.term.onBinary((data) => this.sendBytes(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
    this.term.onResize(({ cols, rows }) => this.sendControl({ type: "resize", cols, rows }));
    this.term.attachCustomKeyEventHandler((event) => {
      if (event.type === "keydown" && event.key === "F6") {
        this.element.querySelector("button")?.focus();
        return false;
      }
      return true;
    });
    this.resizeObserver = new ResizeObserver(() => this.scheduleFit());
    this.resizeObserver.observe(this.screen);
    this.fitNow();
    this.connect();
    if (this.wantsFocus) this.focus();
  }

  focus() {
    this.wantsFocus = !this.term; // not started yet: focus once it is
    this.term?.focus();
    this.element.scrollIntoView({ block: "nearest" });
  }

  scheduleFit() {
    if (this.fitFrame) return;
    this.fitFrame = requestAnimationFrame(() => { this.fitFrame = null; this.fitNow(); });
  }

  fitNow() {
    if (!this.term || !this.screen.clientWidth || !this.screen.clientHeight) return;
    try { this.fit.fit(); } catch { /* not measurable yet */ }
  }

  connect() {
    clearTimeout(this.retryTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws/terminal/${enc(this.id)}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.setState("connecting");
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      if (typeof event.data === "string") this.onControl(event.data);
      else this.onOutput(new Uint8Array(event.data));
    };
    ws.onclose = async (event) => {
      if (ws !== this.ws || this.disposed) return;
      this.ws = null;
      if (this.finished) return;
      if (event.code !== TOO_SLOW && (await this.hasEnded() || this.disposed)) return;
      const delay = event.code === TOO_SLOW ? 0 : this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, 5000);
      this.setState("reconnecting");
      this.setMessage(event.code === TOO_SLOW ? "Output outran this tab; resyncing from the scrollback." : "Connection lost; reconnecting…");
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
  }

  /** After a close: has the session ended or gone away? Then stop reconnecting. */
  async hasEnded() {
    try {
      const session = await clown("GET", `/api/terminal/sessions/${enc(this.id)}`);
      if (session.state !== "terminated") return false;
      this.finished = true;
      this.setState("terminated");
      if (this.exitEl.hidden) this.showExit(session.exit_code);
      return true;
    } catch (err) {
      if (err.status !== 404) return false;
      this.finished = true;
      this.setState("gone");
      this.setMessage(err.message);
      return true;
    }
  }

  onControl(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    if (message.type === "connected") {
      this.retryMs = 250;
      this.setState("running");
      this.setMessage("");
      this.clearScreen();
      this.fitNow();
      if (this.term) this.sendControl({ type: "resize", cols: this.term.cols, rows: this.term.rows });
    } else if (message.type === "state_changed") {
      this.setState(message.state);
      if (message.state === "terminated") {
        this.finished = true;
        this.showExit(message.exit_code);
      }
    } else if (message.type === "error") {
      this.setMessage(message.message || "Terminal error");
      if (/not found/i.test(message.message || "")) {
        this.finished = true;
        this.setState("gone");
      }
    }
  }

  onOutput(bytes) {
    if (!this.term) return;
    this.queue.push(bytes);
    this.queued += bytes.length;
    if (this.queued > MAX_QUEUED_BYTES && this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
      this.setMessage("Output outran this tab; resyncing from the scrollback.");
      this.connect();
      return;
    }
    this.pump();
  }

  /** Hand queued output to xterm, keeping at most IN_FLIGHT_BYTES unparsed inside it. */
  pump() {
    while (this.queue.length && this.inFlight < IN_FLIGHT_BYTES) {
      const chunk = this.queue.shift();
      if (chunk === RESET) {
        this.inFlight += 1;
        // Runs after everything written before it is parsed, before anything after it.
        this.term.write(new Uint8Array(0), () => { this.term.reset(); this.inFlight -= 1; this.pump(); });
        continue;
      }
      this.queued -= chunk.length;
      this.inFlight += chunk.length;
      this.term.write(chunk, () => { this.inFlight -= chunk.length; this.pump(); });
    }
  }

  /** On (re)connect: output still queued from the old connection is superseded by the
   * scrollback the server replays next; clear the screen after what xterm already has. */
  clearScreen() {
    if (!this.term) return;
    this.queue = [RESET];
    this.queued = 0;
    this.pump();
  }

  sendBytes(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  sendControl(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  async terminate() {
    if (!confirm("Terminate this terminal session? Every process in it is killed.")) return;
    try {
      await clown("DELETE", `/api/terminal/sessions/${enc(this.id)}`);
      announce("Terminal terminated.");
    } catch (err) {
      this.setMessage(err.message);
    }
  }

  setState(state) {
    replace(this.stateEl, badge(state));
    this.element.dataset.state = state;
  }

  setMessage(text) {
    this.messageEl.textContent = text;
  }

  showExit(code) {
    for (const action of ["terminal-interrupt", "terminal-terminate"]) {
      const button = this.element.querySelector(`[data-action=${action}]`);
      if (button) button.disabled = true;
    }
    this.exitEl.hidden = false;
    this.exitEl.dataset.exitCode = code ?? "";
    this.exitEl.textContent = code === null || code === undefined ? "exited" : `exit code ${code}`;
    this.setMessage("");
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.retryTimer);
    if (this.fitFrame) cancelAnimationFrame(this.fitFrame);
    this.resizeObserver?.disconnect();
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.term?.dispose();
    this.element.remove();
  }
}
