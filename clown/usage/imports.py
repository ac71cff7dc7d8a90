"""Importing usage from agents' own records: Claude Code transcripts and Codex rollouts.

Run as a subprocess of the web front (``python -m clown.usage.imports --home H --kind
claude --dir D``) so that parsing gigabytes never holds the front's interpreter: it prints
one JSON line per progress step (``{"progress": {...}}``) and a last ``{"result": {...}}``.

**Claude Code** (``<claude_dir>/projects/**/*.jsonl``), counted as ccusage counts it:

- a line counts when it holds ``"usage":{`` and parses to an entry with a string
  ``timestamp`` and ``message.usage`` with integer ``input_tokens`` and ``output_tokens``
  (``type: "progress"`` lines count through their nested ``data.message``);
- entries with an empty ``sessionId``, ``requestId``, ``message.id`` or ``message.model``,
  or a ``version`` that is not semver, are skipped; cache writes are the
  ``cache_creation`` 5m + 1h breakdown when present, else ``cache_creation_input_tokens``;
- the model is ``message.model`` (``-fast`` appended for ``speed: "fast"``); the day is the
  ``timestamp``'s date in ``[usage] timezone``;
- dedup: ``message.id:requestId`` when both exist (the proxy's key too, so a response the
  proxy metered is not counted again); without ``requestId``: message id + session
  (+ timestamp unless the id is an Anthropic ``msg_`` id); the copy with more tokens wins;
- malformed lines are counted and skipped (a line without ``"usage":{`` is never decoded: it
  counts as malformed only when it does not look like ``{…}``).

Speed: when more than ``PARALLEL_MIN_BYTES`` are to be read, ``PARSERS`` forked processes
parse the files (split by size) and send folded, rolled-up batches over a bounded queue;
this process only writes them (see ``Importer.run_parallel``).

Not reproduced: ccusage's merging of ``/btw`` sidechain replays that reuse a parent's
message id under a new request id, and its separate counting of advisor iterations.

``stats-cache.json`` only fills days (in ``[usage] timezone``) that no transcript covers:
its per-day, per-model token totals are split into the four kinds by the model's all-time
``modelUsage`` ratios (all output when it has none). Such a day's rows are removed when a
later import finds transcripts for it.

**Codex** (``<codex_dir>/sessions/**/rollout-*.jsonl``): ``token_count`` events carry the
session's cumulative ``total_token_usage``; each event counts its difference from the
previous one (``last_token_usage`` when the total went backwards). OpenAI input counts
include cached tokens: clown's ``input_tokens`` are ``input - cached``.

Resume: ``usage_import_files`` remembers each file's size, mtime and the offset of the
last whole line read; an unchanged file is skipped, a grown one is read from its offset,
a shrunk one from the start (dedup keeps counts right).
"""

import argparse
import datetime as dt
import json
import os
import queue
import re
import signal
import sys
import time

from clown import clock, store
from clown.home import Home
from clown.usage import periods
from clown.usage.store import (QUARTER_SECS, FoldedBatch, UsageEvent, delete_keys, drain_inbox, hash_unhashed_keys,
                               mark_covered, record_events, write_folded)

try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    from json import loads as _loads

BATCH = 20000
PARSERS = 2              # parser processes for a big Claude import (the machine has 2 cores)
PARALLEL_MIN_BYTES = 16 << 20
READ_BLOCK = 1 << 20
PROGRESS_EVERY_SECS = 0.25
_USAGE_MARKER = b'"usage":{'
_SEMVER_PREFIX = re.compile(r"^\d+\.\d+\.\d+")


