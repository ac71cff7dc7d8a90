"""The registry: a remote set of manifests and a pricing table, synced into the clown home.

Placeholder: the cache layout only; sync comes next.
"""

import json
import os
import re

INDEX = "registry.json"
CURRENT = "current"
_COMMIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def current_dir(registry_root: str) -> str | None:
    """The directory of the registry in force (``<root>/<commit>``), or None when none is."""
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
    """The pricing table file of the registry in force, or None."""
    directory = current_dir(registry_root)
    if directory is None:
        return None
    try:
        with open(os.path.join(directory, INDEX), encoding="utf-8") as handle:
            index = json.load(handle)
        relative = index["pricing"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    path = os.path.realpath(os.path.join(directory, relative))
    return path if path.startswith(os.path.realpath(directory) + os.sep) else None
