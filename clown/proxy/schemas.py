"""Schemas of the proxy routes (responses only: the routes take no body or query)."""

from marshmallow import Schema, fields, validate

STATUSES = ("stopped", "starting", "running", "backoff", "fatal")


class ProxyStatusSchema(Schema):
    profile = fields.String()
    enabled = fields.Boolean(metadata={"description": "The profile goes through its proxy"})
    port = fields.Integer(allow_none=True)
    pid = fields.Integer(allow_none=True)
    status = fields.String(validate=validate.OneOf(STATUSES), metadata={"description": " | ".join(STATUSES)})
    restarts = fields.Integer(metadata={"description": "Restarts supervisor made after the worker exited"})
    started_at = fields.String(allow_none=True)
