"""Usage benchmark: clown's Claude Code import against ``ccusage daily``, and the report's speed.

    python bench/usage/bench_usage.py [--size 1G] [--events 1000000]

1. Generates a Claude Code transcript corpus of ``--size`` bytes (tests/fakes/transcripts.py:
   real line format, repeated assistant messages, malformed lines), or reuses the one in
   ``--corpus DIR`` when it was generated there with the same size.
2. Times ``python -m clown.usage.imports`` into a fresh home (wall time, peak RSS), then the
   re-import of the unchanged corpus, and ``ccusage daily --json --offline`` over the same
   corpus (TZ=UTC) in two versions: 17.x, the peer issue #5 names (installed in
   bench/usage/npm by this script when missing), and the version tests/npm pins (a native
   build, much faster). Checks that each counts the same tokens per day and model as clown.
3. Fills a store with ``--events`` usage events over the last 30 days and times
   ``GET /api/usage?period=30d`` through a real clownd (and the report function alone).

Prints every number and the ratios clown/ccusage.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from clown import store  # noqa: E402
from clown.catalog.pricing import current_table  # noqa: E402
from clown.home import Home  # noqa: E402
from clown.usage import periods  # noqa: E402
from clown.usage.report import build_report  # noqa: E402
from clown.usage.store import UsageEvent, record_events  # noqa: E402
from tests.fakes.transcripts import write_claude_corpus  # noqa: E402

BENCH_NPM = os.path.join(REPO, "bench", "usage", "npm")
# (label, executable): the goal's reference first.
PEERS = (("ccusage 17.x", os.path.join(BENCH_NPM, "node_modules", ".bin", "ccusage")),
         ("ccusage (tests/npm)", os.path.join(REPO, "tests", "npm", "node_modules", ".bin", "ccusage")))


def install_bench_peer() -> None:
    """Install bench/usage/npm's pinned ccusage (package-lock.json) when it is missing."""
    if os.path.exists(PEERS[0][1]):
        return
    print("installing ccusage 17.x in bench/usage/npm ...", flush=True)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH_NPM, check=True,
                   stdout=subprocess.DEVNULL)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def run_measured(argv, env=None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MiB, stdout) of a command."""
    began = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    out_chunks = []
    while True:
        chunk = process.stdout.read(1 << 16)
        if not chunk:
            break
        out_chunks.append(chunk)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {process.stderr.read().decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss // 1024, b"".join(out_chunks).decode()


def corpus_at(directory: str, size: int) -> str:
    """The Claude directory of a corpus of ``size`` bytes under ``directory``, generated if needed."""
    claude_dir = os.path.join(directory, "claude")
    marker = os.path.join(directory, "corpus.json")
    try:
        with open(marker) as handle:
            corpus = json.load(handle)
        if corpus.get("target_bytes") == size:
            print(f"corpus (reused): {corpus['files']} files, {corpus['bytes'] / (1 << 20):.1f} MiB", flush=True)
            return claude_dir
    except (OSError, ValueError):
        pass
    shutil.rmtree(claude_dir, ignore_errors=True)
    began = time.perf_counter()
    corpus = write_claude_corpus(claude_dir, entries=200, days=30, padding=200, target_bytes=size)
    corpus["target_bytes"] = size
    with open(marker, "w") as handle:
        json.dump(corpus, handle)
    print(f"corpus: {corpus['files']} files, {corpus['bytes'] / (1 << 20):.1f} MiB "
          f"(generated in {time.perf_counter() - began:.1f} s)", flush=True)
    return claude_dir


def clown_by_day_model(db: str) -> dict:
    """{(UTC day, model): (input, output, cache write, cache read)} from clown's hourly rollups."""
    conn = store.connect(db)
    try:
        rows = conn.execute(
            "SELECT date(bucket, 'unixepoch'), model, SUM(input_tokens), SUM(output_tokens),"
            " SUM(cache_creation_input_tokens), SUM(cache_read_input_tokens) FROM usage_rollup_hour"
            " GROUP BY 1, 2").fetchall()
    finally:
        conn.close()
    return {(row[0], row[1]): tuple(row[2:]) for row in rows}


