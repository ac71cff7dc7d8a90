"""clown's configuration: ``$CLOWN_HOME/clown.toml``, then ``CLOWN_<SECTION>_<KEY>`` env, then flags.

Every key is validated by a marshmallow schema; an unknown key or a bad value raises
ConfigError naming it, and ``clownd`` stops with that message. ``clownd`` writes the
resolved config to ``run/config.json`` (0600), which every program it starts reads, so
that all of them see exactly the same values.
"""

import json
import os
import tempfile
import tomllib
import zoneinfo
from types import SimpleNamespace

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

KNOWN_FEATURES = {"webauthn_auth": False, "ai_metadata": False}
# Features this version implements; turning on any other stops clownd.
IMPLEMENTED_FEATURES: set[str] = set()
BACKENDS = ("pty", "tmux", "zellij", "docker")


class ConfigError(Exception):
    """A config key is unknown or its value is bad; the message names the key."""


class _Section(Schema):
    class Meta:
        unknown = RAISE


class ServerSection(_Section):
    host = fields.String(load_default="127.0.0.1", validate=validate.Length(min=1, max=253))
    port = fields.Integer(load_default=8765, validate=validate.Range(min=0, max=65535))
    token = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=16, max=512))
    allowed_hosts = fields.List(fields.String(validate=validate.Length(min=1, max=253)), load_default=list)
    allowed_roots = fields.List(fields.String(validate=validate.Length(min=1, max=4096)), load_default=None)


class TerminalSection(_Section):
    scrollback_bytes = fields.Integer(load_default=1 << 20, validate=validate.Range(min=4096, max=1 << 30))
    max_sessions = fields.Integer(load_default=64, validate=validate.Range(min=1, max=4096))
    client_backlog_bytes = fields.Integer(load_default=4 << 20, validate=validate.Range(min=65536, max=1 << 30))
    max_message_bytes = fields.Integer(load_default=1 << 20, validate=validate.Range(min=1024, max=64 << 20))


class ProxySection(_Section):
    port_range = fields.List(fields.Integer(validate=validate.Range(min=1024, max=65535)),
                             load_default=lambda: [8081, 8180], validate=validate.Length(equal=2))
    upstream_timeout_secs = fields.Float(load_default=600.0, validate=validate.Range(min=1, max=86400))
    max_body_bytes = fields.Integer(load_default=32 << 20, validate=validate.Range(min=1024, max=1 << 30))

    @validates_schema
    def _range_order(self, data, **_):
        low, high = data.get("port_range", [8081, 8180])
        if low > high:
            raise ValidationError("first port is above the last", "port_range")


class RegistrySection(_Section):
    url = fields.String(load_default=None, allow_none=True,
                        validate=validate.Regexp(r"^(https?|file)://", error="must be an https, http or file URL"))


class UsageSection(_Section):
    timezone = fields.String(load_default=None, allow_none=True)

    @validates_schema
    def _known_zone(self, data, **_):
        name = data.get("timezone")
        if name:
            try:
                zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValidationError(f"unknown time zone {name!r}", "timezone")


class DefaultsSection(_Section):
    backend = fields.String(load_default="pty", validate=validate.OneOf(BACKENDS))
    agent = fields.String(load_default="claude", validate=validate.Length(min=1, max=64))


class FeaturesSection(_Section):
    webauthn_auth = fields.Boolean(load_default=False)
    ai_metadata = fields.Boolean(load_default=False)


SECTIONS = {
    "server": ServerSection,
    "terminal": TerminalSection,
    "proxy": ProxySection,
    "registry": RegistrySection,
    "usage": UsageSection,
    "defaults": DefaultsSection,
    "features": FeaturesSection,
}


