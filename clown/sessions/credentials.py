"""``GET /api/credentials``: which credentials the daemon can find, and where, never their values.

Each entry is ``{"configured": bool, "source": "env"|"file"|"keyring"|null}``:

- ``github_token``: ``GITHUB_TOKEN``/``GH_TOKEN``, else an ``oauth_token`` in gh's
  ``hosts.yml`` (``$GH_CONFIG_DIR``, else ``~/.config/gh``);
- ``anthropic_oauth_token``: ``CLAUDE_CODE_OAUTH_TOKEN``, else ``~/.claude/.credentials.json``
  holding an OAuth token;
- ``openai_api_key``: ``OPENAI_API_KEY``, else ``$CODEX_HOME/auth.json`` (default
  ``~/.codex``) holding a key or tokens;
- ``profile:<alias>``: every profile whose key clown holds (a 0600 file under ``secrets/``).

"keyring" is never reported: this version reads no keyring.
"""

import json
import os
import re

UNSET = {"configured": False, "source": None}


def _env(environ, *names) -> dict | None:
    if any(environ.get(name) for name in names):
        return {"configured": True, "source": "env"}
    return None


def _json_file(path: str):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def github_token(environ, home: str) -> dict:
    found = _env(environ, "GITHUB_TOKEN", "GH_TOKEN")
    if found:
        return found
    config = environ.get("GH_CONFIG_DIR") or os.path.join(environ.get("XDG_CONFIG_HOME") or
                                                          os.path.join(home, ".config"), "gh")
    try:
        with open(os.path.join(config, "hosts.yml")) as handle:
            if re.search(r"^\s*oauth_token:\s*\S+", handle.read(), re.MULTILINE):
                return {"configured": True, "source": "file"}
    except OSError:
        pass
    return dict(UNSET)


def anthropic_oauth_token(environ, home: str) -> dict:
    found = _env(environ, "CLAUDE_CODE_OAUTH_TOKEN")
    if found:
        return found
    document = _json_file(os.path.join(home, ".claude", ".credentials.json"))
    oauth = document.get("claudeAiOauth") if isinstance(document, dict) else None
    if isinstance(oauth, dict) and (oauth.get("accessToken") or oauth.get("refreshToken")):
        return {"configured": True, "source": "file"}
    return dict(UNSET)


def openai_api_key(environ, home: str) -> dict:
    found = _env(environ, "OPENAI_API_KEY")
    if found:
        return found
    codex_home = environ.get("CODEX_HOME") or os.path.join(home, ".codex")
    document = _json_file(os.path.join(codex_home, "auth.json"))
    if isinstance(document, dict) and (document.get("OPENAI_API_KEY") or document.get("tokens")):
        return {"configured": True, "source": "file"}
    return dict(UNSET)


def credentials_status(store, environ=None, home: str | None = None) -> dict:
    """The ``credentials`` object of ``GET /api/credentials``."""
    environ = os.environ if environ is None else environ
    home = home or os.path.expanduser("~")
    result = {
        "github_token": github_token(environ, home),
        "anthropic_oauth_token": anthropic_oauth_token(environ, home),
        "openai_api_key": openai_api_key(environ, home),
    }
    for row in store.execute("SELECT alias FROM profiles WHERE has_key = 1 ORDER BY alias"):
        result[f"profile:{row['alias']}"] = {"configured": True, "source": "file"}
    return result
