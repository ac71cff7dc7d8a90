-- Where a proxy worker commits the usage of a response before its last byte goes to the agent:
-- one INSERT into a table without secondary indexes (a fraction of what the dedup lookup, the
-- indexed insert and the rollup upserts cost). clown.usage.store.drain_inbox folds these rows
-- into usage_events and the rollups; every reader of those tables drains first.
CREATE TABLE usage_inbox (
    id                          INTEGER PRIMARY KEY,
    dedup_key                   TEXT NOT NULL,
    source                      TEXT NOT NULL,
    profile                     TEXT NOT NULL DEFAULT '',
    agent                       TEXT NOT NULL DEFAULT '',
    provider                    TEXT NOT NULL DEFAULT '',
    model                       TEXT NOT NULL DEFAULT '',
    session                     TEXT NOT NULL DEFAULT '',
    input_tokens                INTEGER NOT NULL DEFAULT 0,
    output_tokens               INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_input_tokens     INTEGER NOT NULL DEFAULT 0,
    cost                        REAL NOT NULL DEFAULT 0,
    request_id                  TEXT,
    message_id                  TEXT,
    at                          REAL NOT NULL
);
