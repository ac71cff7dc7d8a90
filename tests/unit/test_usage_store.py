import datetime as dt
import zoneinfo

import pytest

from clown import store
from clown.catalog.pricing import Price
from clown.usage import periods
from clown.usage.report import build_report
from clown.usage import store as usage_store
from clown.usage.store import UsageEvent, delete_keys, record_events

UTC = zoneinfo.ZoneInfo("UTC")
TABLE = {"claude-sonnet-4-5": Price(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30)}
NOW = dt.datetime(2026, 1, 21, 15, 0, tzinfo=UTC).timestamp()     # a Wednesday


@pytest.fixture
def conn(tmp_path):
    connection = store.open_store(str(tmp_path / "clown.db"))
    yield connection
    connection.close()


def event(key, at, **kw):
    values = dict(source="proxy", model="claude-sonnet-4-5", profile="work", session="s1", input_tokens=100,
                  output_tokens=10)
    values.update(kw)
    return UsageEvent(dedup_key=key, at=at, **values)


def test_the_same_key_counts_once(conn):
    assert record_events(conn, [event("m1:r1", NOW)]) == 1
    assert record_events(conn, [event("m1:r1", NOW)]) == 0
    report = build_report(conn, "today", UTC, TABLE, now=NOW)
    assert report["total_tokens"]["input_tokens"] == 100


def test_a_copy_with_more_tokens_replaces_and_keeps_the_profile(conn):
    record_events(conn, [event("m1:r1", NOW, output_tokens=1)])
    record_events(conn, [event("m1:r1", NOW, output_tokens=30, profile="", source="claude")])
    report = build_report(conn, "today", UTC, TABLE, now=NOW)
    assert report["total_tokens"]["output_tokens"] == 30
    assert list(report["aggregates"]["by_profile"]) == ["work"]


def test_costs_include_cache_pricing_and_unpriced_models_cost_nothing(conn):
    record_events(conn, [event("a", NOW, input_tokens=1_000_000, output_tokens=1_000_000,
                               cache_creation_input_tokens=1_000_000, cache_read_input_tokens=1_000_000),
                         event("b", NOW, model="mystery-model", input_tokens=5)])
    report = build_report(conn, "today", UTC, TABLE, now=NOW)
    assert report["total_cost"] == {"input_cost": 3.0, "output_cost": 15.0, "cache_creation_cost": 3.75,
                                    "cache_read_cost": 0.3, "total_cost": 22.05}
    assert report["unpriced_models"] == ["mystery-model"]
    assert report["aggregates"]["by_model"]["mystery-model"]["tokens"]["input_tokens"] == 5


@pytest.mark.parametrize("period,label,days", [
    ("today", "Today", 1), ("yesterday", "Yesterday", 1), ("week", "This week", 7), ("month", "This month", 31),
    ("7d", "Last 7 days", 7), ("30d", "Last 30 days", 30)])
def test_period_labels_and_days(conn, period, label, days):
    report = build_report(conn, period, UTC, TABLE, now=NOW)
    assert report["period"] == label
    assert len(report["aggregates"]["by_day"]) == days


def test_week_starts_on_monday_and_rolling_periods_include_today():
    start, end = periods.period_range("week", UTC, NOW)
    assert dt.datetime.fromtimestamp(start, UTC).date() == dt.date(2026, 1, 19)
    start, end = periods.period_range("7d", UTC, NOW)
    assert dt.datetime.fromtimestamp(start, UTC).date() == dt.date(2026, 1, 15)
    assert dt.datetime.fromtimestamp(end, UTC).date() == dt.date(2026, 1, 22)


def test_days_follow_the_configured_zone(conn):
    late = dt.datetime(2026, 1, 21, 23, 30, tzinfo=UTC).timestamp()
    record_events(conn, [event("a", late)])
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    report = build_report(conn, "all", tokyo, TABLE, now=NOW)
    assert list(report["aggregates"]["by_day"]) == ["2026-01-22"]


