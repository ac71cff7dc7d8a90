"""Schemas of the usage routes: the report's query and document, the import queries."""

from marshmallow import RAISE, Schema, fields, validate

from clown.usage.periods import DEFAULT_PERIOD, PERIODS


class UsageQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    period = fields.String(load_default=DEFAULT_PERIOD, validate=validate.OneOf(list(PERIODS)),
                           metadata={"description": f"One of {', '.join(PERIODS)} (default {DEFAULT_PERIOD})"})
    profile = fields.String(validate=validate.Length(min=1, max=128), metadata={"description": "Only this profile"})
    model = fields.String(validate=validate.Length(min=1, max=256), metadata={"description": "Only this model"})


class ClaudeImportQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    claude_dir = fields.String(validate=validate.Length(min=1, max=4096),
                               metadata={"description": "Claude Code's config dir (default ~/.claude)"})


class CodexImportQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    codex_dir = fields.String(validate=validate.Length(min=1, max=4096),
                              metadata={"description": "Codex's home (default ~/.codex)"})


class TokensSchema(Schema):
    input_tokens = fields.Integer()
    output_tokens = fields.Integer()
    cache_creation_input_tokens = fields.Integer()
    cache_read_input_tokens = fields.Integer()


class CostSchema(Schema):
    input_cost = fields.Float()
    output_cost = fields.Float()
    cache_creation_cost = fields.Float()
    cache_read_cost = fields.Float()
    total_cost = fields.Float()


class ProfileUsageSchema(Schema):
    profile = fields.String()
    tokens = fields.Nested(TokensSchema)
    cost = fields.Nested(CostSchema)
    sessions = fields.Integer()
    runtime_secs = fields.Integer()
    last_used = fields.String(allow_none=True)


class ModelUsageSchema(Schema):
    model = fields.String()
    tokens = fields.Nested(TokensSchema)
    cost = fields.Nested(CostSchema)


class DayCostSchema(Schema):
    total_cost = fields.Float()


class DayUsageSchema(Schema):
    tokens = fields.Nested(TokensSchema)
    cost = fields.Nested(DayCostSchema)


class AggregatesSchema(Schema):
    by_profile = fields.Dict(keys=fields.String(), values=fields.Nested(ProfileUsageSchema))
    by_model = fields.Dict(keys=fields.String(), values=fields.Nested(ModelUsageSchema))
    by_day = fields.Dict(keys=fields.String(), values=fields.Nested(DayUsageSchema),
                         metadata={"description": "Keyed YYYY-MM-DD in [usage] timezone"})


class UsageReportSchema(Schema):
    period = fields.String(metadata={"description": "Today, Yesterday, This week, This month, Last 7 days, "
                                                    "Last 30 days or All time"})
    total_tokens = fields.Nested(TokensSchema)
    total_cost = fields.Nested(CostSchema)
    total_sessions = fields.Integer()
    total_runtime_secs = fields.Integer()
    aggregates = fields.Nested(AggregatesSchema)
    unpriced_models = fields.List(fields.String())
