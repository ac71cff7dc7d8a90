-- Nothing reads usage_events by time (reports read the rollups, the feed reads by id), and the
-- index cost a quarter of every import's insert time.
DROP INDEX IF EXISTS usage_events_at;
