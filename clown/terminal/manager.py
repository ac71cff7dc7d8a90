"""Terminal sessions: one supervisor program (``term-<id>``) per session, owning one PTY.

The manager writes the session's row and launch spec, adds the worker program, and
talks to the worker over its Unix socket for status, input and termination. It holds no
session state of its own: the store and the workers do, so a restarted front picks up
where the last one was. Exited workers are removed from supervisor by a periodic reaper.
"""

import asyncio
import collections
import errno
import json
import logging
import os
import uuid

import tornado.ioloop

from clown import clock
from clown.ipc import TerminalWorkerClient, WorkerError
from clown.supervise.client import SupervisorError

log = logging.getLogger(__name__)

PROGRAM_PREFIX = "term-"
WORKER_MODULE = "clown.workers.terminal"
REAP_INTERVAL_MS = 2000
CONNECT_TIMEOUT = 10.0
_DONE_STATES = ("EXITED", "FATAL", "STOPPED")


class TerminalError(Exception):
    """A request about a terminal session that cannot be honoured; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# Term workers kept started ahead of time (after the first session; ~23 MiB of RSS each).
# A constant, not a setting: DESIGN.md fixes the config keys, and one spare is what a
# person creating sessions by hand needs (bursts take the ordinary path).
SPARE_WORKERS = 1


def program_name(session_id: str) -> str:
    return PROGRAM_PREFIX + session_id


class TerminalManager:
    def __init__(self, ctx):
        self.ctx = ctx
        self._input_clients: dict[str, TerminalWorkerClient] = {}
        self._reserved = 0   # max_sessions slots taken by creates that have not written their row yet
        self._reaper = None
        # Spare workers (``--spare``): programs ``term-<id>`` already started, Python and
        # modules loaded, waiting for the session ``<id>``; see _fill_spares.
        self._spares: collections.deque[str] = collections.deque()
        self._filling = False
        ctx.startup.append(self.start)

    async def start(self) -> None:
        """Reattach after a front (re)start: forget exited workers and the spares of an
        earlier front, then keep reaping."""
        await self._remove_orphan_spares()
        await self.reap()
        self._reaper = tornado.ioloop.PeriodicCallback(self._reap_in_background, REAP_INTERVAL_MS)
        self._reaper.start()
        self.ctx.on_close(self._reaper.stop)

    # -- reading ----------------------------------------------------------------------------

    def socket_path(self, session_id: str) -> str:
        return self.ctx.home.socket(f"term-{session_id}.sock")

    def scrollback_path(self, session_id: str) -> str:
        return os.path.join(self.ctx.home.scrollback, session_id)

    def row(self, session_id: str):
        return self.ctx.store.execute("SELECT * FROM terminal_sessions WHERE id = ?", (session_id,)).fetchone()

    async def live_status(self, row) -> dict:
        """The worker's own view (client_count, cols, rows); empty when it is not reachable."""
        if row["state"] == "terminated":
            return {}
        try:
            client = await TerminalWorkerClient.connect(self.socket_path(row["id"]), timeout=1.0)
        except (OSError, WorkerError, asyncio.TimeoutError):
            return {}
        try:
            return await client.status(timeout=1.0)
        except (WorkerError, asyncio.TimeoutError):
            return {}
        finally:
            await client.close()

    async def describe(self, row) -> dict:
        live = await self.live_status(row)
        return {
            "id": row["id"],
            "profile_alias": row["profile_alias"],
            "state": row["state"],
            "created_at": row["created_at"],
            "pid": row["pid"],
            "cols": live.get("cols", row["cols"]),
            "rows": live.get("rows", row["rows"]),
            "client_count": live.get("client_count", 0),
            "exit_code": row["exit_code"],
            "exit_signal": row["exit_signal"],
            "reason": row["reason"],
            "ended_at": row["ended_at"],
            "working_dir": row["working_dir"],
        }

    async def all(self) -> list[dict]:
        rows = self.ctx.store.execute("SELECT * FROM terminal_sessions ORDER BY created_at, id").fetchall()
        return list(await asyncio.gather(*(self.describe(row) for row in rows)))

    async def get(self, session_id: str) -> dict:
        row = self.row(session_id)
        if row is None:
            raise TerminalError(404, f"Terminal session '{session_id}' not found")
        return await self.describe(row)

    def live_count(self) -> int:
        return self.ctx.store.execute(
            "SELECT COUNT(*) FROM terminal_sessions WHERE state != 'terminated'").fetchone()[0]

    # -- life cycle -------------------------------------------------------------------------

    async def create(self, profile_alias: str, args: list[str], cols: int = 80, rows: int = 24,
                     working_dir: str | None = None, launch=None, agent_session_id: str | None = None) -> dict:
        """Start a session of ``profile_alias`` and return its row as ``describe`` gives it.

        ``launch`` (argv, env, secret_env, cwd) replaces the profile's own launch, for agent
        sessions that wrap the agent (a sandbox, a resumed conversation). Raises
        TerminalError 404 (no such profile), 429 (``max_sessions`` reached), 500.
        """
        if self.ctx.store.execute("SELECT 1 FROM profiles WHERE alias = ?", (profile_alias,)).fetchone() is None:
            raise TerminalError(404, f"Profile '{profile_alias}' not found")
        limit = self.ctx.config.terminal.max_sessions
        # The slot is taken here, before the first await: creates running side by side
        # each see the others' slots, so no more than ``limit`` sessions are ever live.
        # It is given back once the row is in (the row counts from then on) or on failure.
        if self.live_count() + self._reserved >= limit:
            raise TerminalError(429, f"max_sessions reached: {limit} terminal sessions are live")
        self._reserved += 1
        try:
            if launch is None:
                launch = await self.ctx.profiles.launch(profile_alias, list(args), working_dir)
            spare = self._spares.popleft() if self._spares else None
            session_id = spare or str(uuid.uuid4())
            self._write_spec(session_id, launch, cols, rows)   # first: a spare starts once the row exists
            self.ctx.store.execute(
                "INSERT INTO terminal_sessions (id, profile_alias, state, created_at, cols, rows, argv, working_dir,"
                " agent_session_id) VALUES (?, ?, 'starting', ?, ?, ?, ?, ?, ?)",
                (session_id, profile_alias, clock.utc_iso(), cols, rows, json.dumps(launch.argv), launch.cwd,
                 agent_session_id))
        finally:
            self._reserved -= 1
        if spare:
            self._poke_spare(session_id)
        else:
            try:
                await self.ctx.workers.add(program_name(session_id), WORKER_MODULE, ["--session", session_id],
                                           autorestart="unexpected", startsecs=0)
            except SupervisorError as exc:
                self._mark_terminated(session_id, f"worker failed to start: {exc}")
                raise TerminalError(500, f"could not start the terminal worker: {exc}")
        self._refill_spares()
        self.ctx.events.publish("terminals", "created", {"id": session_id, "profile_alias": profile_alias})
        return await self.describe(self.row(session_id))

    # -- spare workers ------------------------------------------------------------------------
    #
    # Starting a worker costs a supervisor reloadConfig (which re-reads every conf.d file)
    # and a Python start-up with its imports: most of create-to-first-byte. So after the
    # first session, the manager keeps SPARE_WORKERS programs ``term-<id>`` started
    # with ``--spare`` for ids no session has yet. Creating a session takes one: its row
    # and spec get that id, the FIFO poke wakes the worker, and it runs as any other. Each
    # session still is its own program, named after it from the start. Spares have no row:
    # the API does not list them; a restarted front removes those of the last one.

    def _poke_spare(self, session_id: str) -> None:
        from clown.workers.terminal import claim_path
        try:
            fd = os.open(claim_path(self.ctx.home, session_id), os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:   # not waiting yet: it finds the row when it gets there
            if exc.errno not in (errno.ENOENT, errno.ENXIO):
                log.warning("poking spare worker %s: %s", session_id, exc)
            return
        try:
            os.write(fd, b"go")
        except OSError:
            pass
        finally:
            os.close(fd)

    def _refill_spares(self) -> None:
        if not self._filling and len(self._spares) < SPARE_WORKERS:
            self._filling = True
            asyncio.ensure_future(self._fill_spares())

    async def _fill_spares(self) -> None:
        try:
            # The spare checks it: one still starting when supervisord dies must not linger.
            parent = await self.ctx.workers.supervisor.call("getPID")
            while len(self._spares) < SPARE_WORKERS:
                session_id = str(uuid.uuid4())
                await self.ctx.workers.add(program_name(session_id), WORKER_MODULE,
                                           ["--session", session_id, "--spare", "--parent", str(parent)],
                                           autorestart="unexpected", startsecs=0)
                self._spares.append(session_id)
        except Exception:
            log.exception("starting a spare terminal worker failed")
        finally:
            self._filling = False

    async def _remove_orphan_spares(self) -> None:
        try:
            infos = await self.ctx.workers.all()
        except SupervisorError:
            return
        for info in infos:
            if info["name"].startswith(PROGRAM_PREFIX) and info["statename"] not in _DONE_STATES \
                    and self.row(info["name"][len(PROGRAM_PREFIX):]) is None:
                log.info("removing spare terminal worker %s of an earlier front", info["name"])
                try:
                    await self.ctx.workers.remove(info["name"])
                except SupervisorError as exc:
                    log.warning("removing %s: %s", info["name"], exc)

    def _write_spec(self, session_id: str, launch, cols: int, rows: int) -> None:
        spec = {
            "session_id": session_id,
            "argv": launch.argv,
            "env": launch.env,
            "secret_env": launch.secret_env,
            "cwd": launch.cwd,
            "cols": cols,
            "rows": rows,
            "scrollback_bytes": self.ctx.config.terminal.scrollback_bytes,
            "client_backlog_bytes": self.ctx.config.terminal.client_backlog_bytes,
        }
        path = self.ctx.home.spec(program_name(session_id))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(spec, handle)

    def _mark_terminated(self, session_id: str, reason: str) -> None:
        self.ctx.store.execute(
            "UPDATE terminal_sessions SET state = 'terminated', ended_at = ?, reason = COALESCE(reason, ?)"
            " WHERE id = ? AND state != 'terminated'", (clock.utc_iso(), reason, session_id))

    async def connect(self, session_id: str, timeout: float = CONNECT_TIMEOUT) -> TerminalWorkerClient | None:
        """A connection to the session's worker, waiting while it starts; None once it has ended."""
        deadline = asyncio.get_running_loop().time() + timeout
        delay = 0.002
        while True:
            row = self.row(session_id)
            if row is None or row["state"] == "terminated":
                return None
            try:
                return await TerminalWorkerClient.connect(self.socket_path(session_id), timeout=2.0)
            except (OSError, WorkerError, asyncio.TimeoutError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def terminate(self, session_id: str) -> None:
        """End the session (its whole process tree) and remove its worker. Raises TerminalError 404."""
        row = self.row(session_id)
        if row is None:
            raise TerminalError(404, f"Terminal session '{session_id}' not found")
        await self._drop_input_client(session_id)
        if row["state"] != "terminated":
            try:
                client = await self.connect(session_id, timeout=3.0)
            except (OSError, WorkerError, asyncio.TimeoutError):
                client = None
            if client is not None:
                try:
                    await client.terminate()
                except (WorkerError, asyncio.TimeoutError, ConnectionError):
                    pass
                finally:
                    await client.close()
        # Stopping the program also ends a worker that did not answer (SIGTERM ends its session).
        await self.ctx.workers.remove(program_name(session_id))
        self._mark_terminated(session_id, "terminated")
        self._remove_spec(session_id)

    async def terminate_profile_sessions(self, alias: str) -> int:
        rows = self.ctx.store.execute(
            "SELECT id FROM terminal_sessions WHERE profile_alias = ? AND state != 'terminated'", (alias,)).fetchall()
        for row in rows:
            await self.terminate(row["id"])
        return len(rows)

    async def cleanup(self) -> int:
        """Forget terminated sessions: rows, scrollback dumps, leftover programs."""
        rows = self.ctx.store.execute("SELECT id FROM terminal_sessions WHERE state = 'terminated'").fetchall()
        for row in rows:
            await self.ctx.workers.remove(program_name(row["id"]))
            for path in (self.scrollback_path(row["id"]), self.ctx.home.spec(program_name(row["id"]))):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        self.ctx.store.execute("DELETE FROM terminal_sessions WHERE state = 'terminated'")
        return len(rows)

    def _remove_spec(self, session_id: str) -> None:
        try:
            os.unlink(self.ctx.home.spec(program_name(session_id)))
        except FileNotFoundError:
            pass

    # -- input for other subsystems (agent sessions type into their agent) -------------------

    async def send_input(self, session_id: str, data: bytes) -> None:
        """Type ``data`` into the session. Raises TerminalError 404/409."""
        client = self._input_clients.get(session_id)
        if client is None or client.closed:
            row = self.row(session_id)
            if row is None:
                raise TerminalError(404, f"Terminal session '{session_id}' not found")
            client = await self.connect(session_id)
            if client is None:
                raise TerminalError(409, f"Terminal session '{session_id}' has ended")
            self._input_clients[session_id] = client
        await client.send_input(data)

    async def _drop_input_client(self, session_id: str) -> None:
        client = self._input_clients.pop(session_id, None)
        if client is not None:
            await client.close()

    # -- reaping ----------------------------------------------------------------------------

    def _reap_in_background(self) -> None:
        asyncio.ensure_future(self._safe_reap())

    async def _safe_reap(self) -> None:
        try:
            await self.reap()
        except Exception:
            log.exception("reaping terminal workers failed")

    async def reap(self) -> None:
        """Remove the programs of workers that have exited; close their sessions' rows."""
        try:
            infos = await self.ctx.workers.all()
        except SupervisorError:
            return
        for info in infos:
            if not info["name"].startswith(PROGRAM_PREFIX) or info["statename"] not in _DONE_STATES:
                continue
            session_id = info["name"][len(PROGRAM_PREFIX):]
            if session_id in self._spares:   # a spare that died unclaimed
                self._spares.remove(session_id)
                self._refill_spares()
            if info["statename"] == "FATAL":
                self._mark_terminated(session_id, "worker failed to start")
            row = self.row(session_id)
            if row is not None and row["state"] != "terminated":
                continue  # a stopped worker whose row is live: terminate() is on it
            await self._drop_input_client(session_id)
            await self.ctx.workers.remove(info["name"], stop=False)
            self._remove_spec(session_id)
            if row is not None:
                self.ctx.events.publish("terminals", "state_changed", {
                    "id": session_id, "state": "terminated", "exit_code": row["exit_code"]})
