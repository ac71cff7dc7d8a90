"""Timestamps as clown writes them: UTC, ISO 8601, second precision, a trailing ``Z``."""

import datetime as _dt
import time


def utc_iso(epoch: float | None = None) -> str:
    """Return ``epoch`` (default: now) as ``2026-01-08T10:30:00Z``."""
    if epoch is None:
        epoch = time.time()
    moment = _dt.datetime.fromtimestamp(epoch, tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """Return the epoch seconds of an ISO 8601 timestamp (``Z`` or an offset; naive is UTC).

    Raises ValueError when ``text`` is not a timestamp.
    """
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = _dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()
