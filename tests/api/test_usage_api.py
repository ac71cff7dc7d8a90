"""GET /api/usage and the imports through a real clownd; ccusage as the reference count."""

import json
import os
import subprocess
import urllib.parse

import pytest

from tests.clownd import REPO
from tests.fakes.transcripts import write_claude_corpus, write_codex_corpus

CCUSAGE = os.path.join(REPO, "tests", "npm", "node_modules", ".bin", "ccusage")
TOKENS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory(toml='[usage]\ntimezone = "UTC"\n')


def import_claude(daemon, directory):
    return daemon.post("/api/usage/import-claude?claude_dir=" + urllib.parse.quote(str(directory)), timeout=120)


def report(daemon, query="period=all"):
    status, reply = daemon.get("/api/usage?" + query)
    assert status == 200, reply
    return reply["data"]


def test_empty_report_has_every_field(daemon):
    data = report(daemon, "period=month")
    assert data["period"] == "This month"
    assert data["total_tokens"] == dict.fromkeys(TOKENS, 0)
    assert set(data["total_cost"]) == {"input_cost", "output_cost", "cache_creation_cost", "cache_read_cost",
                                       "total_cost"}
    assert data["total_sessions"] == 0 and data["total_runtime_secs"] == 0
    assert set(data["aggregates"]) == {"by_profile", "by_model", "by_day"}
    assert data["unpriced_models"] == []


@pytest.mark.parametrize("period,label", [("today", "Today"), ("yesterday", "Yesterday"), ("week", "This week"),
                                          ("month", "This month"), ("7d", "Last 7 days"), ("30d", "Last 30 days"),
                                          ("all", "All time")])
def test_period_labels(daemon, period, label):
    assert report(daemon, f"period={period}")["period"] == label


def test_default_period_is_this_week(daemon):
    assert report(daemon, "")["period"] == "This week"


def test_a_bad_period_is_400_naming_the_field(daemon):
    status, reply = daemon.get("/api/usage?period=fortnight")
    assert status == 400 and reply["success"] is False and "period" in reply["error"]


def test_import_paths_are_checked(daemon, tmp_path):
    for value in ("relative/dir", str(tmp_path / "missing"), "/proc"):
        status, reply = import_claude(daemon, value)
        assert status == 400 and "claude_dir" in reply["error"], (value, reply)
    status, reply = daemon.post("/api/usage/import-codex?codex_dir=relative")
    assert status == 400 and "codex_dir" in reply["error"]


