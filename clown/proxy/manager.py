"""The proxy manager of the web front: one supervisor program ``proxy-<alias>`` per profile.

Life cycle (supervisor's states, lower-cased, are the proxy's ``status``)::

    stopped --start--> starting --(listening)--> running --stop--> stopped
                           |                        |
                           +--(exits)--> backoff ---+--(too many)--> fatal

``start`` writes the launch spec (see ``clown.workers.proxy``), picks a port, sets the
profile's ``proxy_enabled`` and adds the program (``autorestart=true``: supervisor
restarts a crashed worker, on the same port since the spec keeps it). ``stop`` removes
the program and clears ``proxy_enabled``. At web start every enabled proxy is started
again (clownd starts with no worker programs).
"""

import asyncio
import json
import logging
import os
import secrets as pysecrets
import socket
from dataclasses import dataclass

from clown import clock
from clown.supervise.client import SupervisorError

log = logging.getLogger(__name__)

MODULE = "clown.workers.proxy"
READY_TIMEOUT_SECS = 10.0
STATUS_OF_STATE = {"RUNNING": "running", "STARTING": "starting", "BACKOFF": "backoff", "FATAL": "fatal",
                   "EXITED": "starting", "STOPPING": "stopped", "STOPPED": "stopped", "UNKNOWN": "fatal"}


class ProxyNotFound(LookupError):
    """No profile has that alias."""


class ProxyError(Exception):
    """The proxy cannot be started; the message says why (no free port, no endpoint, ...)."""


@dataclass
class ProxyEndpoint:
    """What an agent needs to go through its profile's proxy."""

    base_url: str               # http://127.0.0.1:<port>
    placeholder_secret: str     # name of the secret holding the placeholder credential
    port: int


def program_name(alias: str) -> str:
    return "proxy-" + alias


def key_secret_name(alias: str) -> str:
    return f"profile-{alias}.key"


def placeholder_secret_name(alias: str) -> str:
    return f"profile-{alias}.placeholder"


