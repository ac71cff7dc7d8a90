"""opencode: its data, state and cache (auth, sessions) under the profile home via the XDG
variables, and its config in ``<profile home>/opencode.json`` named by ``OPENCODE_CONFIG``.

``XDG_CONFIG_HOME`` is left alone on purpose: git reads its config from there too. The
config file gets a ``clown`` provider (Anthropic or OpenAI-compatible SDK, by provider
type) at the endpoint or proxy, its key read from the provider's key variable.
"""

import json
import os

from clown.agents.adapters.base import AgentSetup
from clown.agents.files import read_json_object, write_atomic

CONFIG_FILE = "opencode.json"


def prepare(setup: AgentSetup) -> None:
    home = setup.profile_home
    for name, sub in (("XDG_DATA_HOME", ".local/share"), ("XDG_STATE_HOME", ".local/state"),
                      ("XDG_CACHE_HOME", ".cache")):
        path = os.path.join(home, sub)
        os.makedirs(path, mode=0o700, exist_ok=True)
        setup.env[name] = path
    setup.env["OPENCODE_DISABLE_AUTOUPDATE"] = "1"
    path = os.path.join(home, CONFIG_FILE)
    config = read_json_object(path)
    config.setdefault("$schema", "https://opencode.ai/config.json")
    config.setdefault("autoupdate", False)
    if setup.provider.type != "self" and setup.base_url:
        env_key = setup.provider.env_key or "OPENCODE_API_KEY"
        anthropic = setup.provider.type.startswith("anthropic")
        base_url = setup.base_url + "/v1" if anthropic else setup.base_url
        provider = {
            "npm": "@ai-sdk/anthropic" if anthropic else "@ai-sdk/openai-compatible",
            "name": setup.provider.name,
            "options": {"baseURL": base_url, "apiKey": "{env:%s}" % env_key},
        }
        if setup.model:
            provider["models"] = {setup.model: {}}
            config["model"] = f"clown/{setup.model}"
        config.setdefault("provider", {})["clown"] = provider
        if setup.key_secret:
            setup.secret_env[env_key] = setup.key_secret
    elif setup.model:
        config["model"] = setup.model
    write_atomic(path, json.dumps(config, indent=2) + "\n")
    setup.env["OPENCODE_CONFIG"] = path
