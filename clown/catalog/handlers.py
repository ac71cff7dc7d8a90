"""Routes of the catalog: /api/agents, /api/providers, /api/registry, /api/catalog/errors."""

import asyncio

from clown.catalog.catalog import Catalog
from clown.catalog.detection import Detector
from clown.catalog.registry import RegistryError
from clown.catalog.schemas import (AgentSchema, AgentSummarySchema, CatalogErrorSchema, ProviderSchema,
                                   ProviderSummarySchema, RegistryStatusSchema, RegistrySyncQuerySchema)
from clown.web.base import ApiError, ClownHandler, Op


class CatalogService(Catalog):
    """The catalog plus what the web front needs on top: detection and an async registry sync."""

    def __init__(self, ctx):
        super().__init__(ctx.home)
        self.ctx = ctx
        self.detector = Detector()
        self._sync_lock = asyncio.Lock()

    def profile_counts(self) -> dict[str, int]:
        rows = self.ctx.store.execute("SELECT agent_id, COUNT(*) AS n FROM profiles GROUP BY agent_id").fetchall()
        return {row["agent_id"]: row["n"] for row in rows}

    async def agent_summaries(self) -> list[dict]:
        agents = await asyncio.to_thread(self.agents)
        detections = await self.detector.detect_all(agents)
        counts = self.profile_counts()
        return [{"id": agent.id, "name": agent.name, "installed": detections[agent.id].installed,
                 "version": detections[agent.id].version, "binary_path": detections[agent.id].binary_path,
                 "profile_count": counts.get(agent.id, 0)} for agent in agents]

    async def agent_detail(self, agent_id: str) -> dict | None:
        agent = await asyncio.to_thread(self.agent, agent_id)
        if agent is None:
            return None
        found = await self.detector.detect(agent)
        return {"id": agent.id, "name": agent.name, "installed": found.installed, "version": found.version,
                "binary": agent.binary, "binary_path": found.binary_path,
                "profile_strategy": agent.profile_strategy, "supports_hooks": agent.supports_hooks,
                "default_model": agent.default_model, "supported_models": list(agent.supported_models)}

    async def sync_registry(self, force: bool) -> dict:
        """Sync from ``[registry] url``. Raises ApiError 400 (no url) or 502 (the sync failed)."""
        url = self.ctx.config.registry.url
        if not url:
            raise ApiError(400, "No registry to sync: set [registry] url in clown.toml")
        async with self._sync_lock:
            try:
                status = await asyncio.to_thread(self.registry.sync, url, force)
            except RegistryError as exc:
                raise ApiError(502, f"Registry sync failed, the last good registry stays in force: {exc}")
        await asyncio.to_thread(self.refresh, True)
        return status.as_dict()


def provider_summary(provider) -> dict:
    return {"id": provider.id, "name": provider.name, "type": provider.type, "default_model": provider.default_model}


def provider_detail(provider) -> dict:
    return {**provider_summary(provider), "endpoints": dict(provider.endpoints),
            "default_endpoint": provider.default_endpoint, "models": list(provider.models)}


class AgentsHandler(ClownHandler):
    api = {"get": Op("Every known agent, with detection (installed, version, path) and profile count",
                     response=AgentSummarySchema, many=True, errors=(401,), tags=["agents"])}

    async def get(self):
        self.ok(await self.ctx.catalog.agent_summaries())


class AgentHandler(ClownHandler):
    api = {"get": Op("One agent", response=AgentSchema, errors=(401, 404), tags=["agents"])}

    async def get(self, agent_id):
        detail = await self.ctx.catalog.agent_detail(agent_id)
        if detail is None:
            raise ApiError(404, f"Agent '{agent_id}' not found")
        self.ok(detail)


class ProvidersHandler(ClownHandler):
    api = {"get": Op("Every known provider", response=ProviderSummarySchema, many=True, errors=(401,),
                     tags=["providers"])}

    async def get(self):
        providers = await asyncio.to_thread(self.ctx.catalog.providers)
        self.ok([provider_summary(provider) for provider in providers])


class ProviderHandler(ClownHandler):
    api = {"get": Op("One provider, with its endpoints and models", response=ProviderSchema,
                     errors=(401, 404), tags=["providers"])}

    async def get(self, provider_id):
        provider = await asyncio.to_thread(self.ctx.catalog.provider, provider_id)
        if provider is None:
            raise ApiError(404, f"Provider '{provider_id}' not found")
        self.ok(provider_detail(provider))


class RegistryHandler(ClownHandler):
    api = {"get": Op("The registry in force", response=RegistryStatusSchema, errors=(401,), tags=["registry"])}

    async def get(self):
        status = await asyncio.to_thread(self.ctx.catalog.registry.status)
        self.ok(status.as_dict())


class RegistrySyncHandler(ClownHandler):
    api = {"post": Op("Sync the registry from [registry] url; answers the registry status",
                      query=RegistrySyncQuerySchema, response=RegistryStatusSchema, errors=(400, 401, 502),
                      tags=["registry"])}

    async def post(self):
        query = self.load_query(RegistrySyncQuerySchema())
        self.ok(await self.ctx.catalog.sync_registry(query["force"]))


class CatalogErrorsHandler(ClownHandler):
    api = {"get": Op("Manifests that did not load (skipped), naming file and field",
                     response=CatalogErrorSchema, many=True, errors=(401,), tags=["agents", "providers"])}

    async def get(self):
        self.ok(await asyncio.to_thread(self.ctx.catalog.errors))


def setup(ctx) -> None:
    ctx.catalog = CatalogService(ctx)


default_handlers = [
    (r"/api/agents", AgentsHandler),
    (r"/api/agents/(?P<agent_id>[^/]+)", AgentHandler),
    (r"/api/providers", ProvidersHandler),
    (r"/api/providers/(?P<provider_id>[^/]+)", ProviderHandler),
    (r"/api/registry", RegistryHandler),
    (r"/api/registry/sync", RegistrySyncHandler),
    (r"/api/catalog/errors", CatalogErrorsHandler),
]
