"""The terminal worker: one PTY, its process session, a scrollback ring, any number of clients.

Run as ``python -m clown.workers.terminal --home DIR --session ID`` (supervisord does,
program ``term-<ID>``, ``autorestart=unexpected``, ``exitcodes=0``). It reads its launch
spec from ``Home(DIR).spec("term-<ID>")``, listens on ``Home(DIR).socket("term-<ID>.sock")``
and speaks docs/worker-protocol.md there. With ``--spare`` it is started before its session
exists and waits until the front claims it (``wait_for_claim``).

Launch spec (JSON, 0600, written by the front before the worker starts)::

    {"session_id": "...", "argv": ["claude", "..."], "env": {"HOME": "...", ...},
     "secret_env": {"ANTHROPIC_AUTH_TOKEN": "profile-work.key"},
     "cwd": "/abs/dir", "cols": 80, "rows": 24,
     "scrollback_bytes": 1048576, "client_backlog_bytes": 4194304}

The child's environment is exactly ``env`` plus the ``secret_env`` values read from the
home's SecretStore (``env`` carries the TERM the launch chose: ``xterm-256color`` unless the
profile sets another; a spec without one gets ``xterm-256color``). Nothing is inherited from the worker.

Lifetime: the ``terminal_sessions`` row goes ``starting`` (inserted by the front) →
``running`` (pid, pid_started, worker_pid) → ``terminated`` (exit_code or exit_signal,
ended_at, reason). When the session ends, for whatever cause, the worker kills what is
left of the PTY's session, dumps the ring to ``home.scrollback/<ID>`` (see
``dump_scrollback``), records the row, tells every client (``state``), waits briefly for
them to receive it, and exits 0. A worker that starts and finds its row ``running``
was killed (-9) and restarted: it kills what is left of the old session, records
"worker crashed" and exits 0. A worker whose parent (supervisord) dies ends its session
as for SIGTERM.
"""

import sys

if __name__ == "__main__":
    # One worker runs per session: keep OpenSSL (libssl, libcrypto: ~4 MiB of RSS) out of
    # a process that never does TLS or hashing that needs it. asyncio and hashlib fall
    # back to running without them.
    sys.modules.setdefault("ssl", None)
    sys.modules.setdefault("_hashlib", None)

import argparse  # noqa: E402  (after the guard above on purpose)
import asyncio
import collections
import enum
import errno
import fcntl
import gc
import json
import logging
import os
import select
import shutil
import signal
import sqlite3
import time

import psutil
from ptyprocess import PtyProcess

from clown import clock, procs, store
from clown.home import Home
from clown.ipc import frames
from clown.secrets import SecretStore

log = logging.getLogger("clown.workers.terminal")

DEFAULT_SCROLLBACK_BYTES = 1024 * 1024
DEFAULT_CLIENT_BACKLOG_BYTES = 4 * 1024 * 1024
# The terminal at the other end is xterm.js: a spec whose env sets no TERM gets this one.
DEFAULT_TERM = "xterm-256color"
SIGNAL_ALLOWLIST = frozenset({1, 2, 3, 9, 15, 18, 19, 20})
READ_SIZE = 64 * 1024
# Most PTY bytes read per loop iteration: client sockets get their turn in between,
# so keystrokes and Ctrl-C act during a flood.
READ_BUDGET = 256 * 1024
# A PTY read burst this big, or this much published in flushes less than STREAK_SECS
# apart (a program writing 4 KiB at a time wakes us per write), means a flood: hold the
# output up to COALESCE_SECS for more, so clients get fewer, bigger frames. Output after a
# pause (an echo, a prompt, a redraw) still goes out at once.
FLOOD_BYTES = 16 * 1024
COALESCE_SECS = 0.002
STREAK_SECS = 0.005
SNAPSHOT_CHUNK = 1024 * 1024
MAX_PENDING_INPUT = 1024 * 1024
KILL_GRACE_SECS = 2.0
DRAIN_SECS = 5.0
REAP_SECS = 5.0
# How long a client closed as too slow has to take its last bytes and the reason.
SLOW_CLIENT_GRACE_SECS = 5.0
# A client with bytes waiting that takes none of them for this long is stalled: it no
# longer holds the agent's output back (see _throttle) nor the worker's exit (see
# _drain_clients). Short, so one client that stops reading freezes the others only this long.
STALL_SECS = 0.25
THROTTLE_CHECK_SECS = 0.01
PARENT_POLL_SECS = 1.0
REASON_TERMINATED = "terminated"
REASON_DAEMON_STOPPED = "daemon stopped"
REASON_WORKER_CRASHED = "worker crashed"


class SpecError(ValueError):
    """The launch spec is missing or malformed."""


