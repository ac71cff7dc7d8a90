-- Profiles: the key itself is a secret file, never a column.
CREATE TABLE profiles (
    alias         TEXT PRIMARY KEY,
    agent_id      TEXT NOT NULL,
    provider_id   TEXT NOT NULL,
    endpoint_id   TEXT NOT NULL DEFAULT 'default',
    model         TEXT,
    args          TEXT NOT NULL DEFAULT '[]',   -- JSON list of extra argv for the agent
    env           TEXT NOT NULL DEFAULT '{}',   -- JSON object of extra non-secret env
    has_key       INTEGER NOT NULL DEFAULT 0,
    proxy_enabled INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    last_used     TEXT
);

CREATE TABLE terminal_sessions (
    id               TEXT PRIMARY KEY,
    profile_alias    TEXT NOT NULL,
    state            TEXT NOT NULL,              -- starting | running | terminated
    created_at       TEXT NOT NULL,
    pid              INTEGER,                    -- the agent's pid (the PTY's session leader)
    pid_started      REAL,                       -- its create_time, to never signal a reused pid
    worker_pid       INTEGER,
    cols             INTEGER NOT NULL,
    rows             INTEGER NOT NULL,
    argv             TEXT NOT NULL,              -- JSON list
    working_dir      TEXT NOT NULL,
    exit_code        INTEGER,
    exit_signal      INTEGER,
    reason           TEXT,                       -- why it ended when the agent did not exit by itself
    ended_at         TEXT,
    agent_session_id TEXT
);
CREATE INDEX terminal_sessions_state ON terminal_sessions(state);

CREATE TABLE agent_sessions (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    backend             TEXT NOT NULL,
    agent               TEXT NOT NULL,
    profile_alias       TEXT,
    access_mode         TEXT NOT NULL,
    status              TEXT NOT NULL,
    repo_path           TEXT NOT NULL,
    worktree_path       TEXT NOT NULL,
    branch              TEXT NOT NULL,
    prompt              TEXT NOT NULL,
    no_plan_mode        INTEGER NOT NULL DEFAULT 1,
    archived            INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    ended_at            TEXT,
    backend_ref         TEXT,                    -- terminal session id, tmux session name, container id
    agent_conversation  TEXT,                    -- the agent's own session id (claude --session-id)
    transcript_path     TEXT
);

-- Every supervisor PROCESS_STATE transition, written by the events listener.
CREATE TABLE program_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    program    TEXT NOT NULL,
    group_name TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    pid        INTEGER,
    expected   INTEGER,
    at         TEXT NOT NULL
);
CREATE INDEX program_events_program ON program_events(program);

-- Restart counts per program (supervisor keeps none): a start that follows an exit or a
-- backoff, i.e. one supervisor made on its own, not one an operator asked for.
CREATE TABLE program_restarts (
    program      TEXT PRIMARY KEY,
    restarts     INTEGER NOT NULL DEFAULT 0,
    last_restart TEXT
);

CREATE TABLE proxy_runs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    profile    TEXT NOT NULL,
    port       INTEGER NOT NULL,
    pid        INTEGER,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    reason     TEXT
);
CREATE INDEX proxy_runs_profile ON proxy_runs(profile);
