"""The ``zellij`` backend: each agent session is a background zellij session.

The agent is the single pane of a layout written for the session; its environment comes
through a 0600 env file read by ``exec_env.py``. Only the argv is tested here (zellij is
not installed on the machines clown is developed and tested on; see docs/sessions.md).
"""

import json
import os

from clown.sessions.backends.base import (Backend, BackendError, ProcessState, StartSpec, exec_env_argv,
                                          write_env_file)
from clown.sessions.proc import CommandMissing, run

ENTER = "13"


def _kdl(value: str) -> str:
    return json.dumps(value)  # a KDL string is a JSON string for everything we write


def layout_text(cwd: str, command: list[str]) -> str:
    """A layout with one pane running ``command`` in ``cwd``; the pane stays when it exits."""
    args = " ".join(_kdl(part) for part in command[1:])
    return (f"layout {{\n    pane command={_kdl(command[0])} cwd={_kdl(cwd)} close_on_exit=false {{\n"
            f"        args {args}\n    }}\n}}\n")


def start_argv(name: str, layout: str, zellij: str = "zellij") -> list[str]:
    return [zellij, "--layout", layout, "attach", "--create-background", name]


def send_text_argvs(name: str, text: str, zellij: str = "zellij") -> list[list[str]]:
    return [[zellij, "--session", name, "action", "write-chars", text],
            [zellij, "--session", name, "action", "write", ENTER]]


def kill_argvs(name: str, zellij: str = "zellij") -> list[list[str]]:
    return [[zellij, "kill-session", name], [zellij, "delete-session", "--force", name]]


def list_argv(zellij: str = "zellij") -> list[str]:
    return [zellij, "list-sessions", "--no-formatting", "--short"]


class ZellijBackend(Backend):
    name = "zellij"
    tool = "zellij"

    def __init__(self, ctx):
        self.ctx = ctx
        self.directory = os.path.join(ctx.home.run, "session-env")

    async def _zellij(self, argv: list[str]):
        try:
            return await run(argv, timeout=15)
        except (CommandMissing, TimeoutError) as exc:
            raise BackendError(f"zellij: {exc}") from exc

    async def start(self, spec: StartSpec) -> str:
        self.check_available()
        env_file = write_env_file(self.directory, {**spec.env, **spec.secret_env})
        layout = os.path.join(self.directory, f"zellij-{spec.name}.kdl")
        with open(layout, "w") as handle:
            handle.write(layout_text(spec.cwd, exec_env_argv(env_file, spec.argv)))
        result = await self._zellij(start_argv(spec.name, layout))
        if not result.ok:
            raise BackendError(f"zellij could not start the session: {result.why()}")
        return spec.name

    async def stop(self, ref: str) -> None:
        for argv in kill_argvs(ref):
            await self._zellij(argv)

    async def send_text(self, ref: str, text: str) -> None:
        for argv in send_text_argvs(ref, text):
            result = await self._zellij(argv)
            if not result.ok:
                raise BackendError(f"zellij could not type into the session: {result.why()}")

    async def poll_state(self, ref: str) -> ProcessState:
        result = await self._zellij(list_argv())
        names = {line.strip() for line in result.stdout.splitlines()}
        return ProcessState(ref in names, None, None if ref in names else "the zellij session is gone")
