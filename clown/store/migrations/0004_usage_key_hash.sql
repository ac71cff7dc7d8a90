-- usage_events deduplicated on a 64-bit hash of dedup_key (clown.usage.store.key_hash) instead
-- of the text: an import inserts hundreds of thousands of keys, and the unique text index cost
-- most of each insert. A row whose hash another key holds already (a collision) keeps
-- key_hash NULL and is found through the partial index on dedup_key; rows from before this
-- migration start that way too, and get their hash at the next import.
CREATE TABLE usage_events_hashed (
    id                          INTEGER PRIMARY KEY,
    dedup_key                   TEXT NOT NULL,         -- message id:request id where both exist
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
    at                          REAL NOT NULL,             -- epoch seconds of the response
    key_hash                    INTEGER                    -- NULL: look the row up by dedup_key
);
INSERT INTO usage_events_hashed (id, dedup_key, source, profile, agent, provider, model, session, input_tokens,
                                 output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost,
                                 request_id, message_id, at, key_hash)
    SELECT id, dedup_key, source, profile, agent, provider, model, session, input_tokens, output_tokens,
           cache_creation_input_tokens, cache_read_input_tokens, cost, request_id, message_id, at, NULL
    FROM usage_events;
DROP TABLE usage_events;
ALTER TABLE usage_events_hashed RENAME TO usage_events;
CREATE UNIQUE INDEX usage_events_key_hash ON usage_events(key_hash);
CREATE UNIQUE INDEX usage_events_unhashed_key ON usage_events(dedup_key) WHERE key_hash IS NULL;
