import datetime as dt
import zoneinfo

import pytest

from clown import store
from clown.catalog.pricing import Price
from clown.usage import periods
from clown.usage.report import build_report
from clown.usage.store import UsageEvent, record_events

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
