"""The Claude importer's fast paths give the same store as the plain ones."""

import os
import sqlite3

import pytest

from clown import store
from clown.home import Home
from clown.usage import imports
from clown.usage.store import FoldedBatch, UsageEvent, record_events, write_folded
from tests.fakes.transcripts import write_claude_corpus

TABLES = ("usage_rollup_hour", "usage_rollup_quarter", "usage_sessions", "usage_session_models")


def snapshot(db: str) -> dict:
    conn = sqlite3.connect(db)
    try:
        found = {table: sorted(conn.execute(f"SELECT * FROM {table}")) for table in TABLES}
        found["events"] = sorted(conn.execute(
            "SELECT dedup_key, model, session, input_tokens, output_tokens, cache_creation_input_tokens,"
            " cache_read_input_tokens, at FROM usage_events"))
        found["files"] = sorted(conn.execute("SELECT path, size, offset FROM usage_import_files"))
        return found
    finally:
        conn.close()


def run(tmp_path, name, claude_dir, monkeypatch, parallel_min):
    monkeypatch.setattr(imports, "PARALLEL_MIN_BYTES", parallel_min)
    home = Home(str(tmp_path / name))
    home.ensure()
    progress = []
    result = imports.run_import(home, "claude", str(claude_dir), "UTC", lambda **values: progress.append(values))
    return home, result, progress


def test_parallel_parsers_store_exactly_what_one_process_stores(tmp_path, monkeypatch):
    claude_dir = tmp_path / "claude"
    write_claude_corpus(str(claude_dir), sessions=24, entries=30, days=3)
    # A response copied into another session's file (a resumed session): dedup must hold across
    # files, whichever parser reads them.
    files = sorted((claude_dir / "projects").rglob("*.jsonl"))
    with open(files[0], "rb") as source, open(files[-1], "ab") as target:
        target.write(b"".join(line for line in source.read().splitlines(keepends=True) if b'"usage":{' in line))
    one, one_result, _ = run(tmp_path, "one", claude_dir, monkeypatch, 1 << 40)
    two, two_result, progress = run(tmp_path, "two", claude_dir, monkeypatch, 0)
    assert os.cpu_count() == 1 or two_result["files_read"] == len(files)
    for name in ("found", "malformed", "files_read", "bytes"):
        assert one_result[name] == two_result[name], name
    assert snapshot(one.db) == snapshot(two.db)
    assert progress[-1]["done_bytes"] == progress[-1]["total_bytes"] == two_result["bytes"]
    # and the re-import reads nothing
    _, again, _ = run(tmp_path, "two", claude_dir, monkeypatch, 0)
    assert again["files_read"] == 0 and again["found"] == 0 and again["files_skipped"] == len(files)


def test_lines_without_usage_count_as_malformed_only_when_not_an_object(tmp_path, monkeypatch):
    claude_dir = tmp_path / "claude"
    project = claude_dir / "projects" / "p"
    project.mkdir(parents=True)
    (project / "s.jsonl").write_bytes(
        b'{"type":"user","message":{"content":"hi"}}\n'
        b'not json\n'
        b'  {"type":"summary"}  \n'
        b'{"type":"assistant","message":{"usage":{"input_tokens":1\n'
        b'{"timestamp":"2026-01-10T08:00:01.500Z","sessionId":"s","requestId":"r","message":{"id":"msg_1",'
        b'"model":"claude-sonnet-4-5","usage":{"input_tokens":3,"output_tokens":4}}}\n')
    _, result, _ = run(tmp_path, "home", claude_dir, monkeypatch, 1 << 40)
    assert result["malformed"] == 2 and result["found"] == 1


def test_fast_timestamps_equal_fromisoformat():
    importer = imports.ClaudeImporter(None, None, {})
    for text in ("2026-01-10T08:00:01.500Z", "2024-02-29T23:59:59.999Z", "1999-12-31T00:00:00.000Z"):
        assert importer._at(text) == imports._timestamp(text)
    for text in ("2026-02-30T08:00:00.000Z", "2026-01-10T08:00:61.000Z", "2026-01-10T08:00:0x.000Z", "nope"):
        assert importer._at(text) is None


@pytest.fixture
def conn(tmp_path):
    connection = store.open_store(str(tmp_path / "clown.db"))
    yield connection
    connection.close()


def test_a_folded_batch_with_stored_keys_counts_only_what_grew(conn):
    def event(key, at, output, session="s1", profile="work"):
        return UsageEvent(dedup_key=key, source="claude", at=at, model="m", profile=profile, session=session,
                          input_tokens=1, output_tokens=output)

    record_events(conn, [event("a", 1000.0, 10), event("b", 1000.0, 10)])
    folded = FoldedBatch()
    for item in (event("a", 9000.0, 5),                        # stored, smaller: ignored entirely
                 event("b", 2000.0, 20, session="", profile=""),   # stored, bigger: replaces, keeps labels
                 event("c", 1500.0, 1), event("c", 1500.0, 3)):  # new, folded in the batch
        folded.add(item)
    with store.transaction(conn):
        assert write_folded(conn, folded, folded.rollup()) == 3
    sessions = conn.execute("SELECT first_at, last_at, events FROM usage_sessions").fetchall()
    assert [tuple(row) for row in sessions] == [(1000.0, 2000.0, 3)]   # "a" at 9000 stretched nothing
    totals = conn.execute("SELECT SUM(output_tokens), SUM(events) FROM usage_rollup_hour").fetchone()
    assert tuple(totals) == (10 + 20 + 3, 3)
    row = conn.execute("SELECT profile, session, output_tokens FROM usage_events WHERE dedup_key = 'b'").fetchone()
    assert tuple(row) == ("work", "s1", 20)


