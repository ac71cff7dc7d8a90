"""A supervisord XML-RPC client over its Unix socket that never blocks the IOLoop.

Calls run on a small pool of threads, each with its own connection, so a slow call (a
``stopProcess`` that waits for a program to exit) does not hold up the others:
supervisord answers a waiting ``stopProcess`` later and serves other requests meanwhile,
each one whole. ``await client.call("getAllProcessInfo")`` returns the result or raises
SupervisorError with supervisor's fault text.
"""

import asyncio
import concurrent.futures
import threading
import xmlrpc.client

from supervisor.xmlrpc import SupervisorTransport


class SupervisorError(Exception):
    """supervisord answered with a fault, or could not be reached."""

    def __init__(self, message: str, fault_code: int | None = None):
        super().__init__(message)
        self.fault_code = fault_code


# Fault codes from supervisor.xmlrpc.Faults that callers test for.
BAD_NAME = 10
ALREADY_ADDED = 90
STILL_RUNNING = 91
NOT_RUNNING = 70
ALREADY_STARTED = 60

# Calls in flight at once (one connection each).
RPC_THREADS = 4


class SupervisorClient:
    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self._executor = concurrent.futures.ThreadPoolExecutor(RPC_THREADS, thread_name_prefix="supervisor-rpc")
        self._local = threading.local()   # each thread's ServerProxy: one is not safe to share

    def _server(self):
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            transport = SupervisorTransport(None, None, "unix://" + self.socket_path)
            proxy = self._local.proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport,
                                                                  allow_none=True)
        return proxy

    def call_sync(self, method: str, *args):
        """Call ``supervisor.<method>(*args)`` (or ``system.<x>`` when the name has a dot)."""
        name = method if "." in method else "supervisor." + method
        target = self._server()
        for part in name.split("."):
            target = getattr(target, part)
        try:
            return target(*args)
        except xmlrpc.client.Fault as fault:
            raise SupervisorError(fault.faultString, fault.faultCode) from None
        except (OSError, xmlrpc.client.ProtocolError) as exc:
            self._local.proxy = None
            raise SupervisorError(f"cannot reach supervisord at {self.socket_path}: {exc}") from None

    async def call(self, method: str, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.call_sync, method, *args)

    def close(self):
        self._executor.shutdown(wait=False)
