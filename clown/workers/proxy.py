"""The proxy worker: one profile's HTTP proxy to its provider, which meters every response.

Run as ``python -m clown.workers.proxy --home DIR --profile ALIAS`` (supervisord does,
program ``proxy-<ALIAS>``, ``autorestart=true``). Launch spec, JSON 0600 at
``Home(DIR).spec("proxy-<ALIAS>")``, written by ``clown.proxy.manager``::

    {"profile": "work", "port": 8081, "upstream": "https://api.anthropic.com",
     "provider_type": "anthropic", "auth_header": "x-api-key",   # x-api-key | bearer | mirror
     "key_secret": "profile-work.key", "placeholder_secret": "profile-work.placeholder",
     "upstream_timeout_secs": 600, "max_body_bytes": 33554432,
     "agent": "claude", "provider": "anthropic", "model": "claude-sonnet-4",
     "inject_stream_usage": true}

Keys: the agent holds only the placeholder. Every request must carry it (``x-api-key`` or
``Authorization: Bearer``), compared in constant time, else 401. It is removed and the
real key, read from the secret store per request, goes upstream in ``auth_header``
(``mirror``: the header the agent used). Neither value is ever logged.

Serving: ``clown.proxy.server`` (an HTTP/1.1 server on asyncio Protocols, requests parsed by
``clown.proxy.http``) forwards each request on a keep-alive upstream connection
(``clown.proxy.upstream``) and each piece of the answer to the agent as it arrives, reading
the upstream only while the agent keeps up. An agent that disconnects aborts the upstream
connection.

Metering: ``clown.usage.meter`` reads usage from the bytes passing by. The usage row is
committed before the last byte of the response is forwarded (see ``Meterer``). A client
that has the whole answer also has its usage recorded. A response cut short still records
what it reported so far.

Runs: each start inserts a ``proxy_runs`` row (port, pid, started_at); a clean stop
(SIGTERM) closes it with reason "stopped". A start that finds an earlier run of this
profile still open closes it as "crashed" (the worker was killed). The worker asks for
SIGTERM when supervisord dies (PR_SET_PDEATHSIG) so it never outlives it.
"""

import argparse
import asyncio
import gc
import hmac
import json
import logging
import os
import queue
import signal
import socket
import sqlite3
import sys
import threading
import time

from clown import clock, procs, store
from clown.catalog.pricing import current_table, price_for
from clown.home import Home
from clown.proxy.http import RequestHead
from clown.proxy.server import DROP_REQUEST, ProxyServer
from clown.proxy.upstream import Target, UpstreamPool
from clown.secrets import SecretStore
from clown.usage.store import UsageEvent, commit_to_inbox, drain_inbox, mark_covered, record_events

log = logging.getLogger("clown.workers.proxy")

PRICING_TTL_SECS = 30.0
DRAIN_DELAY_SECS = 0.5      # the inbox is drained this long after the first commit that finds it drained
RETRY_SECS = 1.0            # rows the writer thread could not commit are tried again this often
RETRY_MAX_ROWS = 100_000    # and at most this many of them are kept (the newest)
_DRAIN = object()
_TICK = object()