def ccusage_by_day_model(daily: list) -> dict:
    """The same from ``ccusage daily --json``: 17.x names the day ``date``, 20.x ``period``."""
    found = {}
    for day in daily:
        for model in day["modelBreakdowns"]:
            found[(day.get("date") or day["period"], model["modelName"])] = tuple(
                model[name] for name in ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens"))
    return found


def bench_import(size: int, workdir: str, corpus_dir: str | None) -> None:
    claude_dir = corpus_at(corpus_dir or os.path.join(workdir, "corpus"), size)
    home = Home(os.path.join(workdir, "home"))
    home.ensure()
    argv = [sys.executable, "-m", "clown.usage.imports", "--home", home.root, "--kind", "claude", "--dir", claude_dir,
            "--timezone", "UTC"]
    first, first_rss, out = run_measured(argv)
    result = json.loads(out.strip().splitlines()[-1])["result"]
    again, again_rss, _ = run_measured(argv)
    print(f"clown import:    {first:7.2f} s, peak RSS {first_rss} MiB, {result['found']} entries, "
          f"{result['malformed']} malformed", flush=True)
    print(f"clown re-import: {again:7.2f} s ({again / first * 100:.1f}% of the first), peak RSS {again_rss} MiB",
          flush=True)
    ours = clown_by_day_model(home.db)
    totals = tuple(sum(values[i] for values in ours.values()) for i in range(4))
    print(f"clown token totals (input, output, cache write, cache read): {totals}")
    try:
        install_bench_peer()
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"could not install ccusage 17.x: {exc}")
    fake_home = os.path.join(workdir, "ccusage-home")
    os.makedirs(fake_home, exist_ok=True)
    env = dict(os.environ, TZ="UTC", CLAUDE_CONFIG_DIR=claude_dir, HOME=fake_home)
    for label, executable in PEERS:
        if not os.path.exists(executable):
            print(f"{label}: not installed, no comparison")
            continue
        version = subprocess.run([executable, "--version"], env=env, capture_output=True, text=True).stdout.strip()
        theirs, theirs_rss, out = run_measured([executable, "daily", "--json", "--offline"], env)
        reference = ccusage_by_day_model(json.loads(out)["daily"])
        print(f"{label} ({version}) daily: {theirs:7.2f} s, peak RSS {theirs_rss} MiB", flush=True)
        print(f"  same tokens per day and model as clown: {reference == ours} ({len(reference)} day x model rows)")
        print(f"  ratio clown/{label}: import time {first / theirs:.3f}x, peak RSS "
              f"{first_rss / max(theirs_rss, 1):.2f}x, re-import time {again / theirs:.4f}x", flush=True)


def bench_report(events: int, workdir: str) -> None:
    home = Home(os.path.join(workdir, "report-home"))
    home.ensure()
    conn = store.open_store(home.db)
    rng = random.Random(3)
    now = time.time()
    models = ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5", "gpt-5"]
    profiles = ["work", "home", "ci"]
    began = time.perf_counter()
    batch = []
    sessions = max(1, events // 100)
    session_start = [now - 4 * 3600 - rng.random() * 29.8 * 86400 for _ in range(sessions)]
    for index in range(events):
        session = rng.randrange(sessions)
        base = session_start[session] + rng.random() * 3600 * 4    # sessions of up to 4 hours
        batch.append(UsageEvent(
            dedup_key=f"bench:{index}", source="proxy", at=base, model=models[session % 4],
            profile=profiles[session % 3], session=f"s{session}", input_tokens=rng.randint(1, 5000),
            output_tokens=rng.randint(1, 2000), cache_read_input_tokens=rng.randint(0, 50000)))
        if len(batch) == 20000:
            record_events(conn, batch)
            batch = []
    record_events(conn, batch)
    rollup_rows = conn.execute("SELECT COUNT(*) FROM usage_rollup_hour").fetchone()[0]
    print(f"store: {events} events in {time.perf_counter() - began:.1f} s, {rollup_rows} rollup rows", flush=True)
    tz = periods.zone("UTC")
    table = current_table(None)
    timings = []
    for _ in range(20):
        began = time.perf_counter()
        build_report(conn, "30d", tz, table)
        timings.append(time.perf_counter() - began)
    print(f"report(30d) in process: p50 {statistics.median(timings) * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms")
    conn.close()
    from tests.clownd import Daemon

    daemon = Daemon(home.root, toml='[usage]\ntimezone = "UTC"\n').start()
    try:
        timings = []
        for _ in range(20):
            began = time.perf_counter()
            with urllib.request.urlopen(daemon.url + "/api/usage?period=30d") as response:
                response.read()
            timings.append(time.perf_counter() - began)
        print(f"GET /api/usage?period=30d over {events} events: p50 {statistics.median(timings) * 1000:.1f} ms, "
              f"max {max(timings) * 1000:.1f} ms (target 50 ms: ratio {statistics.median(timings) / 0.05:.2f}x)")
    finally:
        daemon.stop()
        daemon.kill_everything()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G", help="corpus size, e.g. 100M or 1G")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--corpus", default=None,
                        help="directory to keep the corpus in and reuse it from (default: a temporary one)")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-report", action="store_true")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="clown-bench-usage-")
    try:
        if not args.skip_import:
            bench_import(parse_size(args.size), workdir, args.corpus)
        if not args.skip_report:
            bench_report(args.events, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
