"""The profile manager: create, list, delete profiles and prepare their launches.

A profile is a row in ``profiles``, a home ``$CLOWN_HOME/profiles/<alias>`` and, when it
has one, a key in the SecretStore as ``profile-<alias>.key``. The key never goes to the
database, an answer or a log.
"""

import asyncio
import json
import logging
import os
import shutil
import sqlite3

from clown import store
from clown.clock import utc_iso
from clown.profiles.launch import Launch, LaunchError, RESERVED_ENV, build_launch, key_secret_name
from clown.web.base import ApiError

log = logging.getLogger(__name__)


class ProfileManager:
    def __init__(self, ctx):
        self.ctx = ctx

    @property
    def db(self):
        return self.ctx.store

    # -- read ---------------------------------------------------------------------------

    def _row(self, alias: str):
        return self.db.execute("SELECT * FROM profiles WHERE alias = ?", (alias,)).fetchone()

    def profile_home(self, alias: str) -> str:
        return os.path.realpath(self.ctx.home.profile_home(alias))

    @staticmethod
    def summary(row) -> dict:
        return {"alias": row["alias"], "agent_id": row["agent_id"], "provider_id": row["provider_id"],
                "endpoint_id": row["endpoint_id"], "model": row["model"], "last_used": row["last_used"]}

    def detail(self, row) -> dict:
        return {**self.summary(row), "created_at": row["created_at"], "profile_home": self.profile_home(row["alias"])}

    def list_profiles(self, agent: str | None = None) -> list[dict]:
        if agent:
            rows = self.db.execute("SELECT * FROM profiles WHERE agent_id = ? ORDER BY alias", (agent,)).fetchall()
        else:
            rows = self.db.execute("SELECT * FROM profiles ORDER BY alias").fetchall()
        return [self.summary(row) for row in rows]

    def get(self, alias: str) -> dict:
        """The profile's detail. Raises ApiError 404."""
        row = self._row(alias)
        if row is None:
            raise ApiError(404, f"Profile '{alias}' not found")
        return self.detail(row)

    def exists(self, alias: str) -> bool:
        return self._row(alias) is not None

    # -- create -------------------------------------------------------------------------

    def _check_against_catalog(self, data: dict) -> str | None:
        """Check agent, provider, endpoint and key; return the model to store. Raises ApiError 400."""
        catalog = self.ctx.catalog
        agent = catalog.agent(data["agent_id"])
        if agent is None:
            raise ApiError(400, f"body field 'agent_id': unknown agent '{data['agent_id']}'")
        provider = catalog.provider(data["provider_id"])
        if provider is None:
            raise ApiError(400, f"body field 'provider_id': unknown provider '{data['provider_id']}'")
        if not provider.has_endpoint(data["endpoint_id"]):
            known = ", ".join(sorted(provider.endpoints)) or "none"
            raise ApiError(400, f"body field 'endpoint_id': provider '{provider.id}' has no endpoint "
                                f"'{data['endpoint_id']}' (known: {known}, or 'default')")
        if provider.type == "self" and data["api_key"] is not None:
            raise ApiError(400, f"body field 'api_key': provider '{provider.id}' uses the agent's own login "
                                "and takes no key")
        if provider.key_required and data["api_key"] is None:
            raise ApiError(400, f"body field 'api_key': required by provider '{provider.id}'")
        if provider.env_key and provider.env_key in data["env"]:
            raise ApiError(400, f"body field 'env': may not set {provider.env_key}: clown sets it from the profile")
        return data["model"] or provider.default_model or agent.default_model

    def _create_blocking(self, data: dict) -> None:
        alias = data["alias"]
        model = self._check_against_catalog(data)
        has_key = data["api_key"] is not None
        try:
            with store.transaction(self.db):
                self.db.execute(
                    "INSERT INTO profiles (alias, agent_id, provider_id, endpoint_id, model, args, env, has_key,"
                    " proxy_enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (alias, data["agent_id"], data["provider_id"], data["endpoint_id"], model,
                     json.dumps(data["args"]), json.dumps(data["env"]), int(has_key), int(data["proxy"]), utc_iso()))
                if has_key:
                    self.ctx.secrets.write(key_secret_name(alias), data["api_key"])
                os.makedirs(self.ctx.home.profile_home(alias), mode=0o700, exist_ok=True)
        except sqlite3.IntegrityError:
            raise ApiError(409, f"Profile '{alias}' already exists") from None
        except OSError:
            self.ctx.secrets.delete(key_secret_name(alias))
            raise

    async def create(self, data: dict) -> dict:
        """Create a profile from a validated create body. Raises ApiError 400/409."""
        if self.exists(data["alias"]):
            raise ApiError(409, f"Profile '{data['alias']}' already exists")
        # The store connection is shared with the IOLoop thread: the few quick writes stay on it.
        self._create_blocking(data)
        self.ctx.events.publish("profiles", "profile_created", {"alias": data["alias"]})
        return {"alias": data["alias"], "message": "Profile created successfully"}

    # -- delete -------------------------------------------------------------------------

    def running_sessions(self, alias: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM terminal_sessions WHERE profile_alias = ? AND state != 'terminated'",
                               (alias,)).fetchone()[0]

    async def delete(self, alias: str, force: bool = False) -> dict:
        """Delete the profile, its key and its home. Raises ApiError 404, or 409 while it runs."""
        if not self.exists(alias):
            raise ApiError(404, f"Profile '{alias}' not found")
        running = self.running_sessions(alias)
        if running and not force:
            raise ApiError(409, f"Profile '{alias}' has {running} running terminal session(s): "
                                "terminate them first or delete with ?force=true")
        if running and hasattr(self.ctx, "terminals"):
            await self.ctx.terminals.terminate_profile_sessions(alias)
        if hasattr(self.ctx, "proxies"):
            try:
                await self.ctx.proxies.stop(alias)
            except Exception as exc:  # a proxy that was never started is not an error here
                log.info("stopping the proxy of profile %s on delete: %s", alias, exc)
            self.ctx.proxies.forget(alias)
        self.db.execute("DELETE FROM profiles WHERE alias = ?", (alias,))
        self.ctx.secrets.delete(key_secret_name(alias))
        await asyncio.to_thread(shutil.rmtree, self.ctx.home.profile_home(alias), True)
        self.ctx.events.publish("profiles", "profile_deleted", {"alias": alias})
        return {"message": "Profile deleted"}

    # -- launch -------------------------------------------------------------------------

    async def launch(self, alias: str, extra_args: list[str] | None = None, working_dir: str | None = None) -> Launch:
        """How to run the profile now: see ``clown.profiles.launch``. Sets ``last_used``.

        Starts the profile's proxy first when it is switched on. Raises ApiError 404
        (no such profile) or 400 (the profile cannot run: agent missing, bad dir).
        """
        row = self._row(alias)
        if row is None:
            raise ApiError(404, f"Profile '{alias}' not found")
        endpoint = None
        if row["proxy_enabled"] and hasattr(self.ctx, "proxies"):
            endpoint = await self.ctx.proxies.ensure_running(alias)
        try:
            launch = await asyncio.to_thread(build_launch, self.ctx.home, self.ctx.catalog, row, self.ctx.secrets,
                                             list(extra_args or []), working_dir, endpoint)
        except LaunchError as exc:
            raise ApiError(400, str(exc)) from None
        self.db.execute("UPDATE profiles SET last_used = ? WHERE alias = ?", (utc_iso(), alias))
        return launch


__all__ = ["ProfileManager", "RESERVED_ENV"]
