"""Recent log lines of the daemon and each program, with secrets redacted.

Programs log to ``$CLOWN_HOME/logs/<program>.log`` (rotated by supervisor). Lines are read
from the end of the file, never the whole file. Before a line leaves, every secret value
clown holds and anything shaped like a key or a bearer token is replaced by ``[redacted]``.
"""

import os
import re

_LOG_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\.log$")
_SECRET_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_-]{8,}|Bearer\s+[A-Za-z0-9._~+/=-]{8,}|(?i:api[_-]?key|token|secret)[\"']?\s*[:=]\s*[\"']?[^\s\"',]{6,})")
REDACTED = "[redacted]"


class LogReader:
    def __init__(self, home, secrets):
        self.home = home
        self.secrets = secrets

    def programs(self) -> list[dict]:
        found = []
        for entry in sorted(os.listdir(self.home.logs)):
            match = _LOG_NAME.match(entry)
            if match:
                found.append({"program": match.group(1),
                              "size_bytes": os.path.getsize(os.path.join(self.home.logs, entry))})
        return found

    def path(self, program: str) -> str | None:
        if not _LOG_NAME.match(program + ".log"):
            return None
        path = os.path.join(self.home.logs, program + ".log")
        return path if os.path.isfile(path) else None

    def tail(self, program: str, lines: int) -> list[str] | None:
        """The last ``lines`` lines of the program's log, redacted; None when there is no such log."""
        path = self.path(program)
        if path is None:
            return None
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            block, data = 65536, b""
            while end > 0 and data.count(b"\n") <= lines:
                start = max(0, end - block)
                handle.seek(start)
                data = handle.read(end - start) + data
                end = start
        text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
        known = self._secret_values()
        return [self.redact(line, known) for line in text]

    def _secret_values(self) -> list[str]:
        values = []
        for entry in os.listdir(self.secrets.directory):
            if entry.endswith(".tmp"):
                continue
            value = self.secrets.read(entry)
            if value and len(value) >= 6:
                values.append(value.strip())
        return values

    @staticmethod
    def redact(line: str, known: list[str]) -> str:
        for value in known:
            if value and value in line:
                line = line.replace(value, REDACTED)
        return _SECRET_SHAPES.sub(REDACTED, line)