def _transcript_line(timestamp: str, message_id: str, output: int) -> str:
    import json
    return json.dumps({"timestamp": timestamp, "sessionId": "s", "requestId": "req_" + message_id,
                       "type": "assistant", "message": {"id": message_id, "model": "claude-sonnet-4-5",
                                                        "usage": {"input_tokens": 1, "output_tokens": output}}},
                      separators=(",", ":"))


def _stats_cache(claude_dir, days: dict) -> None:
    import json
    with open(claude_dir / "stats-cache.json", "w") as handle:
        json.dump({"version": 2, "dailyModelTokens": [{"date": day, "tokensByModel": {"claude-sonnet-4-5": total}}
                                                      for day, total in days.items()],
                   "modelUsage": {"claude-sonnet-4-5": {"inputTokens": 0, "outputTokens": 1}}}, handle)


def _day_totals(db: str) -> dict:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT dedup_key, output_tokens FROM usage_events WHERE source = 'stats-cache'"))
    finally:
        conn.close()


def _home_with_transcript(tmp_path, timestamp: str) -> Home:
    """A fresh home, and under tmp_path/claude one transcript with one response at ``timestamp``."""
    home = Home(str(tmp_path / "home"))
    home.ensure()
    project = tmp_path / "claude" / "projects" / "p"
    project.mkdir(parents=True)
    (project / "s.jsonl").write_text(_transcript_line(timestamp, "msg_a", 5) + "\n")
    return home


def test_stats_cache_days_covered_by_an_earlier_import_stay_unfilled(tmp_path):
    # The transcript is imported first, stats-cache.json appears later: the day the transcript
    # covered is still known (usage_covered_quarters), the others are filled.
    home = _home_with_transcript(tmp_path, "2026-01-10T10:00:00.000Z")
    assert imports.run_import(home, "claude", str(tmp_path / "claude"), "UTC")["found"] == 1
    _stats_cache(tmp_path / "claude", {"2026-01-10": 999, "2026-01-11": 40})
    result = imports.run_import(home, "claude", str(tmp_path / "claude"), "UTC")
    assert result["files_read"] == 0
    assert _day_totals(home.db) == {"stats::2026-01-11:claude-sonnet-4-5": 40}


def test_transcript_coverage_is_exact_to_the_quarter_hour_in_half_hour_zones(tmp_path):
    # 18:10 UTC is 23:40 on the 10th in Kolkata (+05:30); the same UTC hour's 18:30 is the 11th.
    # Only the 10th is covered.
    home = _home_with_transcript(tmp_path, "2026-01-10T18:10:00.000Z")
    _stats_cache(tmp_path / "claude", {"2026-01-10": 999, "2026-01-11": 40})
    assert imports.run_import(home, "claude", str(tmp_path / "claude"), "Asia/Kolkata")["found"] == 1
    assert _day_totals(home.db) == {"stats::2026-01-11:claude-sonnet-4-5": 40}


def test_stats_cache_days_the_proxy_metered_stay_unfilled_and_profiles_keep_their_own_days(tmp_path):
    # Profile "team" ran Claude Code through its proxy on the 10th (its transcripts are gone since):
    # its stats-cache.json fills only the 11th. Another Claude dir's stats for the same day and
    # model count too (their keys carry the profile).
    from clown.usage.store import UsageEvent, commit_to_inbox
    home = Home(str(tmp_path / "home"))
    home.ensure()
    conn = store.open_store(home.db)
    try:
        commit_to_inbox(conn, UsageEvent(dedup_key="msg_p:req_p", source="proxy", at=1768039200.0,  # 10th 10:00Z
                                         model="claude-sonnet-4-5", profile="team", agent="claude",
                                         output_tokens=3))
    finally:
        conn.close()
    team_dir = tmp_path / "home" / "profiles" / "team" / ".claude"
    (team_dir / "projects").mkdir(parents=True)
    _stats_cache(team_dir, {"2026-01-10": 999, "2026-01-11": 40})
    imports.run_import(home, "claude", str(team_dir), "UTC")
    other_dir = tmp_path / "other"
    (other_dir / "projects").mkdir(parents=True)
    _stats_cache(other_dir, {"2026-01-11": 5})
    imports.run_import(home, "claude", str(other_dir), "UTC")
    assert _day_totals(home.db) == {"stats:team:2026-01-11:claude-sonnet-4-5": 40,
                                    "stats::2026-01-11:claude-sonnet-4-5": 5}


def test_migration_6_seeds_covered_quarters_and_keys_stats_rows_per_profile(tmp_path):
    db = str(tmp_path / "clown.db")
    conn = store.connect(db)
    try:
        for number, _name, sql in store.migrations()[:5]:
            for statement in store._statements(sql):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 5")
        conn.executemany(
            "INSERT INTO usage_events (dedup_key, source, profile, agent, model, output_tokens, at, key_hash)"
            " VALUES (?, ?, ?, ?, 'm', 1, ?, ?)",
            [("a:b", "claude", "", "claude", 1000.0, 1), ("c:d", "proxy", "team", "claude", 5000.0, 2),
             ("e:f", "proxy", "cx", "codex", 9000.0, 3), ("stats:2026-01-11:m", "stats-cache", "team", "claude",
                                                         7000.0, 4)])
        assert store.migrate(conn) >= 6
        assert sorted(map(tuple, conn.execute("SELECT profile, bucket FROM usage_covered_quarters"))) == \
            [("", 900), ("team", 4500)]
        assert tuple(conn.execute("SELECT dedup_key, key_hash FROM usage_events WHERE source = 'stats-cache'")
                     .fetchone()) == ("stats:team:2026-01-11:m", None)
    finally:
        conn.close()