class Importer:
    """Shared machinery: file walk, resume, batching, progress. Subclasses parse lines."""

    kind = ""
    parallel = False    # may parse in PARSERS processes (no state shared across files)

    def __init__(self, conn, tz, table, profile: str = "", progress=None, home_root: str | None = None):
        self.conn = conn
        self.tz = tz
        self._table = table         # None: the home's table, read when first needed
        self.home_root = home_root
        self.profile = profile
        self.progress = progress or (lambda **_: None)
        self.folded = FoldedBatch()     # this batch's rows, folded per key
        self.resume_points: list[tuple] = []
        self.found = 0          # usage entries read this run
        self.recorded = 0       # rows inserted or grown
        self.malformed = 0
        self.done_bytes = 0
        self.total_bytes = 0
        self.files_read = 0
        self.files_skipped = 0
        self._last_progress = 0.0
        self._prices: dict = {}
        self._rates: dict = {}
        self.sink = None        # in a parser process: the queue to the writer
        self.sink_index = 0

    @property
    def table(self) -> dict:
        # Read on first use: an import that finds nothing new never loads the pricing code
        # (a quarter of a re-import's time).
        if self._table is None:
            from clown.catalog.pricing import current_table

            self._table = current_table(self.home_root)
        return self._table

    def rates(self, model: str) -> tuple | None:
        """USD per million tokens of each kind for ``model``, then the divisor (None: unpriced)."""
        from clown.catalog.pricing import PER_TOKENS, price_for

        price = price_for(model, self.table)
        return None if price is None else (price.input, price.output, price.cache_write, price.cache_read, PER_TOKENS)

    def cost(self, model: str, tokens: tuple) -> float:
        if model not in self._prices:
            from clown.catalog.pricing import price_for

            self._prices[model] = price_for(model, self.table)
        price = self._prices[model]
        if price is None:
            return 0.0
        return price.costs(*tokens)["total_cost"]

    # -- walk --------------------------------------------------------------------------------

    def files(self, root: str) -> list[str]:
        raise NotImplementedError

    def run(self, root: str) -> None:
        paths = self.files(root)
        stats = []
        for path in paths:
            try:
                stats.append((path, os.stat(path)))
            except OSError:
                continue
        self.total_bytes = sum(st.st_size for _, st in stats)
        known = {row["path"]: row for row in self.conn.execute(
            "SELECT path, size, mtime, offset, state FROM usage_import_files WHERE kind = ?", (self.kind,))}
        todo = []
        for path, st in stats:
            row = known.get(path)
            if row is not None and row["size"] == st.st_size and row["mtime"] == st.st_mtime \
                    and row["offset"] == st.st_size:
                self.done_bytes += st.st_size
                self.files_skipped += 1
                continue
            offset, state = 0, {}
            if row is not None and row["offset"] <= st.st_size:
                offset = row["offset"]
                state = json.loads(row["state"] or "{}")
            self.done_bytes += offset
            todo.append((path, st, offset, state))
        if todo:
            self.table      # read once here, not in each parser process
        workers = min(PARSERS, os.cpu_count() or 1)
        if self.parallel and workers > 1 and len(todo) > 1 \
                and sum(st.st_size - offset for _, st, offset, _ in todo) >= PARALLEL_MIN_BYTES:
            self.run_parallel(todo, workers)
        else:
            for path, st, offset, state in todo:
                self.read_file(path, st, offset, state)
                self.files_read += 1
        self.flush()
        self.report_progress(force=True)

    # -- parallel parsing ----------------------------------------------------------------------

    def run_parallel(self, todo: list, workers: int) -> None:
        """Parse in ``workers`` forked processes; this one only writes what they send.

        Each parser reads whole files (split by size), folds its events per batch, sums the
        batch's rollups and sends them with the resume points of the files they came from, so a
        resume point is committed in the same transaction as its events or a later one. The
        queue is bounded: memory stays a few batches whatever the corpus.
        """
        import multiprocessing

        context = multiprocessing.get_context("fork")
        channel = context.Queue(maxsize=2 * workers)
        groups: list[list] = [[] for _ in range(workers)]
        loads = [0] * workers
        for item in sorted(todo, key=lambda item: item[1].st_size - item[2], reverse=True):
            index = loads.index(min(loads))
            groups[index].append(item)
            loads[index] += item[1].st_size - item[2]
        for group in groups:
            group.sort(key=lambda item: item[0])
        processes = [context.Process(target=_parse_files, args=(self, index, group, channel, os.getpid()), daemon=True)
                     for index, group in enumerate(groups) if group]
        base = (self.found, self.malformed, self.done_bytes, self.files_read)
        counters = {}
        running = len(processes)
        for process in processes:
            process.start()
        try:
            while running:
                try:
                    message = channel.get(timeout=1.0)
                except queue.Empty:
                    if any(process.exitcode not in (None, 0) for process in processes):
                        raise RuntimeError("a transcript parser process died") from None
                    continue
                kind, index = message[0], message[1]
                if kind == "error":
                    raise RuntimeError(message[2])
                counters[index] = message[-1]
                if kind == "batch":
                    _, _, folded, rollup, resume_points, _ = message
                    self.store_batch(folded, rollup, resume_points)
                elif kind == "done":
                    running -= 1
                totals = [sum(values[i] for values in counters.values()) for i in range(4)]
                self.found, self.malformed, self.done_bytes, self.files_read = \
                    (b + t for b, t in zip(base, totals))
                self.report_progress()
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
                process.join()

    def counters(self) -> tuple:
        return self.found, self.malformed, self.done_bytes, self.files_read


    def read_file(self, path: str, st, offset: int, state: dict) -> None:
        self.begin_file(path, state)
        position = offset
        with open(path, "rb") as handle:
            handle.seek(offset)
            rest = b""
            while True:
                block = handle.read(READ_BLOCK)
                if not block:
                    break
                data = rest + block
                end = data.rfind(b"\n") + 1     # after it: an incomplete line (or nothing)
                if end:
                    self.read_lines(data, end, path, position)
                    position += end
                    self.done_bytes += end
                rest = data[end:]
                if len(self.folded) >= BATCH:
                    self.resume_points.append(self._resume_row(path, st, position, state))
                    self.flush()
                self.report_progress()
        # A last line without its newline may still be being written: leave it for next time.
        self.resume_points.append(self._resume_row(path, st, position, state))
        if len(self.folded) >= BATCH or len(self.resume_points) >= BATCH:
            self.flush()

    def read_lines(self, data: bytes, end: int, path: str, position: int) -> None:
        """Hand each line of ``data[:end]`` (whole lines; the file's ``position`` is at its start)
        that is not blank to ``line``."""
        line_handler = self.line
        for line in data[:end].split(b"\n")[:-1]:
            if line and not line.isspace():
                line_handler(line, path, position)
            position += len(line) + 1

    def _resume_row(self, path: str, st, position: int, state: dict | None) -> tuple:
        return (path, self.kind, st.st_size, st.st_mtime, position, json.dumps(state or {}), clock.utc_iso())

    def flush(self) -> None:
        """Write the pending events and the resume points of the files they came from, in one transaction.

        A file's resume point is queued only after its events, so it is never committed before them.
        """
        if not self.folded and not self.resume_points:
            return
        folded, self.folded = self.folded, FoldedBatch()
        resume_points, self.resume_points = self.resume_points, []
        if self.sink is not None:      # a parser process: the writer stores it
            self.sink.put(("batch", self.sink_index, folded, folded.rollup(), resume_points, self.counters()))
            return
        self.store_batch(folded, folded.rollup(), resume_points)

    def store_batch(self, folded: FoldedBatch, rollup, resume_points: list) -> None:
        """One transaction: what the proxies left in the inbox (so that a key they metered is
        stored with its profile before a transcript's copy of it meets it), the batch, and the
        resume points of the files it came from."""
        with store.transaction(self.conn):
            drain_inbox(self.conn, in_transaction=True)
            self.recorded += write_folded(self.conn, folded, rollup)
            if self.kind == "claude":     # what stats-cache.json must not fill (covered_days)
                mark_covered(self.conn, [(profile, bucket) for bucket, profile, _ in rollup.rows[QUARTER_SECS]])
            self.write_resume_points(resume_points)

    def write_resume_points(self, rows: list) -> None:
        if rows:
            self.conn.executemany(
                "INSERT INTO usage_import_files (path, kind, size, mtime, offset, state, imported_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size = excluded.size,"
                " mtime = excluded.mtime, offset = excluded.offset, state = excluded.state,"
                " imported_at = excluded.imported_at", rows)

    def report_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_EVERY_SECS:
            self._last_progress = now
            if self.sink is not None:
                self.sink.put(("progress", self.sink_index, self.counters()))
                return
            self.progress(done_bytes=self.done_bytes, total_bytes=self.total_bytes, events=self.found)

    def begin_file(self, path: str, state: dict) -> None:
        pass

    def line(self, line: bytes, path: str, offset: int) -> None:
        raise NotImplementedError


