-- The 15-minute buckets in which a profile's Claude Code usage is known response by response
-- (from its transcripts, or metered by its proxy): stats-cache.json only fills the days none of
-- them covers. Before this table that set was a scan of every usage event at each import, and
-- did not look at what the proxy metered. Seeded from the rows stored so far.
CREATE TABLE usage_covered_quarters (
    profile TEXT NOT NULL,
    bucket  INTEGER NOT NULL,       -- epoch seconds, a multiple of 900
    PRIMARY KEY (profile, bucket)
) WITHOUT ROWID;
INSERT OR IGNORE INTO usage_covered_quarters (profile, bucket)
    SELECT DISTINCT profile, CAST(at / 900 AS INTEGER) * 900 FROM usage_events
    WHERE source = 'claude' OR (source = 'proxy' AND agent = 'claude');
-- stats-cache rows are keyed per profile from now on (two Claude dirs no longer overwrite each
-- other's days): stats:<date>:<model> becomes stats:<profile>:<date>:<model>, to be hashed again.
UPDATE usage_events SET dedup_key = 'stats:' || profile || ':' || substr(dedup_key, 7), key_hash = NULL
    WHERE source = 'stats-cache' AND dedup_key LIKE 'stats:%';
