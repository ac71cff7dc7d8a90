"""The ``GET /api/usage`` document, computed from the rollups (never the events).

Costs are computed at report time from the pricing table in force, per model, from the
summed tokens (cost is linear in tokens, so this equals the sum of per-event costs); a
model without a price counts in tokens, costs 0 and is listed in ``unpriced_models``.
Sessions are the distinct non-empty ``session`` values with usage in the period (a
15-minute bucket of ``usage_session_quarters`` inside it; with a model filter, usage of that
model); a session's runtime is its first-to-last usage span clipped to the period.
"""

import datetime as dt
import sqlite3
import time

from clown import clock
from clown.catalog.pricing import Price, price_for
from clown.usage import periods
from clown.usage.store import HOUR_SECS, QUARTER_SECS, ROLLUP_TABLES, TOKEN_FIELDS

COST_FIELDS = ("input_cost", "output_cost", "cache_creation_cost", "cache_read_cost", "total_cost")


def _zero_tokens() -> dict:
    return dict.fromkeys(TOKEN_FIELDS, 0)


def _zero_cost() -> dict:
    return dict.fromkeys(COST_FIELDS, 0.0)


def _add(target: dict, values) -> None:
    for name, value in zip(TOKEN_FIELDS, values):
        target[name] += value or 0


def _add_cost(target: dict, cost: dict) -> None:
    for name in COST_FIELDS:
        target[name] += cost[name]


def _round_cost(cost: dict) -> dict:
    return {name: round(value, 10) for name, value in cost.items()}


class Pricer:
    """Costs by model from one pricing table, remembering which models have no price."""

    def __init__(self, table: dict[str, Price]):
        self.table = table
        self._prices: dict[str, Price | None] = {}
        self.unpriced: set[str] = set()

    def cost(self, model: str, tokens: dict) -> dict:
        if model not in self._prices:
            self._prices[model] = price_for(model, self.table)
        price = self._prices[model]
        if price is None:
            if any(tokens.values()):
                self.unpriced.add(model or "(unknown)")
            return _zero_cost()
        return price.costs(**tokens)


_SUMS = ", ".join(f"SUM({name})" for name in TOKEN_FIELDS)
_EPOCH_DAY = dt.date(1970, 1, 1)


def _offset(tz, moment: float) -> int:
    return int(dt.datetime.fromtimestamp(moment, tz).utcoffset().total_seconds())