def _parse_files(importer: Importer, index: int, group: list, channel, writer_pid: int) -> None:
    """A parser process (forked): read ``group``'s files and send batches to the writer."""
    from clown import procs

    procs.set_parent_death_signal(signal.SIGKILL)     # never outlive (and block on) a killed writer
    if os.getppid() != writer_pid:
        os._exit(1)
    try:
        importer.conn = None
        importer.sink, importer.sink_index = channel, index
        importer.found = importer.malformed = importer.done_bytes = importer.files_read = 0
        for path, st, offset, state in group:
            importer.read_file(path, st, offset, state)
            importer.files_read += 1
        importer.flush()
        channel.put(("done", index, importer.counters()))
    except BaseException as exc:  # the writer reports it; never a traceback on the protocol stream
        channel.put(("error", index, f"{type(exc).__name__}: {exc}"))


def _walk(root: str, want) -> list[str]:
    found = []
    for directory, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            if want(name):
                found.append(os.path.join(directory, name))
    return found


_UTC = dt.timezone.utc


def _timestamp(text: str) -> float:
    """``clock.parse_iso`` (3.11's fromisoformat reads ``Z``; naive means UTC)."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    return moment.timestamp()


def _count(value) -> int | None:
    """A token count: a non-negative int (bools are not), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class ClaudeImporter(Importer):
    kind = "claude"
    parallel = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._versions: dict[str, bool] = {}
        self._days: dict[str, int | None] = {}
        self._path_session = ""
        self._names: dict[str, str] = {}      # one object per session and model name: pickled once per batch

    def _at(self, timestamp: str) -> float | None:
        """Epoch seconds of ``timestamp`` (None when it is not one); Claude Code's own
        ``YYYY-MM-DDTHH:MM:SS.mmmZ`` costs a dict lookup per day plus integer arithmetic."""
        if len(timestamp) == 24 and timestamp[23] == "Z" and timestamp[19] == "." and timestamp[16] == ":" \
                and timestamp[13] == ":":
            day = self._days.get(timestamp[:11], False)
            if day is False:
                try:
                    day = int(_timestamp(timestamp[:11] + "00:00:00Z"))
                except ValueError:
                    day = None
                self._days[timestamp[:11]] = day
            digits = timestamp[11:13] + timestamp[14:16] + timestamp[17:19] + timestamp[20:23]
            if day is not None and digits.isdigit() and digits.isascii():
                clock_time = int(digits)        # HHMMSSmmm
                hours, minutes = clock_time // 10_000_000, clock_time // 100_000 % 100
                seconds, millis = clock_time // 1000 % 100, clock_time % 1000
                if hours < 24 and minutes < 60 and seconds < 60:
                    # the same float as datetime.timestamp(): microseconds / 10**6, correctly rounded
                    return ((day + hours * 3600 + minutes * 60 + seconds) * 1_000_000 + millis * 1000) / 1_000_000
        try:
            return _timestamp(timestamp)
        except ValueError:
            return None

    def files(self, root: str) -> list[str]:
        projects = os.path.join(root, "projects")
        if not os.path.isdir(projects):
            return []
        return _walk(projects, lambda name: name.endswith(".jsonl"))

    def begin_file(self, path: str, state: dict) -> None:
        # projects/<project>/<session>.jsonl, or projects/<project>/<session>/<file>.jsonl
        parent = os.path.basename(os.path.dirname(path))
        grandparent = os.path.basename(os.path.dirname(os.path.dirname(path)))
        self._path_session = parent if grandparent != "projects" else os.path.basename(path)[:-len(".jsonl")]
        self._names = {}

    def line(self, line: bytes, path: str, offset: int) -> None:
        if _USAGE_MARKER not in line:
            # No usage: not parsed at all (most lines are user turns and tool results). Only its
            # shape is checked, so a line that is not a JSON object still counts as malformed.
            if line[:1] != b"{" or line[-1:] != b"}":
                stripped = line.strip()
                if stripped[:1] != b"{" or stripped[-1:] != b"}":
                    self.malformed += 1
            return
        try:
            document = _loads(line)
        except ValueError:
            self.malformed += 1
            return
        if type(document) is not dict:
            return
        row = self.entry(document, path, offset)
        if row is not None:
            self.found += 1
            # Claude Code writes a response once per content block: the copies meet here first.
            folded = self.folded
            if row[0] in folded.rows:
                folded.add_row(row)
            else:
                folded.rows[row[0]] = row

    def entry(self, document: dict, path: str, offset: int) -> tuple | None:
        """The insert row (``clown.usage.store`` order) of a decoded line, or None when it does not count."""
        get = document.get
        message = get("message")
        if type(message) is dict:
            timestamp = get("timestamp")
            request_id = get("requestId")
            version = get("version")
        else:
            data = get("data")
            if type(data) is not dict:
                return None
            nested = data.get("message")   # type "progress": a subagent's replayed message
            if type(nested) is not dict:
                return None
            message = nested.get("message")
            timestamp = nested.get("timestamp")
            request_id = nested.get("requestId")
            version = None
            if type(message) is not dict:
                return None
        if type(timestamp) is not str:
            return None
        usage = message.get("usage")
        if type(usage) is not dict:
            return None
        input_tokens, output_tokens = usage.get("input_tokens"), usage.get("output_tokens")
        if type(input_tokens) is not int or input_tokens < 0 or type(output_tokens) is not int or output_tokens < 0:
            return None
        if version is not None and type(version) is str:
            good = self._versions.get(version)
            if good is None:
                good = self._versions[version] = _SEMVER_PREFIX.match(version) is not None
            if not good:
                return None
        session = get("sessionId")
        message_id, model = message.get("id"), message.get("model")
        if (session is not None and (type(session) is not str or not session)) \
                or (request_id is not None and (type(request_id) is not str or not request_id)) \
                or (message_id is not None and (type(message_id) is not str or not message_id)) \
                or (model is not None and (type(model) is not str or not model)):
            return None
        at = self._at(timestamp)
        if at is None:
            return None
        breakdown = usage.get("cache_creation")
        if type(breakdown) is dict:
            cache_creation = (_count(breakdown.get("ephemeral_5m_input_tokens")) or 0) + \
                             (_count(breakdown.get("ephemeral_1h_input_tokens")) or 0)
        else:
            cache_creation = usage.get("cache_creation_input_tokens")
            if type(cache_creation) is not int or cache_creation < 0:
                cache_creation = 0
        cache_read = usage.get("cache_read_input_tokens")
        if type(cache_read) is not int or cache_read < 0:
            cache_read = 0
        if model is None:
            model = ""
        elif model != "<synthetic>" and usage.get("speed") == "fast":
            model += "-fast"
        session = session or self._path_session
        names = self._names
        session = names.setdefault(session, session)
        model = names.setdefault(model, model)
        if message_id and request_id:
            key = f"{message_id}:{request_id}"
        elif message_id:
            key = f"{message_id}:session:{session}" if message_id.startswith("msg_") \
                else f"{message_id}:session:{session}:{timestamp}"
        else:
            key = f"line:{path}:{offset}"
        rates = self._rates.get(model, False)
        if rates is False:
            rates = self._rates[model] = self.rates(model)
        cost = (input_tokens * rates[0] + output_tokens * rates[1] + cache_creation * rates[2]
                + cache_read * rates[3]) / rates[4] if rates else 0.0
        # The ids are in the key already: the row's request_id and message_id columns stay empty.
        return (key, "claude", self.profile, "claude", "", model, session, input_tokens, output_tokens,
                cache_creation, cache_read, cost, None, None, at)

    # -- stats-cache.json --------------------------------------------------------------------

    def import_stats_cache(self, root: str) -> tuple[int, int]:
        """Fill uncovered days from stats-cache.json; returns (input, output) tokens it added."""
        path = os.path.join(root, "stats-cache.json")
        try:
            with open(path, "rb") as handle:
                document = _loads(handle.read())
        except (OSError, ValueError):
            return 0, 0
        if not isinstance(document, dict):
            return 0, 0
        covered = self.covered_days()
        ratios = _model_ratios(document.get("modelUsage"))
        events, stale = [], []
        for day in document.get("dailyModelTokens") or []:
            if not isinstance(day, dict) or not isinstance(day.get("date"), str):
                continue
            date = day["date"]
            by_model = day.get("tokensByModel")
            if not isinstance(by_model, dict):
                continue
            try:
                noon = dt.datetime.fromisoformat(date).replace(hour=12, tzinfo=self.tz).timestamp()
            except ValueError:
                continue
            for model, total in by_model.items():
                key = f"stats:{self.profile}:{date}:{model}"
                if date in covered:
                    stale.append(key)
                    continue
                total = _count(total)
                if not total:
                    continue
                tokens = _split(total, ratios.get(model))
                events.append(UsageEvent(
                    dedup_key=key, source="stats-cache", at=noon, model=str(model), profile=self.profile,
                    agent="claude", input_tokens=tokens[0], output_tokens=tokens[1],
                    cache_creation_input_tokens=tokens[2], cache_read_input_tokens=tokens[3],
                    cost=self.cost(str(model), tokens)))
        with store.transaction(self.conn):
            drain_inbox(self.conn, in_transaction=True)
            delete_keys(self.conn, stale)
            record_events(self.conn, events, in_transaction=True)
        return sum(e.input_tokens for e in events), sum(e.output_tokens for e in events)

    def covered_days(self) -> set[str]:
        """Local days in which this profile's usage is known response by response: from transcripts
        (this import's or an earlier one's) or metered by its proxy."""
        return {periods.day_of(row[0], self.tz) for row in self.conn.execute(
            "SELECT bucket FROM usage_covered_quarters WHERE profile = ?", (self.profile,))}


