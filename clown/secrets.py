"""Secret files: one file per secret under ``$CLOWN_HOME/secrets`` (dir 0700, files 0600).

Secrets never go to the database, API output or logs; callers keep only their names.
A name is ``<kind>-<alias>`` (e.g. ``profile-work.key``) and is checked, so a name
can never climb out of the secrets dir.
"""

import os
import re

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SecretStore:
    def __init__(self, directory: str):
        self.directory = directory

    def _path(self, name: str) -> str:
        if not _NAME.match(name) or ".." in name:
            raise ValueError(f"bad secret name {name!r}")
        return os.path.join(self.directory, name)

    def write(self, name: str, value: str) -> None:
        """Store ``value`` atomically with mode 0600."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        path = self._path(name)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, value.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def read(self, name: str) -> str | None:
        """The secret's value, or None when there is none."""
        try:
            with open(self._path(name)) as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return os.path.exists(self._path(name))

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
