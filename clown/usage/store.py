"""Writing usage events and keeping their rollups, in one transaction.

Every event has a ``dedup_key``; the same key never counts twice. When a key comes again
(a re-import, a transcript line for a response the proxy already metered, Claude Code
writing one transcript line per content block), the copy with the larger token total
wins, as in ccusage; on a tie the row already stored stays. A replacing copy keeps the
stored row's profile, agent, provider and session when it has none of its own (an
import does not know which clown profile ran the proxy). The rollup rows move
by the difference in the same transaction, so reports always match the events.

Key rules (shared by the proxy and the importers so that they meet):

- ``<message id>:<request id>`` when both are known (ccusage's key: the Anthropic
  ``msg_…`` id and the ``request-id`` response header Claude Code stores as ``requestId``);
- otherwise a key local to the source (see ``clown.usage.imports``).
"""

import sqlite3
from dataclasses import dataclass, field

from clown import store

QUARTER_SECS = 900
HOUR_SECS = 3600
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass
class UsageEvent:
    dedup_key: str
    source: str
    at: float
    model: str = ""
    profile: str = ""
    agent: str = ""
    provider: str = ""
    session: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost: float = 0.0
    request_id: str | None = None
    message_id: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


def usage_key(message_id: str | None, request_id: str | None) -> str | None:
    """ccusage's dedup key ``message.id:requestId``, or None when either is missing."""
    if message_id and request_id:
        return f"{message_id}:{request_id}"
    return None