# --- state machine ----------------------------------------------------------------------

class SessionState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    TERMINATED = "terminated"


_TRANSITIONS = {
    SessionState.STARTING: {SessionState.RUNNING, SessionState.TERMINATED},
    SessionState.RUNNING: {SessionState.TERMINATED},
    SessionState.TERMINATED: set(),
}


class SessionRecord:
    """The session's state and its ``terminal_sessions`` row; the one place state changes."""

    def __init__(self, conn: sqlite3.Connection, session_id: str,
                 state: SessionState = SessionState.STARTING):
        self.conn = conn
        self.session_id = session_id
        self.state = state

    def change(self, new: SessionState, **columns) -> None:
        """Move to ``new`` and write it with ``columns`` to the row in one UPDATE.

        Raises RuntimeError on a transition the machine does not have.
        """
        if new not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"session {self.session_id}: {self.state.value} -> {new.value} is not a transition")
        columns["state"] = new.value
        names = ", ".join(f"{name} = ?" for name in columns)
        self.conn.execute(f"UPDATE terminal_sessions SET {names} WHERE id = ?",
                          (*columns.values(), self.session_id))
        log.info("session %s: %s -> %s", self.session_id, self.state.value, new.value)
        self.state = new


# --- launch spec ------------------------------------------------------------------------

class LaunchSpec:
    """The validated launch spec of one session (see the module doc for the file)."""

    def __init__(self, raw: dict):
        if not isinstance(raw, dict):
            raise SpecError("the spec is not a JSON object")
        self.session_id = _field(raw, "session_id", str)
        self.argv = _field(raw, "argv", list)
        if not self.argv or not all(isinstance(arg, str) for arg in self.argv):
            raise SpecError("argv must be a non-empty list of strings")
        self.env = _field(raw, "env", dict, {})
        self.secret_env = _field(raw, "secret_env", dict, {})
        for mapping, name in ((self.env, "env"), (self.secret_env, "secret_env")):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
                raise SpecError(f"{name} must map strings to strings")
        self.cwd = _field(raw, "cwd", str)
        self.cols = _field(raw, "cols", int, 80)
        self.rows = _field(raw, "rows", int, 24)
        if not (1 <= self.cols <= 1000 and 1 <= self.rows <= 500):
            raise SpecError("cols must be 1-1000 and rows 1-500")
        self.scrollback_bytes = _field(raw, "scrollback_bytes", int, DEFAULT_SCROLLBACK_BYTES)
        self.client_backlog_bytes = _field(raw, "client_backlog_bytes", int, DEFAULT_CLIENT_BACKLOG_BYTES)
        if self.scrollback_bytes < 1 or self.client_backlog_bytes < 1:
            raise SpecError("scrollback_bytes and client_backlog_bytes must be positive")

    @classmethod
    def load(cls, path: str) -> "LaunchSpec":
        """Read and validate the spec at ``path``; raises SpecError."""
        try:
            with open(path, "rb") as handle:
                raw = json.load(handle)
        except FileNotFoundError:
            raise SpecError(f"no launch spec at {path}") from None
        except (OSError, ValueError) as error:
            raise SpecError(f"unreadable launch spec: {error}") from None
        return cls(raw)

    def child_env(self, secrets: SecretStore) -> dict:
        """The child's whole environment: ``env``, then the secrets (and a TERM if ``env`` has none)."""
        env = dict(self.env)
        for variable, secret_name in self.secret_env.items():
            try:
                value = secrets.read(secret_name)
            except ValueError:
                value = None
            if value is None:
                log.warning("secret %r for %s is missing; the variable is left unset",
                            secret_name, variable)
                continue
            env[variable] = value
        env.setdefault("TERM", DEFAULT_TERM)
        return env


_MISSING = object()


def _field(raw: dict, name: str, kind: type, default=_MISSING):
    value = raw.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise SpecError(f"spec field {name!r} is missing")
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(f"spec field {name!r} must be {kind.__name__}")
    return value


# --- scrollback ring --------------------------------------------------------------------

