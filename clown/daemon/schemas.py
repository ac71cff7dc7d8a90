"""Schemas of the daemon's own routes: health, config, daemon status, logs."""

from marshmallow import Schema, fields, validate


class HealthSchema(Schema):
    status = fields.String(required=True)
    version = fields.String(required=True)


class FeaturesSchema(Schema):
    webauthn_auth = fields.Boolean()
    ai_metadata = fields.Boolean()


class ConfigSchema(Schema):
    default_backend = fields.String()
    default_agent = fields.String()
    features = fields.Nested(FeaturesSchema)
    backends = fields.Dict(keys=fields.String(), values=fields.Boolean(),
                           metadata={"description": "Which session backends can run on this machine"})


class ProgramSchema(Schema):
    name = fields.String()
    group = fields.String()
    state = fields.String()
    pid = fields.Integer(allow_none=True)
    restarts = fields.Integer()
    uptime_secs = fields.Integer(allow_none=True)


class DaemonStatusSchema(Schema):
    status = fields.String()
    pid = fields.Integer()
    uptime_secs = fields.Integer()
    version = fields.String()
    profiles_count = fields.Integer()
    active_proxies = fields.Integer()
    programs = fields.List(fields.Nested(ProgramSchema))


class LogProgramSchema(Schema):
    program = fields.String()
    size_bytes = fields.Integer()


class LogQuerySchema(Schema):
    lines = fields.Integer(load_default=200, validate=validate.Range(min=1, max=5000))


class LogLinesSchema(Schema):
    program = fields.String()
    lines = fields.List(fields.String())
