-- The 15-minute buckets in which Claude Code transcripts had usage, written with each import
-- batch: stats-cache.json only fills the days none of them covers. Before this table that set
-- was a scan of every usage event at each import. Seeded from the transcript rows stored so far.
CREATE TABLE usage_transcript_quarters (
    bucket INTEGER PRIMARY KEY      -- epoch seconds, a multiple of 900
) WITHOUT ROWID;
INSERT OR IGNORE INTO usage_transcript_quarters (bucket)
    SELECT DISTINCT CAST(at / 900 AS INTEGER) * 900 FROM usage_events WHERE source = 'claude';
