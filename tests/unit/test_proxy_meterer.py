"""The proxy's usage writer: group commit, and a future per response that resolves once committed."""

import asyncio
import sqlite3

from clown import store
from clown.home import Home
from clown.usage.store import UsageEvent
from clown.workers.proxy import Meterer


def event(key: str, output: int = 10) -> UsageEvent:
    return UsageEvent(dedup_key=key, source="proxy", at=1768000000.0, model="claude-sonnet-4-5", profile="work",
                      session="s1", input_tokens=1, output_tokens=output)


def test_rows_queued_together_are_committed_before_their_futures_resolve(tmp_path):
    home = Home(str(tmp_path / "home"))
    home.ensure()
    store.open_store(home.db).close()
    meterer = Meterer(home, {}, 1)

    async def main():
        futures = [meterer.submit(event(f"m{index}:r", output=index + 1)) for index in range(50)]
        futures.append(meterer.submit(event("m0:r", output=999)))     # the same key again, bigger: replaces
        for future in futures:
            await future
            # resolved: its row is committed (visible to another connection)
        conn = sqlite3.connect(home.db)
        try:
            return conn.execute("SELECT COUNT(*), SUM(output_tokens) FROM usage_events").fetchone(), \
                conn.execute("SELECT SUM(events), SUM(output_tokens) FROM usage_rollup_hour").fetchone()
        finally:
            conn.close()

    try:
        events, rollup = asyncio.run(main())
    finally:
        meterer.close()
    expected = sum(range(2, 51)) + 999
    assert events == (50, expected) and rollup == (50, expected)


def test_a_failed_commit_fails_every_future_of_its_batch(tmp_path):
    home = Home(str(tmp_path / "home"))
    home.ensure()       # no schema: the insert fails
    meterer = Meterer(home, {}, 1)

    async def main():
        results = await asyncio.gather(meterer.submit(event("a:r")), meterer.submit(event("b:r")),
                                       return_exceptions=True)
        return results

    try:
        results = asyncio.run(main())
    finally:
        meterer.close()
    assert all(isinstance(result, sqlite3.Error) for result in results)
