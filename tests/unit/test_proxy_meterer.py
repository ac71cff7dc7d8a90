"""The proxy's usage writer: the inline commit to the inbox, the drains, and the writer thread's group commit."""

import asyncio
import sqlite3
import time

from clown import store
from clown.home import Home
from clown.usage.store import UsageEvent, commit_to_inbox
from clown.workers import proxy as proxy_worker
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


def rows(home: Home, table: str = "usage_events") -> int:
    conn = sqlite3.connect(home.db)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def committed(home: Home) -> int:
    return rows(home) + rows(home, "usage_inbox")


def test_commit_is_done_inline_when_the_store_is_free_and_folded_in_by_the_writer_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(proxy_worker, "DRAIN_DELAY_SECS", 0.2)
    home = make_home(tmp_path)
    meterer = Meterer(home, {}, 1)

    async def main():
        first = meterer.commit(event("inline:r"))
        committed_at_once = rows(home, "usage_inbox")       # committed when commit() returned
        await asyncio.sleep(0.05)
        second = meterer.commit(event("inline2:r"))
        return first, second, committed_at_once

    try:
        first, second, committed_at_once = asyncio.run(main())
        assert first is None and second is None and committed_at_once == 1
        deadline = time.monotonic() + 5
        while rows(home, "usage_inbox") and time.monotonic() < deadline:
            time.sleep(0.02)
        # both drained together, into the events and their rollups
        assert (rows(home), rows(home, "usage_inbox")) == (2, 0)
        conn = sqlite3.connect(home.db)
        try:
            assert conn.execute("SELECT SUM(events) FROM usage_rollup_hour").fetchone()[0] == 2
        finally:
            conn.close()
    finally:
        meterer.close()


def test_a_new_meterer_folds_in_what_a_killed_one_left_and_close_folds_in_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(proxy_worker, "DRAIN_DELAY_SECS", 3600)     # only the start and the stop drain
    home = make_home(tmp_path)
    conn = store.connect(home.db)
    try:
        commit_to_inbox(conn, event("left:r"))        # a worker killed before it drained
    finally:
        conn.close()
    monkeypatch.setattr(proxy_worker, "DRAIN_DELAY_SECS", 0.0)
    meterer = Meterer(home, {}, 1)
    deadline = time.monotonic() + 5
    while rows(home, "usage_inbox") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (rows(home), rows(home, "usage_inbox")) == (1, 0)
    monkeypatch.setattr(proxy_worker, "DRAIN_DELAY_SECS", 3600)

    async def main():
        return meterer.commit(event("late:r"))

    assert asyncio.run(main()) is None
    time.sleep(0.1)
    assert (rows(home), rows(home, "usage_inbox")) == (1, 1)
    meterer.close()
    assert (rows(home), rows(home, "usage_inbox")) == (2, 0)


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


def test_rows_the_writer_thread_could_not_commit_are_committed_once_the_store_frees(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(proxy_worker, "RETRY_SECS", 0.1)
    home = make_home(tmp_path)
    meterer = Meterer(home, {}, 1)
    blocker = sqlite3.connect(home.db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    async def main():
        future = meterer.submit(event("held:r"))
        try:
            await asyncio.wait_for(future, 10)
        except sqlite3.OperationalError as exc:
            return str(exc)
        return None

    try:
        assert asyncio.run(main()) == "database is locked"     # the response went out meanwhile
        assert committed(home) == 0
        blocker.execute("COMMIT")
        deadline = time.monotonic() + 5
        while committed(home) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rows(home) == 1
    finally:
        blocker.close()
        meterer.close()
