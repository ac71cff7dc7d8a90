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
from dataclasses import dataclass

from clown import store

QUARTER_SECS = 900
HOUR_SECS = 3600
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass(slots=True)
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
            key = (int(at // size) * size, profile, model)
            row = rows.get(key)
            if row is None:
                rows[key] = [tokens[0], tokens[1], tokens[2], tokens[3], events, at]
            else:
                row[0] += tokens[0]
                row[1] += tokens[1]
                row[2] += tokens[2]
                row[3] += tokens[3]
                row[4] += events
                if at > row[5]:
                    row[5] = at
        if session:
            for rows, key in ((self.sessions, (profile, session)), (self.session_models, (profile, session, model))):
                row = rows.get(key)
                if row is None:
                    rows[key] = [at, at, events]
                else:
                    if at < row[0]:
                        row[0] = at
                    if at > row[1]:
                        row[1] = at
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


def record_event(conn: sqlite3.Connection, event: UsageEvent) -> int:
    """``record_events(conn, [event])`` with the fewest statements (the proxy's path, one per response):
    a new key is one INSERT and four rollup upserts in one transaction."""
    tokens = (event.input_tokens, event.output_tokens, event.cache_creation_input_tokens,
              event.cache_read_input_tokens)
    with store.transaction(conn):
        cursor = conn.execute(_INSERT, (
            event.dedup_key, event.source, event.profile, event.agent, event.provider, event.model, event.session,
            *tokens, event.cost, event.request_id, event.message_id, event.at))
        if cursor.rowcount != 1:        # a known key: the general rule (the copy with more tokens wins)
            folded = FoldedBatch()
            folded.add(event)
            return write_folded(conn, folded, folded.rollup())
        at = event.at
        for size, table in ROLLUP_TABLES.items():
            conn.execute(_ROLLUP.format(table=table), (int(at // size) * size, event.profile, event.model,
                                                       *tokens, 1, at))
        if event.session:
            conn.execute(_SESSION, (event.profile, event.session, at, at, 1))
            conn.execute(_SESSION_MODEL, (event.profile, event.session, event.model, at, at, 1))
    return 1


def record_events(conn: sqlite3.Connection, events, in_transaction: bool = False) -> int:
    """Store ``events`` (an iterable of UsageEvent) and their rollups; return how many changed.

    A new key inserts; a known key is replaced only by a copy with more tokens. Runs in
    one ``BEGIN IMMEDIATE`` transaction unless ``in_transaction`` (the caller holds one).
    """
    if in_transaction:
        return _record(conn, events)
    with store.transaction(conn):
        return _record(conn, events)


_LOOKUP_CHUNK = 500
_UPDATE = ("UPDATE usage_events SET profile = ?, agent = ?, provider = ?, model = ?, session = ?, input_tokens = ?,"
           " output_tokens = ?, cache_creation_input_tokens = ?, cache_read_input_tokens = ?, cost = ?, at = ?"
           " WHERE id = ?")


def _merged(old: UsageEvent, new: UsageEvent) -> UsageEvent:
    """``new`` replacing ``old`` (same key, more tokens): keeps old's labels where new has none."""
    if old.profile and not new.profile or old.agent and not new.agent or old.provider and not new.provider \
            or old.session and not new.session or old.model and not new.model:
        new = UsageEvent(
            dedup_key=new.dedup_key, source=new.source, at=new.at, model=new.model or old.model,
            profile=old.profile or new.profile, agent=old.agent or new.agent, provider=old.provider or new.provider,
            session=old.session or new.session, input_tokens=new.input_tokens, output_tokens=new.output_tokens,
            cache_creation_input_tokens=new.cache_creation_input_tokens,
            cache_read_input_tokens=new.cache_read_input_tokens, cost=new.cost, request_id=new.request_id,
            message_id=new.message_id)
    return new


class FoldedBatch:
    """Events folded per key (the copy with more tokens wins) with their rollups summed as if all were new.

    Built wherever the events are parsed (an import's parser processes build them, so the
    writer does not); ``write_folded`` then corrects the few that were not new.
    """

    def __init__(self):
        self._events: dict[str, UsageEvent] | None = {}
        self._rows: list | None = None
        self.replaced = 0

    # Sent between processes as plain insert rows: much cheaper to pickle than the objects.
    def __getstate__(self):
        return {"rows": self.insert_rows(), "replaced": self.replaced}

    def __setstate__(self, state):
        self.replaced = state["replaced"]
        self._rows = state["rows"]
        self._events = None

    @property
    def events(self) -> dict:
        if self._events is None:
            self._events = {row[0]: UsageEvent(row[0], row[1], row[14], row[5], row[2], row[3], row[4], row[6],
                                               row[7], row[8], row[9], row[10], row[11], row[12], row[13])
                            for row in self._rows}
        return self._events

    def __len__(self) -> int:
        return len(self._rows) if self._events is None else len(self._events)

    def insert_rows(self) -> list:
        """``_INSERT``'s parameters, one tuple per event."""
        if self._rows is None:
            self._rows = [(key, e.source, e.profile, e.agent, e.provider, e.model, e.session, e.input_tokens,
                           e.output_tokens, e.cache_creation_input_tokens, e.cache_read_input_tokens, e.cost,
                           e.request_id, e.message_id, e.at) for key, e in self._events.items()]
        return self._rows

    def add(self, event: UsageEvent) -> None:
        self._rows = None
        events = self._events
        seen = events.get(event.dedup_key)
        if seen is None:
            events[event.dedup_key] = event
        elif event.total > seen.total:
            events[event.dedup_key] = _merged(seen, event)
            self.replaced += 1      # as a second write of the key would have replaced the first

    def rollup(self) -> "_RollupBatch":
        batch = _RollupBatch()
        add = batch.add
        for event in self.events.values():
            add(event.profile, event.model, event.session, event.at,
                (event.input_tokens, event.output_tokens, event.cache_creation_input_tokens,
                 event.cache_read_input_tokens), 1)
        return batch


def _record(conn: sqlite3.Connection, events) -> int:
    folded = FoldedBatch()
    for event in events:
        folded.add(event)
    return write_folded(conn, folded, folded.rollup())


def write_folded(conn: sqlite3.Connection, folded: FoldedBatch, rollup: "_RollupBatch") -> int:
    """Store a folded batch (caller holds the transaction); ``rollup`` counts every event as new.

    All rows are inserted with ``ON CONFLICT DO NOTHING``; only when some keys were already
    stored are those looked up (rows whose id predates this batch): they are left out of the
    rollups, and replaced (rollups moved by the difference) where the new copy has more tokens.
    """
    count = len(folded)
    if not count:
        return 0
    max_before = conn.execute("SELECT COALESCE(MAX(id), 0) FROM usage_events").fetchone()[0]
    changes_before = conn.total_changes
    conn.executemany(_INSERT, folded.insert_rows())
    inserted = conn.total_changes - changes_before
    updates = []
    if inserted < count:
        events = folded.events
        # Some keys were stored already: sum the rollups again without them (a copy that is not
        # counted must not stretch a bucket's last use or a session's span either).
        rollup = _RollupBatch()
        add = rollup.add
        keys = list(events)
        existing = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start:start + _LOOKUP_CHUNK]
            stored = conn.execute(
                "SELECT dedup_key, id, profile, agent, provider, model, session, input_tokens, output_tokens,"
                " cache_creation_input_tokens, cache_read_input_tokens, at FROM usage_events"
                f" WHERE id <= ? AND dedup_key IN ({','.join('?' * len(chunk))})", (max_before, *chunk)).fetchall()
            for row in stored:
                existing[row[0]] = row
        for key, event in events.items():
            tokens = (event.input_tokens, event.output_tokens, event.cache_creation_input_tokens,
                      event.cache_read_input_tokens)
            row = existing.get(key)
            if row is None:
                add(event.profile, event.model, event.session, event.at, tokens, 1)
                continue
            _, row_id, profile, agent, provider, model, session, *rest = row
            old_tokens, old_at = rest[:4], rest[4]
            if sum(tokens) <= sum(old_tokens):
                continue
            new_profile = profile or event.profile
            new_session = session or event.session
            new_model = event.model or model
            updates.append((new_profile, agent or event.agent, provider or event.provider, new_model, new_session,
                            *tokens, event.cost, event.at, row_id))
            add(profile, model, session, old_at, tuple(-n for n in old_tokens), -1)
            add(new_profile, new_model, new_session, event.at, tokens, 1)
    if updates:
        conn.executemany(_UPDATE, updates)
    rollup.write(conn)
    return folded.replaced + inserted + len(updates)


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
