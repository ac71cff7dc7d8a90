"""Web UI terminal under a 10 MB/s flood: does the tab keep up?

    python bench/webui/terminal_render.py [--rate-mb 10] [--seconds 10] [--runs 1] [--json PATH]

Starts a real clownd (tests/clownd.py ``Daemon``, temp home) and Debian's chromium headless
(Playwright, ``/usr/bin/chromium --no-sandbox``), opens a ``shell`` profile's terminal in the
web UI at ``#/terminals/<id>`` (viewport 1280x900, the UI's own xterm.js) and types, with the
keyboard, a command that runs a rate-limited writer: 100-byte lines, ``--rate-mb`` MB per
second (1 MB = 10**6 bytes) for ``--seconds`` seconds, then a line ``FLOOD-END``.

Measured in the page (instrumented before the UI loads, by an init script):

- main-thread stalls: ``PerformanceObserver('longtask')`` (tasks > 50 ms) and the gaps
  between ``requestAnimationFrame`` callbacks, during the flood and until FLOOD-END is drawn;
- frames drawn per second during the flood;
- bytes received on /ws/terminal (binary frames) and terminal socket (re)connects;
- lag: wall time from the writer's last write to FLOOD-END appearing in ``.xterm-rows``;
- probe round trip: ``page.evaluate`` every 200 ms during the flood (a task queued behind
  whatever the main thread is doing), p50 / max;
- responsiveness afterwards: ``echo ping-$((6*7))`` typed with the keyboard, time from the
  Enter key to ``ping-42`` on the screen.

The writer counts the bytes it wrote (before the PTY's \\n -> \\r\\n); the achieved rate
is reported, since a PTY whose reader falls behind blocks the writer. Nothing here is a
test: it prints numbers (and writes JSON with ``--json``).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.clownd import Daemon, wait_for  # noqa: E402

CHROMIUM = os.environ.get("CLOWN_BENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

WRITER = r'''
import os, sys, time
rate, seconds = float(sys.argv[1]) * 1e6, float(sys.argv[2])
line = lambda n: (f"{n:012d} " + "abcdefghijklmnopqrstuvwxyz0123456789" * 3)[:99] + "\n"
block = "".join(line(i) for i in range(640)).encode()          # 64,000 bytes
total = max(1, round(rate * seconds / len(block))) * len(block)
written, start = 0, time.monotonic()
while written < total:
    due = min(total, int(rate * (time.monotonic() - start)) + len(block))
    while written + len(block) <= due:
        os.write(1, block)
        written += len(block)
    time.sleep(0.002)
end = time.time()
elapsed = time.monotonic() - start
os.write(1, f"FLOOD-END bytes={written} secs={elapsed:.3f} end={end:.3f}\n".encode())
'''

# Runs in the page before the UI's own scripts.
INSTRUMENT = r'''
(() => {
  const b = window.__bench = { longtasks: [], gaps: [], frames: 0, wsBytes: 0, wsOpens: 0, marks: {},
                               recording: false, watch: null };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (b.recording) b.longtasks.push(e.duration);
  }).observe({ type: "longtask", buffered: false });
  let last = performance.now();
  function frame(now) {
    if (b.recording) { b.gaps.push(now - last); b.frames += 1; }
    last = now;
    if (b.watch) {
      const rows = document.querySelector(".terminal-view .xterm-rows");
      if (rows && rows.textContent.includes(b.watch.text)) {
        b.marks[b.watch.name] = performance.timeOrigin + performance.now();
        b.watch = null;
      }
    }
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      if (String(url).includes("/ws/terminal/")) {
        b.wsOpens += 1;
        this.addEventListener("message", (e) => { if (typeof e.data !== "string") b.wsBytes += e.data.byteLength; });
      }
    }
  };
})();
'''


def pct(values, q):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_once(browser, daemon, writer_path, rate_mb, seconds):
    status, reply = daemon.post("/api/terminal/sessions", body={"profile_alias": "bench", "cols": 80, "rows": 24})
    assert status == 200, reply
    session_id = reply["data"]["session_id"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.add_init_script(INSTRUMENT)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{daemon.url}/#/terminals/{session_id}")
        page.wait_for_selector(f".terminal-view[data-session-id='{session_id}'][data-state=running] .xterm-rows")
        page.wait_for_function("() => /[$#]\\s*$/m.test(document.querySelector('.terminal-view .xterm-rows')"
                               ".innerText.replace(/\\u00a0/g, ' '))", timeout=15000)
        size = page.evaluate("() => document.querySelectorAll('.terminal-view .xterm-rows > div').length")
        page.keyboard.type(f"python3 {writer_path} {rate_mb} {seconds}")
        page.evaluate("() => { const b = window.__bench; b.recording = true; b.wsBytes = 0;"
                      " b.watch = { name: 'end', text: 'FLOOD-END bytes=' };"
                      " b.marks.start = performance.timeOrigin + performance.now(); }")
        page.keyboard.press("Enter")
        probes = []
        deadline = time.monotonic() + seconds * 6 + 30
        while time.monotonic() < deadline:
            started = time.perf_counter()
            done = page.evaluate("() => !!window.__bench.marks.end")
            probes.append((time.perf_counter() - started) * 1000)
            if done:
                break
            time.sleep(0.2)
        else:
            state = page.evaluate("() => ({ bytes: window.__bench.wsBytes, opens: window.__bench.wsOpens })")
            page.screenshot(path=os.path.join(tempfile.gettempdir(), "clown-bench-webui-failure.png"))
            raise RuntimeError(f"FLOOD-END never appeared on the screen: {state}; screen: "
                               f"{page.inner_text('.terminal-view .xterm-rows')[-2000:]}")
        bench = page.evaluate("() => { const b = window.__bench; b.recording = false; return b; }")
        text = page.inner_text(".terminal-view .xterm-rows").replace("\u00a0", " ")
        end_line = next(line for line in text.splitlines() if line.startswith("FLOOD-END bytes="))
        fields = dict(item.split("=") for item in end_line.split()[1:])
        # Responsiveness after the flood: Enter of a typed command to its output on the screen.
        wait_for(lambda: page.evaluate("() => /[$#]\\s*$/.test(document.querySelector('.terminal-view .xterm-rows')"
                                       ".innerText.replace(/\\u00a0/g, ' ').trimEnd())"), timeout=10, message="prompt")
        page.keyboard.type("echo ping-$((6*7))")
        page.evaluate("() => { const b = window.__bench; b.watch = { name: 'ping', text: 'ping-42' };"
                      " b.marks.enter = performance.timeOrigin + performance.now(); }")
        page.keyboard.press("Enter")
        wait_for(lambda: page.evaluate("() => !!window.__bench.marks.ping"), timeout=30, message="ping-42")
        marks = page.evaluate("() => window.__bench.marks")
    finally:
        context.close()
        daemon.delete(f"/api/terminal/sessions/{session_id}")
    flood_secs = (marks["end"] - marks["start"]) / 1000
    written = int(fields["bytes"])
    return {
        "screen_rows": size,
        "written_bytes": written,
        "writer_secs": float(fields["secs"]),
        "achieved_mb_s": written / float(fields["secs"]) / 1e6,
        "received_bytes": bench["wsBytes"],
        "ws_connects": bench["wsOpens"],
        "lag_ms": marks["end"] - float(fields["end"]) * 1000,
        "longtasks": len(bench["longtasks"]),
        "longtask_max_ms": max(bench["longtasks"], default=0.0),
        "longtask_total_ms": sum(bench["longtasks"]),
        "raf_gap_max_ms": max(bench["gaps"], default=0.0),
        "raf_gap_p99_ms": pct(bench["gaps"], 99),
        "raf_gaps_over_100ms": sum(1 for g in bench["gaps"] if g > 100),
        "fps": bench["frames"] / flood_secs if flood_secs else 0.0,
        "probe_p50_ms": statistics.median(probes),
        "probe_max_ms": max(probes),
        "keypress_to_echo_ms": marks["ping"] - marks["enter"],
        "page_errors": errors,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-mb", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="clown-bench-webui-") as temp:
        writer_path = os.path.join(temp, "flood.py")
        with open(writer_path, "w") as handle:
            handle.write(WRITER)
        daemon = Daemon(os.path.join(temp, "home"))
        try:
            daemon.start()
            status, reply = daemon.post("/api/profiles", body={"agent_id": "shell", "alias": "bench",
                                                               "provider_id": "self"})
            assert status == 200, reply
            results = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    for index in range(args.runs):
                        result = run_once(browser, daemon, writer_path, args.rate_mb, args.seconds)
                        results.append(result)
                        print(f"run {index + 1}: " + json.dumps({k: round(v, 1) if isinstance(v, float) else v
                                                                 for k, v in result.items()}), flush=True)
                finally:
                    browser.close()
        finally:
            daemon.stop()
            daemon.kill_everything()
    summary = {"rate_mb": args.rate_mb, "seconds": args.seconds, "cpus": os.cpu_count(),
               "chromium": CHROMIUM, "runs": results}
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