def _parse_env_value(field: fields.Field, raw: str):
    """Turn an env string into what the schema field expects (lists: JSON or comma list)."""
    if isinstance(field, fields.List):
        raw = raw.strip()
        if raw.startswith("["):
            return json.loads(raw)
        return [part.strip() for part in raw.replace("-", ",").split(",") if part.strip()] \
            if isinstance(field.inner, fields.Integer) else \
            [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _from_env(environ) -> dict:
    layered: dict[str, dict] = {}
    for name, raw in environ.items():
        if not name.startswith("CLOWN_") or name == "CLOWN_HOME":
            continue
        rest = name[len("CLOWN_"):].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue  # not a config variable (e.g. CLOWN_TEST_*)
        key = rest[len(section) + 1:]
        schema_field = SECTIONS[section]().fields.get(key)
        if schema_field is None:
            raise ConfigError(f"{name}: unknown config key [{section}] {key}")
        try:
            layered.setdefault(section, {})[key] = _parse_env_value(schema_field, raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return layered


def _merge(base: dict, top: dict) -> dict:
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in top.items():
        merged.setdefault(section, {}).update(values)
    return merged


def _validate(raw: dict, source: str) -> dict:
    resolved = {}
    for section in raw:
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown config section [{section}]")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
    for section, schema in SECTIONS.items():
        try:
            resolved[section] = schema().load(raw.get(section, {}))
        except ValidationError as exc:
            key, why = next(iter(exc.normalized_messages().items()))
            if isinstance(why, dict):
                why = next(iter(why.values()))
            if isinstance(why, list):
                why = why[0]
            if why == "Unknown field.":
                raise ConfigError(f"{source}: unknown config key [{section}] {key}") from None
            raise ConfigError(f"{source}: [{section}] {key}: {why}") from None
    return resolved


def load(home_root: str, environ=None, flags: dict | None = None) -> dict:
    """Resolve the config of the home at ``home_root``: file < env < flags.

    ``flags`` maps ``(section, key)`` to a value given on the command line (None: not given).
    Returns plain dicts per section. Raises ConfigError naming the bad key.
    """
    environ = os.environ if environ is None else environ
    path = os.path.join(home_root, "clown.toml")
    from_file: dict = {}
    if os.path.exists(path):
        try:
            with open(path, "rb") as handle:
                from_file = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _validate(from_file, path)
    from_env = _from_env(environ)
    _validate(_merge(from_file, from_env), "environment")
    from_flags: dict[str, dict] = {}
    for (section, key), value in (flags or {}).items():
        if value is not None:
            from_flags.setdefault(section, {})[key] = value
    resolved = _validate(_merge(_merge(from_file, from_env), from_flags), "command line")
    _check_features(resolved["features"])
    server = resolved["server"]
    if server["allowed_roots"] is None:
        server["allowed_roots"] = [os.path.expanduser("~"), tempfile.gettempdir()]
    server["allowed_roots"] = [os.path.realpath(os.path.expanduser(root)) for root in server["allowed_roots"]]
    if not is_loopback(server["host"]) and not server["token"]:
        raise ConfigError(
            f"[server] host {server['host']!r} is not a loopback address: set [server] token "
            "(or CLOWN_SERVER_TOKEN) so that nobody else on the network can start processes")
    return resolved


def _check_features(features: dict) -> None:
    for name, enabled in features.items():
        if enabled and name not in IMPLEMENTED_FEATURES:
            raise ConfigError(f"[features] {name}: this version of clown does not have this feature; "
                              "set it to false")


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "[::1]") or host.startswith("127.")


def write_resolved(path: str, resolved: dict) -> None:
    """Write the resolved config for the programs clownd starts (0600: it may hold the token)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(resolved, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_resolved(path: str) -> SimpleNamespace:
    """The config ``clownd`` resolved, as ``config.server.port`` style attributes."""
    with open(path) as handle:
        return as_namespace(json.load(handle))


def as_namespace(resolved: dict) -> SimpleNamespace:
    return SimpleNamespace(**{section: SimpleNamespace(**values) for section, values in resolved.items()})
