"""Schemas of /api/profiles: the create body, the list query and the answers."""

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from clown.catalog.manifests import ENV_NAME_PATTERN

ALIAS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_ID = validate.Length(min=1, max=64)


def _literal(message: str) -> str:
    """``message`` safe as a marshmallow error template (which ``str.format``s it)."""
    return message.replace("{", "{{").replace("}", "}}")


class StrictBoolean(fields.Boolean):
    """Only JSON ``true``/``false`` (marshmallow's Boolean also takes "yes", 1, ...)."""

    truthy = {True}
    falsy = {False}


class ProfileCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    alias = fields.String(required=True, validate=validate.Regexp(ALIAS_PATTERN, error=_literal("must match " + ALIAS_PATTERN)))
    agent_id = fields.String(required=True, validate=_ID)
    provider_id = fields.String(required=True, validate=_ID)
    endpoint_id = fields.String(load_default="default", validate=_ID)
    model = fields.String(load_default=None, allow_none=True, validate=[
        validate.Length(min=1, max=200),
        validate.Regexp(r"^[^\s\x00-\x1f\x7f]+$", error="must not contain spaces or control characters")])
    api_key = fields.String(load_default=None, allow_none=True, load_only=True, validate=[
        validate.Length(min=1, max=4096),
        validate.Regexp(r"^[^\s\x00-\x1f\x7f]+$", error="must not contain spaces or control characters")],
        metadata={"description": "Stored as a secret file (0600); never returned"})
    proxy = StrictBoolean(load_default=False,
                          metadata={"description": "Run the agent through the profile's metering proxy"})
    args = fields.List(fields.String(validate=[validate.Length(max=4096),
                                               validate.Regexp(_NO_CONTROL, error="must not contain control characters")]),
                       load_default=list, validate=validate.Length(max=64),
                       metadata={"description": "Extra argv for the agent, every time the profile runs"})
    env = fields.Dict(keys=fields.String(validate=[validate.Length(max=128),
                                                   validate.Regexp(ENV_NAME_PATTERN, error=_literal("must match " + ENV_NAME_PATTERN))]),
                      values=fields.String(validate=[validate.Length(max=4096),
                                                     validate.Regexp(r"^[^\x00]*$", error="must not contain NUL")]),
                      load_default=dict, validate=validate.Length(max=64),
                      metadata={"description": "Extra environment (never credentials or config dirs)"})

    @validates("env")
    def _not_reserved(self, value, **_):
        from clown.profiles.launch import RESERVED_ENV

        reserved = sorted(name for name in value if name in RESERVED_ENV)
        if reserved:
            raise ValidationError(f"may not set {', '.join(reserved)}: clown sets it from the profile")


class ProfileListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    agent = fields.String(load_default=None, validate=_ID)


class ProfileDeleteQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    force = fields.Boolean(load_default=False)


class ProfileSummarySchema(Schema):
    alias = fields.String(required=True)
    agent_id = fields.String(required=True)
    provider_id = fields.String(required=True)
    endpoint_id = fields.String(required=True)
    model = fields.String(allow_none=True)
    last_used = fields.String(allow_none=True)


class ProfileSchema(ProfileSummarySchema):
    created_at = fields.String()
    profile_home = fields.String(metadata={"description": "Absolute path of the profile's home"})


class ProfileCreatedSchema(Schema):
    alias = fields.String()
    message = fields.String()


class MessageSchema(Schema):
    message = fields.String()
