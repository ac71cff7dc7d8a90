"""The ``GET /api/usage`` document, computed from ``usage_rollup`` (never the events).

Costs are computed at report time from the pricing table in force, per model, from the
summed tokens (cost is linear in tokens, so this equals the sum of per-event costs); a
model without a price counts in tokens, costs 0 and is listed in ``unpriced_models``.
Sessions are the distinct non-empty ``session`` values with usage in the period; a
session's runtime is from its first to its last event inside the period.
"""

import sqlite3

from clown import clock
from clown.catalog.pricing import Price, price_for
from clown.usage import periods
from clown.usage.store import TOKEN_FIELDS

COST_FIELDS = ("input_cost", "output_cost", "cache_creation_cost", "cache_read_cost", "total_cost")
_SUMS = ", ".join(f"SUM({name})" for name in TOKEN_FIELDS)


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


def build_report(conn: sqlite3.Connection, period: str, tz, table: dict[str, Price], profile: str | None = None,
                 model: str | None = None, now: float | None = None) -> dict:
    """The ``data`` of ``GET /api/usage`` for ``period`` (a key of periods.PERIODS)."""
    start, end = periods.period_range(period, tz, now)
    where, params = [], []
    if start is not None:
        where.append("bucket >= ? AND bucket < ?")
        params += [int(start), int(end)]
    if profile is not None:
        where.append("profile = ?")
        params.append(profile)
    if model is not None:
        where.append("model = ?")
        params.append(model)
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    pricer = Pricer(table)

    total_tokens, total_cost = _zero_tokens(), _zero_cost()
    by_profile: dict[str, dict] = {}
    by_model: dict[str, dict] = {}
    rows = conn.execute(
        f"SELECT profile, model, {_SUMS}, MAX(last_at) FROM usage_rollup{condition} GROUP BY profile, model",
        params).fetchall()
    for row in rows:
        name, model_name = row[0], row[1]
        tokens = dict(zip(TOKEN_FIELDS, (value or 0 for value in row[2:6])))
        cost = pricer.cost(model_name, tokens)
        _add(total_tokens, row[2:6])
        _add_cost(total_cost, cost)
        entry = by_profile.setdefault(name, {"profile": name, "tokens": _zero_tokens(), "cost": _zero_cost(),
                                             "sessions": 0, "runtime_secs": 0, "last_used": None})
        _add(entry["tokens"], row[2:6])
        _add_cost(entry["cost"], cost)
        last = row[6]
        if last is not None and (entry["last_used"] is None or last > entry["last_used"]):
            entry["last_used"] = last
        model_entry = by_model.setdefault(model_name, {"model": model_name, "tokens": _zero_tokens(),
                                                       "cost": _zero_cost()})
        _add(model_entry["tokens"], row[2:6])
        _add_cost(model_entry["cost"], cost)

    # Sessions and their runtime inside the period.
    session_condition = condition + (" AND " if condition else " WHERE ") + "session != ''"
    sessions = set()
    runtime_total = 0.0
    for row in conn.execute(
            f"SELECT profile, session, MIN(first_at), MAX(last_at) FROM usage_rollup{session_condition}"
            " GROUP BY profile, session", params):
        span = max(0.0, (row[3] or 0) - (row[2] or 0))
        sessions.add(row[1])
        runtime_total += span
        entry = by_profile.get(row[0])
        if entry is not None:
            entry["sessions"] += 1
            entry["runtime_secs"] += span

    # Days, in the report's zone: buckets are 15 minutes, so each lies within one local day.
    by_day: dict[str, dict] = {}
    if start is not None:
        for day in periods.days_between(start, end, tz):
            by_day[day] = {"tokens": _zero_tokens(), "cost": {"total_cost": 0.0}}
    day_cache: dict[int, str] = {}
    for row in conn.execute(
            f"SELECT bucket, model, {_SUMS} FROM usage_rollup{condition} GROUP BY bucket, model", params):
        bucket = row[0]
        day = day_cache.get(bucket)
        if day is None:
            day = day_cache[bucket] = periods.day_of(bucket, tz)
        entry = by_day.setdefault(day, {"tokens": _zero_tokens(), "cost": {"total_cost": 0.0}})
        _add(entry["tokens"], row[2:6])
        tokens = dict(zip(TOKEN_FIELDS, (value or 0 for value in row[2:6])))
        entry["cost"]["total_cost"] += pricer.cost(row[1], tokens)["total_cost"]

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
        "total_sessions": len(sessions),
        "total_runtime_secs": int(round(runtime_total)),
        "aggregates": {
            "by_profile": by_profile,
            "by_model": by_model,
            "by_day": dict(sorted(by_day.items())),
        },
        "unpriced_models": sorted(pricer.unpriced),
    }
