"""Agent and provider manifests: TOML files validated by marshmallow into frozen records.

The format is DESIGN.md's ("Contracts pinned down", Manifests); ``docs/profiles.md``
lists every field and what it changes. A manifest that fails validation raises
ManifestError naming the file and the field; the catalog skips it and reports it.
"""

import re
import tomllib
from dataclasses import dataclass, field

from marshmallow import (RAISE, Schema, ValidationError, fields, validate, validates_schema)

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
PROVIDER_TYPES = ("anthropic", "anthropic-compatible", "openai", "openai-compatible", "self")
PROFILE_STRATEGIES = ("config-dir", "home-wrapper", "none")
ADAPTERS = ("claude", "codex", "gemini", "opencode")
WIRE_APIS = ("responses", "chat")
MAX_MANIFEST_BYTES = 256 * 1024


def _literal(message: str) -> str:
    """``message`` safe as a marshmallow error template (which ``str.format``s it)."""
    return message.replace("{", "{{").replace("}", "}}")


class ManifestError(ValueError):
    """A manifest is unreadable or invalid. ``file`` and ``field`` say where."""

    def __init__(self, file: str, field_name: str | None, why: str):
        self.file = file
        self.field = field_name
        self.why = why
        where = f"field '{field_name}'" if field_name else "file"
        super().__init__(f"{file}: {where}: {why}")


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    binary: str
    fallbacks: tuple = ()
    version_flag: str = "--version"
    adapter: str | None = None
    profile_strategy: str = "config-dir"
    supports_hooks: bool = False
    default_model: str | None = None
    supported_models: tuple = ()
    env: dict = field(default_factory=dict)
    args: tuple = ()
    source: str = "built-in"


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    type: str
    endpoints: dict = field(default_factory=dict)
    default_endpoint: str | None = None
    env_key: str | None = None
    key_required: bool = False
    models: tuple = ()
    default_model: str | None = None
    wire_api: str = "responses"
    source: str = "built-in"

    def endpoint_url(self, endpoint_id: str | None) -> str | None:
        """The URL of ``endpoint_id`` (None or ``"default"``: the default endpoint)."""
        if not endpoint_id or endpoint_id == "default":
            endpoint_id = self.default_endpoint
        return self.endpoints.get(endpoint_id) if endpoint_id else None

    def has_endpoint(self, endpoint_id: str | None) -> bool:
        return not endpoint_id or endpoint_id == "default" or endpoint_id in self.endpoints


class _Strict(Schema):
    class Meta:
        unknown = RAISE


_ID = dict(required=True, validate=validate.Regexp(ID_PATTERN, error=_literal("must match " + ID_PATTERN)))
_NAME = dict(required=True, validate=validate.Length(min=1, max=100))
_MODEL = validate.Length(min=1, max=200)


class AgentModelsSchema(_Strict):
    default = fields.String(load_default=None, validate=_MODEL)
    supported = fields.List(fields.String(validate=_MODEL), load_default=list)


class AgentManifestSchema(_Strict):
    id = fields.String(**_ID)
    name = fields.String(**_NAME)
    binary = fields.String(required=True, validate=[
        validate.Length(min=1, max=4096),
        validate.Regexp(r"^(\$[A-Z_][A-Z0-9_]*|[^$\s][^\s]*)$",
                        error="must be a program name, an absolute path or $VARIABLE")])
    fallbacks = fields.List(fields.String(validate=validate.Length(min=1, max=4096)), load_default=list)
    version_flag = fields.String(load_default="--version", validate=validate.Length(min=1, max=64))
    adapter = fields.String(load_default=None, validate=validate.OneOf(ADAPTERS))
    profile_strategy = fields.String(load_default=None, validate=validate.OneOf(PROFILE_STRATEGIES))
    supports_hooks = fields.Boolean(load_default=False)
    models = fields.Nested(AgentModelsSchema, load_default=lambda: {"default": None, "supported": []})
    env = fields.Dict(keys=fields.String(validate=validate.Regexp(ENV_NAME_PATTERN)),
                      values=fields.String(validate=validate.Length(max=4096)), load_default=dict)
    args = fields.List(fields.String(validate=validate.Length(max=4096)), load_default=list)


    @validates_schema
    def _strategy(self, data, **_):
        if data.get("profile_strategy") == "config-dir" and not data.get("adapter"):
            raise ValidationError("'config-dir' needs an adapter that knows the agent's config dir",
                                  "profile_strategy")


