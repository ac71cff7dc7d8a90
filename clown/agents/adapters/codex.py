"""Codex CLI: ``CODEX_HOME`` in the profile home with a ``config.toml`` clown keeps current.

For a provider with an endpoint, ``config.toml`` gets a ``clown`` model provider whose
``base_url`` is the endpoint (or the profile's proxy) and whose ``env_key`` is the
provider's key variable, plus the model. Every directory the profile starts in is trusted
(``[projects."<dir>"] trust_level = "trusted"``). Keys the user added are kept.
"""

import os

from clown.agents.adapters.base import AgentSetup
from clown.agents.files import dumps_toml, read_toml, write_atomic

CONFIG_FILE = "config.toml"
PROVIDER_NAME = "clown"
DEFAULT_ENV_KEY = "OPENAI_API_KEY"


def prepare(setup: AgentSetup) -> None:
    codex_home = setup.config_dir(".codex")
    setup.env["CODEX_HOME"] = codex_home
    path = os.path.join(codex_home, CONFIG_FILE)
    config = read_toml(path)
    if setup.model:
        config["model"] = setup.model
    if setup.provider.type != "self" and setup.base_url:
        env_key = setup.provider.env_key or DEFAULT_ENV_KEY
        config["model_provider"] = PROVIDER_NAME
        providers = config.get("model_providers")
        if not isinstance(providers, dict):
            providers = config["model_providers"] = {}
        providers[PROVIDER_NAME] = {
            "name": setup.provider.name,
            "base_url": setup.base_url,
            "env_key": env_key,
            "wire_api": setup.provider.wire_api,
        }
        if setup.key_secret:
            setup.secret_env[env_key] = setup.key_secret
    elif config.get("model_provider") == PROVIDER_NAME:
        del config["model_provider"]
    config.setdefault("check_for_update_on_startup", False)
    projects = config.get("projects")
    if not isinstance(projects, dict):
        projects = config["projects"] = {}
    project = projects.get(setup.cwd)
    if not isinstance(project, dict):
        project = projects[setup.cwd] = {}
    project["trust_level"] = "trusted"
    write_atomic(path, dumps_toml(config))