class Meterer:
    """Commits usage rows to the inbox on the event loop; a writer thread folds them in.

    ``commit`` is the proxy's path, before a response's last byte: one INSERT into
    ``usage_inbox`` on the loop's own connection (``commit_to_inbox``, ~0.02 ms; the dedup
    lookup, the indexed insert and the rollup upserts of ``record_events`` cost five
    times that). The rows count from that moment: whatever reads usage drains the inbox
    first (``drain_inbox``). The writer thread drains it ``DRAIN_DELAY_SECS`` after a commit
    that found it drained, in one transaction for all the responses of that time, and once
    more at start (what a killed worker left) and at stop.

    The loop's connection never waits for a lock (``busy_timeout = 0``) and never
    checkpoints the WAL (a checkpoint syncs the database file; the writer thread's commits
    do it). When another writer holds the store (a drain, an import's batch, the web front),
    the row goes to the writer thread instead and ``commit`` returns a future that resolves
    once it is committed. ``submit`` always uses the writer thread; the rows that queue up
    while it writes share its next transaction.
    """

    def __init__(self, home: Home, spec: dict, run_id: int):
        self.home = home
        self.spec = spec
        self.run_id = run_id
        self._table = current_table(home.root)
        self._table_at = time.monotonic()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._conn = None           # the writer thread's
        self._inline = None         # the event loop's
        self._drain_asked = True    # a drain is queued: the first one, for what an earlier run left
        self._retry: list = []      # rows whose commit failed (the writer thread's), tried again
        self._queue.put(_DRAIN)
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    def _price(self, event: UsageEvent) -> None:
        price = price_for(event.model, self._table)
        if price is not None:
            event.cost = price.costs(event.input_tokens, event.output_tokens, event.cache_creation_input_tokens,
                                     event.cache_read_input_tokens)["total_cost"]

    # -- on the event loop --------------------------------------------------------------------

    def commit(self, event: UsageEvent) -> asyncio.Future | None:
        """Commit ``event`` now if the store is free (returns None), else on the writer thread
        (returns a future that resolves once it is committed). A failure is logged."""
        conn = self._inline
        if conn is None:
            conn = self._inline = store.connect(self.home.db)
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._price(event)
        try:
            commit_to_inbox(conn, event)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return self.submit(event)
            log.error("could not record usage: %s", exc)
            return None
        except Exception:
            log.exception("could not record usage")
            return None
        if not self._drain_asked:
            self._drain_asked = True
            self._queue.put(_DRAIN)
        return None

    def submit(self, event: UsageEvent) -> asyncio.Future:
        """Commit ``event`` on the writer thread; the future resolves once it is committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((event, future, loop))
        return future

    async def record(self, event: UsageEvent) -> None:
        await self.submit(event)

    # -- on the writer thread -----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = store.connect(self.home.db)
        return self._conn

    def _write(self, events: list) -> None:
        conn = self._connection()
        for event in events:
            self._price(event)
        with store.transaction(conn):
            drain_inbox(conn, in_transaction=True)
            record_events(conn, events, in_transaction=True)
            mark_covered(conn, [(event.profile, event.at) for event in events if event.agent == "claude"])

    def _drain(self) -> bool:
        """Fold the inbox in; False when the store could not be written (the caller retries)."""
        self._drain_asked = False       # a commit from now on asks again
        try:
            drain_inbox(self._connection())
        except sqlite3.Error as exc:
            log.warning("could not fold the usage inbox in (will retry): %s", exc)
            return False
        return True

    def _refresh_table(self) -> None:
        if time.monotonic() - self._table_at > PRICING_TTL_SECS:
            self._table = current_table(self.home.root)     # swapped whole: the loop reads it as is
            self._table_at = time.monotonic()

    def _run(self) -> None:
        drain_at = None
        while True:
            timeout = PRICING_TTL_SECS if drain_at is None else max(0.0, drain_at - time.monotonic())
            if self._retry:
                timeout = min(timeout, RETRY_SECS)
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = _TICK
            items, stop = [], item is None
            while not stop:     # whatever queued up meanwhile shares the transaction
                if item is _DRAIN:
                    if drain_at is None:
                        drain_at = time.monotonic() + DRAIN_DELAY_SECS
                elif item is not _TICK:
                    items.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                stop = item is None
            self._refresh_table()
            if items or self._retry:
                self._write_waiting(items)
            if stop or (drain_at is not None and time.monotonic() >= drain_at):
                drain_at = None if self._drain() else time.monotonic() + DRAIN_DELAY_SECS
            if stop:
                return

    def _write_waiting(self, items: list) -> None:
        """Commit the queued rows (and any that failed before); settle their futures either way.

        A failed commit (the store locked past its busy timeout, the disk full) keeps the rows
        and tries them again every ``RETRY_SECS``: the responses waiting on them go out (the
        agent is not held hostage by the store), and the rows count once the store takes them.
        """
        error = None
        events = self._retry + [event for event, _, _ in items]
        try:
            self._write(events)
            self._retry = []
        except Exception as exc:  # each waiting response logs it
            error = exc
            if _passing(exc):
                self._retry = events[-RETRY_MAX_ROWS:]
                log.error("%d usage rows not committed yet (will retry): %s", len(self._retry), exc)
            else:
                self._retry = []
                log.error("%d usage rows lost: %s", len(events), exc)
        by_loop: dict = {}
        for _, future, loop in items:
            by_loop.setdefault(loop, []).append(future)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, futures, error)
            except RuntimeError:
                pass    # the loop is closed: nobody waits any more

    def close(self) -> None:
        """Write what is queued, fold the inbox in, then stop the writer thread."""
        self._queue.put(None)
        self._thread.join()
        if self._inline is not None:
            self._inline.close()
            self._inline = None


def _passing(error: Exception) -> bool:
    """A store error that waiting may cure (a lock held too long, a full disk)."""
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and any(
        word in text for word in ("locked", "busy", "disk", "full", "i/o"))


def _settle(futures: list, error: Exception | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class Proxy:
    """The worker's state: spec, secrets, the target, the usage writer."""

    def __init__(self, home: Home, spec: dict, run_id: int):
        self.home = home
        self.spec = spec
        self.alias = spec["profile"]
        self.run_id = run_id
        self.target = Target.parse(spec["upstream"])
        self.timeout = float(spec.get("upstream_timeout_secs", 600))
        self.max_body_bytes = int(spec.get("max_body_bytes", 32 << 20))
        self.auth_header = spec.get("auth_header", "x-api-key")
        self.inject_stream_usage = bool(spec.get("inject_stream_usage", True))
        self.secrets = SecretStore(home.secrets)
        self.meterer = Meterer(home, spec, run_id)
        self.pool = UpstreamPool(self.target, self.timeout)
        self._placeholder = None
        self._key = None
        self._key_stamp = None

    def placeholder(self) -> str | None:
        if self._placeholder is None:
            value = self.secrets.read(self.spec["placeholder_secret"])
            self._placeholder = value.strip() if value else None
        return self._placeholder

    def real_key(self) -> str | None:
        """Read per request (a key change needs no restart), but only when the secret file changed."""
        name = self.spec.get("key_secret")
        if not name:
            return None
        try:
            st = os.stat(self.secrets._path(name))
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except (OSError, ValueError):
            stamp = None
        if stamp is None or stamp != self._key_stamp:
            value = self.secrets.read(name)
            self._key = value.strip() if value else None
            self._key_stamp = stamp
        return self._key

    def refusal(self, head: RequestHead) -> tuple[int, str, str] | None:
        """Why the request may not go upstream, as (status, error type, message); None when it may."""
        placeholder = self.placeholder()
        offered = head.get("x-api-key")
        if offered is None:
            authorization = head.get("authorization") or ""
            if authorization[:7].lower() == "bearer ":
                offered = authorization[7:].strip()
        if not placeholder or offered is None or not hmac.compare_digest(offered.encode("latin-1"),
                                                                         placeholder.encode("latin-1")):
            return 401, "authentication_error", "clown proxy: send this profile's placeholder credential"
        return None

    def upstream_request(self, head: RequestHead, body: bytes) -> bytes:
        """The request as sent upstream: the target's Host and path prefix, hop-by-hop headers and
        the placeholder dropped, the real key in the provider's header, identity encoding."""
        target = self.target
        fields = head.fields
        connection = fields.get("connection")
        listed = {token.strip().lower() for token in connection.split(",")} if connection else ()
        lines = [f"{head.method} {target.prefix}{head.target} HTTP/1.1", f"Host: {target.netloc}"]
        for name, value in head.headers:
            lowered = name.lower()
            if lowered in DROP_REQUEST or lowered in listed:
                continue
            lines.append(f"{name}: {value}")
        key = self.real_key()
        if key:
            style = self.auth_header
            if style == "mirror":
                style = "bearer" if "authorization" in fields and "x-api-key" not in fields else "x-api-key"
            lines.append(f"x-api-key: {key}" if style == "x-api-key" else f"Authorization: Bearer {key}")
        lines.append("Accept-Encoding: identity")
        if body or head.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1") + body