class EndpointURL(fields.String):
    default_error_messages = {"url": "must be an http or https URL"}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not re.match(r"^https?://[^\s/]+(/\S*)?$", text):
            raise self.make_error("url")
        return text.rstrip("/")


class ProviderAuthSchema(_Strict):
    env_key = fields.String(load_default=None, validate=validate.Regexp(ENV_NAME_PATTERN))
    required = fields.Boolean(load_default=True)


class ProviderModelsSchema(_Strict):
    available = fields.List(fields.String(validate=_MODEL), load_default=list)
    default = fields.String(load_default=None, validate=_MODEL)


class ProviderManifestSchema(_Strict):
    id = fields.String(**_ID)
    name = fields.String(**_NAME)
    type = fields.String(required=True, validate=validate.OneOf(PROVIDER_TYPES))
    default_endpoint = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    endpoints = fields.Dict(keys=fields.String(validate=validate.Regexp(ID_PATTERN)), values=EndpointURL(),
                            load_default=dict)
    auth = fields.Nested(ProviderAuthSchema, load_default=lambda: {"env_key": None, "required": False})
    models = fields.Nested(ProviderModelsSchema, load_default=lambda: {"available": [], "default": None})
    wire_api = fields.String(load_default="responses", validate=validate.OneOf(WIRE_APIS))

    @validates_schema
    def _consistent(self, data, **_):
        kind = data.get("type")
        endpoints = data.get("endpoints") or {}
        auth = data.get("auth") or {}
        if kind == "self":
            if auth.get("env_key") or auth.get("required"):
                raise ValidationError("a provider of type 'self' takes no key", "auth")
            return
        if not endpoints:
            raise ValidationError("at least one endpoint is required", "endpoints")
        default = data.get("default_endpoint")
        if default is None:
            if len(endpoints) > 1:
                raise ValidationError("required when there is more than one endpoint", "default_endpoint")
        elif default not in endpoints:
            raise ValidationError(f"{default!r} is not one of the endpoints", "default_endpoint")
        if not auth.get("env_key"):
            raise ValidationError("required unless the type is 'self'", "auth.env_key")
        models = data.get("models") or {}
        if models.get("default") and models.get("available") and models["default"] not in models["available"]:
            raise ValidationError(f"{models['default']!r} is not in models.available", "models.default")


def _error_field(messages) -> tuple[str | None, str]:
    path, why = [], messages
    while isinstance(why, dict):
        key, why = next(iter(why.items()))
        if key not in ("_schema", "value", "key"):
            path.append(str(key))
    if isinstance(why, list):
        why = " ".join(str(item) for item in why)
    return (".".join(path) or None), str(why)


def parse(text: str, kind: str, source: str) -> Agent | Provider:
    """Parse and validate one manifest. ``kind`` is ``"agent"`` or ``"provider"``.

    Raises ManifestError naming ``source`` and the bad field.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(source, None, f"not valid TOML: {exc}") from None
    schema = AgentManifestSchema() if kind == "agent" else ProviderManifestSchema()
    try:
        data = schema.load(document)
    except ValidationError as exc:
        name, why = _error_field(exc.normalized_messages())
        raise ManifestError(source, name, why) from None
    if kind == "agent":
        return Agent(id=data["id"], name=data["name"], binary=data["binary"], fallbacks=tuple(data["fallbacks"]),
                     version_flag=data["version_flag"], adapter=data["adapter"],
                     profile_strategy=data["profile_strategy"] or ("config-dir" if data["adapter"] else "none"),
                     supports_hooks=data["supports_hooks"],
                     default_model=data["models"]["default"], supported_models=tuple(data["models"]["supported"]),
                     env=dict(data["env"]), args=tuple(data["args"]), source=source)
    endpoints = dict(data["endpoints"])
    default_endpoint = data["default_endpoint"] or (next(iter(endpoints)) if endpoints else None)
    return Provider(id=data["id"], name=data["name"], type=data["type"], endpoints=endpoints,
                    default_endpoint=default_endpoint, env_key=data["auth"]["env_key"],
                    key_required=bool(data["auth"]["required"]) and data["type"] != "self",
                    models=tuple(data["models"]["available"]), default_model=data["models"]["default"],
                    wire_api=data["wire_api"], source=source)


def load_file(path: str, kind: str) -> Agent | Provider:
    """Read and parse the manifest at ``path``. Raises ManifestError."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(path, None, f"cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(path, None, f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(path, None, "not UTF-8") from None
    return parse(text, kind, path)