def test_sessions_and_runtime_are_clipped_to_the_period(conn):
    yesterday_late = dt.datetime(2026, 1, 20, 23, 0, tzinfo=UTC).timestamp()
    today_early = dt.datetime(2026, 1, 21, 0, 30, tzinfo=UTC).timestamp()
    record_events(conn, [event("a", yesterday_late), event("b", today_early),
                         event("c", today_early + 600), event("d", today_early, session="s2", profile="other")])
    report = build_report(conn, "today", UTC, TABLE, now=NOW)
    assert report["total_sessions"] == 2
    assert report["total_runtime_secs"] == 2400     # 00:00 (clipped) to 00:40
    assert report["aggregates"]["by_profile"]["work"]["sessions"] == 1
    assert report["aggregates"]["by_profile"]["work"]["last_used"] == "2026-01-21T00:40:00Z"


def test_filters_by_profile_and_model(conn):
    record_events(conn, [event("a", NOW), event("b", NOW, profile="other", model="x")])
    assert build_report(conn, "all", UTC, TABLE, profile="other", now=NOW)["total_tokens"]["input_tokens"] == 100
    assert list(build_report(conn, "all", UTC, TABLE, model="x", now=NOW)["aggregates"]["by_model"]) == ["x"]


def test_a_model_filter_counts_only_sessions_that_used_it(conn):
    record_events(conn, [event("a", NOW, session="s1"), event("b", NOW + 60, session="s1", model="x"),
                         event("c", NOW, session="s2")])
    assert build_report(conn, "today", UTC, TABLE, model="x", now=NOW)["total_sessions"] == 1
    assert build_report(conn, "today", UTC, TABLE, now=NOW)["total_sessions"] == 2
    assert build_report(conn, "today", UTC, TABLE, now=NOW)["total_runtime_secs"] == 60


