"""Run a short external command (git, tmux, docker, zellij) without blocking the IOLoop."""

import asyncio
import os
from dataclasses import dataclass


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def why(self) -> str:
        """The command's own complaint, for an error message."""
        lines = [line.strip() for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith(("Run '", "See '"))] or lines
        return " ".join(lines)[:600] if lines else f"exit status {self.returncode}"


class CommandMissing(Exception):
    """The program of the argv is not installed."""


async def run(argv: list[str], cwd: str | None = None, env: dict | None = None, timeout: float = 30.0,
              stdin: bytes | None = None) -> Result:
    """Run ``argv`` (a list, never a shell string) and return its exit status and output.

    Raises CommandMissing when ``argv[0]`` cannot be found, TimeoutError after ``timeout``
    (the process is killed first).
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL)
    except FileNotFoundError:
        raise CommandMissing(f"{argv[0]} is not installed") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise TimeoutError(f"{os.path.basename(argv[0])} did not finish within {timeout:g}s") from None
    return Result(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
