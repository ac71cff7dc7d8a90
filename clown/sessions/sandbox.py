"""bubblewrap argv for read-only sessions.

A read-only session sees the whole file system read-only, its worktree included, and may
write only where the agent must: its own config dir in the profile home (transcripts,
settings) and a private ``/tmp``. ``$CLOWN_HOME`` is replaced by an empty tmpfs, so the
secrets, the store and other sessions' worktrees are out of sight; only the paths the
agent needs are bound back in. Network and the PTY are shared (the agent reaches its
provider or the profile's proxy on 127.0.0.1 and draws on the session's terminal).
"""

import os

BWRAP = "/usr/bin/bwrap"
TMPDIR = "/tmp"


def bwrap_argv(command: list[str], *, worktree: str, repo: str, writable: list[str], clown_home: str,
               bwrap: str = BWRAP) -> list[str]:
    """The argv that runs ``command`` in the read-only sandbox.

    ``worktree`` is bound read-only at its own path (and is the working dir); ``repo`` (the
    main repository, whose ``.git`` the worktree points into) read-only too; every path in
    ``writable`` (existing directories) read-write. Order matters to bubblewrap: later
    mounts go on top of earlier ones, so the tmpfs that hides ``clown_home`` comes before
    the binds that bring the needed parts of it back.
    """
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", TMPDIR]
    argv += ["--tmpfs", clown_home]
    # The new /tmp (and the tmpfs on the home) hide whatever of these lived there: bind them back.
    argv += ["--ro-bind", repo, repo]
    for path in writable:
        if os.path.isdir(path):
            argv += ["--bind", path, path]
    argv += ["--ro-bind", worktree, worktree, "--chdir", worktree, "--die-with-parent", "--"]
    return argv + list(command)
