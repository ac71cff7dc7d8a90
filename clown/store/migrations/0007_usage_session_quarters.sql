-- The 15-minute buckets in which each agent session had usage, per model: a report counts a
-- session when it had usage in the period (DESIGN), not merely when its first-to-last span
-- overlaps it. Kept with the other rollups, in the same transactions.
CREATE TABLE usage_session_quarters (
    profile TEXT NOT NULL,
    session TEXT NOT NULL,
    bucket  INTEGER NOT NULL,       -- epoch seconds, a multiple of 900
    model   TEXT NOT NULL,
    events  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (profile, session, bucket, model)
) WITHOUT ROWID;
INSERT INTO usage_session_quarters (profile, session, bucket, model, events)
    SELECT profile, session, CAST(at / 900 AS INTEGER) * 900, model, COUNT(*) FROM usage_events
    WHERE session != '' GROUP BY 1, 2, 3, 4;
