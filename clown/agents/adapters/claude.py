"""Claude Code: ``CLAUDE_CONFIG_DIR`` in the profile home, ready to use on first start.

Ready means no theme picker, onboarding, folder-trust question or API-key confirmation:
``.claude.json`` (in ``CLAUDE_CONFIG_DIR``) gets onboarding done, a theme, and
``projects[<dir>].hasTrustDialogAccepted`` for every directory the profile starts in; the
rest of the file is kept. The credential goes in ``ANTHROPIC_AUTH_TOKEN`` (sent as a
Bearer token, which Claude Code takes without asking), except for Anthropic itself
reached directly, whose API keys go in ``ANTHROPIC_API_KEY`` and are pre-approved by
their last 20 characters (Claude Code's ``customApiKeyResponses``).
"""

import json
import os

from clown.agents.adapters.base import AgentSetup
from clown.agents.files import read_json_object, write_atomic

STATE_FILE = ".claude.json"
THEME = "dark"


def prepare(setup: AgentSetup) -> None:
    config_dir = setup.config_dir(".claude")
    setup.env["CLAUDE_CONFIG_DIR"] = config_dir
    setup.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    setup.env["DISABLE_AUTOUPDATER"] = "1"
    if os.geteuid() == 0:
        setup.env["IS_SANDBOX"] = "1"
    approved_suffix = revoked_suffix = None
    kind = setup.provider.type
    if kind != "self":
        if setup.base_url:
            setup.env["ANTHROPIC_BASE_URL"] = setup.base_url
        if setup.key_secret:
            if kind == "anthropic" and not setup.through_proxy:
                setup.secret_env["ANTHROPIC_API_KEY"] = setup.key_secret
                key = setup.secrets.read(setup.key_secret) or ""
                approved_suffix = key[-20:] if key else None
            else:
                setup.secret_env["ANTHROPIC_AUTH_TOKEN"] = setup.key_secret
                if setup.through_proxy and setup.real_key_secret:
                    # A run without the proxy approved the real key: its tail must not stay in the
                    # agent's config now that the agent holds only the placeholder.
                    key = setup.secrets.read(setup.real_key_secret) or ""
                    revoked_suffix = key[-20:] if key else None
        if setup.model:
            setup.env["ANTHROPIC_MODEL"] = setup.model
            if kind != "anthropic":
                # A compatible provider serves its own models only: background and
                # sub-agent calls must ask for it too, not for claude-haiku.
                for name in ("ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
                             "ANTHROPIC_DEFAULT_HAIKU_MODEL", "ANTHROPIC_SMALL_FAST_MODEL"):
                    setup.env[name] = setup.model
    elif setup.model:
        setup.env["ANTHROPIC_MODEL"] = setup.model
    write_state(config_dir, setup.cwd, onboarded=kind != "self", approved_suffix=approved_suffix,
                revoked_suffix=revoked_suffix)


def write_state(config_dir: str, cwd: str, onboarded: bool, approved_suffix: str | None,
                revoked_suffix: str | None = None) -> dict:
    """Update ``.claude.json`` in ``config_dir``: theme, onboarding, trust of ``cwd``, the
    approved custom API key (its last 20 characters, as Claude Code keeps it)."""
    path = os.path.join(config_dir, STATE_FILE)
    state = read_json_object(path)
    state.setdefault("theme", THEME)
    if onboarded:
        state["hasCompletedOnboarding"] = True
        state.setdefault("lastOnboardingVersion", "2.1.332")
    state.setdefault("numStartups", 1)
    projects = state.get("projects")
    if not isinstance(projects, dict):
        projects = state["projects"] = {}
    project = projects.get(cwd)
    if not isinstance(project, dict):
        project = projects[cwd] = {"allowedTools": []}
    project["hasTrustDialogAccepted"] = True
    project["hasCompletedProjectOnboarding"] = True
    if approved_suffix:
        responses = state.get("customApiKeyResponses")
        if not isinstance(responses, dict):
            responses = state["customApiKeyResponses"] = {"approved": [], "rejected": []}
        approved = responses.setdefault("approved", [])
        if approved_suffix not in approved:
            approved.append(approved_suffix)
    responses = state.get("customApiKeyResponses")
    if revoked_suffix and isinstance(responses, dict):
        for name in ("approved", "rejected"):
            if isinstance(responses.get(name), list):
                responses[name] = [entry for entry in responses[name] if entry != revoked_suffix]
    write_atomic(path, json.dumps(state, indent=2) + "\n")
    return state
