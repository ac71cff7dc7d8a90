"""Pricing table and the matching of real model ids to it."""

import pytest

from clown.catalog.pricing import PricingError, builtin_table, parse_table_text, price_for


@pytest.mark.parametrize("model, expected", [
    ("claude-sonnet-4-20250514", (3.0, 15.0, 3.75, 0.30)),
    ("claude-sonnet-4-5-20250929", (3.0, 15.0, 3.75, 0.30)),
    ("anthropic/claude-sonnet-4.5", (3.0, 15.0, 3.75, 0.30)),
    ("claude-opus-4-1-20250805", (15.0, 75.0, 18.75, 1.50)),
    ("claude-opus-4-20250514", (15.0, 75.0, 18.75, 1.50)),
    ("claude-opus-4-5-20251101", (5.0, 25.0, 6.25, 0.50)),
    ("claude-haiku-4-5-20251001", (1.0, 5.0, 1.25, 0.10)),
    ("claude-3-5-haiku-20241022", (0.80, 4.0, 1.0, 0.08)),
    ("claude-sonnet-4-5[1m]", (3.0, 15.0, 3.75, 0.30)),
    ("gpt-5-codex", (1.25, 10.0, 1.25, 0.125)),
    ("gpt-4.1-2025-04-14", (2.0, 8.0, 2.0, 0.50)),
    ("o3-2025-04-16", (2.0, 8.0, 2.0, 0.50)),
    ("o4-mini-2025-04-16", (1.10, 4.40, 1.10, 0.275)),
])
def test_builtin_prices_match_dated_and_decorated_ids(model, expected):
    price = price_for(model, builtin_table())
    assert (price.input, price.output, price.cache_write, price.cache_read) == expected


def test_variants_are_not_guessed():
    assert price_for("gpt-5-pro", builtin_table()) is None
    assert price_for("claude-opus-4-7", builtin_table()) is None
    assert price_for(None, builtin_table()) is None


def test_costs_by_kind():
    costs = price_for("claude-sonnet-4", builtin_table()).costs(125000, 45000, 10000, 50000)
    assert costs == pytest.approx({"input_cost": 0.375, "output_cost": 0.675, "cache_creation_cost": 0.0375,
                                   "cache_read_cost": 0.015, "total_cost": 1.1025})


def test_bad_table_names_model_and_field():
    with pytest.raises(PricingError, match=r"t.toml: models.m.output: Missing data for required field."):
        parse_table_text('[models.m]\ninput = 1\ncache_write = 1\ncache_read = 1\n', "t.toml")
