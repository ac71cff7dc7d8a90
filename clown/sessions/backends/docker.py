"""The ``docker`` backend: each agent session is a container.

The worktree is mounted at its own path (read-only for a read-only session), the profile
home read-write; the agent's binary is mounted from the host. The network is the host's,
so the agent reaches the profile's proxy on 127.0.0.1. The environment, keys included,
goes through a 0600 ``--env-file`` deleted once ``docker run`` has read it. Only the argv is
tested here (no docker engine on the machines clown is developed and tested on).
"""

import os
import shutil

from clown.sessions.backends.base import Backend, BackendError, ProcessState, StartSpec
from clown.sessions.proc import CommandMissing, run

IMAGE = "node:22-bookworm-slim"


def container_name(session_name: str) -> str:
    return f"clown-{session_name}"


def env_file_text(env: dict) -> str:
    """docker's env-file format: ``NAME=value`` lines; a value with a newline cannot be passed."""
    lines = []
    for name, value in sorted(env.items()):
        if "\n" in value or "\n" in name:
            raise BackendError(f"environment variable {name} has a newline; docker's env file cannot hold it")
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def run_argv(spec: StartSpec, env_file: str, image: str = IMAGE, docker: str = "docker",
             uid: int | None = None, gid: int | None = None) -> list[str]:
    argv = [docker, "run", "--detach", "--interactive", "--tty", "--init",
            "--name", container_name(spec.name), "--label", f"clown.session={spec.session_id}",
            "--network", "host", "--env-file", env_file, "--workdir", spec.cwd]
    if uid is not None:
        argv += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    for path, read_only in spec.mounts:
        argv += ["--volume", f"{path}:{path}:{'ro' if read_only else 'rw'}"]
    return argv + [image, *spec.argv]


def inspect_argv(name: str, docker: str = "docker") -> list[str]:
    return [docker, "inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name]


def remove_argv(name: str, docker: str = "docker") -> list[str]:
    return [docker, "rm", "--force", name]


def pull_argv(image: str = IMAGE, docker: str = "docker") -> list[str]:
    return [docker, "pull", image]


def mounts_for(spec: StartSpec, read_only: bool, profile_home: str) -> list[tuple[str, bool]]:
    """Worktree (ro when read-only), profile home (rw), the agent binary's directory (ro)."""
    mounts = [(spec.cwd, read_only), (profile_home, False)]
    binary = shutil.which(spec.argv[0]) if spec.argv else None
    if binary:
        mounts.append((os.path.dirname(os.path.realpath(binary)), True))
    return mounts


class DockerBackend(Backend):
    name = "docker"
    tool = "docker"

    def __init__(self, ctx):
        self.ctx = ctx

    async def _docker(self, argv: list[str], timeout: float = 120):
        try:
            return await run(argv, timeout=timeout)
        except (CommandMissing, TimeoutError) as exc:
            raise BackendError(f"docker: {exc}") from exc

    async def start(self, spec: StartSpec) -> str:
        self.check_available()
        directory = os.path.join(self.ctx.home.run, "session-env")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        env_file = os.path.join(directory, f"docker-{spec.name}.env")
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(env_file_text({**spec.env, **spec.secret_env}))
        try:
            await self._docker(remove_argv(container_name(spec.name)))
            result = await self._docker(run_argv(spec, env_file, uid=os.getuid(), gid=os.getgid()))
        finally:
            os.unlink(env_file)
        if not result.ok:
            raise BackendError(f"docker run failed: {result.why()}")
        return container_name(spec.name)

    async def pull(self) -> None:
        result = await self._docker(pull_argv(), timeout=600)
        if not result.ok:
            raise BackendError(f"docker pull {IMAGE} failed: {result.why()}")

    async def stop(self, ref: str) -> None:
        result = await self._docker(remove_argv(ref))
        if not result.ok and "No such container" not in result.why():
            raise BackendError(f"docker rm failed: {result.why()}")

    async def send_text(self, ref: str, text: str) -> None:
        raise BackendError("docker sessions do not take typed messages in this version; "
                           "use the pty or tmux backend to talk to the agent")

    async def poll_state(self, ref: str) -> ProcessState:
        result = await self._docker(inspect_argv(ref), timeout=15)
        if not result.ok:
            return ProcessState(False, None, "the container is gone")
        running, _, code = result.stdout.strip().partition(" ")
        if running == "true":
            return ProcessState(True)
        return ProcessState(False, int(code) if code.lstrip("-").isdigit() else None, None)
