"""Checking file-system paths that come from clients (``repo_path``, ``working_dir``,
``claude_dir``, ``codex_dir``, ...).

A client path must be absolute, exist, and — once resolved through symlinks — lie under
one of ``[server] allowed_roots``. Anything else raises ``ClientPathError`` whose message
names the field; handlers turn it into a 400.
"""

import os


class ClientPathError(ValueError):
    """A client path is not acceptable; ``field`` names it and ``str(exc)`` says why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def is_under(path: str, root: str) -> bool:
    """True when resolved ``path`` is ``root`` itself or inside it (both already resolved)."""
    if root == os.sep:
        return True
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_client_path(value, field: str, roots, want_dir: bool | None = True) -> str:
    """Return the resolved real path of ``value``, or raise ClientPathError naming ``field``.

    ``value`` must be a non-empty absolute path (no ``~`` expansion: the client says what it
    means), existing, and under one of ``roots`` after symlinks are resolved (the roots
    themselves are resolved too). ``want_dir`` True demands a directory, False a regular
    file, None either.
    """
    if not isinstance(value, str) or not value:
        raise ClientPathError(field, f"{field}: must be a non-empty path")
    if "\x00" in value:
        raise ClientPathError(field, f"{field}: must not contain NUL bytes")
    if not os.path.isabs(value):
        raise ClientPathError(field, f"{field}: must be an absolute path, got {value!r}")
    if not os.path.exists(value):
        raise ClientPathError(field, f"{field}: {value} does not exist")
    resolved = os.path.realpath(value)
    if want_dir is True and not os.path.isdir(resolved):
        raise ClientPathError(field, f"{field}: {value} is not a directory")
    if want_dir is False and not os.path.isfile(resolved):
        raise ClientPathError(field, f"{field}: {value} is not a regular file")
    real_roots = [os.path.realpath(os.path.expanduser(root)) for root in roots or ()]
    if not any(is_under(resolved, root) for root in real_roots):
        raise ClientPathError(
            field, f"{field}: {resolved} is not under an allowed root ({', '.join(real_roots) or 'none configured'})")
    return resolved
