"""Routes of the per-profile proxies: status, start, stop."""

import asyncio

from clown.proxy.manager import ProxyError, ProxyManager, ProxyNotFound
from clown.proxy.schemas import ProxyStatusSchema
from clown.supervise.client import SupervisorError
from clown.web.base import ApiError, ClownHandler, Op


class _ProxyHandler(ClownHandler):
    async def call(self, method, alias):
        try:
            return await method(alias)
        except ProxyNotFound as exc:
            raise ApiError(404, str(exc))
        except ProxyError as exc:
            raise ApiError(409, str(exc))
        except SupervisorError as exc:
            raise ApiError(500, f"supervisor refused: {exc}")


class ProxyStatusListHandler(ClownHandler):
    api = {"get": Op("Every profile's proxy", response=ProxyStatusSchema, many=True, errors=(401,), tags=["proxy"])}

    async def get(self):
        self.ok(await self.ctx.proxies.statuses())


class ProxyStatusHandler(_ProxyHandler):
    api = {"get": Op("One profile's proxy", response=ProxyStatusSchema, errors=(401, 404), tags=["proxy"])}

    async def get(self, alias):
        self.ok(await self.call(self.ctx.proxies.status, alias))


class ProxyStartHandler(_ProxyHandler):
    api = {"post": Op("Start the profile's proxy and route the profile through it", response=ProxyStatusSchema,
                      errors=(401, 404, 409), tags=["proxy"])}

    async def post(self, alias):
        self.ok(await self.call(self.ctx.proxies.start, alias))


class ProxyStopHandler(_ProxyHandler):
    api = {"post": Op("Stop the profile's proxy", response=ProxyStatusSchema, errors=(401, 404), tags=["proxy"])}

    async def post(self, alias):
        self.ok(await self.call(self.ctx.proxies.stop, alias))


def setup(ctx) -> None:
    ctx.proxies = ProxyManager(ctx)

    async def restore_enabled_proxies():
        # In the background: the front answers while the proxies come up.
        asyncio.ensure_future(ctx.proxies.restore())

    ctx.startup.append(restore_enabled_proxies)


_ALIAS = r"(?P<alias>[^/]+)"
default_handlers = [
    (r"/api/proxy/status", ProxyStatusListHandler),
    (rf"/api/proxy/status/{_ALIAS}", ProxyStatusHandler),
    (rf"/api/proxy/{_ALIAS}/start", ProxyStartHandler),
    (rf"/api/proxy/{_ALIAS}/stop", ProxyStopHandler),
]