def bucket_of(at: float, size: int = QUARTER_SECS) -> int:
    return int(at // size) * size


_INSERT = (
    "INSERT INTO usage_events (dedup_key, source, profile, agent, provider, model, session, input_tokens,"
    " output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost, request_id, message_id, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(dedup_key) DO NOTHING")
_ROLLUP = (
    "INSERT INTO {table} (bucket, profile, model, input_tokens, output_tokens, cache_creation_input_tokens,"
    " cache_read_input_tokens, events, last_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(bucket, profile, model) DO UPDATE SET"
    " input_tokens = input_tokens + excluded.input_tokens,"
    " output_tokens = output_tokens + excluded.output_tokens,"
    " cache_creation_input_tokens = cache_creation_input_tokens + excluded.cache_creation_input_tokens,"
    " cache_read_input_tokens = cache_read_input_tokens + excluded.cache_read_input_tokens,"
    " events = events + excluded.events, last_at = max(last_at, excluded.last_at)")
_SESSION = (
    "INSERT INTO usage_sessions (profile, session, first_at, last_at, events) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(profile, session) DO UPDATE SET first_at = min(first_at, excluded.first_at),"
    " last_at = max(last_at, excluded.last_at), events = events + excluded.events")
_SESSION_MODEL = (
    "INSERT INTO usage_session_models (profile, session, model, first_at, last_at, events) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(model, profile, session) DO UPDATE SET first_at = min(first_at, excluded.first_at),"
    " last_at = max(last_at, excluded.last_at), events = events + excluded.events")
ROLLUP_TABLES = {HOUR_SECS: "usage_rollup_hour", QUARTER_SECS: "usage_rollup_quarter"}


class _RollupBatch:
    """Rollup changes of one transaction, summed per row before they are written."""

    def __init__(self):
        self.rows = {size: {} for size in ROLLUP_TABLES}
        self.sessions: dict[tuple, list] = {}
        self.session_models: dict[tuple, list] = {}
        self.shrunk = False

    def add(self, profile, model, session, at, tokens, events: int) -> None:
        if events < 0:
            self.shrunk = True
        for size, rows in self.rows.items():
            key = (bucket_of(at, size), profile, model)
            row = rows.get(key)
            if row is None:
                rows[key] = [*tokens, events, at]
            else:
                for index in range(4):
                    row[index] += tokens[index]
                row[4] += events
                row[5] = max(row[5], at)
        if session:
            for rows, key in ((self.sessions, (profile, session)), (self.session_models, (profile, session, model))):
                row = rows.get(key)
                if row is None:
                    rows[key] = [at, at, events]
                else:
                    row[0] = min(row[0], at)
                    row[1] = max(row[1], at)
                    row[2] += events

    def write(self, conn: sqlite3.Connection) -> None:
        for size, rows in self.rows.items():
            if rows:
                conn.executemany(_ROLLUP.format(table=ROLLUP_TABLES[size]),
                                 [(*key, *values) for key, values in rows.items()])
        if self.sessions:
            conn.executemany(_SESSION, [(*key, *values) for key, values in self.sessions.items()])
            conn.executemany(_SESSION_MODEL, [(*key, *values) for key, values in self.session_models.items()])
        if self.shrunk:
            for size, rows in self.rows.items():
                conn.executemany(f"DELETE FROM {ROLLUP_TABLES[size]} WHERE bucket = ? AND profile = ? AND model = ?"
                                 " AND events <= 0", list(rows))
            conn.executemany("DELETE FROM usage_sessions WHERE profile = ? AND session = ? AND events <= 0",
                             list(self.sessions))
            conn.executemany("DELETE FROM usage_session_models WHERE profile = ? AND session = ? AND model = ?"
                             " AND events <= 0", list(self.session_models))


def _tokens(event: UsageEvent) -> tuple:
    return (event.input_tokens, event.output_tokens, event.cache_creation_input_tokens, event.cache_read_input_tokens)


def record_events(conn: sqlite3.Connection, events, in_transaction: bool = False) -> int:
    """Store ``events`` (an iterable of UsageEvent) and their rollups; return how many changed.

    A new key inserts; a known key is replaced only by a copy with more tokens. Runs in
    one ``BEGIN IMMEDIATE`` transaction unless ``in_transaction`` (the caller holds one).
    """
    if in_transaction:
        return _record(conn, events)
    with store.transaction(conn):
        return _record(conn, events)


def _record(conn: sqlite3.Connection, events) -> int:
    batch = _RollupBatch()
    changed = 0
    for event in events:
        cursor = conn.execute(_INSERT, (
            event.dedup_key, event.source, event.profile, event.agent, event.provider, event.model, event.session,
            event.input_tokens, event.output_tokens, event.cache_creation_input_tokens,
            event.cache_read_input_tokens, event.cost, event.request_id, event.message_id, event.at))
        if cursor.rowcount == 1:
            batch.add(event.profile, event.model, event.session, event.at, _tokens(event), 1)
            changed += 1
            continue
        old = conn.execute(
            "SELECT id, profile, agent, provider, model, session, input_tokens, output_tokens,"
            " cache_creation_input_tokens, cache_read_input_tokens, at FROM usage_events WHERE dedup_key = ?",
            (event.dedup_key,)).fetchone()
        old_tokens = (old["input_tokens"], old["output_tokens"], old["cache_creation_input_tokens"],
                      old["cache_read_input_tokens"])
        if event.total <= sum(old_tokens):
            continue
        profile = old["profile"] or event.profile
        agent = old["agent"] or event.agent
        provider = old["provider"] or event.provider
        session = old["session"] or event.session
        model = event.model or old["model"]
        conn.execute(
            "UPDATE usage_events SET profile = ?, agent = ?, provider = ?, model = ?, session = ?, input_tokens = ?,"
            " output_tokens = ?, cache_creation_input_tokens = ?, cache_read_input_tokens = ?, cost = ?, at = ?"
            " WHERE id = ?",
            (profile, agent, provider, model, session, *_tokens(event), event.cost, event.at, old["id"]))
        batch.add(old["profile"], old["model"], old["session"], old["at"], tuple(-n for n in old_tokens), -1)
        batch.add(profile, model, session, event.at, _tokens(event), 1)
        changed += 1
    batch.write(conn)
    return changed


def delete_events(conn: sqlite3.Connection, where: str, params: tuple = ()) -> int:
    """Delete the events matching ``where`` (an SQL condition) and take them out of the rollups.

    The caller holds the transaction.
    """
    rows = conn.execute(
        "SELECT id, profile, model, session, input_tokens, output_tokens, cache_creation_input_tokens,"
        f" cache_read_input_tokens, at FROM usage_events WHERE {where}", params).fetchall()
    batch = _RollupBatch()
    for row in rows:
        tokens = (row["input_tokens"], row["output_tokens"], row["cache_creation_input_tokens"],
                  row["cache_read_input_tokens"])
        batch.add(row["profile"], row["model"], row["session"], row["at"], tuple(-n for n in tokens), -1)
    conn.executemany("DELETE FROM usage_events WHERE id = ?", [(row["id"],) for row in rows])
    batch.write(conn)
    return len(rows)
