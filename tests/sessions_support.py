"""Helpers of the agent session tests: a git repository, a fake-provider profile, a /ws client."""

import json
import os
import subprocess
import time

from websockets.sync.client import connect

from tests.clownd import REPO

NPM_BIN = os.path.join(REPO, "tests", "npm", "node_modules", ".bin")
FAKE_PROVIDER = """
id = "fake"
name = "Fake upstream"
type = "anthropic-compatible"
default_endpoint = "local"
[endpoints]
local = "{url}"
[auth]
env_key = "FAKE_API_KEY"
required = true
[models]
available = ["claude-sonnet-4-5"]
default = "claude-sonnet-4-5"
"""


def make_repo(path, files: dict | None = None) -> str:
    """A git repository at ``path`` with one commit of ``files`` (name → text)."""
    path = str(path)
    os.makedirs(path, exist_ok=True)
    git = ["git", "-C", path, "-c", "user.email=test@example.com", "-c", "user.name=Test"]
    subprocess.run(["git", "init", "-q", "-b", "main", path], check=True)
    for name, text in (files or {"README.md": "hello\n"}).items():
        with open(os.path.join(path, name), "w") as handle:
            handle.write(text)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "initial"], check=True)
    return os.path.realpath(path)


def agent_env() -> dict:
    """clownd's environment with the test agent CLIs (tests/npm) first on PATH."""
    return {"PATH": NPM_BIN + os.pathsep + os.environ.get("PATH", "")}


def add_fake_provider(daemon, url: str) -> None:
    directory = os.path.join(daemon.home, "providers.d")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "fake.toml"), "w") as handle:
        handle.write(FAKE_PROVIDER.format(url=url))


def create_profile(daemon, alias: str, agent_id: str, provider_id: str = "self", **extra) -> None:
    status, reply = daemon.post("/api/profiles", {"alias": alias, "agent_id": agent_id, "provider_id": provider_id,
                                                  **extra})
    assert status == 200, reply


def ws_url(daemon) -> str:
    return daemon.url.replace("http://", "ws://") + "/ws"


class WsClient:
    """A real WebSocket client of ``/ws`` that remembers every message it received."""

    def __init__(self, daemon, **kwargs):
        self._connection = connect(ws_url(daemon), open_timeout=10, max_size=None, **kwargs)
        self.socket = self._connection.__enter__()
        self.received: list[dict] = []

    def send(self, message) -> None:
        self.socket.send(message if isinstance(message, str) else json.dumps(message))

    def recv(self, timeout: float = 10.0) -> dict:
        message = json.loads(self.socket.recv(timeout=timeout))
        self.received.append(message)
        return message

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        """The first message (from now on) for which ``predicate`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching /ws message within {timeout}s; got {self.received[-20:]}")
            try:
                message = self.recv(timeout=left)
            except TimeoutError:
                continue
            if predicate(message):
                return message

    def close(self) -> None:
        self._connection.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
