"""Schemas of the sessions API: request bodies, queries, responses and /ws messages."""

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from clown.config import BACKENDS

ACCESS_MODES = ("read-only", "read-write")
STATUSES = ("starting", "running", "idle", "waiting", "completed", "failed", "stopped")
# A prompt goes on the agent's command line: one argv string may hold at most 128 KiB.
MAX_PROMPT_BYTES = 100_000
MAX_MESSAGE_BYTES = 100_000


def _utf8_bytes_at_most(limit: int, what: str):
    def check(value: str) -> None:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ValidationError(f"{what} is {size} bytes; the limit is {limit}")
        if "\x00" in value:
            raise ValidationError(f"{what} must not contain NUL characters")
    return check


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class CreateSessionSchema(_Strict):
    repo_path = fields.String(required=True, validate=validate.Length(min=1, max=4096))
    prompt = fields.String(required=True, validate=[validate.Length(min=1),
                                                    _utf8_bytes_at_most(MAX_PROMPT_BYTES, "prompt")])
    backend = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(BACKENDS),
                            metadata={"description": "Default: [defaults] backend"})
    agent = fields.String(load_default=None, allow_none=True,
                          validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", error="not an agent id"),
                          metadata={"description": "Default: [defaults] agent"})
    access_mode = fields.String(load_default="read-write", validate=validate.OneOf(ACCESS_MODES))
    no_plan_mode = fields.Boolean(load_default=False,
                                  metadata={"description": "false starts Claude Code in plan mode"})
    profile = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64),
                            metadata={"description": "Default: the agent's most recently used profile"
                                                     " (400 when none has run yet)"})


class CreatedSchema(Schema):
    id = fields.String()
    name = fields.String()
    status = fields.String(metadata={"enum": list(STATUSES)})


class SessionSchema(Schema):
    id = fields.String()
    name = fields.String()
    backend = fields.String()
    agent = fields.String()
    profile = fields.String(allow_none=True)
    access_mode = fields.String(metadata={"enum": list(ACCESS_MODES)})
    status = fields.String(metadata={"enum": list(STATUSES)})
    repo_path = fields.String()
    worktree_path = fields.String()
    branch = fields.String()
    no_plan_mode = fields.Boolean()
    created_at = fields.String()
    archived = fields.Boolean()


class SessionListSchema(Schema):
    sessions = fields.List(fields.Nested(SessionSchema))


class ToolSchema(Schema):
    name = fields.String()
    input = fields.Raw()
    output = fields.Raw()


class ChatEntrySchema(Schema):
    role = fields.String(metadata={"enum": ["user", "assistant", "tool"]})
    content = fields.String()
    type = fields.String(metadata={"enum": ["tool_call", "tool_result"], "description": "tool entries only"})
    tool = fields.Nested(ToolSchema, metadata={"description": "tool entries only"})


class SessionDetailSchema(SessionSchema):
    prompt = fields.String()
    chat_history = fields.List(fields.Nested(ChatEntrySchema))


class ListQuerySchema(_Strict):
    include_archived = fields.Boolean(load_default=False)


class DeleteQuerySchema(_Strict):
    force = fields.Boolean(load_default=False)


class AccessModeSchema(_Strict):
    access_mode = fields.String(required=True, validate=validate.OneOf(ACCESS_MODES))


class SuccessSchema(Schema):
    success = fields.Boolean()


class AccessModeResultSchema(SuccessSchema):
    access_mode = fields.String()


class CredentialSchema(Schema):
    configured = fields.Boolean()
    source = fields.String(allow_none=True, metadata={"enum": ["env", "file", "keyring", None]})


class CredentialsSchema(Schema):
    credentials = fields.Dict(keys=fields.String(), values=fields.Nested(CredentialSchema))


# -- /ws messages (the client's) ------------------------------------------------------------

class _WsMessage(Schema):
    class Meta:
        unknown = EXCLUDE   # a message may carry more than clown reads


class WsSubscribeSchema(_WsMessage):
    type = fields.String(required=True)
    session_id = fields.String(validate=validate.Length(min=1, max=128))
    topics = fields.List(fields.String(validate=validate.Length(min=1, max=64)), validate=validate.Length(min=1, max=32))


class WsSendMessageSchema(_WsMessage):
    type = fields.String(required=True)
    session_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    content = fields.String(required=True, validate=[validate.Length(min=1),
                                                     _utf8_bytes_at_most(MAX_MESSAGE_BYTES, "content")])

