"""The registry: manifests and a pricing table from ``[registry] url``, synced into the home.

A registry is a directory (served over https, http, or a ``file:`` URL) holding
``registry.json``::

    {
      "channel": "stable",
      "commit": "f4a12c3",
      "agents":    [{"path": "agents/claude.toml",      "sha256": "<hex>"}, ...],
      "providers": [{"path": "providers/minimax.toml",  "sha256": "<hex>"}, ...],
      "pricing":    {"path": "pricing.toml",            "sha256": "<hex>"}
    }

``[registry] url`` names either that file or the directory holding it; file paths are
relative to it. A sync downloads the index, then every file; each must match its sha256
and parse (manifests and the pricing table are validated), or nothing changes. A good set
is written to ``$CLOWN_HOME/registry/<commit>/`` and then made current by replacing the
``registry/current`` pointer file atomically; ``registry/state.json`` records the last
sync. The package's own built-in registry (``clown/catalog/builtin/``) has the same
layout, so clown works offline.
"""

import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from clown.clock import utc_iso

INDEX = "registry.json"
CURRENT = "current"
STATE = "state.json"
FETCH_TIMEOUT_SECS = 15.0
MAX_FILE_BYTES = 1 << 20
COMMIT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_COMMIT = re.compile(COMMIT_PATTERN)
_RELATIVE = r"^(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_][A-Za-z0-9_./-]{0,255}$"


class RegistryError(Exception):
    """A sync failed; the message says what (unreachable, checksum, bad file). Nothing changed."""


def builtin_dir() -> str:
    return str(resources.files(__package__).joinpath("builtin"))


class FileEntrySchema(Schema):
    class Meta:
        unknown = RAISE

    path = fields.String(required=True, validate=validate.Regexp(_RELATIVE, error="must be a plain relative path"))
    sha256 = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$", error="must be 64 hex digits"))


class IndexSchema(Schema):
    class Meta:
        unknown = RAISE

    channel = fields.String(required=True, validate=validate.Length(min=1, max=64))
    commit = fields.String(required=True, validate=validate.Regexp(COMMIT_PATTERN))
    agents = fields.List(fields.Nested(FileEntrySchema), load_default=list)
    providers = fields.List(fields.Nested(FileEntrySchema), load_default=list)
    pricing = fields.Nested(FileEntrySchema, load_default=None, allow_none=True)


def parse_index(raw: bytes, source: str) -> dict:
    """Validate a ``registry.json``; raises RegistryError naming the field."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"registry index {source} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RegistryError(f"registry index {source} is not a JSON object")
    try:
        return IndexSchema().load(document)
    except ValidationError as exc:
        from clown.catalog.manifests import _error_field

        name, why = _error_field(exc.normalized_messages())
        raise RegistryError(f"registry index {source}: field '{name}': {why}") from None


def read_index(directory: str) -> dict | None:
    try:
        with open(os.path.join(directory, INDEX), "rb") as handle:
            return parse_index(handle.read(), os.path.join(directory, INDEX))
    except (OSError, RegistryError):
        return None


def current_dir(registry_root: str) -> str | None:
    """The directory of the synced registry in force (``<root>/<commit>``), or None."""
    try:
        with open(os.path.join(registry_root, CURRENT), encoding="utf-8") as handle:
            commit = handle.read().strip()
    except OSError:
        return None
    if not _COMMIT.match(commit) or ".." in commit:
        return None
    path = os.path.join(registry_root, commit)
    return path if os.path.isfile(os.path.join(path, INDEX)) else None


def current_pricing_path(registry_root: str) -> str | None:
    """The pricing table file of the synced registry in force, or None."""
    directory = current_dir(registry_root)
    index = read_index(directory) if directory else None
    if not index or not index["pricing"]:
        return None
    return os.path.join(directory, index["pricing"]["path"])


def index_url(url: str) -> str:
    """``url`` itself when it names a ``.json`` file, else ``<url>/registry.json``."""
    if urllib.parse.urlparse(url).path.endswith(".json"):
        return url
    return url.rstrip("/") + "/" + INDEX


def fetch(url: str, timeout: float = FETCH_TIMEOUT_SECS) -> bytes:
    """GET ``url`` (http, https or file) with a timeout and a size cap. Raises RegistryError."""
    if urllib.parse.urlparse(url).scheme not in ("http", "https", "file"):
        raise RegistryError(f"registry URL {url} is not http, https or file")
    request = urllib.request.Request(url, headers={"User-Agent": "clown-registry"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_FILE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise RegistryError(f"registry unreachable: {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryError(f"registry unreachable: {url}: {reason}") from None
    if len(body) > MAX_FILE_BYTES:
        raise RegistryError(f"registry file {url} is larger than {MAX_FILE_BYTES} bytes")
    return body


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_file(entry: dict, data: bytes, kind: str) -> None:
    """Check one file's checksum and contents. Raises RegistryError naming it."""
    from clown.catalog import manifests, pricing

    got = sha256_hex(data)
    if got != entry["sha256"]:
        raise RegistryError(f"registry file {entry['path']}: sha256 mismatch "
                            f"(index says {entry['sha256']}, file has {got})")
    try:
        text = data.decode("utf-8")
        if kind == "pricing":
            pricing.parse_table_text(text, entry["path"])
        else:
            manifests.parse(text, kind, entry["path"])
    except UnicodeDecodeError:
        raise RegistryError(f"registry file {entry['path']}: not UTF-8") from None
    except (manifests.ManifestError, pricing.PricingError) as exc:
        raise RegistryError(f"registry file {exc}") from None