class ScrollbackRing:
    """The last ``capacity`` bytes of the session's output, addressed by absolute offsets.

    ``start`` and ``end`` are offsets in the session's output stream: the ring holds bytes
    ``[start, end)``; ``end`` is the number of bytes the session has ever written.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._buffer = bytearray(capacity)
        self.start = 0
        self.end = 0

    def append(self, data) -> None:
        """Add ``data`` (any bytes-like object) at ``end``, dropping the oldest bytes."""
        view = memoryview(data)
        size = len(view)
        if size >= self.capacity:
            view = view[size - self.capacity:]
        count = len(view)
        position = (self.end + size - count) % self.capacity
        first = min(count, self.capacity - position)
        self._buffer[position:position + first] = view[:first]
        if first < count:
            self._buffer[:count - first] = view[first:]
        self.end += size
        self.start = max(self.start, self.end - self.capacity)

    def read(self, start: int | None = None, end: int | None = None) -> bytes:
        """A copy of bytes ``[start, end)`` (default: the whole ring), clamped to the ring."""
        start = self.start if start is None else max(start, self.start)
        end = self.end if end is None else min(end, self.end)
        if end <= start:
            return b""
        first = start % self.capacity
        last = first + (end - start)
        if last <= self.capacity:
            return bytes(self._buffer[first:last])
        return bytes(self._buffer[first:]) + bytes(self._buffer[:last - self.capacity])


def dump_scrollback(path: str, ring: ScrollbackRing) -> None:
    """Write the ring to ``path`` (0600, atomically).

    Format: the ring's start offset as 8 bytes big-endian, then the bytes ``[start, end)``.
    The file's size minus 8 is the ring's length, so ``end = start + size - 8``.
    """
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(frames.OFFSET.pack(ring.start))
            handle.write(ring.read())
    except BaseException:
        os.unlink(tmp)
        raise
    os.replace(tmp, path)


def load_scrollback(path: str) -> tuple[int, bytes]:
    """``(start, data)`` of a file written by ``dump_scrollback``; raises OSError/ValueError."""
    with open(path, "rb") as handle:
        blob = handle.read()
    if len(blob) < frames.OFFSET.size:
        raise ValueError(f"{path} is not a scrollback dump")
    return frames.OFFSET.unpack_from(blob)[0], blob[frames.OFFSET.size:]


# --- clients ----------------------------------------------------------------------------

class ClientConnection(asyncio.Protocol):
    """One connected front client.

    Frames out go to the transport while its buffer is under ``TRANSPORT_HIGH``, and wait
    whole in ``queue`` after that (asyncio's pause_writing/resume_writing). The backlog is
    both; dropping a slow client discards the queue (whole frames only), so its
    ``closing`` message goes out right behind what the transport already holds.
    """

    TRANSPORT_HIGH = 128 * 1024
    TRANSPORT_LOW = 32 * 1024

    def __init__(self, worker: "TerminalWorker"):
        self.worker = worker
        self.transport = None
        self.decoder = frames.FrameDecoder()
        self.greeted = False
        self.attached = False
        self.gone = False
        self.queue: collections.deque = collections.deque()
        self.queued = 0
        self.paused = False
        # Snapshot bytes allowed in the backlog on top of client_backlog_bytes.
        self.snapshot_allowance = 0
        # Progress (see ``stalled``): every byte handed to this connection, how many of
        # them the kernel had taken at the last look, and the loop time it last took some
        # (or had next to nothing waiting).
        self.sent = 0
        self.taken_at_look = 0
        self.last_progress = asyncio.get_running_loop().time()

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=self.TRANSPORT_HIGH, low=self.TRANSPORT_LOW)
        self.worker.clients.add(self)

    def data_received(self, data):
        try:
            received = self.decoder.feed(data)
        except frames.ProtocolError as error:
            self.abort(f"framing: {error}")
            return
        for frame in received:
            if self.gone:
                return
            self.worker.handle_frame(self, frame)

    def connection_lost(self, exc):
        self.gone = True
        self.queue.clear()
        self.queued = 0
        self.worker.forget(self)
        self.worker.clients.discard(self)

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.last_progress = asyncio.get_running_loop().time()
        while self.queue and not self.paused:
            frame = self.queue.popleft()
            self.queued -= len(frame)
            self.transport.write(frame)   # may call pause_writing()

    def backlog(self) -> int:
        """Bytes accepted for this client and not yet handed to the kernel."""
        return self.transport.get_write_buffer_size() + self.queued

    def stalled(self, now: float, caught_up: int = 0) -> bool:
        """Look at the client's progress: True when it has had more than ``caught_up``
        bytes waiting and taken none of them for STALL_SECS.

        Progress is the kernel taking some of its bytes since the last look (its backlog
        shrank net of what was added), not its transport draining below a mark: a client
        that reads keeps counting however far behind it is; one that stopped reading is
        found out within STALL_SECS."""
        backlog = self.backlog()
        taken = self.sent - backlog
        if backlog <= caught_up or taken > self.taken_at_look:
            self.last_progress = now
        self.taken_at_look = taken
        return now - self.last_progress > STALL_SECS

    def restart_stall_clock(self, now: float) -> None:
        self.taken_at_look = self.sent - self.backlog()
        self.last_progress = now

    def send(self, frame) -> None:
        if self.gone:
            return
        self.sent += len(frame)
        if self.paused or self.queue:
            self.queue.append(frame)
            self.queued += len(frame)
        else:
            self.transport.write(frame)

    def send_control(self, message: dict) -> None:
        self.send(frames.encode_control(message))

    def close(self) -> None:
        """Close once what is queued is sent."""
        if not self.gone:
            self.gone = True
            self.worker.forget(self)
            self.transport.close()

    def close_now(self, last: dict, deadline: float) -> None:
        """Drop the queue, send ``last`` after what the transport holds, close, and abort
        after ``deadline`` seconds if the peer has not taken it by then."""
        if self.gone:
            return
        self.queue.clear()
        self.queued = 0
        frame = frames.encode_control(last)
        self.sent += len(frame)
        self.transport.write(frame)
        transport = self.transport
        self.close()
        asyncio.get_running_loop().call_later(deadline, transport.abort)

    def abort(self, why: str) -> None:
        """Drop the connection now, discarding what is queued (also one being closed)."""
        if not self.gone:
            log.info("dropping a client: %s", why)
            self.gone = True
            self.queue.clear()
            self.queued = 0
            self.worker.forget(self)
        self.transport.abort()


# --- the worker -------------------------------------------------------------------------

class TerminalWorker:
    def __init__(self, home: Home, spec: LaunchSpec, record: SessionRecord):
        self.home = home
        self.spec = spec
        self.record = record
        self.session_id = spec.session_id
        self.socket_path = home.socket(f"term-{self.session_id}.sock")
        self.ring = ScrollbackRing(spec.scrollback_bytes)
        self.cols = spec.cols
        self.rows = spec.rows
        self.clients: set[ClientConnection] = set()
        self.attached: list[ClientConnection] = []
        self.proc: PtyProcess | None = None
        self.fd = -1
        self.pid_started = None
        self.exit_code = None
        self.exit_signal = None
        self.reason = None
        self._pending_input = bytearray()
        self._out_chunks: list[bytes] = []   # read from the PTY, not yet published
        self._out_size = 0
        self._flush_timer: asyncio.TimerHandle | None = None
        self._last_flush = 0.0    # loop time of the last flush with output
        self._streak = 0          # bytes flushed in a row, flushes less than STREAK_SECS apart
        self._pty_open = False
        self._pty_eof = False
        self._throttled = False
        self._terminate_requesters: list[ClientConnection] = []
        self._stop_requested = False   # SIGTERM/SIGINT: supervisor wants us gone
        self._ending: asyncio.Task | None = None
        self._stop_before_spawn: str | None = None
        self._exited: asyncio.Future | None = None
        self._parent_pid = os.getppid()
        self._server = None
        self._loop = None

    # ---- life cycle

    async def run(self) -> int:
        """Serve the session until it ends; return the worker's exit code (0)."""
        self._loop = asyncio.get_running_loop()
        self._exited = self._loop.create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._on_stop_signal)
        self._loop.add_signal_handler(signal.SIGCHLD, self._reap)
        await self._listen()
        try:
            self._spawn()
        except Exception as error:   # a bad argv or cwd: the session never ran
            log.error("session %s: spawn failed: %s", self.session_id, error)
            self.reason = f"spawn failed: {error}"
            await self._finish()
            return 0
        if self._stop_before_spawn:
            self.end_session(self._stop_before_spawn)
        self._poll_parent()
        await self._exited
        await self._finish()
        return 0

    async def _listen(self) -> None:
        os.makedirs(self.home.sock_dir, mode=0o700, exist_ok=True)
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self._server = await self._loop.create_unix_server(
            lambda: ClientConnection(self), path=self.socket_path, backlog=128)
        os.chmod(self.socket_path, 0o600)

    def _spawn(self) -> None:
        spec = self.spec
        env = spec.child_env(SecretStore(self.home.secrets))
        argv = list(spec.argv)
        if os.sep not in argv[0]:   # looked up on the child's PATH, not the worker's
            found = shutil.which(argv[0], path=env.get("PATH", os.defpath))
            if found is None:
                raise FileNotFoundError(f"{argv[0]} is not on the session's PATH")
            argv[0] = found
        cwd = spec.cwd

        def prepare_child():
            os.chdir(cwd)
            for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM,
                           signal.SIGCHLD, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])

        self.proc = PtyProcess.spawn(argv, env=env, dimensions=(spec.rows, spec.cols),
                                     preexec_fn=prepare_child)
        self.fd = self.proc.fd
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._pty_open = True
        try:
            self.pid_started = psutil.Process(self.proc.pid).create_time()
        except psutil.Error:
            self.pid_started = None
        self.record.change(SessionState.RUNNING, pid=self.proc.pid, pid_started=self.pid_started,
                           worker_pid=os.getpid())
        self._loop.add_reader(self.fd, self._on_pty_readable)
        self._reap()   # a child that died at once, before the SIGCHLD handler saw it

    def _on_stop_signal(self) -> None:
        """supervisor stops us (DELETE after the session ended, clownd stopping): end the
        session if it still runs, and do not wait for clients to drain (_drain_clients)."""
        self._stop_requested = True
        self.end_session(REASON_DAEMON_STOPPED)

    def end_session(self, reason: str) -> None:
        """Kill the PTY's whole session (terminate op, SIGTERM, orphaned); idempotent."""
        if self.record.state is SessionState.STARTING:
            self._stop_before_spawn = reason   # acted on as soon as the spawn returns
            return
        if self._ending is not None or self.record.state is not SessionState.RUNNING:
            return
        if self.reason is None:
            self.reason = reason
        log.info("session %s: ending (%s)", self.session_id, reason)
        self._ending = self._loop.create_task(self._kill_and_reap())

    async def _kill_and_reap(self) -> None:
        """Kill the session, then give the reaper a moment; never raises."""
        try:
            await procs.kill_session_async(self.proc.pid, self.pid_started, KILL_GRACE_SECS)
        except Exception:
            log.exception("session %s: killing the session failed", self.session_id)
        self._reap()
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), REAP_SECS)
        except asyncio.TimeoutError:
            # Unkillable (uninterruptible sleep?): record what we know and leave.
            log.error("session %s: pid %d did not exit after SIGKILL", self.session_id, self.proc.pid)
            self._exited.set_result(None)

    def _poll_parent(self) -> None:
        """Every second: did supervisord die (we were reparented)? Did a SIGCHLD go missing?"""
        if self._exited.done():
            return
        if os.getppid() != self._parent_pid:
            log.warning("session %s: parent %d is gone", self.session_id, self._parent_pid)
            self.end_session(REASON_DAEMON_STOPPED)
        self._reap()
        self._loop.call_later(PARENT_POLL_SECS, self._poll_parent)

    def _reap(self) -> None:
        if self.proc is None or self._exited.done():
            return
        try:
            pid, status = os.waitpid(self.proc.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.proc.pid, None
        if pid == 0:
            return
        if status is not None:
            code = os.waitstatus_to_exitcode(status)
            if code >= 0:
                self.exit_code = code
            else:
                self.exit_signal = -code
        self.proc.terminated = True
        log.info("session %s: the agent exited (code %s, signal %s)",
                 self.session_id, self.exit_code, self.exit_signal)
        self._exited.set_result(None)

    async def _finish(self) -> None:
        """The agent is gone (or never started): clean up, record, tell, leave."""
        if self.proc is not None:
            if self._ending is None:   # the agent exited by itself: end what it left behind
                self._ending = self._loop.create_task(self._kill_and_reap())
            await self._ending
            self._drain_pty()
            self._close_pty()
        try:
            dump_scrollback(os.path.join(self.home.scrollback, self.session_id), self.ring)
        except OSError as error:
            log.error("session %s: cannot dump the scrollback: %s", self.session_id, error)
        self.record.change(SessionState.TERMINATED, exit_code=self.exit_code,
                           exit_signal=self.exit_signal, reason=self.reason,
                           ended_at=clock.utc_iso())
        self._server.close()
        ended = {"op": "state", "state": "terminated", "exit_code": self.exit_code,
                 "exit_signal": self.exit_signal, "reason": self.reason}
        for client in list(self.clients):
            if client.greeted and not client.gone:
                client.send_control(ended)
        for client in self._terminate_requesters:
            client.send_control({"op": "terminated"})
        await self._drain_clients()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    async def _drain_clients(self) -> None:
        """Give every client (those being closed as too slow too) up to DRAIN_SECS to
        take what is queued for it, then close them all. Only clients that keep taking
        bytes are waited for: one that takes nothing for STALL_SECS is dropped, and a
        stop signal (supervisor's stopProcess after a DELETE) ends the wait at once."""
        now = self._loop.time()
        deadline = now + DRAIN_SECS
        for client in self.clients:
            client.restart_stall_clock(now)
        while self.clients and not self._stop_requested and now < deadline:
            for client in list(self.clients):
                if client.backlog() == 0:
                    client.close()
                elif client.stalled(now):
                    client.abort("it takes nothing while the session ends")
            await asyncio.sleep(0.01)
            now = self._loop.time()
        for client in list(self.clients):
            client.close()
        await asyncio.sleep(0)

    # ---- the PTY

    def _read_pty(self) -> int:
        """Read up to READ_BUDGET bytes into the pending output; return how many."""
        read = 0
        while self._out_size < READ_BUDGET:
            try:
                chunk = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno != errno.EIO:
                    raise
                chunk = b""
            if not chunk:   # EIO: every slave fd is closed
                self._pty_eof = True
                self._loop.remove_reader(self.fd)
                self._reap()
                break
            self._out_chunks.append(chunk)
            self._out_size += len(chunk)
            read += len(chunk)
        return read

    def _on_pty_readable(self) -> None:
        read = self._read_pty()
        if self._out_size >= READ_BUDGET:
            self._flush_output()
        elif self._flush_timer is None:
            if read >= FLOOD_BYTES or (self._streak >= FLOOD_BYTES
                                       and self._loop.time() - self._last_flush <= STREAK_SECS):
                # A flood: wait a moment for more.
                self._flush_timer = self._loop.call_later(COALESCE_SECS, self._flush_output)
            else:   # interactive output goes out at once
                self._flush_output()

    def _drain_pty(self) -> None:
        """Read what the session wrote before it ended (bounded: writers are gone)."""
        if self._pty_open:
            for _ in range(64):
                try:
                    read = self._read_pty()
                except OSError:
                    break
                self._flush_output()
                if not read:
                    break
        self._flush_output()

    def _close_pty(self) -> None:
        if self._pty_open:
            self._pty_open = False
            self._loop.remove_reader(self.fd)
            self._loop.remove_writer(self.fd)
            self.proc.fileobj.close()
            self.proc.closed = True

    def _flush_output(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._out_size:
            chunks, total = self._out_chunks, self._out_size
            self._out_chunks, self._out_size = [], 0
            now = self._loop.time()
            self._streak = self._streak + total if now - self._last_flush <= STREAK_SECS else total
            self._last_flush = now
            self._publish(chunks, total)

    def _publish(self, chunks: list[bytes], total: int) -> None:
        offset = self.ring.end
        if not self.attached:
            for chunk in chunks:
                self.ring.append(chunk)
            return
        header = frames.output_header(offset, total)
        frame = b"".join([header, *chunks])
        view = memoryview(frame)
        self.ring.append(view[len(header):])
        limit = self.spec.client_backlog_bytes
        for client in list(self.attached):
            client.send(view)
            backlog = client.backlog()
            if backlog <= limit:
                client.snapshot_allowance = 0
            elif backlog > limit + client.snapshot_allowance:
                self._drop_slow(client)
        if self._all_clients_behind():
            self._throttle()

    # Throttling: when an attached client that is still reading is more than half its
    # backlog behind (a browser on a slow link, or twenty clients sharing one busy front),
    # stop reading the PTY so the agent writes at the pace of the slowest reading client,
    # as on a real terminal, instead of closing it: every client that reads gets every
    # byte. A client that has taken nothing for STALL_SECS (ClientConnection.stalled) no
    # longer holds the agent back: the others go on, its backlog passes its limit and it
    # is closed (4008); should it read again before that, it counts again.

    def _all_clients_behind(self) -> bool:
        """Some attached client that still reads is more than half its backlog behind."""
        if not self.attached:
            return False
        now = self._loop.time()
        threshold = self.spec.client_backlog_bytes // 2
        reading_and_behind = False
        for client in self.attached:   # every one: each look updates its progress
            if not client.stalled(now, threshold) and client.backlog() > threshold:
                reading_and_behind = True
        return reading_and_behind

    def _throttle(self) -> None:
        if self._throttled or not self._pty_open or self._pty_eof:
            return
        self._throttled = True
        self._loop.remove_reader(self.fd)
        self._loop.call_later(THROTTLE_CHECK_SECS, self._check_throttle)

    def _check_throttle(self) -> None:
        if self._pty_open and not self._pty_eof and self._all_clients_behind():
            self._loop.call_later(THROTTLE_CHECK_SECS, self._check_throttle)
            return
        self._throttled = False
        if self._pty_open and not self._pty_eof:
            self._loop.add_reader(self.fd, self._on_pty_readable)

    def _drop_slow(self, client: ClientConnection) -> None:
        log.info("session %s: closing a client too slow (%d bytes behind)",
                 self.session_id, client.backlog())
        client.close_now({"op": "closing", "code": 4008, "reason": "client too slow"},
                         SLOW_CLIENT_GRACE_SECS)

    def _write_input(self, client: ClientConnection, data: bytes) -> None:
        if not self._pty_open or self.record.state is not SessionState.RUNNING:
            client.send_control({"op": "error", "message": "the session is not running"})
            return
        if self._pending_input:
            if len(self._pending_input) + len(data) > MAX_PENDING_INPUT:
                client.send_control({"op": "error",
                                     "message": "input dropped: the terminal is not reading it"})
                return
            self._pending_input += data
            return
        try:
            written = os.write(self.fd, data)
        except BlockingIOError:
            written = 0
        except OSError as error:
            log.info("session %s: PTY write failed: %s", self.session_id, error)
            return
        if written < len(data):
            self._pending_input += memoryview(data)[written:]
            self._loop.add_writer(self.fd, self._on_pty_writable)

    def _on_pty_writable(self) -> None:
        try:
            written = os.write(self.fd, self._pending_input)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._pending_input)
        del self._pending_input[:written]
        if not self._pending_input:
            self._loop.remove_writer(self.fd)

    def _signal_foreground(self, signum: int) -> None:
        """Raises OSError when there is no foreground group to signal."""
        os.killpg(os.tcgetpgrp(self.fd), signum)

    # ---- protocol

    def status(self) -> dict:
        return {
            "session_id": self.session_id,
            "state": self.record.state.value,
            "pid": self.proc.pid if self.proc else None,
            "cols": self.cols,
            "rows": self.rows,
            "client_count": len(self.attached),
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal,
            "reason": self.reason,
            "start": self.ring.start,
            "end": self.ring.end,
        }

    def forget(self, client: ClientConnection) -> None:
        """``client`` gets no more output (it stays in ``clients`` until its transport is
        gone, so an exiting worker lets it take its last bytes)."""
        if client.attached:
            client.attached = False
            self.attached.remove(client)

    def handle_frame(self, client: ClientConnection, frame: frames.Frame) -> None:
        if frame.type == frames.CONTROL:
            try:
                message = frames.parse_control(frame.payload)
            except frames.ProtocolError as error:
                client.abort(str(error))
                return
        else:
            message = None
        if not client.greeted:
            if message is None or message["op"] != "hello":
                client.abort("the first frame is not hello")
                return
            version = message.get("version")
            if version != frames.PROTOCOL_VERSION:
                client.send_control({"op": "error",
                                     "message": f"unsupported protocol version {version}"})
                client.close()
                return
            client.greeted = True
            client.send_control({"op": "hello", "version": frames.PROTOCOL_VERSION,
                                 "kind": "terminal", **self.status()})
            return
        if message is None:
            self._write_input(client, frame.payload)
            return
        handler = self._OPS.get(message["op"])
        if handler is None:
            client.send_control({"op": "error", "message": f"unknown op {message['op']!r}"})
            return
        try:
            error = handler(self, client, message)
        except Exception as failure:   # one bad request must not take the worker down
            log.exception("session %s: op %s failed", self.session_id, message["op"])
            error = f"{message['op']} failed: {failure}"
        if error:
            client.send_control({"op": "error", "message": error})

    def _op_attach(self, client, message):
        if client.attached:
            return "already attached"
        start, end = self.ring.start, self.ring.end
        client.send_control({"op": "snapshot", "start": start, "end": end})
        snapshot = self.ring.read(start, end)
        for position in range(0, len(snapshot), SNAPSHOT_CHUNK):
            client.send(frames.encode_output(start + position,
                                             snapshot[position:position + SNAPSHOT_CHUNK]))
        client.snapshot_allowance = len(snapshot)
        client.attached = True
        self.attached.append(client)
        if self._pty_open and self.record.state is SessionState.RUNNING:
            try:   # make full-screen programs redraw for the new client
                self._signal_foreground(signal.SIGWINCH)
            except OSError:
                pass
        return None

    def _op_resize(self, client, message):
        cols, rows = message.get("cols"), message.get("rows")
        if not (_is_int(cols) and _is_int(rows) and 1 <= cols <= 1000 and 1 <= rows <= 500):
            return "resize needs cols 1-1000 and rows 1-500"
        if not self._pty_open:
            return "the session is not running"
        self.proc.setwinsize(rows, cols)
        self.cols, self.rows = cols, rows
        return None

    def _op_signal(self, client, message):
        signum = message.get("signal")
        if not _is_int(signum) or signum not in SIGNAL_ALLOWLIST:
            return f"signal must be one of {sorted(SIGNAL_ALLOWLIST)}"
        if not self._pty_open or self.record.state is not SessionState.RUNNING:
            return "the session is not running"
        try:
            self._signal_foreground(signum)
        except OSError as error:
            return f"cannot signal the foreground process group: {error.strerror}"
        return None

    def _op_status(self, client, message):
        client.send_control({"op": "status", **self.status()})
        return None

    def _op_terminate(self, client, message):
        if self.record.state is SessionState.TERMINATED:
            client.send_control({"op": "terminated"})
            return None
        self._terminate_requesters.append(client)
        self.end_session(REASON_TERMINATED)
        return None

    def _op_hello(self, client, message):
        return "hello was already exchanged"

    _OPS = {
        "attach": _op_attach,
        "resize": _op_resize,
        "signal": _op_signal,
        "status": _op_status,
        "terminate": _op_terminate,
        "hello": _op_hello,
    }


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- entry point ------------------------------------------------------------------------

def recover_crashed(record: SessionRecord, row: sqlite3.Row) -> None:
    """The previous worker of this session died without recording the end: kill what is
    left of its PTY session (only if pid and create_time still match) and record it."""
    if row["pid"] is not None and row["pid_started"] is not None:
        killed = procs.kill_session(row["pid"], row["pid_started"], KILL_GRACE_SECS)
    else:   # without both, a live pid could be anyone's
        killed = []
    log.warning("session %s: the previous worker crashed; killed %s", record.session_id, killed)
    record.change(SessionState.TERMINATED, reason=REASON_WORKER_CRASHED, ended_at=clock.utc_iso())


def claim_path(home: Home, session_id: str) -> str:
    """The FIFO a spare worker waits on; the front writes a byte to it once the session's
    row and spec are in place."""
    return home.socket(f"term-{session_id}.go")


def wait_for_claim(home: Home, session_id: str, conn: sqlite3.Connection, parent: int) -> bool:
    """A spare worker (``--spare``): started ahead of time under its own program
    ``term-<ID>`` with Python and every module loaded, it waits until the front gives it
    a session (inserts the row ``term-<ID>``, writes the spec, pokes ``claim_path``).
    Returns True once the row exists, False when the parent (supervisord) is gone."""
    path = claim_path(home, session_id)
    os.makedirs(home.sock_dir, mode=0o700, exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)
    # Non-blocking open: no writer needed; the row is checked after the FIFO exists, so a
    # poke that found no FIFO is never missed.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            if conn.execute("SELECT 1 FROM terminal_sessions WHERE id = ?", (session_id,)).fetchone():
                return True
            if os.getppid() != parent:
                return False
            readable, _, _ = select.select([fd], [], [], PARENT_POLL_SECS)
            if readable:
                try:
                    if not os.read(fd, 64):   # the writer closed with no row: do not spin
                        time.sleep(0.01)
                except BlockingIOError:
                    pass
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def run_worker(home: Home, session_id: str, spare: bool = False, parent: int | None = None) -> int:
    """Everything ``main`` does once arguments are parsed; returns the exit code.

    ``parent``: supervisord's pid when known; a worker whose parent died before the
    parent-death signal was set (a spare still starting) exits at once."""
    procs.set_parent_death_signal(signal.SIGTERM)
    if parent is None:
        parent = os.getppid()
    elif os.getppid() != parent:
        log.warning("session %s: supervisord (%d) is gone", session_id, parent)
        return 0
    conn = store.connect(home.db)
    try:
        if spare and not wait_for_claim(home, session_id, conn, parent):
            return 0
        row = conn.execute("SELECT * FROM terminal_sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            log.error("session %s: no terminal_sessions row; nothing to run", session_id)
            return 0
        state = SessionState(row["state"])
        record = SessionRecord(conn, session_id, state)
        if state is SessionState.TERMINATED:
            log.info("session %s: already terminated", session_id)
            return 0
        if state is SessionState.RUNNING or row["pid"] is not None:
            recover_crashed(record, row)
            try:
                os.unlink(home.socket(f"term-{session_id}.sock"))
            except FileNotFoundError:
                pass
            return 0
        try:
            spec = LaunchSpec.load(home.spec(f"term-{session_id}"))
            if spec.session_id != session_id:
                raise SpecError(f"the spec is for session {spec.session_id}")
        except SpecError as error:
            log.error("session %s: %s", session_id, error)
            record.change(SessionState.TERMINATED, reason=f"bad launch spec: {error}",
                          ended_at=clock.utc_iso())
            return 0
        gc.freeze()   # the modules and the spec stay: no collector pass walks them again
        return asyncio.run(TerminalWorker(home, spec, record).run())
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clown.workers.terminal",
                                     description="Run one terminal session's PTY worker.")
    parser.add_argument("--home", required=True, help="the clown home")
    parser.add_argument("--session", required=True, help="the terminal session id")
    parser.add_argument("--spare", action="store_true",
                        help="start ahead of time and wait until the front claims the session")
    parser.add_argument("--parent", type=int, help="supervisord's pid")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_worker(Home(args.home), args.session, args.spare, args.parent)


if __name__ == "__main__":
    sys.exit(main())
