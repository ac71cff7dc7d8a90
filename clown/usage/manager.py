"""The usage manager of the web front: reports, and import jobs run as subprocesses."""

import asyncio
import json
import logging
import os
import sqlite3
import sys
import time

from clown import store
from clown.catalog.pricing import current_table
from clown.paths import check_client_path
from clown.usage import periods
from clown.usage.report import build_report
from clown.usage.store import drain_inbox, inbox_waiting

log = logging.getLogger(__name__)

PRICING_TTL_SECS = 5.0


class ImportBusy(Exception):
    """An import is already running."""


class ImportFailed(Exception):
    """The import subprocess failed; the message says why."""


class UsageManager:
    def __init__(self, ctx):
        self.ctx = ctx
        self.tz = periods.zone(getattr(ctx.config.usage, "timezone", None))
        self._table = None
        self._table_at = 0.0
        self._importing = False
        self._drain_lock = asyncio.Lock()
        self._drain_conn = None

    def pricing(self) -> dict:
        """The pricing table in force, re-read at most every few seconds."""
        now = time.monotonic()
        if self._table is None or now - self._table_at > PRICING_TTL_SECS:
            self._table = current_table(self.ctx.home.root)
            self._table_at = now
        return self._table

    async def report(self, period: str, profile: str | None = None, model: str | None = None) -> dict:
        # The rows the proxies committed since their writer threads last folded them in count
        # too: fold them in first, on a thread (the fold waits for the store's write lock,
        # which an import batch may hold; the event loop must not).
        if inbox_waiting(self.ctx.store):
            async with self._drain_lock:
                await asyncio.to_thread(self._drain)
        return build_report(self.ctx.store, period, self.tz, self.pricing(), profile, model)

    def _drain(self) -> None:
        if self._drain_conn is None:
            self._drain_conn = store.connect(self.ctx.home.db)
        try:
            drain_inbox(self._drain_conn)
        except sqlite3.Error as exc:   # the proxies' own drains will fold them in
            log.warning("could not fold the usage inbox in before a report: %s", exc)

    def close(self) -> None:
        if self._drain_conn is not None:
            self._drain_conn.close()
            self._drain_conn = None

    def resolve_dir(self, value: str | None, default: str, field: str) -> str:
        """The import dir: the client's (checked, see clown.paths) or the default under ~."""
        roots = self.ctx.config.server.allowed_roots
        if value is None:
            value = os.path.expanduser(default)
        return check_client_path(value, field, roots)

    async def run_import(self, kind: str, directory: str) -> str:
        """Run one import to its end; publishes ``import_progress`` then ``usage_updated``.

        Returns the answer's message. Raises ImportBusy or ImportFailed.
        """
        if self._importing:
            raise ImportBusy("an import is already running")
        self._importing = True
        try:
            argv = [sys.executable, "-m", "clown.usage.imports", "--home", self.ctx.home.root, "--kind", kind,
                    "--dir", directory]
            timezone = getattr(self.ctx.config.usage, "timezone", None)
            if timezone:
                argv += ["--timezone", timezone]
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL, limit=1 << 20)
            outcome = None
            while True:
                line = await process.stdout.readline()
                if not line:
                    break
                try:
                    document = json.loads(line)
                except ValueError:
                    continue
                if "progress" in document:
                    self.ctx.events.publish("usage", "import_progress", document["progress"])
                else:
                    outcome = document
            stderr = await process.stderr.read()
            await process.wait()
            if outcome is None or "error" in outcome:
                why = (outcome or {}).get("error") or stderr.decode(errors="replace").strip()[-500:]
                log.error("usage import of %s failed: %s", directory, why)
                raise ImportFailed(why or f"import exited with {process.returncode}")
            self.ctx.events.publish("usage", "usage_updated", {"source": kind, **outcome["result"]})
            return outcome["message"]
        finally:
            self._importing = False
