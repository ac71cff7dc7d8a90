"""A minimal streaming HTTP/1.1 client for the proxy worker, on asyncio streams.

Why not Tornado's AsyncHTTPClient: the proxy needs to stop reading the upstream the
moment its agent goes away (an in-flight fetch cannot be cancelled there), backpressure
(read the next chunk only after the last one was written to the agent), and the
response's headers exactly as sent. Connections are kept alive and reused (a small idle
pool per target) when a response was read to its end; a reused connection that turns out
to be closed by the upstream is replaced once, before anything of the response arrived.

``open_request`` sends the request and reads the response head; ``Upstream.body()``
then yields the body as it arrives (chunked, Content-Length or until close), each read
bounded by the idle timeout. ``close()`` aborts at any point.
"""

import asyncio
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 256 * 1024
READ_SIZE = 64 * 1024
POOL_SIZE = 16
IDLE_SECS = 30.0
_pool: dict[tuple, list] = {}


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


@dataclass
class Upstream:
    status: int
    reason: str
    headers: list = field(default_factory=list)     # [(name, value)] as received
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    idle_timeout: float = 600.0
    no_body: bool = False
    pool_key: tuple | None = None
    complete: bool = False      # the body was read to its end: the connection can be reused
    at_end: bool = False        # the chunk just yielded is the body's last (known for Content-Length)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    async def _read(self, coroutine):
        # asyncio.timeout, not wait_for: no extra task (and loop iterations) per read
        try:
            async with asyncio.timeout(self.idle_timeout):
                return await coroutine
        except TimeoutError:
            raise UpstreamError("timeout", f"no data from upstream for {self.idle_timeout:g}s") from None
        except (ConnectionError, OSError) as exc:
            raise UpstreamError("protocol", f"upstream connection broke: {exc}") from None

    async def body(self):
        """Yield the body's bytes as they arrive. Raises UpstreamError on a timeout or a cut."""
        if self.no_body:
            self.complete = True
            return
        encoding = (self.header("Transfer-Encoding") or "").lower()
        length = self.header("Content-Length")
        if "chunked" in encoding:
            while True:
                line = await self._read(self.reader.readline())
                if not line:
                    raise UpstreamError("protocol", "upstream closed inside a chunked body")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise UpstreamError("protocol", "upstream sent a bad chunk size") from None
                if size == 0:
                    while True:     # trailers, up to the blank line
                        trailer = await self._read(self.reader.readline())
                        if trailer in (b"\r\n", b"\n", b""):
                            self.complete = True
                            return
                while size > 0:
                    data = await self._read(self.reader.read(min(size, READ_SIZE)))
                    if not data:
                        raise UpstreamError("protocol", "upstream closed inside a chunk")
                    size -= len(data)
                    yield data
                await self._read(self.reader.readline())
        elif length is not None:
            try:
                remaining = int(length)
            except ValueError:
                raise UpstreamError("protocol", "upstream sent a bad Content-Length") from None
            while remaining > 0:
                data = await self._read(self.reader.read(min(remaining, READ_SIZE)))
                if not data:
                    raise UpstreamError("protocol", "upstream closed before the end of the body")
                remaining -= len(data)
                self.at_end = remaining == 0
                yield data
            self.complete = True
        else:
            while True:
                data = await self._read(self.reader.read(READ_SIZE))
                if not data:
                    return
                yield data

    def close(self) -> None:
        """Abort the connection (the response is abandoned)."""
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None

    def release(self) -> None:
        """Done with the response: pool the connection when it can carry another, else close."""
        reusable = (self.complete and self.writer is not None and self.pool_key is not None
                    and "close" not in (self.header("Connection") or "").lower()
                    and not self.writer.transport.is_closing())
        if reusable:
            idle = _pool.setdefault(self.pool_key, [])
            if len(idle) < POOL_SIZE:
                idle.append((self.reader, self.writer, time.monotonic()))
                self.writer = None
                return
        self.close()


_ssl_context = None


def _ssl() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


async def open_request(target: Target, method: str, path: str, headers: list, body: bytes,
                       timeout: float) -> Upstream:
    """Connect, send the request, read the response head (1xx skipped).

    ``headers`` are sent as given, after ``Host`` and before ``Content-Length``, which
    this function adds. Uses an idle pooled connection when there is one. Raises
    UpstreamError (``unreachable`` when the connection fails, ``timeout``, ``protocol``).
    Call ``release()`` (or ``close()`` to abandon it) when done with the response.
    """
    key = (target.scheme, target.host, target.port)
    for attempt in range(2):
        pooled = _take_pooled(key) if attempt == 0 else None
        if pooled is not None:
            reader, writer = pooled
        else:
            reader, writer = await _connect(target, timeout)
        upstream = Upstream(0, "", reader=reader, writer=writer, idle_timeout=timeout, pool_key=key)
        try:
            return await _exchange(upstream, target, method, path, headers, body)
        except UpstreamError as exc:
            upstream.close()
            # A pooled connection the upstream had closed: nothing was received, send again once.
            if pooled is not None and exc.kind == "stale":
                continue
            if exc.kind == "stale":
                raise UpstreamError("protocol", str(exc)) from None
            raise
        except BaseException:
            upstream.close()
            raise
    raise UpstreamError("protocol", f"{target.url} closed the connection without a response")


def _take_pooled(key: tuple):
    idle = _pool.get(key)
    now = time.monotonic()
    while idle:
        reader, writer, since = idle.pop()
        if now - since < IDLE_SECS and not writer.transport.is_closing() and not reader.at_eof():
            return reader, writer
        writer.transport.abort()
    return None


async def _connect(target: Target, timeout: float):
    try:
        return await asyncio.wait_for(asyncio.open_connection(
            target.host, target.port, ssl=_ssl() if target.scheme == "https" else None,
            server_hostname=target.host if target.scheme == "https" else None, limit=MAX_HEAD_BYTES), timeout)
    except asyncio.TimeoutError:
        raise UpstreamError("timeout", f"connecting to {target.url} took over {timeout:g}s") from None
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamError("unreachable", f"cannot connect to {target.url}: {exc}") from None


async def _exchange(upstream: Upstream, target: Target, method: str, path: str, headers: list,
                    body: bytes) -> Upstream:
    reader, writer = upstream.reader, upstream.writer
    lines = [f"{method} {target.prefix}{path} HTTP/1.1", f"Host: {target.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    try:
        await upstream._read(writer.drain())
    except UpstreamError:
        raise UpstreamError("stale", "connection closed") from None
    while True:
        try:
            head = await upstream._read(reader.readuntil(b"\r\n\r\n"))
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise UpstreamError("stale", f"{target.url} closed the connection without a response") from None
            raise UpstreamError("protocol", f"{target.url} closed the connection inside the response head") from None
        except asyncio.LimitOverrunError:
            raise UpstreamError("protocol", f"{target.url} sent a response head over {MAX_HEAD_BYTES} bytes") \
                from None
        except UpstreamError as exc:
            if exc.kind == "protocol":      # reset by peer before any byte
                raise UpstreamError("stale", str(exc)) from None
            raise
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise UpstreamError("protocol", f"{target.url} did not answer HTTP: {status_line[:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            continue
        upstream.status, upstream.reason = status, parts[2] if len(parts) > 2 else ""
        for line in header_lines:
            if not line:
                continue
            name, _, value = line.partition(":")
            upstream.headers.append((name.strip(), value.strip()))
        upstream.no_body = method == "HEAD" or status in (204, 304)
        return upstream
