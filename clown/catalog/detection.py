"""Is an agent installed, where, and which version: ``<binary> <version_flag>`` with a timeout.

Detection never blocks the IOLoop: the version command runs as an asyncio subprocess in its
own process group, is killed (group and all) after ``TIMEOUT_SECS``, and its answer is
cached for ``CACHE_SECS`` per binary (keyed by path and mtime, so an upgrade shows at once).
Concurrent requests for the same binary share one run.
"""

import asyncio
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass

from clown.catalog.manifests import Agent

TIMEOUT_SECS = 3.0
CACHE_SECS = 60.0
MAX_OUTPUT = 4096
_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[-+][0-9A-Za-z.]+)?")


@dataclass(frozen=True)
class Detection:
    installed: bool
    binary_path: str | None
    version: str | None


def resolve_binary(agent: Agent, environ=None) -> str | None:
    """The absolute path of the agent's program, or None when none of its candidates exists.

    Candidates are ``binary`` then ``fallbacks``; ``$NAME`` takes the variable's value; a
    bare name is looked up on ``PATH``; an absolute path must be an executable file.
    """
    environ = os.environ if environ is None else environ
    for candidate in (agent.binary, *agent.fallbacks):
        if candidate.startswith("$"):
            candidate = environ.get(candidate[1:], "")
            if not candidate:
                continue
        if os.sep in candidate:
            if os.path.isabs(candidate) and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
            continue
        found = shutil.which(candidate, path=environ.get("PATH", os.defpath))
        if found:
            return os.path.abspath(found)
    return None


def parse_version(output: str) -> str | None:
    match = _VERSION.search(output)
    if match:
        return match.group(0)
    first = output.strip().splitlines()[0].strip() if output.strip() else ""
    return first[:64] or None


async def run_version(path: str, flag: str, timeout: float = TIMEOUT_SECS) -> str | None:
    """The version ``path flag`` prints, or None when it fails, prints nothing or times out."""
    try:
        process = await asyncio.create_subprocess_exec(
            path, flag, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError:
        return None
    try:
        output = await asyncio.wait_for(_read_until_eof(process.stdout), timeout)
        await asyncio.wait_for(process.wait(), max(0.1, timeout / 2))
    except asyncio.TimeoutError:
        _kill_group(process.pid)
        try:
            await asyncio.wait_for(process.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
        return None
    finally:
        _kill_group(process.pid)
    if process.returncode not in (0, None):
        return parse_version(output.decode(errors="replace")) if output else None
    return parse_version(output.decode(errors="replace"))


async def _read_until_eof(stream) -> bytes:
    chunks, size = [], 0
    while size < MAX_OUTPUT:
        chunk = await stream.read(MAX_OUTPUT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Detector:
    """Cached, concurrent-safe detection of agents."""

    def __init__(self, timeout: float = TIMEOUT_SECS, cache_secs: float = CACHE_SECS):
        self.timeout = timeout
        self.cache_secs = cache_secs
        self._cache: dict[tuple, tuple[float, str | None]] = {}
        self._running: dict[tuple, asyncio.Future] = {}

    async def detect(self, agent: Agent) -> Detection:
        path = resolve_binary(agent)
        if path is None:
            return Detection(False, None, None)
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return Detection(False, None, None)
        key = (path, mtime, agent.version_flag)
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self.cache_secs:
            return Detection(True, path, cached[1])
        if key not in self._running:
            self._running[key] = asyncio.ensure_future(run_version(path, agent.version_flag, self.timeout))
        future = self._running[key]
        try:
            version = await asyncio.shield(future)
        finally:
            if future.done():
                self._running.pop(key, None)
        self._cache[key] = (time.monotonic(), version)
        return Detection(True, path, version)

    async def detect_all(self, agents: list[Agent]) -> dict[str, Detection]:
        results = await asyncio.gather(*(self.detect(agent) for agent in agents))
        return {agent.id: result for agent, result in zip(agents, results)}