def entries(index: dict):
    """``(kind, entry)`` for every file an index lists."""
    for entry in index["agents"]:
        yield "agent", entry
    for entry in index["providers"]:
        yield "provider", entry
    if index["pricing"]:
        yield "pricing", index["pricing"]


@dataclass
class RegistryStatus:
    channel: str
    commit: str
    last_sync: str | None
    cached: bool

    def as_dict(self) -> dict:
        return {"channel": self.channel, "commit": self.commit, "last_sync": self.last_sync, "cached": self.cached}


class RegistryCache:
    """The synced registries under ``$CLOWN_HOME/registry`` and the sync itself (blocking I/O)."""

    def __init__(self, root: str):
        self.root = root

    def current_dir(self) -> str | None:
        return current_dir(self.root)

    def _state(self) -> dict:
        try:
            with open(os.path.join(self.root, STATE), encoding="utf-8") as handle:
                state = json.load(handle)
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def status(self) -> RegistryStatus:
        """The registry in force: the synced one, else the built-in one."""
        directory = self.current_dir()
        index = read_index(directory) if directory else None
        state = self._state()
        if index:
            return RegistryStatus(index["channel"], index["commit"], state.get("last_sync"), True)
        builtin = read_index(builtin_dir())
        return RegistryStatus(builtin["channel"], builtin["commit"], state.get("last_sync"), False)

    def sync(self, url: str, force: bool = False) -> RegistryStatus:
        """Download, verify and switch to the registry at ``url``. Raises RegistryError.

        Without ``force``, a registry whose commit is already cached intact is not
        downloaded again (the index is still fetched to learn the commit).
        """
        source = index_url(url)
        raw_index = fetch(source)
        index = parse_index(raw_index, source)
        target = os.path.join(self.root, index["commit"])
        if force or not self._intact(target, index):
            files = {}
            for kind, entry in entries(index):
                data = fetch(urllib.parse.urljoin(source, entry["path"]))
                verify_file(entry, data, kind)
                files[entry["path"]] = data
            self._install(target, raw_index, files)
        self._point_at(index["commit"])
        self._write_state({"last_sync": utc_iso(), "url": url, "commit": index["commit"]})
        return self.status()

    def _intact(self, directory: str, index: dict) -> bool:
        on_disk = read_index(directory)
        if on_disk != index:
            return False
        for _, entry in entries(index):
            try:
                with open(os.path.join(directory, entry["path"]), "rb") as handle:
                    if sha256_hex(handle.read()) != entry["sha256"]:
                        return False
            except OSError:
                return False
        return True

    def _install(self, target: str, raw_index: bytes, files: dict[str, bytes]) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        staging = f"{target}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        for relative, data in {INDEX: raw_index, **files}.items():
            path = os.path.join(staging, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
        if os.path.exists(target):
            # Replacing a cached commit (force): the pointer may name it, so swap quickly.
            old = f"{target}.{os.getpid()}.old"
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)

    def _point_at(self, commit: str) -> None:
        pointer = os.path.join(self.root, CURRENT)
        tmp = f"{pointer}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(commit + "\n")
        os.replace(tmp, pointer)

    def _write_state(self, state: dict) -> None:
        path = os.path.join(self.root, STATE)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(tmp, path)


def write_index(directory: str, channel: str, commit: str) -> dict:
    """Write ``registry.json`` for the files in ``directory`` (agents/, providers/, pricing.toml).

    ``python -m clown.catalog.registry DIR CHANNEL COMMIT`` runs it: how a registry, the
    built-in one included, gets its checksums.
    """
    def listing(sub):
        folder = os.path.join(directory, sub)
        names = sorted(n for n in os.listdir(folder) if n.endswith(".toml")) if os.path.isdir(folder) else []
        return [{"path": f"{sub}/{name}", "sha256": _file_sha(os.path.join(folder, name))} for name in names]

    index = {"channel": channel, "commit": commit, "agents": listing("agents"), "providers": listing("providers")}
    pricing_path = os.path.join(directory, "pricing.toml")
    if os.path.exists(pricing_path):
        index["pricing"] = {"path": "pricing.toml", "sha256": _file_sha(pricing_path)}
    with open(os.path.join(directory, INDEX), "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=2)
        handle.write("\n")
    return index


def _file_sha(path: str) -> str:
    with open(path, "rb") as handle:
        return sha256_hex(handle.read())


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4:
        sys.exit("usage: python -m clown.catalog.registry DIR CHANNEL COMMIT")
    print(json.dumps(write_index(*sys.argv[1:]), indent=2))
