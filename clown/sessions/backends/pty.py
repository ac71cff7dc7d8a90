"""The ``pty`` backend: the agent runs in a clown terminal session (a term worker's PTY).

It then is also listed by ``/api/terminal/sessions`` and can be opened in the browser.
"""

import asyncio

from clown.sessions.backends.base import Backend, BackendError, ProcessState, StartSpec

COLS, ROWS = 200, 50
# Claude Code reads text and Enter arriving in one write as a paste: send them apart.
ENTER_DELAY_SECS = 0.3


class PtyBackend(Backend):
    name = "pty"

    def __init__(self, ctx):
        self.ctx = ctx

    async def start(self, spec: StartSpec) -> str:
        terminals = getattr(self.ctx, "terminals", None)
        if terminals is None:
            raise BackendError("terminal sessions are not available in this daemon")
        try:
            row = await terminals.create(spec.profile_alias, [], COLS, ROWS, spec.cwd, launch=spec.launch,
                                         agent_session_id=spec.session_id)
        except Exception as exc:
            raise BackendError(f"could not start the terminal session: {getattr(exc, 'message', exc)}") from exc
        return row["id"]

    async def stop(self, ref: str) -> None:
        try:
            await self.ctx.terminals.terminate(ref)
        except Exception as exc:
            if self.state(ref).running:
                raise BackendError(f"could not terminate terminal session {ref}: {exc}") from exc

    async def send_text(self, ref: str, text: str) -> None:
        try:
            await self.ctx.terminals.send_input(ref, text.encode())
            await asyncio.sleep(ENTER_DELAY_SECS)
            await self.ctx.terminals.send_input(ref, b"\r")
        except Exception as exc:
            raise BackendError(f"could not type into terminal session {ref}: {exc}") from exc

    async def poll_state(self, ref: str) -> ProcessState:
        return self.state(ref)

    def state(self, ref: str) -> ProcessState:
        """From the store, where the term worker records its own exit."""
        row = self.ctx.store.execute(
            "SELECT state, exit_code, exit_signal, reason FROM terminal_sessions WHERE id = ?", (ref,)).fetchone()
        if row is None:
            return ProcessState(False, None, "terminal session is gone")
        if row["state"] != "terminated":
            return ProcessState(True)
        code = row["exit_code"]
        if code is None and row["exit_signal"] is not None:
            code = 128 + row["exit_signal"]
        return ProcessState(False, code, row["reason"])
