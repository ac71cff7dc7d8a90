"""Schemas of terminal sessions: REST bodies and replies, WebSocket control messages."""

from marshmallow import Schema, fields, validate

SIGNALS = (1, 2, 3, 9, 15, 18, 19, 20)
MAX_ARGS = 256


class TerminalCreateSchema(Schema):
    profile_alias = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", error="must be a profile alias (letters, digits, _ and -, 1-64)"))
    args = fields.List(fields.String(validate=validate.Length(max=4096)), load_default=list,
                       validate=validate.Length(max=MAX_ARGS))
    # strict: 80.5 and "80" are refused (400 naming the field), not rounded or parsed
    cols = fields.Integer(load_default=80, strict=True, validate=validate.Range(min=1, max=1000))
    rows = fields.Integer(load_default=24, strict=True, validate=validate.Range(min=1, max=500))
    working_dir = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=4096))


class TerminalCreatedSchema(Schema):
    session_id = fields.String()
    ws_url = fields.String()


class TerminalSessionSchema(Schema):
    id = fields.String()
    profile_alias = fields.String()
    state = fields.String(metadata={"enum": ["starting", "running", "terminated"]})
    created_at = fields.String()
    pid = fields.Integer(allow_none=True)
    cols = fields.Integer()
    rows = fields.Integer()
    client_count = fields.Integer()
    exit_code = fields.Integer(allow_none=True)
    exit_signal = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    ended_at = fields.String(allow_none=True)
    working_dir = fields.String()


class ResizeMessage(Schema):
    type = fields.String(required=True, validate=validate.Equal("resize"))
    cols = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1000))
    rows = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=500))


class SignalMessage(Schema):
    type = fields.String(required=True, validate=validate.Equal("signal"))
    signal = fields.Integer(required=True, strict=True, validate=validate.OneOf(
        SIGNALS, error="must be one of " + ", ".join(map(str, SIGNALS))))


CONTROL_MESSAGES = {"resize": ResizeMessage, "signal": SignalMessage}
