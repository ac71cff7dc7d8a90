"""The front's feed of store rows to /ws: usage rows of the proxies, each published once."""

import time
import types

from clown import store
from clown.daemon.feed import StoreFeed


class Events:
    def __init__(self):
        self.published = []

    def publish(self, topic, event, data):
        self.published.append((topic, event, data["profile"], data["tokens"]["output_tokens"]))


def insert(conn, key, source="proxy", output=1):
    conn.execute("INSERT INTO usage_events (dedup_key, source, profile, model, output_tokens, at)"
                 " VALUES (?, ?, 'p', 'm', ?, ?)", (key, source, output, time.time()))


def test_usage_rows_are_published_once_even_when_deleted_ids_come_again(tmp_path):
    conn = store.open_store(str(tmp_path / "clown.db"))
    try:
        events = Events()
        feed = StoreFeed(types.SimpleNamespace(store=conn, events=events))
        insert(conn, "a", output=1)
        insert(conn, "stats", source="stats-cache")
        feed.poll()
        feed.poll()
        assert events.published == [("usage", "usage_updated", "p", 1)]
        conn.execute("DELETE FROM usage_events WHERE dedup_key = 'stats'")     # its id is the newest
        feed.poll()
        insert(conn, "b", output=2)       # takes the deleted row's id
        feed.poll()
        assert events.published == [("usage", "usage_updated", "p", 1), ("usage", "usage_updated", "p", 2)]
    finally:
        conn.close()
