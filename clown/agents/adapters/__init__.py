"""One adapter per agent: what its config dir, config files and environment need to be.

An adapter is a function ``prepare(setup: AgentSetup) -> None`` that writes the agent's
config files inside the profile home and fills ``setup.env``, ``setup.secret_env`` and
``setup.args``. An agent whose manifest names no adapter gets none of this: it runs as
its binary with the profile's args, env and working dir, and the provider key in the
provider's ``auth.env_key`` variable.
"""

from clown.agents.adapters import claude, codex, gemini, opencode
from clown.agents.adapters.base import AgentSetup

ADAPTERS = {
    "claude": claude.prepare,
    "codex": codex.prepare,
    "gemini": gemini.prepare,
    "opencode": opencode.prepare,
}

__all__ = ["ADAPTERS", "AgentSetup"]