def auth_header_for(provider_type: str) -> str:
    """How the real key goes upstream: Anthropic's own API wants ``x-api-key``; compatible
    providers get the header the agent used; OpenAI-style APIs ``Authorization: Bearer``."""
    if provider_type == "anthropic":
        return "x-api-key"
    if provider_type == "anthropic-compatible":
        return "mirror"
    return "bearer"


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ProxyManager:
    def __init__(self, ctx):
        self.ctx = ctx
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, alias: str) -> asyncio.Lock:
        return self._locks.setdefault(alias, asyncio.Lock())

    # -- reading -----------------------------------------------------------------------------

    def _profile(self, alias: str):
        row = self.ctx.store.execute("SELECT * FROM profiles WHERE alias = ?", (alias,)).fetchone()
        if row is None:
            raise ProxyNotFound(f"Profile '{alias}' not found")
        return row

    def _spec(self, alias: str) -> dict | None:
        try:
            with open(self.ctx.home.spec(program_name(alias))) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def _restarts(self, alias: str) -> int:
        row = self.ctx.store.execute("SELECT restarts FROM program_restarts WHERE program = ?",
                                     (program_name(alias),)).fetchone()
        return row["restarts"] if row else 0

    async def status(self, alias: str) -> dict:
        """``{profile, enabled, port, pid, status, restarts, started_at}``. Raises ProxyNotFound."""
        row = self._profile(alias)
        info = await self.ctx.workers.info(program_name(alias))
        spec = self._spec(alias)
        state = info["statename"] if info else "STOPPED"
        running = state in ("RUNNING", "STARTING")
        return {
            "profile": alias,
            "enabled": bool(row["proxy_enabled"]),
            "port": spec["port"] if spec else None,
            "pid": info["pid"] if info and running and info.get("pid") else None,
            "status": STATUS_OF_STATE.get(state, "stopped"),
            "restarts": self._restarts(alias),
            "started_at": clock.utc_iso(info["start"]) if info and running and info.get("start") else None,
        }

    async def statuses(self) -> list[dict]:
        """Every profile's proxy that is enabled or has a program, by profile."""
        programs = {}
        try:
            for info in await self.ctx.workers.all():
                if info["name"].startswith("proxy-"):
                    programs[info["name"][len("proxy-"):]] = info
        except SupervisorError as exc:
            log.warning("cannot list programs: %s", exc)
        rows = self.ctx.store.execute("SELECT alias, proxy_enabled FROM profiles ORDER BY alias").fetchall()
        listed = []
        for row in rows:
            if not row["proxy_enabled"] and row["alias"] not in programs:
                continue
            status = await self.status(row["alias"])
            listed.append({name: status[name] for name in
                           ("profile", "port", "pid", "status", "restarts", "started_at", "enabled")})
        return listed

    # -- changing ----------------------------------------------------------------------------

    def _pick_port(self, alias: str) -> int:
        """This profile's port from its last spec when still free, else a free one in range."""
        low, high = self.ctx.config.proxy.port_range
        taken = set()
        for name in os.listdir(self.ctx.home.specs):
            if name.startswith("proxy-") and name.endswith(".json") and name != program_name(alias) + ".json":
                try:
                    with open(os.path.join(self.ctx.home.specs, name)) as handle:
                        taken.add(int(json.load(handle)["port"]))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        previous = self._spec(alias)
        if previous and low <= previous.get("port", 0) <= high and previous["port"] not in taken \
                and port_is_free(previous["port"]):
            return previous["port"]
        for port in range(low, high + 1):
            if port not in taken and port_is_free(port):
                return port
        raise ProxyError(f"no free port in [proxy] port_range {low}-{high}")

    def _write_spec(self, alias: str, row) -> dict:
        provider = self.ctx.catalog.provider(row["provider_id"]) if hasattr(self.ctx, "catalog") else None
        if provider is None:
            raise ProxyError(f"provider '{row['provider_id']}' of profile '{alias}' is not in the catalog")
        if provider.type == "self":
            raise ProxyError(f"provider '{provider.id}' uses the agent's own login: there is no key to proxy")
        upstream = provider.endpoint_url(row["endpoint_id"])
        if not upstream:
            raise ProxyError(f"provider '{provider.id}' has no endpoint '{row['endpoint_id']}'")
        placeholder = placeholder_secret_name(alias)
        if not self.ctx.secrets.exists(placeholder):
            self.ctx.secrets.write(placeholder, "clown-placeholder-" + pysecrets.token_urlsafe(32))
        config = self.ctx.config.proxy
        spec = {
            "profile": alias,
            "port": self._pick_port(alias),
            "upstream": upstream,
            "provider_type": provider.type,
            "auth_header": auth_header_for(provider.type),
            "key_secret": key_secret_name(alias),
            "placeholder_secret": placeholder,
            "upstream_timeout_secs": config.upstream_timeout_secs,
            "max_body_bytes": config.max_body_bytes,
            "agent": row["agent_id"],
            "provider": row["provider_id"],
            "model": row["model"],
            "inject_stream_usage": True,
        }
        path = self.ctx.home.spec(program_name(alias))
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(spec, handle)
        os.replace(tmp, path)
        return spec

    async def _wait_listening(self, alias: str, port: int) -> None:
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_SECS
        while asyncio.get_running_loop().time() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                info = await self.ctx.workers.info(program_name(alias))
                if info and info["statename"] in ("FATAL", "BACKOFF"):
                    raise ProxyError(f"the proxy of '{alias}' failed to start (see /api/logs/{program_name(alias)})")
                await asyncio.sleep(0.05)
        raise ProxyError(f"the proxy of '{alias}' is not listening on {port} after {READY_TIMEOUT_SECS:g}s")

    async def start(self, alias: str) -> dict:
        """Start (or keep running) the profile's proxy and enable it; returns its status."""
        async with self._lock(alias):
            row = self._profile(alias)
            info = await self.ctx.workers.info(program_name(alias))
            if info and info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
                spec = self._spec(alias)
            else:
                if info is not None:
                    await self.ctx.workers.remove(program_name(alias))
                spec = self._write_spec(alias, row)
                await self.ctx.workers.add(program_name(alias), MODULE, ["--profile", alias], autorestart="true",
                                           startsecs=1)
            self.ctx.store.execute("UPDATE profiles SET proxy_enabled = 1 WHERE alias = ?", (alias,))
            await self._wait_listening(alias, spec["port"])
            await self._settled(alias)
            status = await self.status(alias)
        self.ctx.events.publish("proxy", "proxy_started", status)
        return status

    async def _settled(self, alias: str) -> bool:
        """Wait out supervisor's startsecs so the answer says running (the port already answers)."""
        for _ in range(40):
            info = await self.ctx.workers.info(program_name(alias))
            if info and info["statename"] == "RUNNING":
                return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self, alias: str) -> dict:
        """Stop the profile's proxy and disable it; returns its status. Raises ProxyNotFound."""
        async with self._lock(alias):
            self._profile(alias)
            await self.ctx.workers.remove(program_name(alias))
            self.ctx.store.execute("UPDATE profiles SET proxy_enabled = 0 WHERE alias = ?", (alias,))
            status = await self.status(alias)
        self.ctx.events.publish("proxy", "proxy_stopped", status)
        return status

    def forget(self, alias: str) -> None:
        """Once the profile is deleted (its proxy stopped): its launch spec (which holds its port
        out of others' reach), its placeholder and its restart count go too, so that a profile
        created later under the same alias starts from nothing."""
        try:
            os.unlink(self.ctx.home.spec(program_name(alias)))
        except FileNotFoundError:
            pass
        self.ctx.secrets.delete(placeholder_secret_name(alias))
        self.ctx.store.execute("DELETE FROM program_restarts WHERE program = ?", (program_name(alias),))

    async def ensure_running(self, alias: str) -> ProxyEndpoint:
        """Start the proxy unless it runs; what an agent needs to use it."""
        status = await self.start(alias)
        return ProxyEndpoint(base_url=f"http://127.0.0.1:{status['port']}",
                             placeholder_secret=placeholder_secret_name(alias), port=status["port"])

    async def restore(self) -> None:
        """At web start: start every enabled proxy (clownd begins with no worker programs)."""
        rows = self.ctx.store.execute("SELECT alias FROM profiles WHERE proxy_enabled = 1").fetchall()
        for row in rows:
            try:
                await self.start(row["alias"])
            except Exception as exc:
                log.warning("could not restore the proxy of %s: %s", row["alias"], exc)
