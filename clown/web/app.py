"""Assemble the Tornado application from each resource's route table."""

import importlib
import os

import tornado.web

from clown.web import openapi
from clown.web.base import GateMixin, NotFoundHandler

# Each module ends with its own ``default_handlers`` route table.
HANDLER_MODULES = (
    "clown.daemon.handlers",
    "clown.catalog.handlers",
    "clown.profiles.handlers",
    "clown.terminal.handlers",
    "clown.usage.handlers",
    "clown.proxy.handlers",
    "clown.web.auth",
    "clown.sessions.handlers",
)

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static")


class StaticHandler(GateMixin, tornado.web.StaticFileHandler):
    """The web UI's files, behind the same Host check as the API."""

    def prepare(self):
        self.gate()

    def needs_auth(self) -> bool:
        return False  # the page itself holds nothing; its API calls are checked


class IndexHandler(StaticHandler):
    def initialize(self, **kwargs):
        super().initialize(path=STATIC_DIR, default_filename="index.html")

    def get(self, include_body=True):
        return super().get("index.html", include_body)


def routes(ctx=None) -> list:
    """Every module's route table; with ``ctx``, each module's ``setup(ctx)`` runs first.

    ``setup`` attaches the module's manager to the context (``ctx.profiles = ...``) and may
    append coroutines to ``ctx.startup``; modules are set up in HANDLER_MODULES order.
    """
    table = []
    for name in HANDLER_MODULES:
        module = importlib.import_module(name)
        if ctx is not None and hasattr(module, "setup"):
            module.setup(ctx)
        table.extend(module.default_handlers)
    return table


def make_app(ctx) -> tornado.web.Application:
    api_routes = routes(ctx)
    ui_routes = [
        (r"/", IndexHandler),
        (r"/static/(.*)", StaticHandler, {"path": STATIC_DIR}),
    ]
    return tornado.web.Application(
        api_routes + ui_routes,
        clown=ctx,
        openapi=openapi.build(api_routes),
        default_handler_class=NotFoundHandler,
        cross_origin_protection=True,
        websocket_max_message_size=ctx.config.terminal.max_message_bytes,
        websocket_ping_interval=30,
        compress_response=False,
        serve_traceback=False,
    )
