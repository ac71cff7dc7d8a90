"""The ``tmux`` backend: each agent session is a tmux session on clown's private tmux server.

The server is the supervisor program ``tmux`` (see ``tmux_server``), started on first use;
its socket is ``<sock dir>/tmux.sock``. The agent's environment goes through a 0600 env
file read by ``exec_env.py`` (keys never appear on a command line); the pane runs exactly
that environment, not the tmux server's. Attach by hand with ``tmux -S <sock> attach -t <name>``.
"""

import asyncio
import os
import socket
import time

from clown.sessions.backends.base import (Backend, BackendError, ProcessState, StartSpec, exec_env_argv,
                                          write_env_file)
from clown.sessions.backends.tmux_server import PROGRAM, SOCKET
from clown.sessions.proc import CommandMissing, run

COLS, ROWS = 200, 50
ENTER_DELAY_SECS = 0.3
SERVER_START_SECS = 10.0
DEAD_STATUS_WAIT_SECS = 5.0     # how long a dead pane may show no exit status before it counts as unknown


def new_session_argv(sock: str, name: str, cwd: str, command: list[str], tmux: str = "tmux") -> list[str]:
    return [tmux, "-S", sock, "new-session", "-d", "-s", name, "-x", str(COLS), "-y", str(ROWS), "-c", cwd,
            "--", *command]


def send_text_argvs(sock: str, name: str, text: str, tmux: str = "tmux") -> list[list[str]]:
    """Two commands: the text typed literally, then Enter (a separate write)."""
    target = f"={name}:"
    return [[tmux, "-S", sock, "send-keys", "-t", target, "-l", "--", text],
            [tmux, "-S", sock, "send-keys", "-t", target, "Enter"]]


def pane_state_argv(sock: str, name: str, tmux: str = "tmux") -> list[str]:
    return [tmux, "-S", sock, "list-panes", "-s", "-t", f"={name}", "-F",
            "#{pane_dead} #{pane_dead_status} #{pane_dead_signal}"]


def kill_session_argv(sock: str, name: str, tmux: str = "tmux") -> list[str]:
    return [tmux, "-S", sock, "kill-session", "-t", f"={name}"]


class TmuxBackend(Backend):
    name = "tmux"
    tool = "tmux"

    def __init__(self, ctx):
        self.ctx = ctx
        self.sock = ctx.home.socket(SOCKET)
        self._server_lock = asyncio.Lock()
        self._dead_without_status: dict[str, float] = {}

    def _listening(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    async def ensure_server(self) -> None:
        """Start the ``tmux`` supervisor program unless its server already listens.

        Never lets a tmux client command run before that: a client that finds no server
        would start a daemonized one outside supervisord.
        """
        async with self._server_lock:
            if self._listening():
                return
            info = await self.ctx.workers.info(PROGRAM)
            if info is None or info.get("statename") not in ("RUNNING", "STARTING"):
                if info is not None:
                    await self.ctx.workers.remove(PROGRAM)
                await self.ctx.workers.add(PROGRAM, "clown.sessions.backends.tmux_server", [],
                                           autorestart="unexpected")
            deadline = time.monotonic() + SERVER_START_SECS
            while not self._listening():
                if time.monotonic() > deadline:
                    raise BackendError(f"the tmux server did not come up within {SERVER_START_SECS:g}s")
                await asyncio.sleep(0.05)

    async def _tmux(self, argv: list[str], what: str):
        try:
            result = await run(argv, timeout=15)
        except (CommandMissing, TimeoutError) as exc:
            raise BackendError(f"tmux {what}: {exc}") from exc
        return result

    async def start(self, spec: StartSpec) -> str:
        await self.ensure_server()
        env_file = write_env_file(os.path.join(self.ctx.home.run, "session-env"), {**spec.env, **spec.secret_env})
        result = await self._tmux(new_session_argv(self.sock, spec.name, spec.cwd, exec_env_argv(env_file, spec.argv)),
                                  "new-session")
        if not result.ok:
            try:
                os.unlink(env_file)
            except FileNotFoundError:
                pass
            raise BackendError(f"tmux new-session failed: {result.why()}")
        return spec.name

    async def stop(self, ref: str) -> None:
        if not self._listening():
            return
        result = await self._tmux(kill_session_argv(self.sock, ref), "kill-session")
        if not result.ok and "can't find" not in result.why():
            raise BackendError(f"tmux kill-session failed: {result.why()}")

    async def send_text(self, ref: str, text: str) -> None:
        if not self._listening():
            raise BackendError("the tmux server is not running")
        typed, enter = send_text_argvs(self.sock, ref, text)
        for argv in (typed, enter):
            result = await self._tmux(argv, "send-keys")
            if not result.ok:
                raise BackendError(f"tmux send-keys failed: {result.why()}")
            if argv is typed:
                await asyncio.sleep(ENTER_DELAY_SECS)

    async def poll_state(self, ref: str) -> ProcessState:
        if not self._listening():
            return ProcessState(False, None, "the tmux server is not running")
        result = await self._tmux(pane_state_argv(self.sock, ref), "list-panes")
        if not result.ok:
            return ProcessState(False, None, "the tmux session is gone")
        dead, status, signal = ((result.stdout.splitlines() or ["0"])[0].split(" ") + ["", ""])[:3]
        if dead != "1":
            return ProcessState(True)
        code = int(status) if status.isdigit() else None
        if code is None and not signal.isdigit():
            # tmux marks a pane dead when its PTY closes, which can come before it has reaped the
            # process: no status yet. Ask again at the next poll (for a while).
            first = self._dead_without_status.setdefault(ref, time.monotonic())
            if time.monotonic() - first < DEAD_STATUS_WAIT_SECS:
                return ProcessState(True)
        self._dead_without_status.pop(ref, None)
        # The pane is kept only to read this status; now the session can go.
        await self._tmux(kill_session_argv(self.sock, ref), "kill-session")
        return ProcessState(False, code, None)
