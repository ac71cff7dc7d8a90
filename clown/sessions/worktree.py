"""git for agent sessions: check a repository, name a session, add and remove its worktree.

Every git call is an argv list run off the IOLoop (``proc.run``). A session's branch is
``clown/<name>`` and its worktree ``$CLOWN_HOME/worktrees/<name>``.
"""

import os
import re
import secrets
import shutil

from clown.sessions.proc import run

BRANCH_PREFIX = "clown/"
_SLUG_WORDS = 6
_SLUG_CHARS = 40


class GitError(Exception):
    """A git command failed; the message is git's own complaint."""


def session_name(prompt: str) -> str:
    """A git-ref-safe name from the prompt's first words plus a random suffix.

    ``"Fix the login bug!"`` → ``fix-the-login-bug-3fa9c1``. Only ``[a-z0-9-]``, so it is a
    valid ref component, path component and tmux/docker name.
    """
    words = re.findall(r"[a-z0-9]+", prompt.lower())[:_SLUG_WORDS]
    slug = "-".join(words)[:_SLUG_CHARS].strip("-") or "session"
    return f"{slug}-{secrets.token_hex(3)}"


async def git(*args: str, cwd: str | None = None, timeout: float = 60.0):
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return await run(["git", *args], cwd=cwd, env=env, timeout=timeout)


async def is_work_tree(path: str) -> bool:
    """True when ``path`` is inside a git work tree (not a bare repository, not a .git dir)."""
    result = await git("-C", path, "rev-parse", "--is-inside-work-tree")
    return result.ok and result.stdout.strip() == "true"


async def has_commits(path: str) -> bool:
    result = await git("-C", path, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    return result.ok


async def toplevel(path: str) -> str:
    result = await git("-C", path, "rev-parse", "--show-toplevel")
    if not result.ok:
        raise GitError(result.why())
    return result.stdout.strip()


async def branch_exists(repo: str, branch: str) -> bool:
    result = await git("-C", repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    return result.ok


async def add(repo: str, branch: str, path: str) -> None:
    """``git worktree add -b <branch> <path>`` from the repository's HEAD. Raises GitError."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    result = await git("-C", repo, "worktree", "add", "-b", branch, path, "HEAD")
    if not result.ok:
        raise GitError(f"git worktree add failed: {result.why()}")


async def is_dirty(path: str) -> bool:
    """True when the worktree has uncommitted changes or untracked files (``git status --porcelain``)."""
    if not os.path.isdir(path):
        return False
    result = await git("-C", path, "status", "--porcelain")
    if not result.ok:
        raise GitError(f"git status failed: {result.why()}")
    return bool(result.stdout.strip())


async def remove(repo: str, path: str) -> None:
    """Remove the worktree (``git worktree remove --force``), whatever state it is in.

    The branch is kept: it may hold the agent's commits. When git no longer knows the
    worktree (removed by hand), the directory is deleted and git's records pruned.
    """
    if os.path.isdir(repo):
        result = await git("-C", repo, "worktree", "remove", "--force", "--force", path)
        if result.ok:
            return
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    if os.path.isdir(repo):
        await git("-C", repo, "worktree", "prune")
