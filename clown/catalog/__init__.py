"""The catalog: which agents and providers clown knows, what models cost, and the registry.

Layers, lowest first: the manifests shipped in ``builtin/``, the synced registry under
``$CLOWN_HOME/registry/``, then the user's ``agents.d/`` and ``providers.d/``. A later
layer replaces an earlier one's manifest with the same ``id``.
"""
