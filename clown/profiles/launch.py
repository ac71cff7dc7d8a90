"""How a profile runs: the argv, environment and working dir of its agent.

``build_launch`` is the whole recipe and works in any process: the environment is built
from scratch (an allowlist of the user's variables, then the agent manifest's ``env``,
the profile's ``env``, then what the agent's adapter needs), the agent's config dir is
isolated inside the profile home (not the whole ``HOME``: git identity and ssh keep
working), and argv is a list, never a shell string. Credentials are never put in
``env``: ``secret_env`` maps each variable to the NAME of a secret in the SecretStore,
and the process that starts the agent (the terminal worker) reads it there.
"""

import json
import os
from dataclasses import dataclass, field

from clown.agents.adapters import ADAPTERS, AgentSetup
from clown.catalog.detection import resolve_binary

# The user's variables an agent keeps: identity, locale, terminal, ssh agent, git author.
ENV_ALLOWLIST = frozenset({
    "HOME", "USER", "LOGNAME", "PATH", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "COLORTERM",
    "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "SSH_AUTH_SOCK", "SSH_AGENT_PID", "XDG_RUNTIME_DIR",
    "DISPLAY", "WAYLAND_DISPLAY", "EDITOR", "VISUAL", "PAGER", "TMPDIR",
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
    "GIT_SSH_COMMAND", "GIT_CONFIG_GLOBAL",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE",
})
ENV_PREFIXES = ("LC_",)
DEFAULT_TERM = "xterm-256color"

# Variables a profile's own ``env`` may never set: credentials, endpoints and the config
# dirs that keep profiles apart (plus, per profile, the provider's key variable).
RESERVED_ENV = frozenset({
    "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "CLAUDE_CONFIG_DIR", "CODEX_HOME",
    "GEMINI_CLI_HOME", "OPENCODE_CONFIG", "HOME",
})


class LaunchError(Exception):
    """The profile cannot run as it is (agent not installed, manifest gone, bad dir)."""


@dataclass
class Launch:
    argv: list[str]                       # absolute binary path + manifest args + profile args + extra args
    env: dict[str, str]                   # the whole environment, without any credential
    secret_env: dict[str, str]            # env var -> secret NAME in the SecretStore
    cwd: str                              # working dir (default: the profile home)
    alias: str = ""
    agent_id: str = ""
    profile_home: str = ""
    through_proxy: bool = False
    extra: dict = field(default_factory=dict)


def key_secret_name(alias: str) -> str:
    return f"profile-{alias}.key"


def base_environment(environ) -> dict[str, str]:
    """The allowlisted part of ``environ``, with ``TERM`` = xterm-256color: the agent's
    terminal is clown's (xterm.js, or a tmux pane), whatever TERM the daemon itself was
    started with. The agent's manifest or the profile's ``env`` may set another."""
    env = {name: value for name, value in environ.items()
           if name in ENV_ALLOWLIST or name.startswith(ENV_PREFIXES)}
    env["TERM"] = DEFAULT_TERM
    env.setdefault("PATH", os.defpath)
    return env


def _json_field(value, default):
    if value is None:
        return default
    if isinstance(value, (list, dict)):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return default


def build_launch(home, catalog, profile_row, secrets, extra_args, working_dir, proxy_endpoint=None,
                 environ=None) -> Launch:
    """The Launch of the profile ``profile_row`` (a ``profiles`` row or a dict of its columns).

    ``home`` is the clown Home, ``catalog`` anything with ``agent(id)``/``provider(id)``,
    ``secrets`` the SecretStore, ``working_dir`` an existing directory or None (the
    profile home), ``proxy_endpoint`` an object with ``base_url`` and
    ``placeholder_secret`` when the agent must go through the profile's proxy.
    Writes the agent's config files in the profile home. Raises LaunchError.
    """
    environ = os.environ if environ is None else environ
    row = dict(profile_row)
    alias = row["alias"]
    agent = catalog.agent(row["agent_id"])
    if agent is None:
        raise LaunchError(f"profile '{alias}': agent '{row['agent_id']}' is not in the catalog")
    provider = catalog.provider(row["provider_id"])
    if provider is None:
        raise LaunchError(f"profile '{alias}': provider '{row['provider_id']}' is not in the catalog")
    binary = resolve_binary(agent, environ)
    if binary is None:
        raise LaunchError(f"agent '{agent.id}' is not installed: '{agent.binary}' was not found")
    profile_home = home.profile_home(alias)
    os.makedirs(profile_home, mode=0o700, exist_ok=True)
    profile_home = os.path.realpath(profile_home)
    cwd = os.path.realpath(working_dir) if working_dir else profile_home
    if not os.path.isdir(cwd):
        raise LaunchError(f"working dir {working_dir!r} is not a directory")

    if provider.type == "self":
        base_url, key_secret, through_proxy = None, None, False
    elif proxy_endpoint is not None:
        base_url, key_secret, through_proxy = proxy_endpoint.base_url, proxy_endpoint.placeholder_secret, True
    else:
        base_url = provider.endpoint_url(row.get("endpoint_id"))
        key_secret = key_secret_name(alias) if secrets.exists(key_secret_name(alias)) else None
        through_proxy = False

    env = base_environment(environ)
    if agent.profile_strategy == "home-wrapper":
        env["HOME"] = profile_home
    env.update(agent.env)
    reserved = RESERVED_ENV | ({provider.env_key} if provider.env_key else set())
    env.update({name: value for name, value in _json_field(row.get("env"), {}).items() if name not in reserved})

    setup = AgentSetup(agent=agent, provider=provider, model=row.get("model"), profile_home=profile_home,
                       cwd=cwd, base_url=base_url, key_secret=key_secret, through_proxy=through_proxy,
                       secrets=secrets,
                       real_key_secret=key_secret_name(alias) if secrets.exists(key_secret_name(alias)) else None)
    adapter = ADAPTERS.get(agent.adapter) if agent.adapter else None
    if adapter is not None:
        adapter(setup)
    elif key_secret and provider.env_key:
        setup.secret_env[provider.env_key] = key_secret
    env.update(setup.env)
    for name in setup.secret_env:
        env.pop(name, None)

    argv = [binary, *agent.args, *setup.args, *_json_field(row.get("args"), []), *(extra_args or [])]
    return Launch(argv=[str(part) for part in argv], env=env, secret_env=dict(setup.secret_env), cwd=cwd,
                  alias=alias, agent_id=agent.id, profile_home=profile_home, through_proxy=through_proxy)
