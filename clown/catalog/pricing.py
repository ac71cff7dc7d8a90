"""What a model costs: the pricing table and the lookup that matches real model ids to it.

The table format (``builtin/pricing.toml``; a registry ships the same format)::

    # USD per million tokens
    [models."claude-sonnet-4"]
    input = 3.00          # base input tokens
    output = 15.00        # output tokens
    cache_write = 3.75    # cache creation input tokens
    cache_read = 0.30     # cache hits / cached input
    aliases = ["claude-sonnet-4-0"]   # optional: other ids of the same model

Every price is a number >= 0; ``input``, ``output``, ``cache_write`` and ``cache_read`` are
all required. A table is held in memory as ``dict[str, Price]``: one key per model id and
per alias, aliases sharing their model's ``Price``.

``price_for(model, table)`` finds the price of the id an agent or a provider reports,
which is often decorated: dated (``claude-sonnet-4-20250514``, ``gpt-4.1-2025-04-14``),
prefixed by a router (``anthropic/claude-sonnet-4``), suffixed (``claude-sonnet-4-5[1m]``,
``claude-sonnet-4@20250514``, ``:thinking``, ``-latest``) or written with a dot where the
table has a dash (``claude-sonnet-4.5``). It never guesses across variants: an id whose
stripped form is not in the table (``gpt-5-pro`` when only ``gpt-5`` is) has no price,
which is better than a wrong one.

``current_table(home_root)`` is the table in force for a clown home: the built-in table
with the synced registry's table over it (per model). It reads files only, so it works in
any process (the proxy workers use it).
"""

import os
import re
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources

from marshmallow import RAISE, Schema, ValidationError, fields, validate

PER_TOKENS = 1_000_000
BUILTIN_TABLE = "pricing.toml"


class PricingError(ValueError):
    """A pricing table is malformed; the message names the file and the model/field."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    def costs(self, input_tokens: int = 0, output_tokens: int = 0,
              cache_creation_input_tokens: int = 0, cache_read_input_tokens: int = 0) -> dict:
        """The cost in USD of these token counts, by kind, named as ``/api/usage`` names them."""
        input_cost = input_tokens * self.input / PER_TOKENS
        output_cost = output_tokens * self.output / PER_TOKENS
        cache_creation_cost = cache_creation_input_tokens * self.cache_write / PER_TOKENS
        cache_read_cost = cache_read_input_tokens * self.cache_read / PER_TOKENS
        return {
            "input_cost": input_cost,
            "output_cost": output_cost,
            "cache_creation_cost": cache_creation_cost,
            "cache_read_cost": cache_read_cost,
            "total_cost": input_cost + output_cost + cache_creation_cost + cache_read_cost,
        }

    def as_dict(self) -> dict:
        return asdict(self)


def _price_field() -> fields.Float:
    return fields.Float(required=True, validate=validate.Range(min=0, max=100_000))


class ModelPriceSchema(Schema):
    class Meta:
        unknown = RAISE

    input = _price_field()
    output = _price_field()
    cache_write = _price_field()
    cache_read = _price_field()
    aliases = fields.List(fields.String(validate=validate.Length(min=1, max=200)), load_default=list)


class PricingTableSchema(Schema):
    class Meta:
        unknown = RAISE

    models = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=200)),
                         values=fields.Nested(ModelPriceSchema), required=True)


def parse_table(document: dict, source: str = "pricing table") -> dict[str, Price]:
    """Validate a parsed table document; return ``{model id or alias: Price}``.

    Raises PricingError naming ``source`` and the first bad model/field.
    """
    try:
        loaded = PricingTableSchema().load(document)
    except ValidationError as exc:
        raise PricingError(f"{source}: {_first_error(exc.normalized_messages())}") from None
    table: dict[str, Price] = {}
    for model, entry in loaded["models"].items():
        price = Price(entry["input"], entry["output"], entry["cache_write"], entry["cache_read"])
        table[model] = price
        for alias in entry["aliases"]:
            table.setdefault(alias, price)
    return table


def parse_table_text(text: str, source: str = "pricing table") -> dict[str, Price]:
    """Parse TOML text of a table (see module doc). Raises PricingError."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PricingError(f"{source}: not valid TOML: {exc}") from None
    return parse_table(document, source)


def load_table_file(path: str) -> dict[str, Price]:
    with open(path, encoding="utf-8") as handle:
        return parse_table_text(handle.read(), path)


def builtin_table() -> dict[str, Price]:
    """The table shipped in the package (``clown/catalog/builtin/pricing.toml``)."""
    text = resources.files(__package__).joinpath("builtin", BUILTIN_TABLE).read_text(encoding="utf-8")
    return parse_table_text(text, f"built-in {BUILTIN_TABLE}")


def current_table(home_root: str | None = None) -> dict[str, Price]:
    """The table in force for the clown home at ``home_root``: built-in, then the registry's.

    A registry table that cannot be read or parsed is ignored (the sync that installed it
    checked it, so this means someone edited the cache).
    """
    table = builtin_table()
    if home_root:
        from clown.catalog.registry import current_pricing_path

        path = current_pricing_path(os.path.join(home_root, "registry"))
        if path:
            try:
                table.update(load_table_file(path))
            except (OSError, PricingError):
                pass
    return table


# -- matching ---------------------------------------------------------------------------

_ROUTER_PREFIX = re.compile(r"^[a-z0-9_.-]+/")
_DECORATION = re.compile(r"(\[[^\]]*\]|@.*|:[a-z0-9_.-]*)$")
_DATE = re.compile(r"-(20\d{6}|20\d{2}-\d{2}-\d{2})$")
_LATEST = re.compile(r"-latest$")
_THINKING = re.compile(r"-thinking$")
_DOT_BETWEEN_DIGITS = re.compile(r"(?<=\d)\.(?=\d)")


def normalize_model(model: str) -> str:
    """The bare id of ``model``: lower case, no router prefix, date, ``[..]``, ``@..``, ``:..``.

    ``anthropic/claude-sonnet-4.5-20250929[1m]`` → ``claude-sonnet-4-5``.
    """
    name = model.strip().lower()
    name = _ROUTER_PREFIX.sub("", name)
    previous = None
    while previous != name:
        previous = name
        name = _DECORATION.sub("", name)
        name = _DATE.sub("", name)
        name = _THINKING.sub("", name)
    name = _DOT_BETWEEN_DIGITS.sub("-", name)
    return name


def price_for(model: str | None, table: dict[str, Price]) -> Price | None:
    """The price of ``model`` in ``table``, or None when the table has no such model.

    Tries the id as given, then its normalized form against every key's normalized form,
    then (for ``-latest`` ids) the same without ``-latest``.
    """
    if not model:
        return None
    if model in table:
        return table[model]
    wanted = normalize_model(model)
    index = {normalize_model(key): price for key, price in table.items()}
    if wanted in index:
        return index[wanted]
    bare = _LATEST.sub("", wanted)
    return index.get(bare)


def _first_error(messages) -> str:
    path = []
    why = messages
    while isinstance(why, dict):
        key, why = next(iter(why.items()))
        if key != "value" and key != "_schema":
            path.append(str(key))
    if isinstance(why, list):
        why = " ".join(str(item) for item in why)
    return f"{'.'.join(path) or 'table'}: {why}"
