"""bubblewrap argv for read-only sessions.

A read-only session sees the whole file system read-only, its worktree included, and may
write only where the agent must: its own config dir in the profile home (transcripts,
settings) and a private ``/tmp``. ``$CLOWN_HOME`` is replaced by an empty tmpfs, so the
secrets, the store and other sessions' worktrees are out of sight; only the paths the
agent needs are bound back in. Network and the PTY are shared (the agent reaches its
provider or the profile's proxy on 127.0.0.1 and draws on the session's terminal).
"""

import os
import shutil

BWRAP = "/usr/bin/bwrap"
TMPDIR = "/tmp"


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def program_dirs(command: list[str], path_env: str | None, clown_home: str) -> list[str]:
    """Directories under the sandbox's fresh /tmp that the agent's program needs back.

    The agent may be installed under the system temp dir (an npm prefix in a checkout
    there, say): its binary's directory, the whole ``node_modules`` tree of an npm
    install, and the PATH entries there. Nothing that is or holds ``clown_home``.
    """
    binary = command[0]
    if not os.path.isabs(binary):
        # Looked up on the agent's own PATH only; a name not found there binds nothing.
        binary = shutil.which(binary, path=path_env) if path_env else None
    candidates = [entry for entry in (path_env or "").split(os.pathsep) if os.path.isabs(entry)]
    if binary:
        real = os.path.realpath(binary)
        candidates += [os.path.dirname(binary), os.path.dirname(real)]
        parts = real.split(os.sep)
        if "node_modules" in parts:
            candidates.append(os.sep.join(parts[:parts.index("node_modules") + 1]))
    found = []
    for path in candidates:
        path = os.path.realpath(path)
        if (_is_under(path, TMPDIR) and os.path.isdir(path) and path not in found
                and not _is_under(path, clown_home) and not _is_under(clown_home, path)):
            found.append(path)
    return found


def bwrap_argv(command: list[str], *, worktree: str, repo: str, writable: list[str], clown_home: str,
               bwrap: str = BWRAP, path_env: str | None = None) -> list[str]:
    """The argv that runs ``command`` in the read-only sandbox.

    ``worktree`` is bound read-only at its own path (and is the working dir); ``repo`` (the
    main repository, whose ``.git`` the worktree points into) read-only too; every path in
    ``writable`` (existing directories) read-write. Order matters to bubblewrap: later
    mounts go on top of earlier ones, so the tmpfs that hides ``clown_home`` comes before
    the binds that bring the needed parts of it back.
    """
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", TMPDIR]
    argv += ["--tmpfs", clown_home]
    for path in program_dirs(command, path_env, clown_home):
        argv += ["--ro-bind", path, path]
    # The new /tmp (and the tmpfs on the home) hide whatever of these lived there: bind them back.
    argv += ["--ro-bind", repo, repo]
    for path in writable:
        if os.path.isdir(path):
            argv += ["--bind", path, path]
    argv += ["--ro-bind", worktree, worktree, "--chdir", worktree, "--die-with-parent", "--"]
    return argv + list(command)