def _model_ratios(model_usage) -> dict:
    ratios = {}
    if not isinstance(model_usage, dict):
        return ratios
    for model, usage in model_usage.items():
        if not isinstance(usage, dict):
            continue
        parts = [_count(usage.get(name)) or 0 for name in
                 ("inputTokens", "outputTokens", "cacheCreationInputTokens", "cacheReadInputTokens")]
        if sum(parts):
            ratios[model] = parts
    return ratios


def _split(total: int, parts: list | None) -> tuple:
    """``total`` split in proportion to ``parts`` (input, output, cache write, cache read)."""
    if not parts:
        return 0, total, 0, 0
    whole = sum(parts)
    shares = [total * part // whole for part in parts]
    shares[1] += total - sum(shares)
    return tuple(shares)


PROXY_WINDOW_SLACK_SECS = 120.0


class CodexImporter(Importer):
    """Codex rollouts carry no response ids to meet the proxy's keys, so a rollout's
    ``token_count`` that falls in the time span in which the proxy metered that Codex session
    (its ``session-id`` header is the rollout's session id), widened by
    ``PROXY_WINDOW_SLACK_SECS``, is taken as already counted and skipped."""

    kind = "codex"

    def run(self, root: str) -> None:
        self.proxied = {session: (first - PROXY_WINDOW_SLACK_SECS, last + PROXY_WINDOW_SLACK_SECS)
                        for session, first, last in self.conn.execute(
                            "SELECT session, MIN(at), MAX(at) FROM usage_events"
                            " WHERE source = 'proxy' AND agent = 'codex' AND session != '' GROUP BY session")}
        self.metered_by_proxy = 0
        super().run(root)

    def files(self, root: str) -> list[str]:
        sessions = os.path.join(root, "sessions")
        if not os.path.isdir(sessions):
            return []
        return _walk(sessions, lambda name: name.startswith("rollout-") and name.endswith(".jsonl"))

    def begin_file(self, path: str, state: dict) -> None:
        self.state = state
        if not state.get("session"):
            match = re.search(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl$", path)
            state["session"] = match.group(1) if match else os.path.basename(path)
        state.setdefault("model", "")
        state.setdefault("prev", None)

    def line(self, line: bytes, path: str, offset: int) -> None:
        try:
            document = _loads(line)
        except ValueError:
            self.malformed += 1
            return
        if not isinstance(document, dict):
            return
        payload = document.get("payload")
        if not isinstance(payload, dict):
            return
        kind = document.get("type")
        state = self.state
        if kind == "session_meta":
            if isinstance(payload.get("id"), str) and payload["id"]:
                state["session"] = payload["id"]
            return
        if kind == "turn_context":
            if isinstance(payload.get("model"), str):
                state["model"] = payload["model"]
            return
        if kind != "event_msg" or payload.get("type") != "token_count":
            return
        info = payload.get("info")
        if not isinstance(info, dict):
            return
        total = _codex_counts(info.get("total_token_usage"))
        if total is None:
            return
        previous = state.get("prev")
        if previous is None:
            delta = total
        else:
            delta = [now - before for now, before in zip(total, previous)]
            if any(value < 0 for value in delta):
                delta = _codex_counts(info.get("last_token_usage")) or [0, 0, 0, 0]
        state["prev"] = total
        if not any(delta):
            return
        timestamp = document.get("timestamp")
        try:
            at = clock.parse_iso(timestamp) if isinstance(timestamp, str) else None
        except ValueError:
            at = None
        if at is None:
            return
        self.found += 1
        window = self.proxied.get(state["session"])
        if window is not None and window[0] <= at <= window[1]:
            self.metered_by_proxy += 1
            return
        model = state.get("model") or (info.get("model") if isinstance(info.get("model"), str) else "")
        input_all, cached, cache_write, output = delta
        tokens = (max(0, input_all - cached), output, cache_write, cached)
        self.folded.add(UsageEvent(
            dedup_key=f"codex:{state['session']}:{timestamp}:{sum(total)}", source="codex", at=at, model=model,
            profile=self.profile, agent="codex", session=state["session"], input_tokens=tokens[0],
            output_tokens=tokens[1], cache_creation_input_tokens=tokens[2], cache_read_input_tokens=tokens[3],
            cost=self.cost(model, tokens)))


def _codex_counts(usage) -> list | None:
    """``[input incl. cached, cached, cache writes, output]`` of a Codex token usage object."""
    if not isinstance(usage, dict):
        return None
    input_all = _count(usage.get("input_tokens"))
    output = _count(usage.get("output_tokens"))
    if input_all is None or output is None:
        return None
    cached = min(_count(usage.get("cached_input_tokens")) or 0, input_all)
    return [input_all, cached, _count(usage.get("cache_write_input_tokens")) or 0, output]


def profile_of_dir(home: Home, directory: str) -> str:
    """The clown profile whose home holds ``directory`` ('' when none does)."""
    profiles = os.path.realpath(home.profiles) + os.sep
    if directory.startswith(profiles):
        return directory[len(profiles):].split(os.sep, 1)[0]
    return ""


def run_import(home: Home, kind: str, directory: str, timezone: str | None, progress=None) -> dict:
    """Import ``kind`` (claude | codex) from ``directory``; returns the result document."""
    conn = store.open_store(home.db)
    # This connection only: no fsync per batch (an import interrupted by a crash is resumed from
    # its last committed batch; the proxies keep their own connections and rules).
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA temp_store = MEMORY")
    try:
        hash_unhashed_keys(conn)        # rows stored before the store hashed keys (once)
        drain_inbox(conn)               # what the proxies metered counts in what follows
        tz = periods.zone(timezone)
        importer_class = ClaudeImporter if kind == "claude" else CodexImporter
        importer = importer_class(conn, tz, None, profile_of_dir(home, directory), progress, home_root=home.root)
        started = time.monotonic()
        importer.run(directory)
        stats_input = stats_output = 0
        if kind == "claude":
            stats_input, stats_output = importer.import_stats_cache(directory)
        return {
            "kind": kind, "found": importer.found, "recorded": importer.recorded,
            "malformed": importer.malformed, "files_read": importer.files_read,
            "files_skipped": importer.files_skipped, "bytes": importer.total_bytes,
            "stats_input_tokens": stats_input, "stats_output_tokens": stats_output,
            "metered_by_proxy": getattr(importer, "metered_by_proxy", 0),
            "secs": round(time.monotonic() - started, 3),
        }
    finally:
        conn.close()


def describe(result: dict) -> str:
    """The import's answer, in the spec's words."""
    files = f"{result['files_read']} files read, {result['files_skipped']} unchanged"
    tail = (f" ({result['recorded']} new or grown, {result['malformed']} malformed lines skipped; {files})")
    if result["kind"] == "claude":
        return (f"Imported {result['stats_input_tokens']} input tokens, {result['stats_output_tokens']} output tokens "
                f"from stats-cache.json. Found {result['found']} session entries from JSONL files" + tail)
    proxied = result.get("metered_by_proxy") or 0
    if proxied:
        tail = tail[:-1] + f"; {proxied} already metered by the proxy)"
    return f"Found {result['found']} token_count entries from Codex rollout files" + tail


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="clown-usage-import")
    parser.add_argument("--home", required=True)
    parser.add_argument("--kind", choices=("claude", "codex"), required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--timezone", default=None)
    args = parser.parse_args(argv)

    def progress(**values):
        sys.stdout.write(json.dumps({"progress": values}) + "\n")
        sys.stdout.flush()

    try:
        result = run_import(Home(args.home), args.kind, args.dir, args.timezone, progress)
    except Exception as exc:  # report, never a traceback on the protocol stream
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.exit(1)
    sys.stdout.write(json.dumps({"result": result, "message": describe(result)}) + "\n")


if __name__ == "__main__":
    main()
