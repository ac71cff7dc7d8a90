"""Report periods: the ``period`` names ``/api/usage`` takes, their labels and time ranges.

Every range is computed in the ``[usage] timezone`` (default: the machine's zone) and is
half-open ``[start, end)`` in epoch seconds; ``all`` has no bounds. Days start at local
midnight, weeks on Monday; ``7d`` and ``30d`` are rolling and include today.
"""

import datetime as dt
import os
import time
import zoneinfo

PERIODS = {
    "today": "Today",
    "yesterday": "Yesterday",
    "week": "This week",
    "month": "This month",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "all": "All time",
}
DEFAULT_PERIOD = "week"


def local_zone() -> dt.tzinfo:
    """The machine's time zone: ``$TZ``, else ``/etc/localtime``'s zone, else its fixed offset."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "/zoneinfo/"
        if marker in target:
            return zoneinfo.ZoneInfo(target.split(marker, 1)[1])
    except (OSError, zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    return dt.datetime.now().astimezone().tzinfo


def zone(name: str | None) -> dt.tzinfo:
    """``[usage] timezone`` as a tzinfo (the config loader already checked the name)."""
    return zoneinfo.ZoneInfo(name) if name else local_zone()


def _midnight(day: dt.date, tz: dt.tzinfo) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def period_range(period: str, tz: dt.tzinfo, now: float | None = None) -> tuple[float | None, float | None]:
    """``(start, end)`` epoch seconds of ``period`` around ``now``; ``(None, None)`` for all.

    Raises KeyError for an unknown period name.
    """
    if period not in PERIODS:
        raise KeyError(period)
    if period == "all":
        return None, None
    today = dt.datetime.fromtimestamp(time.time() if now is None else now, tz).date()
    tomorrow = today + dt.timedelta(days=1)
    if period == "today":
        first, after = today, tomorrow
    elif period == "yesterday":
        first, after = today - dt.timedelta(days=1), today
    elif period == "week":
        first = today - dt.timedelta(days=today.weekday())
        after = first + dt.timedelta(days=7)
    elif period == "month":
        first = today.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    elif period == "7d":
        first, after = today - dt.timedelta(days=6), tomorrow
    else:  # 30d
        first, after = today - dt.timedelta(days=29), tomorrow
    return _midnight(first, tz), _midnight(after, tz)


def day_of(epoch: float, tz: dt.tzinfo) -> str:
    """``YYYY-MM-DD`` of ``epoch`` in ``tz``."""
    return dt.datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d")


def days_between(start: float, end: float, tz: dt.tzinfo) -> list[str]:
    """Every local date from ``start`` up to (not including) ``end``."""
    first = dt.datetime.fromtimestamp(start, tz).date()
    last = dt.datetime.fromtimestamp(end - 1, tz).date()
    days = []
    while first <= last:
        days.append(first.isoformat())
        first += dt.timedelta(days=1)
    return days
