"""The store: one SQLite database per clown home, shared by every clown process.

WAL mode and a busy timeout make it safe for the web front, the events listener and the
workers to write at once. Schema changes are numbered SQL files in ``migrations/``
(``0001_core.sql``, ``0002_usage.sql``, ...), applied in order at start; the applied
number is kept in ``PRAGMA user_version``.
"""

import os
import re
import sqlite3
from importlib import resources

BUSY_TIMEOUT_MS = 10_000
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def connect(path: str) -> sqlite3.Connection:
    """Open the store at ``path`` (created 0600 if missing) with clown's pragmas.

    Rows come back as ``sqlite3.Row``. The connection is in autocommit mode; use
    ``with transaction(conn):`` for several statements that belong together.
    """
    if not os.path.exists(path):
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class transaction:
    """``with transaction(conn):`` runs the block in BEGIN IMMEDIATE ... COMMIT/ROLLBACK."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False


def migrations() -> list[tuple[int, str, str]]:
    """Every shipped migration as ``(number, name, sql)``, in order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    found.sort()
    numbers = [number for number, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {numbers}")
    return found


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the database has not seen; return the schema version.

    Each migration runs in its own transaction together with the version bump, so a crash
    leaves the database at a whole version.
    """
    with transaction(conn):
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, _name, sql in migrations():
            if number <= current:
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            current = number
    return current


def _statements(sql: str):
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip():
        yield buffer


def open_store(path: str) -> sqlite3.Connection:
    """Connect and bring the schema up to date."""
    conn = connect(path)
    migrate(conn)
    return conn