def offset_segments(tz, start: int, end: int) -> list[tuple[int, int, int]]:
    """``[start, end)`` cut where ``tz``'s UTC offset changes: ``[(from, to, offset)]``.

    Steps a day at a time and finds each change to the quarter hour (offsets change on
    quarter hours, and buckets are whole quarters).
    """
    segments = []
    segment_start, offset = start, _offset(tz, start)
    probe = start
    while probe < end:
        following = min(probe + 86400, end)
        if following < end and _offset(tz, following) != offset or following == end and \
                _offset(tz, end - 1) != offset:
            low, high = probe, following          # offset(low) == offset, offset(high - 1) differs
            while high - low > QUARTER_SECS:
                middle = low + ((high - low) // 2 // QUARTER_SECS) * QUARTER_SECS or low + QUARTER_SECS
                if _offset(tz, middle) == offset:
                    low = middle
                else:
                    high = middle
            segments.append((segment_start, high, offset))
            segment_start, offset = high, _offset(tz, high)
            probe = high
            continue
        probe = following
    segments.append((segment_start, end, offset))
    return [segment for segment in segments if segment[0] < segment[1]]


def rollup_table(tz, start: float | None, end: float | None, now: float) -> str:
    """The hourly rollup when ``tz``'s offsets around the period are whole hours, else the 15-minute one."""
    moments = [now] + [moment for moment in (start, end) if moment is not None]
    year = dt.datetime.fromtimestamp(now, tz).year
    moments += [dt.datetime(year, 1, 1, tzinfo=tz).timestamp(), dt.datetime(year, 7, 1, tzinfo=tz).timestamp()]
    whole_hours = all(dt.datetime.fromtimestamp(moment, tz).utcoffset().total_seconds() % 3600 == 0
                      for moment in moments)
    return ROLLUP_TABLES[HOUR_SECS] if whole_hours else ROLLUP_TABLES[QUARTER_SECS]


def build_report(conn: sqlite3.Connection, period: str, tz, table: dict[str, Price], profile: str | None = None,
                 model: str | None = None, now: float | None = None) -> dict:
    """The ``data`` of ``GET /api/usage`` for ``period`` (a key of periods.PERIODS)."""
    now = time.time() if now is None else now
    start, end = periods.period_range(period, tz, now)
    filters, filter_params = "", []
    if profile is not None:
        filters += " AND profile = ?"
        filter_params.append(profile)
    if model is not None:
        filters += " AND model = ?"
        filter_params.append(model)
    pricer = Pricer(table)

    # Tokens per (local day, profile, model), summed by SQLite: within a stretch of constant
    # UTC offset the local day number is (bucket + offset) // 86400.
    groups: dict[tuple, list] = {}
    last_used: dict[str, float] = {}
    rollup = rollup_table(tz, start, end, now)
    if start is None:
        low_high = conn.execute(f"SELECT MIN(bucket), MAX(bucket) FROM {rollup}").fetchone()
        span = (low_high[0], low_high[1] + HOUR_SECS) if low_high[0] is not None else None
    else:
        span = (int(start), int(end))
    for segment_start, segment_end, offset in (offset_segments(tz, *span) if span else ()):
        for day_number, name, model_name, t_in, t_out, t_write, t_read, last in conn.execute(
                f"SELECT (bucket + ?) / 86400, profile, model, {_SUMS}, MAX(last_at) FROM {rollup}"
                f" WHERE bucket >= ? AND bucket < ?{filters} GROUP BY 1, 2, 3",
                [offset, segment_start, segment_end, *filter_params]):
            key = (_EPOCH_DAY + dt.timedelta(days=day_number)).isoformat(), name, model_name
            group = groups.get(key)
            if group is None:
                groups[key] = [t_in, t_out, t_write, t_read]
            else:
                group[0] += t_in
                group[1] += t_out
                group[2] += t_write
                group[3] += t_read
            if last > last_used.get(name, 0.0):
                last_used[name] = last

    total_tokens, total_cost = _zero_tokens(), _zero_cost()
    by_profile: dict[str, dict] = {}
    by_model: dict[str, dict] = {}
    by_day: dict[str, dict] = {}
    if start is not None:
        for day in periods.days_between(start, end, tz):
            by_day[day] = {"tokens": _zero_tokens(), "cost": {"total_cost": 0.0}}
    for (day, name, model_name), values in groups.items():
        tokens = dict(zip(TOKEN_FIELDS, values))
        cost = pricer.cost(model_name, tokens)
        _add(total_tokens, values)
        _add_cost(total_cost, cost)
        entry = by_profile.get(name)
        if entry is None:
            entry = by_profile[name] = {"profile": name, "tokens": _zero_tokens(), "cost": _zero_cost(),
                                        "sessions": 0, "runtime_secs": 0, "last_used": last_used.get(name)}
        _add(entry["tokens"], values)
        _add_cost(entry["cost"], cost)
        model_entry = by_model.get(model_name)
        if model_entry is None:
            model_entry = by_model[model_name] = {"model": model_name, "tokens": _zero_tokens(), "cost": _zero_cost()}
        _add(model_entry["tokens"], values)
        _add_cost(model_entry["cost"], cost)
        day_entry = by_day.get(day)
        if day_entry is None:
            day_entry = by_day[day] = {"tokens": _zero_tokens(), "cost": {"total_cost": 0.0}}
        _add(day_entry["tokens"], values)
        day_entry["cost"]["total_cost"] += cost["total_cost"]

    # Sessions: those with usage in the period; runtime: their span clipped to it.
    session_where, session_params = [], []
    low, high = (start, end) if start is not None else (-1e18, 1e18)
    if start is not None:
        session_where.append("last_at >= ? AND first_at < ?")
        session_params += [start, end]
        # A span inside the period had its usage there; only one that crosses a bound needs a look
        # at its buckets.
        used = ("(first_at >= ? AND last_at < ? OR EXISTS (SELECT 1 FROM usage_session_quarters q"
                " WHERE q.profile = s.profile AND q.session = s.session AND q.bucket >= ? AND q.bucket < ?")
        session_params += [start, end, start, end]
        if model is not None:
            used += " AND q.model = s.model"
        session_where.append(used + "))")
    if profile is not None:
        session_where.append("profile = ?")
        session_params.append(profile)
    if model is not None:
        session_where.append("model = ?")
        session_params.append(model)
    session_condition = (" WHERE " + " AND ".join(session_where)) if session_where else ""
    total_sessions = 0
    runtime_total = 0.0
    sessions_table = "usage_session_models" if model is not None else "usage_sessions"
    for name, count, runtime in conn.execute(
            "SELECT profile, COUNT(*), SUM(MAX(0, MIN(last_at, ?) - MAX(first_at, ?)))"
            f" FROM {sessions_table} s{session_condition} GROUP BY profile", [high, low, *session_params]):
        total_sessions += count
        runtime_total += runtime or 0.0
        entry = by_profile.get(name)
        if entry is not None:
            entry["sessions"] = count
            entry["runtime_secs"] = runtime or 0.0

    for entry in by_profile.values():
        entry["cost"] = _round_cost(entry["cost"])
        entry["runtime_secs"] = int(round(entry["runtime_secs"]))
        entry["last_used"] = clock.utc_iso(entry["last_used"]) if entry["last_used"] is not None else None
    for entry in by_model.values():
        entry["cost"] = _round_cost(entry["cost"])
    for entry in by_day.values():
        entry["cost"]["total_cost"] = round(entry["cost"]["total_cost"], 10)
    return {
        "period": periods.PERIODS[period],
        "total_tokens": total_tokens,
        "total_cost": _round_cost(total_cost),
        "total_sessions": total_sessions,
        "total_runtime_secs": int(round(runtime_total)),
        "aggregates": {
            "by_profile": by_profile,
            "by_model": by_model,
            "by_day": dict(sorted(by_day.items())),
        },
        "unpriced_models": sorted(pricer.unpriced),
    }
