"""The catalog in force: agents and providers from three layers, their errors, and pricing.

Layers, lowest first: built-in (``clown/catalog/builtin``), the synced registry
(``$CLOWN_HOME/registry/<current>``), the user's ``agents.d/*.toml`` and
``providers.d/*.toml``. A manifest in a later layer replaces the one with the same ``id``.
A manifest that does not load is skipped and listed in ``errors()``; the catalog is
re-read whenever a layer's files change (checked by name, size and mtime on each call), so
editing a user manifest takes effect at the next request.
"""

import glob
import os
import threading

from clown.catalog import pricing as prices
from clown.catalog.manifests import Agent, ManifestError, Provider, load_file
from clown.catalog.registry import RegistryCache, builtin_dir, read_index

KINDS = (("agent", "agents"), ("provider", "providers"))


class Catalog:
    def __init__(self, home):
        self.home = home
        self.registry = RegistryCache(home.registry)
        self._lock = threading.Lock()
        self._signature = None
        self._agents: dict[str, Agent] = {}
        self._providers: dict[str, Provider] = {}
        self._errors: list[dict] = []
        self._pricing: dict[str, prices.Price] = {}

    # -- layers -------------------------------------------------------------------------

    def _layers(self) -> list[tuple[str, dict[str, list[str]], str | None]]:
        """``(layer name, {kind: [paths]}, pricing path)`` lowest first."""
        layers = []
        for name, directory in (("built-in", builtin_dir()), ("registry", self.registry.current_dir())):
            index = read_index(directory) if directory else None
            if index is None:
                continue
            files = {kind: [os.path.join(directory, entry["path"]) for entry in index[plural]]
                     for kind, plural in KINDS}
            price_path = os.path.join(directory, index["pricing"]["path"]) if index["pricing"] else None
            layers.append((name, files, price_path))
        user = {"agent": sorted(glob.glob(os.path.join(self.home.agents_d, "*.toml"))),
                "provider": sorted(glob.glob(os.path.join(self.home.providers_d, "*.toml")))}
        layers.append(("user", user, None))
        return layers

    def _compute_signature(self, layers) -> tuple:
        parts = []
        for _, files, price_path in layers:
            for path in [*files["agent"], *files["provider"], *([price_path] if price_path else [])]:
                try:
                    stat = os.stat(path)
                    parts.append((path, stat.st_size, stat.st_mtime_ns))
                except OSError:
                    parts.append((path, None, None))
        return tuple(parts)

    def refresh(self, force: bool = False) -> None:
        """Re-read the layers if any file changed (or ``force``)."""
        layers = self._layers()
        signature = self._compute_signature(layers)
        with self._lock:
            if not force and signature == self._signature:
                return
            agents, providers, errors = {}, {}, []
            table = {}
            for layer, files, price_path in layers:
                for kind in ("agent", "provider"):
                    target = agents if kind == "agent" else providers
                    for path in files[kind]:
                        try:
                            manifest = load_file(path, kind)
                        except ManifestError as exc:
                            errors.append({"kind": kind, "layer": layer, "file": exc.file,
                                           "field": exc.field, "error": exc.why})
                            continue
                        target[manifest.id] = manifest
                if price_path:
                    try:
                        table.update(prices.load_table_file(price_path))
                    except (OSError, prices.PricingError) as exc:
                        errors.append({"kind": "pricing", "layer": layer, "file": price_path,
                                       "field": None, "error": str(exc)})
            self._agents, self._providers, self._errors, self._pricing = agents, providers, errors, table
            self._signature = signature

    # -- lookups ------------------------------------------------------------------------

    def agents(self) -> list[Agent]:
        self.refresh()
        return sorted(self._agents.values(), key=lambda agent: agent.id)

    def agent(self, agent_id: str) -> Agent | None:
        self.refresh()
        return self._agents.get(agent_id)

    def providers(self) -> list[Provider]:
        self.refresh()
        return sorted(self._providers.values(), key=lambda provider: provider.id)

    def provider(self, provider_id: str) -> Provider | None:
        self.refresh()
        return self._providers.get(provider_id)

    def errors(self) -> list[dict]:
        """Every manifest that did not load: ``{kind, layer, file, field, error}``."""
        self.refresh()
        return list(self._errors)

    def pricing(self) -> dict[str, prices.Price]:
        """The pricing table in force (built-in, then the registry's), for ``price_for``."""
        self.refresh()
        return dict(self._pricing)

    def price_for(self, model: str) -> prices.Price | None:
        return prices.price_for(model, self.pricing())
