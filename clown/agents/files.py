"""Small, atomic writes of the agents' own config files (JSON and the TOML subset they use)."""

import json
import os
import re
import tomllib

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def write_atomic(path: str, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` atomically (tmp file + rename), file mode ``mode``."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_json_object(path: str) -> dict:
    """The JSON object in ``path``; ``{}`` when it is missing or not an object."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def read_toml(path: str) -> dict:
    """The TOML document in ``path``; ``{}`` when it is missing or unreadable."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps_toml(document: dict) -> str:
    """TOML text of ``document`` (tables, scalars, lists; dates are not supported)."""
    lines: list[str] = []

    def table(prefix: list[str], values: dict) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in values.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append("")
            lines.append("[" + ".".join(_key(part) for part in prefix) + "]")
        for name, value in scalars.items():
            lines.append(f"{_key(name)} = {_value(value)}")
        for name, value in tables.items():
            table(prefix + [name], value)

    table([], document)
    return "\n".join(lines).lstrip("\n") + "\n"
