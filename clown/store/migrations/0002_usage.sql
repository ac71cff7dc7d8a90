-- Usage: one row per model response (metered by a proxy, or imported from an agent's
-- transcripts), deduplicated on dedup_key. Reports read the rollups, never the events.
CREATE TABLE usage_events (
    id                          INTEGER PRIMARY KEY,
    dedup_key                   TEXT NOT NULL UNIQUE,  -- message id:request id where both exist
    source                      TEXT NOT NULL,         -- proxy | claude | codex | stats-cache
    profile                     TEXT NOT NULL DEFAULT '',
    agent                       TEXT NOT NULL DEFAULT '',
    provider                    TEXT NOT NULL DEFAULT '',
    model                       TEXT NOT NULL DEFAULT '',
    session                     TEXT NOT NULL DEFAULT '',  -- the agent's session; '' when unknown
    input_tokens                INTEGER NOT NULL DEFAULT 0,
    output_tokens               INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_input_tokens     INTEGER NOT NULL DEFAULT 0,
    cost                        REAL NOT NULL DEFAULT 0,   -- USD at the time it was recorded
    request_id                  TEXT,
    message_id                  TEXT,
    at                          REAL NOT NULL              -- epoch seconds of the response
);
CREATE INDEX usage_events_at ON usage_events(at);

-- Pre-aggregated usage, kept in the same transaction as each event insert. Reports read
-- these, never the events: per hour and profile and model (any zone whose offset is whole
-- hours), per 15 minutes likewise (every real zone's offset is a multiple of 15 minutes),
-- and per agent session its first and last event (sessions and runtime).
CREATE TABLE usage_rollup_hour (
    bucket                      INTEGER NOT NULL,      -- epoch seconds, multiple of 3600
    profile                     TEXT NOT NULL,
    model                       TEXT NOT NULL,
    input_tokens                INTEGER NOT NULL DEFAULT 0,
    output_tokens               INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_input_tokens     INTEGER NOT NULL DEFAULT 0,
    events                      INTEGER NOT NULL DEFAULT 0,
    last_at                     REAL NOT NULL,
    PRIMARY KEY (bucket, profile, model)
) WITHOUT ROWID;

CREATE TABLE usage_rollup_quarter (
    bucket                      INTEGER NOT NULL,      -- epoch seconds, multiple of 900
    profile                     TEXT NOT NULL,
    model                       TEXT NOT NULL,
    input_tokens                INTEGER NOT NULL DEFAULT 0,
    output_tokens               INTEGER NOT NULL DEFAULT 0,
    cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_input_tokens     INTEGER NOT NULL DEFAULT 0,
    events                      INTEGER NOT NULL DEFAULT 0,
    last_at                     REAL NOT NULL,
    PRIMARY KEY (bucket, profile, model)
) WITHOUT ROWID;

CREATE TABLE usage_sessions (
    profile  TEXT NOT NULL,
    session  TEXT NOT NULL,
    first_at REAL NOT NULL,
    last_at  REAL NOT NULL,
    events   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (profile, session)
) WITHOUT ROWID;
CREATE INDEX usage_sessions_last ON usage_sessions(last_at);

-- The same per model, for reports filtered by model.
CREATE TABLE usage_session_models (
    profile  TEXT NOT NULL,
    session  TEXT NOT NULL,
    model    TEXT NOT NULL,
    first_at REAL NOT NULL,
    last_at  REAL NOT NULL,
    events   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (model, profile, session)
) WITHOUT ROWID;

-- Import progress per transcript file: re-importing an unchanged file is a stat call.
CREATE TABLE usage_import_files (
    path        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,                 -- claude | codex
    size        INTEGER NOT NULL,
    mtime       REAL NOT NULL,
    offset      INTEGER NOT NULL,              -- bytes consumed (whole lines only)
    state       TEXT NOT NULL DEFAULT '{}',    -- JSON carried across resumes (codex running totals)
    imported_at TEXT NOT NULL
);
