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


def make_home(tmp_path) -> Home:
    home = Home(str(tmp_path / "home"))
    home.ensure()
    store.open_store(home.db).close()
    return home


def rows(home: Home) -> int:
    conn = sqlite3.connect(home.db)
    try:
        return conn.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0]
    finally:
        conn.close()


def test_commit_is_done_inline_when_the_store_is_free(tmp_path):
    home = make_home(tmp_path)
    meterer = Meterer(home, {}, 1)

    async def main():
        return meterer.commit(event("inline:r"))

    try:
        assert asyncio.run(main()) is None
        assert rows(home) == 1      # committed when commit() returned
    finally:
        meterer.close()


def test_commit_goes_to_the_writer_thread_while_another_writer_holds_the_store(tmp_path):
    home = make_home(tmp_path)
    meterer = Meterer(home, {}, 1)
    blocker = sqlite3.connect(home.db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    async def main():
        future = meterer.commit(event("later:r"))
        assert future is not None
        await asyncio.sleep(0.3)
        assert not future.done()        # waiting for the lock on the writer thread, the loop free
        blocker.execute("COMMIT")
        await asyncio.wait_for(future, 10)

    try:
        asyncio.run(main())
        assert rows(home) == 1
    finally:
        blocker.close()
        meterer.close()
