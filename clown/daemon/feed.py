"""Turn what other processes write to the store into ``/ws`` daemon events.

The events listener records supervisor's state changes and the proxy workers record
usage, each in its own process; the front learns of them by reading the new rows every
half second (cheap: an indexed range scan from the last id seen) and publishes them on
the event bus: topic ``workers`` (``state_changed``, ``worker_restarted``) and topic
``usage`` (``usage_updated`` for metered responses).
"""

import logging

import tornado.ioloop

from clown.supervise.events import AUTOMATIC_RESTART_FROM

log = logging.getLogger(__name__)

POLL_MS = 500


class StoreFeed:
    def __init__(self, ctx):
        self.ctx = ctx
        self.last_program_event = self._max_id("program_events")
        self.last_usage_event = self._max_id("usage_events")
        self._timer = tornado.ioloop.PeriodicCallback(self.poll, POLL_MS)

    def _max_id(self, table: str) -> int:
        return self.ctx.store.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]

    async def start(self) -> None:
        self._timer.start()
        self.ctx.on_close(self._timer.stop)

    def poll(self) -> None:
        try:
            self._program_events()
            self._usage_events()
        except Exception:
            log.exception("reading new store rows failed")

    def _program_events(self) -> None:
        rows = self.ctx.store.execute(
            "SELECT e.*, COALESCE(r.restarts, 0) AS restarts FROM program_events e"
            " LEFT JOIN program_restarts r ON r.program = e.program WHERE e.id > ? ORDER BY e.id",
            (self.last_program_event,)).fetchall()
        for row in rows:
            self.last_program_event = row["id"]
            data = {"program": row["program"], "from_state": row["from_state"], "to_state": row["to_state"],
                    "pid": row["pid"], "expected": row["expected"], "at": row["at"]}
            self.ctx.events.publish("workers", "state_changed", data)
            if row["to_state"] == "STARTING" and row["from_state"] in AUTOMATIC_RESTART_FROM:
                self.ctx.events.publish("workers", "worker_restarted",
                                        {"program": row["program"], "restarts": row["restarts"], "at": row["at"]})

    def _usage_events(self) -> None:
        # Each row is looked at once: up to the newest id at this moment, proxy rows only.
        newest = self._max_id("usage_events")
        if newest < self.last_usage_event:
            # The newest rows were deleted (an import dropping stale stats-cache rows): SQLite
            # gives their ids out again, so follow from the id it will use next.
            self.last_usage_event = newest
            return
        if newest == self.last_usage_event:
            return
        rows = self.ctx.store.execute(
            "SELECT id, profile, model, input_tokens, output_tokens, cache_creation_input_tokens,"
            " cache_read_input_tokens, cost FROM usage_events WHERE id > ? AND id <= ? AND source = 'proxy'"
            " ORDER BY id", (self.last_usage_event, newest)).fetchall()
        for row in rows:
            self.ctx.events.publish("usage", "usage_updated", {
                "source": "proxy", "profile": row["profile"], "model": row["model"],
                "tokens": {name: row[name] for name in ("input_tokens", "output_tokens",
                                                        "cache_creation_input_tokens", "cache_read_input_tokens")},
                "cost": row["cost"]})
        self.last_usage_event = newest
