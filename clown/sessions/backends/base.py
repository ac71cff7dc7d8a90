"""What every backend shares: the start spec, process state, errors, the env file."""

import json
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field

# Run by path, not ``-m``: it needs nothing but the standard library (see exec_env).
EXEC_ENV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exec_env.py")


class BackendError(Exception):
    """A backend operation failed (answered 500 BACKEND_ERROR)."""


class BackendUnavailable(Exception):
    """The backend's tool is not installed on this host (answered 400 INVALID_REQUEST)."""


@dataclass
class StartSpec:
    session_id: str
    name: str                 # the session's name: tmux/zellij session and container are named after it
    profile_alias: str
    argv: list[str]           # the agent's argv, sandbox wrapper included
    env: dict                 # the agent's whole environment, without secrets
    secret_env: dict          # what must never appear on a command line (API keys)
    cwd: str
    launch: object = None     # the profile's Launch, for backends that hand it on (pty)
    mounts: list = field(default_factory=list)   # (path, read_only) a container needs


@dataclass
class ProcessState:
    running: bool
    exit_code: int | None = None
    reason: str | None = None


class Backend:
    name = ""
    tool: str | None = None

    def check_available(self) -> None:
        if self.tool and shutil.which(self.tool) is None:
            raise BackendUnavailable(
                f"backend '{self.name}' is not available on this host: the {self.tool} command is not installed")


def write_env_file(directory: str, env: dict) -> str:
    """Write ``env`` as a 0600 JSON file for ``exec_env.py`` (which deletes it on reading)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f"env-{secrets.token_hex(8)}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(env, handle)
    return path


def exec_env_argv(env_file: str, argv: list[str]) -> list[str]:
    """``python exec_env.py <file> -- argv``: argv run with exactly the file's environment."""
    return [sys.executable, EXEC_ENV, env_file, "--", *argv]
