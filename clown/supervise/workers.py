"""Adding and removing worker programs at run time.

Add: write ``run/conf.d/<name>.conf``, then ``reloadConfig`` + ``addProcessGroup``.
Remove: ``stopProcess``, ``removeProcessGroup``, then delete the file.
"""

import logging

from clown.home import Home
from clown.supervise import config as supervise_config
from clown.supervise.client import (ALREADY_ADDED, BAD_NAME, NOT_RUNNING, STILL_RUNNING,
                                    SupervisorClient, SupervisorError)

log = logging.getLogger(__name__)


class WorkerPrograms:
    def __init__(self, home: Home, supervisor: SupervisorClient):
        self.home = home
        self.supervisor = supervisor

    async def add(self, name: str, module: str, args: list[str], autorestart: str = "unexpected",
                  startsecs: int = 0) -> None:
        """Start program ``name`` running ``python -m module --home H args``.

        Raises SupervisorError when supervisord refuses; the conf file is then removed.
        """
        text = supervise_config.worker_conf(self.home, name, module, args, autorestart, startsecs)
        supervise_config.write_worker_conf(self.home, name, text)
        try:
            await self.supervisor.call("reloadConfig")
            try:
                await self.supervisor.call("addProcessGroup", name)
            except SupervisorError as exc:
                if exc.fault_code != ALREADY_ADDED:
                    raise
        except SupervisorError:
            supervise_config.remove_worker_conf(self.home, name)
            raise

    async def remove(self, name: str, stop: bool = True) -> None:
        """Stop program ``name`` (waiting for it) and forget it. Unknown names are fine."""
        if stop:
            try:
                await self.supervisor.call("stopProcess", name, True)
            except SupervisorError as exc:
                if exc.fault_code not in (NOT_RUNNING, BAD_NAME):
                    raise
        try:
            await self.supervisor.call("removeProcessGroup", name)
        except SupervisorError as exc:
            if exc.fault_code == STILL_RUNNING:
                log.warning("program %s still running; stopping it again", name)
                await self.supervisor.call("stopProcess", name, True)
                await self.supervisor.call("removeProcessGroup", name)
            elif exc.fault_code != BAD_NAME:
                raise
        supervise_config.remove_worker_conf(self.home, name)

    async def info(self, name: str) -> dict | None:
        """supervisor's process info of ``name``, or None when it has no such program."""
        try:
            return await self.supervisor.call("getProcessInfo", name)
        except SupervisorError as exc:
            if exc.fault_code == BAD_NAME:
                return None
            raise

    async def all(self) -> list[dict]:
        return await self.supervisor.call("getAllProcessInfo")