def bind_socket(port: int) -> socket.socket:
    """Listen on 127.0.0.1:port (SO_REUSEADDR: a restart after a crash gets the same port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def open_run(conn, alias: str, port: int) -> int:
    with store.transaction(conn):
        conn.execute("UPDATE proxy_runs SET stopped_at = ?, reason = 'crashed' WHERE profile = ? AND stopped_at IS NULL",
                     (clock.utc_iso(), alias))
        cursor = conn.execute("INSERT INTO proxy_runs (profile, port, pid, started_at) VALUES (?, ?, ?, ?)",
                              (alias, port, os.getpid(), clock.utc_iso()))
        return cursor.lastrowid


def close_run(conn, run_id: int, reason: str) -> None:
    conn.execute("UPDATE proxy_runs SET stopped_at = ?, reason = ? WHERE id = ? AND stopped_at IS NULL",
                 (clock.utc_iso(), reason, run_id))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="clown-proxy")
    parser.add_argument("--home", required=True)
    parser.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parent = os.getppid()
    procs.set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(0)   # supervisord died before we could ask
    home = Home(args.home)
    with open(home.spec("proxy-" + args.profile)) as handle:
        spec = json.load(handle)
    sys.setswitchinterval(0.0002)   # the usage writer thread must not hold the loop up for 5 ms
    asyncio.run(serve(home, spec))


async def serve(home: Home, spec: dict) -> None:
    """Listen until SIGTERM/SIGINT; the run is recorded in ``proxy_runs``."""
    sock = bind_socket(int(spec["port"]))
    conn = store.open_store(home.db)
    run_id = open_run(conn, spec["profile"], int(spec["port"]))
    proxy = Proxy(home, spec, run_id)
    loop = asyncio.get_running_loop()
    server = ProxyServer(proxy)
    listener = await loop.create_server(server.protocol, sock=sock)
    server.start_sweeping()
    # What exists now lives as long as the worker: out of the collector's way, so a full
    # collection (every few hundred requests) does not walk it and stall a response.
    gc.freeze()
    log.info("proxy of profile %s listening on 127.0.0.1:%s -> %s", proxy.alias, spec["port"], proxy.target.url)
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        listener.close()
        server.close()
        proxy.pool.close()
        close_run(conn, run_id, "stopped")
        proxy.meterer.close()
        conn.close()
        log.info("proxy of profile %s stopped", proxy.alias)


if __name__ == "__main__":
    main()
