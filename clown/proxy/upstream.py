"""The proxy worker's connections to its upstream (the provider): a keep-alive pool on asyncio Protocols.

Why not Tornado's AsyncHTTPClient or asyncio streams: the proxy forwards each piece of the
answer from the upstream's ``data_received`` straight to the agent's transport, with no
task, future or loop iteration per piece, stops reading the upstream while the agent
does not keep up (backpressure), and drops the connection the moment the agent goes away.

An ``UpstreamConnection`` serves one exchange at a time: ``send`` writes the request and
hands every byte received to the exchange (``upstream_data``) until the exchange
``release``s it (back to the pool, when its answer was read to a framed end) or
``abort``s it. ``UpstreamPool`` keeps up to ``POOL_SIZE`` idle connections per target
(newest first); an idle one the upstream closes leaves the pool at once.
"""

import asyncio
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

POOL_SIZE = 16
IDLE_SECS = 30.0
# Every connection of the worker receives into this one buffer (the loop is single-threaded and
# each read is consumed at once): no 256 KiB allocation per read, as a plain Protocol has.
RECEIVE_BUFFER = memoryview(bytearray(256 * 1024))


class UpstreamError(Exception):
    """The upstream could not be reached, timed out, or broke HTTP; ``kind`` says which."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind      # unreachable | timeout | protocol


@dataclass
class Target:
    """Where requests go: ``https://api.anthropic.com`` or ``https://host/prefix``."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> "Target":
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL {url!r} is not http(s)://host[:port][/path]")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def netloc(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}"


class UpstreamConnection(asyncio.BufferedProtocol):
    """One connection to the upstream. ``exchange`` receives its bytes and its loss."""

    def __init__(self, pool: "UpstreamPool"):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.responses = 0          # answers read to their end on this connection

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return RECEIVE_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(RECEIVE_BUFFER[:nbytes]))

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:        # bytes nobody asked for: this connection is out of step
            self.abort()
            return
        exchange.upstream_data(data)

    def eof_received(self):
        return False                # close; connection_lost tells the exchange

    def connection_lost(self, exc) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.upstream_lost(self)
        else:
            self.pool.forget(self)

    # -- for the exchange ---------------------------------------------------------------------

    def send(self, exchange, request: bytes) -> None:
        """Write ``request``; every byte of the answer goes to ``exchange.upstream_data``."""
        self.exchange = exchange
        if self.paused:
            self.resume_reading()
        self.transport.write(request)

    def release(self, reusable: bool) -> None:
        """The exchange is done with this connection: pooled if ``reusable``, else closed."""
        self.exchange = None
        # A request still being written (the upstream answered before reading it all) leaves the
        # connection out of step: never reused.
        if reusable and not self.closed and not self.transport.get_write_buffer_size():
            self.responses += 1
            self.pool.give(self)
        else:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once (whatever was in flight is abandoned)."""
        self.exchange = None
        if not self.closed:
            self.closed = True
            self.transport.abort()

    def pause_reading(self) -> None:
        if not self.closed and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed and self.paused:
            self.paused = False
            self.transport.resume_reading()


class UpstreamPool:
    """Connections to one target: ``take`` an idle one or ``connect``; ``give`` it back when done."""

    def __init__(self, target: Target, connect_timeout: float):
        self.target = target
        self.connect_timeout = connect_timeout
        self._idle: list[UpstreamConnection] = []
        self._ssl = ssl.create_default_context() if target.scheme == "https" else None

    def take(self) -> UpstreamConnection | None:
        """The most recently used idle connection that is still open and fresh, or None."""
        idle = self._idle
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECS:
                return connection
            connection.abort()
        return None

    async def connect(self) -> UpstreamConnection:
        """A new connection. Raises UpstreamError (``unreachable`` or ``timeout``)."""
        loop = asyncio.get_running_loop()
        target = self.target
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(self), target.host, target.port, ssl=self._ssl,
                    server_hostname=target.host if self._ssl else None)
        except TimeoutError:
            raise UpstreamError("timeout", f"connecting to {target.url} took over {self.connect_timeout:g}s") \
                from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise UpstreamError("unreachable", f"cannot connect to {target.url}: {exc}") from None
        return connection

    def give(self, connection: UpstreamConnection) -> None:
        if len(self._idle) >= POOL_SIZE:
            connection.abort()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        """An idle connection was closed by the upstream."""
        try:
            self._idle.remove(connection)
        except ValueError:
            pass

    def close(self) -> None:
        while self._idle:
            self._idle.pop().abort()
