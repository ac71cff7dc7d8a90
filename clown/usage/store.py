"""Writing usage events and keeping their rollups, in one transaction.

Every event has a ``dedup_key``; the same key never counts twice. When a key comes again
(a re-import, a transcript line for a response the proxy already metered, Claude Code
writing one transcript line per content block), the copy with the larger token total
wins, as in ccusage 20 (17.x kept the first copy); on a tie the row already stored stays. A replacing copy keeps the
stored row's profile, agent, provider and session when it has none of its own (an
import does not know which clown profile ran the proxy). The rollup rows move
by the difference in the same transaction, so reports always match the events.

Key rules (shared by the proxy and the importers so that they meet):

- ``<message id>:<request id>`` when both are known (ccusage's key: the Anthropic
  ``msg_…`` id and the ``request-id`` response header Claude Code stores as ``requestId``);
- otherwise a key local to the source (see ``clown.usage.imports``).

The unique index is on ``key_hash(dedup_key)``, a 64-bit integer (an import inserts
hundreds of thousands of keys; a text index cost most of each insert). A stored row's
key is still compared in full: a row whose hash another key holds already is stored with
``key_hash`` NULL, as are rows from before the hash existed (``hash_unhashed_keys`` gives
them theirs), and those are found by ``dedup_key`` through a partial unique index.
"""

import hashlib
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


