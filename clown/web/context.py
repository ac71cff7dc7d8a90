"""The web front's shared objects: config, store, supervisor client and the managers.

Handlers reach it as ``self.ctx``. Managers take the context in their constructor and
read what they need from it.
"""

import time
from types import SimpleNamespace

from clown import store
from clown.home import Home
from clown.secrets import SecretStore
from clown.supervise.client import SupervisorClient
from clown.supervise.workers import WorkerPrograms
from clown.web.events import EventBus
from clown.web.security import AccessPolicy


class Context:
    def __init__(self, home: Home, config: SimpleNamespace):
        self.home = home
        self.config = config
        self.started = time.time()
        self.store = store.open_store(home.db)
        self.secrets = SecretStore(home.secrets)
        self.access = AccessPolicy(config.server.host, config.server.allowed_hosts, config.server.token)
        self.supervisor = SupervisorClient(home.socket("supervisor.sock"))
        self.workers = WorkerPrograms(home, self.supervisor)
        self.events = EventBus()
        self._closers = []
        # Coroutines run once the server listens (reattaching to workers, feeds).
        self.startup = []

    def on_close(self, callback) -> None:
        self._closers.append(callback)

    def close(self) -> None:
        for callback in reversed(self._closers):
            callback()
        self.supervisor.close()
        self.store.close()
