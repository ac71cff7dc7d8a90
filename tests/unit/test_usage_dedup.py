"""What the proxy metered is not counted again by an import of the agent's own records."""

import datetime as dt
import json
import sqlite3

from clown import store
from clown.home import Home
from clown.usage import imports
from clown.usage.store import UsageEvent, commit_to_inbox, record_events

SESSION = "01a2159a-620f-7c50-a535-1614d7a5bb1c"
START = dt.datetime(2026, 1, 10, 8, 0, tzinfo=dt.timezone.utc)


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def proxy_event(key: str, moment: dt.datetime, output: int) -> UsageEvent:
    return UsageEvent(dedup_key=key, source="proxy", at=moment.timestamp(), model="gpt-5", profile="oa",
                      agent="codex", provider="openai", session=SESSION, input_tokens=100, output_tokens=output)


def write_rollout(root, turns: list[tuple[dt.datetime, int]]) -> None:
    directory = root / "sessions" / "2026" / "01" / "10"
    directory.mkdir(parents=True)
    total = {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0, "reasoning_output_tokens": 0,
             "total_tokens": 0}
    lines = [{"timestamp": stamp(START), "type": "session_meta", "payload": {"id": SESSION}},
             {"timestamp": stamp(START), "type": "turn_context", "payload": {"model": "gpt-5"}}]
    for moment, output in turns:
        total["input_tokens"] += 100
        total["output_tokens"] += output
        total["total_tokens"] += 100 + output
        lines.append({"timestamp": stamp(moment), "type": "event_msg",
                      "payload": {"type": "token_count", "info": {"total_token_usage": dict(total)}}})
    (directory / f"rollout-2026-01-10T08-00-00-{SESSION}.jsonl").write_text(
        "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))


def test_codex_turns_in_the_span_the_proxy_metered_are_not_counted_again(tmp_path):
    home = Home(str(tmp_path / "home"))
    home.ensure()
    conn = store.open_store(home.db)
    try:
        # The proxy metered the session's two later turns (one row still in the inbox).
        record_events(conn, [proxy_event("resp_1:x", START + dt.timedelta(minutes=30), 20)])
        commit_to_inbox(conn, proxy_event("resp_2:y", START + dt.timedelta(minutes=31), 30))
    finally:
        conn.close()
    # The rollout has those two turns, and an earlier one taken before the proxy was on.
    write_rollout(tmp_path / "codex", [(START + dt.timedelta(minutes=5), 7),
                                       (START + dt.timedelta(minutes=30, seconds=2), 20),
                                       (START + dt.timedelta(minutes=31, seconds=3), 30)])
    result = imports.run_import(home, "codex", str(tmp_path / "codex"), "UTC")
    assert (result["found"], result["metered_by_proxy"], result["recorded"]) == (3, 2, 1)
    assert imports.describe(result).endswith("; 2 already metered by the proxy)")
    conn = sqlite3.connect(home.db)
    try:
        rows = conn.execute("SELECT source, output_tokens FROM usage_events ORDER BY at").fetchall()
    finally:
        conn.close()
    assert rows == [("codex", 7), ("proxy", 20), ("proxy", 30)]
