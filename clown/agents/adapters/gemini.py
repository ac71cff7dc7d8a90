"""Gemini CLI: ``GEMINI_CLI_HOME`` is the profile home, so its ``.gemini/`` lives there.

With a provider endpoint and key, ``GOOGLE_GEMINI_BASE_URL`` and ``GEMINI_API_KEY``; the
model in ``GEMINI_MODEL``. With provider ``self`` it uses its own login, kept in the
profile's ``.gemini/``.
"""

from clown.agents.adapters.base import AgentSetup


def prepare(setup: AgentSetup) -> None:
    setup.config_dir(".gemini")
    setup.env["GEMINI_CLI_HOME"] = setup.profile_home
    if setup.model:
        setup.env["GEMINI_MODEL"] = setup.model
    if setup.provider.type != "self":
        if setup.base_url:
            setup.env["GOOGLE_GEMINI_BASE_URL"] = setup.base_url
        if setup.key_secret:
            setup.secret_env["GEMINI_API_KEY"] = setup.key_secret