@pytest.mark.parametrize("zone_name", ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_days_are_local_dates_across_dst_changes_and_half_hour_zones(conn, zone_name):
    tz = zoneinfo.ZoneInfo(zone_name)
    local_times = [dt.datetime(2026, month, day, hour, minute, tzinfo=tz) for month, day in
                   ((3, 7), (3, 8), (3, 28), (3, 29), (3, 30), (4, 4), (4, 5), (10, 25), (11, 1))
                   for hour, minute in ((0, 15), (12, 0), (23, 45))]
    record_events(conn, [event(f"k{i}", moment.timestamp(), output_tokens=1) for i, moment in enumerate(local_times)])
    report = build_report(conn, "all", tz, TABLE, now=NOW)
    expected = {}
    for moment in local_times:
        expected[moment.date().isoformat()] = expected.get(moment.date().isoformat(), 0) + 1
    assert {day: entry["tokens"]["output_tokens"] for day, entry in report["aggregates"]["by_day"].items()} == expected


def totals(conn) -> tuple:
    return tuple(conn.execute("SELECT SUM(output_tokens), SUM(events) FROM usage_rollup_hour").fetchone())


@pytest.fixture
def colliding(monkeypatch):
    """Every key hashes alike: the store must still tell keys apart by their text."""
    monkeypatch.setattr(usage_store, "key_hash", lambda key: 42)


def test_keys_sharing_a_hash_are_different_keys(conn, colliding):
    assert record_events(conn, [event("a", NOW), event("b", NOW)]) == 2
    assert record_events(conn, [event("c", NOW)]) == 1
    assert record_events(conn, [event("a", NOW), event("b", NOW)]) == 0
    assert record_events(conn, [event("c", NOW)]) == 0
    assert record_events(conn, [event("b", NOW, output_tokens=50)]) == 1      # more tokens: replaces
    assert totals(conn) == (10 + 50 + 10, 3)
    rows = conn.execute("SELECT dedup_key, key_hash, output_tokens FROM usage_events ORDER BY dedup_key").fetchall()
    assert [tuple(row) for row in rows] == [("a", 42, 10), ("b", None, 50), ("c", None, 10)]
    with store.transaction(conn):
        assert delete_keys(conn, ["a", "c"]) == 2
    assert totals(conn) == (50, 1)


def test_rows_from_before_the_hash_count_once_then_get_their_hash(tmp_path):
    path = str(tmp_path / "old.db")
    old = store.connect(path)
    with store.transaction(old):
        for _number, _name, sql in store.migrations()[:3]:
            for statement in store._statements(sql):
                old.execute(statement)
        old.execute("PRAGMA user_version = 3")
        old.execute("INSERT INTO usage_events (dedup_key, source, profile, model, session, input_tokens, output_tokens, at)"
                    " VALUES ('m1:r1', 'proxy', 'work', 'claude-sonnet-4-5', 's1', 100, 10, ?)",
                    (NOW,))
        old.execute("INSERT INTO usage_rollup_hour (bucket, profile, model, input_tokens, output_tokens, events, last_at)"
                    " VALUES (?, 'work', 'claude-sonnet-4-5', 100, 10, 1, ?)", (int(NOW // 3600) * 3600, NOW))
    old.close()
    conn = store.open_store(path)
    try:
        assert conn.execute("SELECT dedup_key, key_hash FROM usage_events").fetchall()[0][1] is None
        assert record_events(conn, [event("m1:r1", NOW)]) == 0
        assert record_events(conn, [event("m1:r1", NOW), event("m2:r2", NOW)]) == 1
        assert totals(conn) == (20, 2)
        assert usage_store.hash_unhashed_keys(conn) == 1
        assert conn.execute("SELECT key_hash FROM usage_events WHERE dedup_key = 'm1:r1'").fetchone()[0] \
            == usage_store.key_hash("m1:r1")
        assert record_events(conn, [event("m1:r1", NOW, output_tokens=15)]) == 1
        assert totals(conn) == (25, 2)
    finally:
        conn.close()


def test_key_hashes_are_stable_signed_64_bit_integers():
    assert usage_store.key_hash("msg_01:req_01") == usage_store.key_hash("msg_01:req_01")
    assert usage_store.key_hash("msg_01:req_01") != usage_store.key_hash("msg_01:req_02")
    assert all(-(1 << 63) <= usage_store.key_hash(f"k{n}") < (1 << 63) for n in range(1000))


def test_inbox_rows_count_once_they_are_drained_and_only_once(conn):
    usage_store.commit_to_inbox(conn, event("m1:r1", NOW))
    usage_store.commit_to_inbox(conn, event("m2:r2", NOW, output_tokens=5, session="s2"))
    assert conn.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0] == 0
    assert usage_store.drain_inbox(conn) == 2
    assert usage_store.drain_inbox(conn) == 0
    assert conn.execute("SELECT COUNT(*) FROM usage_inbox").fetchone()[0] == 0
    report = build_report(conn, "today", UTC, TABLE, now=NOW)
    assert report["total_tokens"]["output_tokens"] == 15
    assert report["total_sessions"] == 2
    assert tuple(conn.execute("SELECT SUM(events), SUM(output_tokens) FROM usage_rollup_quarter").fetchone()) == (2, 15)


def test_an_inbox_row_folds_in_by_the_rule_of_its_key(conn):
    # The proxy's copy of a key the store has (its transcript imported first): it only replaces
    # a copy with fewer tokens, and then gives it the profile.
    record_events(conn, [event("m1:r1", NOW, output_tokens=3, profile="", source="claude"),
                         event("m2:r2", NOW, output_tokens=50, profile="", source="claude")])
    usage_store.commit_to_inbox(conn, event("m1:r1", NOW, output_tokens=30))
    usage_store.commit_to_inbox(conn, event("m2:r2", NOW, output_tokens=50))
    assert usage_store.drain_inbox(conn) == 2
    rows = conn.execute("SELECT dedup_key, profile, output_tokens FROM usage_events ORDER BY dedup_key").fetchall()
    assert [tuple(row) for row in rows] == [("m1:r1", "work", 30), ("m2:r2", "", 50)]
    assert tuple(conn.execute("SELECT SUM(events), SUM(output_tokens) FROM usage_rollup_hour").fetchone()) == (2, 80)


def test_an_import_drains_the_inbox_before_its_copy_of_a_metered_response(tmp_path):
    # Metered by the proxy (still in the inbox), then imported from the transcript with the same
    # key and tokens: counted once, under the proxy's profile.
    from clown.home import Home
    from clown.usage import imports
    import json
    home = Home(str(tmp_path / "home"))
    home.ensure()
    connection = store.open_store(home.db)
    try:
        usage_store.commit_to_inbox(connection, event("msg_1:req_1", NOW, input_tokens=7, output_tokens=9,
                                                      session="sess"))
    finally:
        connection.close()
    project = tmp_path / "claude" / "projects" / "p"
    project.mkdir(parents=True)
    (project / "sess.jsonl").write_text(json.dumps({
        "timestamp": "2026-01-21T15:00:00.000Z", "sessionId": "sess", "requestId": "req_1", "type": "assistant",
        "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 7, "output_tokens": 9}},
    }, separators=(",", ":")) + "\n")     # compact, as Claude Code writes it
    assert imports.run_import(home, "claude", str(tmp_path / "claude"), "UTC")["found"] == 1
    connection = store.open_store(home.db)
    try:
        rows = connection.execute("SELECT source, profile, output_tokens FROM usage_events").fetchall()
        assert [tuple(row) for row in rows] == [("proxy", "work", 9)]
        assert connection.execute("SELECT COUNT(*) FROM usage_inbox").fetchone()[0] == 0
        report = build_report(connection, "today", UTC, TABLE, now=NOW)
        assert report["total_tokens"]["output_tokens"] == 9
        assert list(report["aggregates"]["by_profile"]) == ["work"]
    finally:
        connection.close()


def test_a_session_counts_in_a_period_only_with_usage_in_it(conn):
    # Usage on Monday and on Friday: on Wednesday the session was open but used nothing.
    monday = dt.datetime(2026, 1, 19, 10, 0, tzinfo=UTC).timestamp()
    friday = dt.datetime(2026, 1, 23, 10, 0, tzinfo=UTC).timestamp()
    wednesday_noon = dt.datetime(2026, 1, 21, 12, 0, tzinfo=UTC).timestamp()
    record_events(conn, [event("mon", monday), event("fri", friday)])
    wednesday = build_report(conn, "today", UTC, TABLE, now=wednesday_noon)
    assert (wednesday["total_sessions"], wednesday["total_runtime_secs"]) == (0, 0)
    week = build_report(conn, "week", UTC, TABLE, now=wednesday_noon)
    assert (week["total_sessions"], week["total_runtime_secs"]) == (1, int(friday - monday))
    friday_report = build_report(conn, "today", UTC, TABLE, now=friday + 60)
    assert (friday_report["total_sessions"], friday_report["total_runtime_secs"]) == (1, 10 * 3600)


def test_session_buckets_follow_replacements_and_deletions(conn):
    # A copy with more tokens moves the event to its own time; a deleted event takes its bucket away.
    early = dt.datetime(2026, 1, 21, 1, 0, tzinfo=UTC).timestamp()
    late = dt.datetime(2026, 1, 21, 14, 0, tzinfo=UTC).timestamp()
    record_events(conn, [event("k", early, output_tokens=1), event("gone", early + 3600)])
    record_events(conn, [event("k", late, output_tokens=50)])
    rows = sorted(tuple(row) for row in conn.execute("SELECT bucket, events FROM usage_session_quarters"))
    assert rows == [(int(early + 3600), 1), (int(late), 1)]
    with store.transaction(conn):
        delete_keys(conn, ["gone"])
    rows = sorted(tuple(row) for row in conn.execute("SELECT bucket, events FROM usage_session_quarters"))
    assert rows == [(int(late), 1)]
