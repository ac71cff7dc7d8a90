"""What an adapter is given and fills in."""

import os
from dataclasses import dataclass, field

from clown.catalog.manifests import Agent, Provider


@dataclass
class AgentSetup:
    agent: Agent
    provider: Provider
    model: str | None
    profile_home: str          # absolute, real path; the agent's config lives below it
    cwd: str                   # the directory the agent starts in (trusted by the adapter)
    base_url: str | None       # the provider endpoint, or the profile's proxy when it is on
    key_secret: str | None     # secret NAME of the credential (the real key, or the proxy's placeholder)
    through_proxy: bool
    secrets: object            # clown.secrets.SecretStore
    env: dict = field(default_factory=dict)
    secret_env: dict = field(default_factory=dict)
    args: list = field(default_factory=list)
    real_key_secret: str | None = None   # secret NAME of the profile's real key (set even through the proxy)

    @property
    def has_credential(self) -> bool:
        return self.key_secret is not None

    def config_dir(self, name: str) -> str:
        path = os.path.join(self.profile_home, name)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path