def ccusage_daily(claude_dir, tmp_path):
    fake_home = tmp_path / "ccusage-home"
    fake_home.mkdir(exist_ok=True)
    env = dict(os.environ, TZ="UTC", CLAUDE_CONFIG_DIR=str(claude_dir), HOME=str(fake_home))
    done = subprocess.run([CCUSAGE, "daily", "--json", "--offline"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["daily"]


def test_claude_import_counts_exactly_what_ccusage_counts(daemon, tmp_path):
    # Messages written as two lines carry fewer output tokens on the first: the copy with more
    # tokens counts, in clown as in ccusage 20 (ccusage 17 kept the first copy).
    claude_dir = tmp_path / "claude"
    write_claude_corpus(str(claude_dir), sessions=12, entries=25, days=4, growing_output=True)
    status, reply = import_claude(daemon, claude_dir)
    assert status == 200, reply
    assert reply["data"].startswith("Imported 0 input tokens, 0 output tokens from stats-cache.json. Found ")
    data = report(daemon)
    reference = ccusage_daily(claude_dir, tmp_path)
    ours_by_day = {day: entry["tokens"] for day, entry in data["aggregates"]["by_day"].items()
                   if any(entry["tokens"].values())}
    theirs_by_day = {day["period"]: {"input_tokens": day["inputTokens"], "output_tokens": day["outputTokens"],
                                     "cache_creation_input_tokens": day["cacheCreationTokens"],
                                     "cache_read_input_tokens": day["cacheReadTokens"]} for day in reference}
    assert ours_by_day == theirs_by_day
    theirs_by_model = {}
    for day in reference:
        for model in day["modelBreakdowns"]:
            totals = theirs_by_model.setdefault(model["modelName"], dict.fromkeys(TOKENS, 0))
            totals["input_tokens"] += model["inputTokens"]
            totals["output_tokens"] += model["outputTokens"]
            totals["cache_creation_input_tokens"] += model["cacheCreationTokens"]
            totals["cache_read_input_tokens"] += model["cacheReadTokens"]
    assert {name: entry["tokens"] for name, entry in data["aggregates"]["by_model"].items()} == theirs_by_model


def test_reimport_counts_nothing_twice_and_reports_malformed_lines(daemon, tmp_path):
    claude_dir = tmp_path / "claude"
    write_claude_corpus(str(claude_dir), sessions=30, entries=20)
    assert import_claude(daemon, claude_dir)[0] == 200
    first = report(daemon)
    status, reply = import_claude(daemon, claude_dir)
    assert status == 200
    assert "Found 0 session entries" in reply["data"] and "30 unchanged" in reply["data"]
    assert report(daemon)["total_tokens"] == first["total_tokens"]
    assert first["total_sessions"] == 30


def test_an_appended_transcript_is_read_from_where_the_last_import_stopped(daemon, tmp_path):
    claude_dir = tmp_path / "claude"
    write_claude_corpus(str(claude_dir), sessions=1, entries=5)
    assert import_claude(daemon, claude_dir)[0] == 200
    before = report(daemon)["total_tokens"]["output_tokens"]
    path = next((claude_dir / "projects").rglob("*.jsonl"))
    with open(path, "a") as handle:
        handle.write('{"timestamp":"2026-01-12T10:00:00.000Z","sessionId":"s-extra","requestId":"req_x",'
                     '"type":"assistant","message":{"id":"msg_x","model":"claude-sonnet-4-5","usage":'
                     '{"input_tokens":1,"output_tokens":7}}}\n')
    status, reply = import_claude(daemon, claude_dir)
    assert status == 200 and "Found 1 session entries" in reply["data"]
    assert report(daemon)["total_tokens"]["output_tokens"] == before + 7


def test_stats_cache_only_fills_days_without_transcripts(daemon, tmp_path):
    claude_dir = tmp_path / "claude"
    write_claude_corpus(str(claude_dir), sessions=2, entries=3, days=1)    # 2026-01-10 (and maybe the 11th)
    with open(claude_dir / "stats-cache.json", "w") as handle:
        json.dump({"version": 2, "dailyModelTokens": [
            {"date": "2026-01-10", "tokensByModel": {"claude-sonnet-4-5": 999999}},
            {"date": "2025-12-01", "tokensByModel": {"claude-sonnet-4-5": 1000}}],
            "modelUsage": {"claude-sonnet-4-5": {"inputTokens": 1, "outputTokens": 3}}}, handle)
    status, reply = import_claude(daemon, claude_dir)
    assert status == 200
    assert reply["data"].startswith("Imported 250 input tokens, 750 output tokens from stats-cache.json")
    days = report(daemon)["aggregates"]["by_day"]
    assert days["2025-12-01"]["tokens"]["output_tokens"] == 750
    assert all(entry["tokens"]["output_tokens"] < 999999 for entry in days.values())


def test_codex_import_counts_differences_of_cumulative_totals(daemon, tmp_path):
    codex_dir = tmp_path / "codex"
    expected = write_codex_corpus(str(codex_dir), sessions=3, turns=4)
    status, reply = daemon.post("/api/usage/import-codex?codex_dir=" + urllib.parse.quote(str(codex_dir)),
                                timeout=60)
    assert status == 200, reply
    assert reply["data"].startswith(f"Found {expected['events']} token_count entries")
    tokens = report(daemon)["total_tokens"]
    assert tokens["input_tokens"] == expected["input"] - expected["cached"]
    assert tokens["cache_read_input_tokens"] == expected["cached"]
    assert tokens["output_tokens"] == expected["output"]
    assert report(daemon)["total_sessions"] == 3
    assert daemon.post("/api/usage/import-codex?codex_dir=" + urllib.parse.quote(str(codex_dir)))[0] == 200
    assert report(daemon)["total_tokens"] == tokens


def test_an_import_does_not_recount_what_the_proxy_metered(daemon, tmp_path):
    from tests.api.proxy_helpers import add_provider, create_profile, placeholder, send, start_proxy
    from tests.fakes.upstream import FakeUpstream

    with FakeUpstream() as upstream:
        add_provider(daemon, "fakeanthropic", upstream.url)
        create_profile(daemon, "team", "fakeanthropic")
        port = start_proxy(daemon, "team")["port"]
        status, response, body = send(port, "/v1/messages", {"model": "claude-sonnet-4-5"},
                                      {"x-api-key": placeholder(daemon, "team")})
        assert status == 200
        message, request_id = json.loads(body), response.getheader("request-id")
    project = tmp_path / "claude" / "projects" / "p"
    project.mkdir(parents=True)
    with open(project / "s1.jsonl", "w") as handle:
        handle.write(json.dumps({"timestamp": "2026-01-12T10:00:00.000Z", "sessionId": "s1", "requestId": request_id,
                                 "type": "assistant", "message": {"id": message["id"], "model": message["model"],
                                                                  "usage": message["usage"]}},
                                separators=(",", ":")) + "\n")     # compact, as Claude Code writes it
    before = report(daemon)["total_tokens"]
    status, reply = import_claude(daemon, tmp_path / "claude")
    assert status == 200 and "Found 1 session entries" in reply["data"], reply
    assert report(daemon)["total_tokens"] == before
    assert list(report(daemon)["aggregates"]["by_profile"]) == ["team"]


def test_a_report_folds_in_the_inbox_without_holding_up_the_front(daemon):
    # A proxy's row still in the inbox, and another process holding the store's write lock (as
    # an import batch does): the report waits for the lock on a thread, the front answers
    # meanwhile, and the report then counts the row.
    import sqlite3
    import threading
    import time

    db = os.path.join(daemon.home, "clown.db")
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("INSERT INTO usage_inbox (dedup_key, source, profile, agent, model, session, input_tokens,"
                   " output_tokens, at) VALUES ('msg_1:req_1', 'proxy', 'team', 'claude', 'claude-sonnet-4-5',"
                   " 's1', 11, 22, ?)", (time.time(),))
    writer.execute("BEGIN IMMEDIATE")
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(data=report(daemon, "period=today")))
    try:
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()        # the report waits for the lock ...
        began = time.monotonic()
        assert daemon.get("/health")[0] == 200
        assert time.monotonic() - began < 1.0      # ... and the front does not
    finally:
        writer.execute("COMMIT")
        writer.close()
    thread.join(15)
    assert outcome["data"]["total_tokens"] == {"input_tokens": 11, "output_tokens": 22,
                                               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    assert list(outcome["data"]["aggregates"]["by_profile"]) == ["team"]
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM usage_inbox").fetchone()[0] == 0
    finally:
        conn.close()
