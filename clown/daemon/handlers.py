"""Routes of the daemon itself: /health, /api/config, /api/daemon/status, /api/logs, OpenAPI."""

import shutil

from clown import __version__
from clown.config import BACKENDS
from clown.daemon.feed import StoreFeed
from clown.daemon.logs import LogReader
from clown.daemon.schemas import (ConfigSchema, DaemonStatusSchema, HealthSchema, LogLinesSchema,
                                  LogProgramSchema, LogQuerySchema)
from clown.daemon.status import DaemonStatus
from clown.web.base import ApiError, ClownHandler, Op, SessionsHandler

# The CLI each session backend drives; pty needs nothing outside clown.
BACKEND_TOOLS = {"pty": None, "tmux": "tmux", "zellij": "zellij", "docker": "docker"}


def setup(ctx) -> None:
    feed = StoreFeed(ctx)
    ctx.startup.append(feed.start)


def available_backends() -> dict[str, bool]:
    return {name: tool is None or shutil.which(tool) is not None for name, tool in BACKEND_TOOLS.items()}


class HealthHandler(SessionsHandler):
    api = {"get": Op("Is the daemon up", response=HealthSchema, errors=())}

    def needs_auth(self) -> bool:
        return False

    def get(self):
        self.ok({"status": "healthy", "version": __version__})


class ConfigHandler(SessionsHandler):
    api = {"get": Op("The daemon's configuration", response=ConfigSchema, errors=(401,))}

    def get(self):
        config = self.ctx.config
        self.ok({
            "default_backend": config.defaults.backend,
            "default_agent": config.defaults.agent,
            "features": {name: bool(getattr(config.features, name)) for name in ("webauthn_auth", "ai_metadata")},
            "backends": {name: available for name, available in available_backends().items() if name in BACKENDS},
        })


class DaemonStatusHandler(ClownHandler):
    api = {"get": Op("Daemon status: supervisord's pid and uptime, programs and restarts",
                     response=DaemonStatusSchema, errors=(401,))}

    async def get(self):
        self.ok(await DaemonStatus(self.ctx).status())


class LogsHandler(ClownHandler):
    api = {"get": Op("Programs that have logs", response=LogProgramSchema, many=True, errors=(401,))}

    def get(self):
        self.ok(LogReader(self.ctx.home, self.ctx.secrets).programs())


class LogLinesHandler(ClownHandler):
    api = {"get": Op("Recent lines of one program's log, secrets redacted", query=LogQuerySchema,
                     response=LogLinesSchema, errors=(400, 401, 404))}

    def get(self, program):
        query = self.load_query(LogQuerySchema())
        lines = LogReader(self.ctx.home, self.ctx.secrets).tail(program, query["lines"])
        if lines is None:
            raise ApiError(404, f"No log for program '{program}'")
        self.ok({"program": program, "lines": lines})


class OpenApiHandler(ClownHandler):
    def needs_auth(self) -> bool:
        return False

    def get(self):
        self.write_json(self.application.settings["openapi"])


default_handlers = [
    (r"/health", HealthHandler),
    (r"/api/config", ConfigHandler),
    (r"/api/daemon/status", DaemonStatusHandler),
    (r"/api/logs", LogsHandler),
    (r"/api/logs/(?P<program>[^/]+)", LogLinesHandler),
    (r"/api/openapi.json", OpenApiHandler),
]