def key_hash(dedup_key: str) -> int:
    """The signed 64-bit hash of a dedup key the store indexes (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(dedup_key.encode(), digest_size=8).digest(), "big", signed=True)


def bucket_of(at: float, size: int = QUARTER_SECS) -> int:
    return int(at // size) * size


_INSERT = (
    "INSERT INTO usage_events (dedup_key, source, profile, agent, provider, model, session, input_tokens,"
    " output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost, request_id, message_id, at,"
    " key_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
_UNHASHED = " FROM usage_events INDEXED BY usage_events_unhashed_key WHERE key_hash IS NULL AND dedup_key"
_STORED_COLUMNS = ("SELECT dedup_key, id, profile, agent, provider, model, session, input_tokens, output_tokens,"
                   " cache_creation_input_tokens, cache_read_input_tokens, at")
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
_SESSION_QUARTER = (
    "INSERT INTO usage_session_quarters (profile, session, bucket, model, events) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(profile, session, bucket, model) DO UPDATE SET events = events + excluded.events")
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
        self.session_quarters: dict[tuple, int] = {}    # (profile, session, quarter, model) -> events
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
            quarter = (profile, session, int(at // QUARTER_SECS) * QUARTER_SECS, model)
            self.session_quarters[quarter] = self.session_quarters.get(quarter, 0) + events
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

    @classmethod
    def of_rows(cls, rows) -> "_RollupBatch":
        """The rollups of insert rows all counted as new: summed per quarter, the hours and the
        sessions then summed from the quarters and the per-model sessions (fewer dict updates)."""
        batch = cls()
        quarters = batch.rows[QUARTER_SECS]
        session_models = batch.session_models
        session_quarters = batch.session_quarters
        for row in rows:
            at = row[14]
            bucket = int(at // QUARTER_SECS) * QUARTER_SECS
            key = (bucket, row[2], row[5])
            total = quarters.get(key)
            if total is None:
                quarters[key] = [row[7], row[8], row[9], row[10], 1, at]
            else:
                total[0] += row[7]
                total[1] += row[8]
                total[2] += row[9]
                total[3] += row[10]
                total[4] += 1
                if at > total[5]:
                    total[5] = at
            if row[6]:
                key = (row[2], row[6], bucket, row[5])
                session_quarters[key] = session_quarters.get(key, 0) + 1
                key = (row[2], row[6], row[5])
                span = session_models.get(key)
                if span is None:
                    session_models[key] = [at, at, 1]
                else:
                    if at < span[0]:
                        span[0] = at
                    elif at > span[1]:
                        span[1] = at
                    span[2] += 1
        hours = batch.rows[HOUR_SECS]
        for (bucket, profile, model), values in quarters.items():
            key = (bucket // HOUR_SECS * HOUR_SECS, profile, model)
            total = hours.get(key)
            if total is None:
                hours[key] = values[:]
            else:
                for index in range(5):
                    total[index] += values[index]
                if values[5] > total[5]:
                    total[5] = values[5]
        sessions = batch.sessions
        for (profile, session, _model), values in session_models.items():
            span = sessions.get((profile, session))
            if span is None:
                sessions[(profile, session)] = values[:]
            else:
                if values[0] < span[0]:
                    span[0] = values[0]
                if values[1] > span[1]:
                    span[1] = values[1]
                span[2] += values[2]
        return batch

    def write(self, conn: sqlite3.Connection) -> None:
        for size, rows in self.rows.items():
            if rows:
                conn.executemany(_ROLLUP.format(table=ROLLUP_TABLES[size]),
                                 [(*key, *values) for key, values in rows.items()])
        if self.sessions:
            conn.executemany(_SESSION, [(*key, *values) for key, values in self.sessions.items()])
            conn.executemany(_SESSION_MODEL, [(*key, *values) for key, values in self.session_models.items()])
            conn.executemany(_SESSION_QUARTER, [(*key, events) for key, events in self.session_quarters.items()])
        if self.shrunk:
            for size, rows in self.rows.items():
                conn.executemany(f"DELETE FROM {ROLLUP_TABLES[size]} WHERE bucket = ? AND profile = ? AND model = ?"
                                 " AND events <= 0", list(rows))
            conn.executemany("DELETE FROM usage_sessions WHERE profile = ? AND session = ? AND events <= 0",
                             list(self.sessions))
            conn.executemany("DELETE FROM usage_session_models WHERE profile = ? AND session = ? AND model = ?"
                             " AND events <= 0", list(self.session_models))
            conn.executemany("DELETE FROM usage_session_quarters WHERE profile = ? AND session = ? AND bucket = ?"
                             " AND model = ? AND events <= 0", list(self.session_quarters))


_INBOX_INSERT = (
    "INSERT INTO usage_inbox (dedup_key, source, profile, agent, provider, model, session, input_tokens,"
    " output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost, request_id, message_id, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_INBOX_ROWS = ("SELECT id, dedup_key, source, profile, agent, provider, model, session, input_tokens, output_tokens,"
               " cache_creation_input_tokens, cache_read_input_tokens, cost, request_id, message_id, at"
               " FROM usage_inbox ORDER BY id LIMIT ?")
INBOX_BATCH = 5000


def commit_to_inbox(conn: sqlite3.Connection, event: UsageEvent) -> None:
    """Commit ``event`` to ``usage_inbox``: one INSERT in its own transaction (the proxy's path,
    before a response's last byte). It counts once ``drain_inbox`` has folded it in."""
    conn.execute(_INBOX_INSERT, row_of(event))


def mark_covered(conn: sqlite3.Connection, pairs) -> None:
    """Record ``(profile, at)`` pairs as 15-minute buckets in which that profile's Claude Code
    usage is known response by response (what ``stats-cache.json`` must not fill)."""
    conn.executemany("INSERT OR IGNORE INTO usage_covered_quarters (profile, bucket) VALUES (?, ?)",
                     {(profile, int(at // QUARTER_SECS) * QUARTER_SECS) for profile, at in pairs})


def inbox_waiting(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM usage_inbox)").fetchone()[0] == 1


def drain_inbox(conn: sqlite3.Connection, in_transaction: bool = False) -> int:
    """Fold the rows of ``usage_inbox`` into ``usage_events`` and the rollups (the rule of
    ``record_events``) and delete them, in one transaction; return how many were moved.

    Whatever reads the events or writes them by key drains first, so a response's usage
    counts in every report from the moment its last byte left the proxy. Without
    ``in_transaction`` an empty inbox costs one read and takes no lock.
    """
    if not in_transaction:
        if not inbox_waiting(conn):
            return 0
        with store.transaction(conn):
            return drain_inbox(conn, in_transaction=True)
    moved = 0
    while True:
        rows = conn.execute(_INBOX_ROWS, (INBOX_BATCH,)).fetchall()
        if not rows:
            return moved
        folded = FoldedBatch()
        for row in rows:
            folded.add_row(tuple(row)[1:])
        write_folded(conn, folded, folded.rollup())
        mark_covered(conn, [(row[3], row[15]) for row in rows if row[4] == "claude"])
        conn.execute("DELETE FROM usage_inbox WHERE id <= ?", (rows[-1][0],))
        moved += len(rows)


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


# A row is ``_INSERT``'s parameters but the hash: (dedup_key, source, profile, agent, provider,
# model, session, input, output, cache write, cache read, cost, request_id, message_id, at).


def row_of(event: UsageEvent) -> tuple:
    """``event`` as an insert row."""
    return (event.dedup_key, event.source, event.profile, event.agent, event.provider, event.model, event.session,
            event.input_tokens, event.output_tokens, event.cache_creation_input_tokens,
            event.cache_read_input_tokens, event.cost, event.request_id, event.message_id, event.at)


def _hash_of(row: tuple) -> int:
    return row[15]


def _row_total(row: tuple) -> int:
    return row[7] + row[8] + row[9] + row[10]


def _merged(old: tuple, new: tuple) -> tuple:
    """Row ``new`` replacing ``old`` (same key, more tokens): keeps old's labels where new has none."""
    if old[2] and not new[2] or old[3] and not new[3] or old[4] and not new[4] or old[6] and not new[6] \
            or old[5] and not new[5]:
        new = (new[0], new[1], new[2] or old[2], new[3] or old[3], new[4] or old[4], new[5] or old[5],
               new[6] or old[6], *new[7:])
    return new


class FoldedBatch:
    """Rows folded per key (the copy with more tokens wins) with their rollups summed as if all were new.

    Built wherever the events are parsed (an import's parser processes build them and hash
    their keys, so the writer does not); ``write_folded`` then corrects the few that were not
    new. Pickles as its plain insert rows.
    """

    def __init__(self):
        self.rows: dict[str, tuple] = {}
        self.replaced = 0
        self._insert_rows: list | None = None

    def __getstate__(self):
        return {"insert_rows": self.insert_rows(), "replaced": self.replaced}

    def __setstate__(self, state):
        self._insert_rows = state["insert_rows"]
        self.replaced = state["replaced"]
        self.rows = {row[0]: row for row in self._insert_rows}

    def __len__(self) -> int:
        return len(self.rows)

    def insert_rows(self) -> list:
        """``_INSERT``'s parameters, one tuple per key, in the order of their hashes (neighbours in
        the index: an insert finds its page in the CPU's cache more often)."""
        if self._insert_rows is None:
            hashed = [(*row, key_hash(key)) for key, row in self.rows.items()]
            hashed.sort(key=_hash_of)
            self._insert_rows = hashed
        return self._insert_rows

    def add(self, event: UsageEvent) -> None:
        self.add_row(row_of(event))

    def add_row(self, row: tuple) -> None:
        self._insert_rows = None
        rows = self.rows
        seen = rows.get(row[0])
        if seen is None:
            rows[row[0]] = row
        elif _row_total(row) > _row_total(seen):
            rows[row[0]] = _merged(seen, row)
            self.replaced += 1      # as a second write of the key would have replaced the first

    def rollup(self) -> "_RollupBatch":
        return _RollupBatch.of_rows(self.rows.values())


def _record(conn: sqlite3.Connection, events) -> int:
    folded = FoldedBatch()
    for event in events:
        folded.add(event)
    return write_folded(conn, folded, folded.rollup())


def write_folded(conn: sqlite3.Connection, folded: FoldedBatch, rollup: "_RollupBatch") -> int:
    """Store a folded batch (caller holds the transaction); ``rollup`` counts every event as new.

    All rows are inserted with ``ON CONFLICT DO NOTHING`` (keys found among the unhashed rows
    are left out first); only when a hash was taken already are those rows looked up: a key
    stored before is left out of the rollups, and replaced (rollups moved by the difference)
    where the new copy has more tokens; another key's hash means the row goes in unhashed.
    """
    count = len(folded)
    if not count:
        return 0
    rows = folded.insert_rows()
    max_before = conn.execute("SELECT COALESCE(MAX(id), 0) FROM usage_events").fetchone()[0]
    existing = {}       # dedup_key -> the stored row (_STORED_COLUMNS)
    if conn.execute("SELECT EXISTS (SELECT 1 FROM usage_events WHERE key_hash IS NULL)").fetchone()[0]:
        for chunk in _chunks([row[0] for row in rows]):
            for stored in conn.execute(_STORED_COLUMNS + _UNHASHED + f" IN ({','.join('?' * len(chunk))})", chunk):
                existing[stored[0]] = stored
        if existing:
            rows = [row for row in rows if row[0] not in existing]
    changes_before = conn.total_changes
    conn.executemany(_INSERT, rows)
    inserted = conn.total_changes - changes_before
    if inserted < len(rows):
        collided = []
        for chunk in _chunks(rows):
            by_hash = {stored[12]: stored for stored in conn.execute(
                _STORED_COLUMNS + ", key_hash FROM usage_events"
                f" WHERE key_hash IN ({','.join('?' * len(chunk))})", [row[15] for row in chunk])}
            for row in chunk:
                stored = by_hash[row[15]]
                if stored[0] != row[0]:
                    collided.append(row)
                elif stored[1] <= max_before:
                    existing[row[0]] = stored
        for row in collided:
            inserted += conn.execute(_INSERT, (*row[:15], None)).rowcount
    updates = []
    if existing:
        # Some keys were stored already: sum the rollups again without them (a copy that is not
        # counted must not stretch a bucket's last use or a session's span either).
        rollup = _RollupBatch()
        add = rollup.add
        for key, event in folded.rows.items():
            tokens = event[7:11]
            row = existing.get(key)
            if row is None:
                add(event[2], event[5], event[6], event[14], tokens, 1)
                continue
            _, row_id, profile, agent, provider, model, session, *rest = row
            old_tokens, old_at = rest[:4], rest[4]
            if sum(tokens) <= sum(old_tokens):
                continue
            new_profile = profile or event[2]
            new_session = session or event[6]
            new_model = event[5] or model
            updates.append((new_profile, agent or event[3], provider or event[4], new_model, new_session,
                            *tokens, event[11], event[14], row_id))
            add(profile, model, session, old_at, tuple(-n for n in old_tokens), -1)
            add(new_profile, new_model, new_session, event[14], tokens, 1)
    if updates:
        conn.executemany(_UPDATE, updates)
    rollup.write(conn)
    return folded.replaced + inserted + len(updates)


def _chunks(items: list):
    for start in range(0, len(items), _LOOKUP_CHUNK):
        yield items[start:start + _LOOKUP_CHUNK]


def hash_unhashed_keys(conn: sqlite3.Connection, batch: int = 20000) -> int:
    """Give rows stored without ``key_hash`` (before it existed) theirs, where no other key holds it.

    Returns how many got one. A transaction per ``batch`` rows, so that the proxies' writes
    never wait long behind it.
    """
    hashed = last_id = 0
    while True:
        with store.transaction(conn):
            rows = conn.execute("SELECT id, dedup_key FROM usage_events WHERE key_hash IS NULL AND id > ?"
                                " ORDER BY id LIMIT ?", (last_id, batch)).fetchall()
            if not rows:
                return hashed
            before = conn.total_changes
            conn.executemany("UPDATE OR IGNORE usage_events SET key_hash = ? WHERE id = ?",
                             [(key_hash(key), row_id) for row_id, key in rows])
            hashed += conn.total_changes - before
            last_id = rows[-1][0]


def delete_keys(conn: sqlite3.Connection, keys: list[str]) -> int:
    """``delete_events`` of the rows with these dedup keys, found through the indexes (caller holds the transaction)."""
    deleted = 0
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        deleted += delete_events(conn, f"(key_hash IN ({marks}) AND dedup_key IN ({marks}))"
                                       f" OR (key_hash IS NULL AND dedup_key IN ({marks}))",
                                 (*[key_hash(key) for key in chunk], *chunk, *chunk))
    return deleted


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
