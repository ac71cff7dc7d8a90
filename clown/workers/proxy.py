"""The proxy worker: one profile's HTTP proxy to its provider, which meters every response.

Run as ``python -m clown.workers.proxy --home DIR --profile ALIAS`` (supervisord does,
program ``proxy-<ALIAS>``, ``autorestart=true``). Launch spec, JSON 0600 at
``Home(DIR).spec("proxy-<ALIAS>")``, written by ``clown.proxy.manager``::

    {"profile": "work", "port": 8081, "upstream": "https://api.anthropic.com",
     "provider_type": "anthropic", "auth_header": "x-api-key",   # x-api-key | bearer | mirror
     "key_secret": "profile-work.key", "placeholder_secret": "profile-work.placeholder",
     "upstream_timeout_secs": 600, "max_body_bytes": 33554432,
     "agent": "claude", "provider": "anthropic", "model": "claude-sonnet-4",
     "inject_stream_usage": true}

Keys: the agent holds only the placeholder. Every request must carry it (``x-api-key`` or
``Authorization: Bearer``), compared in constant time, else 401. It is removed and the
real key, read from the secret store per request, goes upstream in ``auth_header``
(``mirror``: the header the agent used). Neither value is ever logged.

Streaming: the response is forwarded chunk by chunk as it arrives and each chunk is
flushed to the agent before the next is read (backpressure, memory bounded by one chunk).
An agent that disconnects aborts the upstream connection.

Metering: ``clown.usage.meter`` reads usage from the bytes passing by. The usage row is
committed before the last byte of the response is forwarded: the chunk that completes the
response (the SSE event that ends it, or a JSON body's end) goes out but for its last byte
while the row commits (group commit on one writer thread), then that byte. A client that
has the whole answer also has its usage recorded. A response cut short still records what
it reported so far.

Runs: each start inserts a ``proxy_runs`` row (port, pid, started_at); a clean stop
(SIGTERM) closes it with reason "stopped". A start that finds an earlier run of this
profile still open closes it as "crashed" (the worker was killed). The worker asks for
SIGTERM when supervisord dies (PR_SET_PDEATHSIG) so it never outlives it.
"""

import argparse
import asyncio
import hmac
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid

import tornado.httpserver
import tornado.httputil
import tornado.iostream
import tornado.web

from clown import clock, procs, store
from clown.catalog.pricing import current_table, price_for
from clown.home import Home
from clown.proxy.upstream import Target, UpstreamError, open_request
from clown.secrets import SecretStore
from clown.usage.meter import API_CHAT, ResponseMeter, api_of_path
from clown.usage.store import UsageEvent, record_event, record_events, usage_key

log = logging.getLogger("clown.workers.proxy")

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "proxy-connection"})
# Request headers never forwarded: hop-by-hop ones, the ones rebuilt here, and the credential.
DROP_REQUEST = HOP_BY_HOP | {"host", "content-length", "accept-encoding", "x-api-key", "authorization", "expect"}
DROP_RESPONSE = HOP_BY_HOP | {"content-length"}
SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id")
REQUEST_ID_HEADERS = ("request-id", "x-request-id")
PRICING_TTL_SECS = 30.0


def _error(status: int, kind: str, message: str, upstream: str | None = None) -> bytes:
    """A JSON error the agent's SDK can read (Anthropic's shape, which OpenAI SDKs also parse)."""
    error = {"type": kind, "message": message}
    if upstream:
        error["upstream"] = upstream
    return json.dumps({"type": "error", "error": error}).encode()


class Meterer:
    """Writes usage rows from a single thread, so the event loop never waits on SQLite.

    Group commit: the rows of responses that complete while a commit is running go into the
    next transaction together (one commit for all of them), and each response's future
    resolves only once its row is committed.
    """

    def __init__(self, home: Home, spec: dict, run_id: int):
        self.home = home
        self.spec = spec
        self.run_id = run_id
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()
        self._conn = None
        self._table = None
        self._table_at = 0.0

    def _write(self, events: list) -> None:
        if self._conn is None:
            self._conn = store.connect(self.home.db)
        now = time.monotonic()
        if self._table is None or now - self._table_at > PRICING_TTL_SECS:
            self._table = current_table(self.home.root)
            self._table_at = now
        for event in events:
            price = price_for(event.model, self._table)
            if price is not None:
                event.cost = price.costs(event.input_tokens, event.output_tokens, event.cache_creation_input_tokens,
                                         event.cache_read_input_tokens)["total_cost"]
        if len(events) == 1:
            record_event(self._conn, events[0])
        else:
            record_events(self._conn, events)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items, stop = [item], False
            while True:     # whatever queued up meanwhile shares the transaction
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                items.append(more)
            error = None
            try:
                self._write([event for event, _, _ in items])
            except Exception as exc:  # each waiting response logs it
                error = exc
            by_loop: dict = {}
            for _, future, loop in items:
                by_loop.setdefault(loop, []).append(future)
            for loop, futures in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, futures, error)
                except RuntimeError:
                    pass    # the loop is closed: nobody waits any more
            if stop:
                return

    def submit(self, event: UsageEvent) -> asyncio.Future:
        """Commit ``event`` on the writer thread; the future resolves once it is committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((event, future, loop))
        return future

    async def record(self, event: UsageEvent) -> None:
        await self.submit(event)

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        self._queue.put(None)
        self._thread.join()


def _settle(futures: list, error: Exception | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


@tornado.web.stream_request_body
class ProxyHandler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    def initialize(self, proxy):
        self.proxy = proxy
        self._chunks: list[bytes] = []
        self._received = 0
        self._too_large = False
        self._upstream = None
        self._gone = False

    # Tornado adds headers of its own; the response carries the upstream's instead.
    def set_default_headers(self):
        self._headers = tornado.httputil.HTTPHeaders()

    def compute_etag(self):
        return None

    def log_exception(self, typ, value, tb):
        log.error("proxy error on %s %s: %s", self.request.method, self.request.path, typ.__name__)

    def _reply(self, status: int, body: bytes) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    def prepare(self):
        placeholder = self.proxy.placeholder()
        offered = self.request.headers.get("x-api-key")
        if offered is None:
            authorization = self.request.headers.get("Authorization", "")
            if authorization[:7].lower() == "bearer ":
                offered = authorization[7:].strip()
        if not placeholder or offered is None or not hmac.compare_digest(offered.encode(), placeholder.encode()):
            self._reply(401, _error(401, "authentication_error",
                                    "clown proxy: send this profile's placeholder credential"))
            return
        length = self.request.headers.get("Content-Length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                self._reply(400, _error(400, "invalid_request_error", "clown proxy: bad Content-Length"))
                return
            if declared > self.proxy.max_body_bytes:
                self._reply(413, _error(413, "request_too_large",
                                        f"clown proxy: request body of {declared} bytes is over the "
                                        f"{self.proxy.max_body_bytes}-byte cap"))
                return

    def data_received(self, chunk: bytes):
        self._received += len(chunk)
        if self._received > self.proxy.max_body_bytes:
            self._too_large = True
            self._chunks.clear()
        elif not self._too_large:
            self._chunks.append(chunk)

    def on_connection_close(self):
        self._gone = True
        if self._upstream is not None:
            self._upstream.close()

    async def get(self, *_):
        await self.forward()

    head = post = put = delete = patch = options = get

    async def forward(self):
        proxy = self.proxy
        if self._too_large:
            self._reply(413, _error(413, "request_too_large",
                                    f"clown proxy: request body is over the {proxy.max_body_bytes}-byte cap"))
            return
        body = b"".join(self._chunks)
        path = self.request.uri
        api = api_of_path(self.request.path)
        if api == API_CHAT and proxy.inject_stream_usage:
            body = _with_stream_usage(body)
        headers = self._upstream_headers()
        started = time.time()
        try:
            upstream = await open_request(proxy.target, self.request.method, path, headers, body, proxy.timeout)
        except UpstreamError as exc:
            if self._gone:
                return
            status = 504 if exc.kind == "timeout" else 502
            kind = {"timeout": "upstream_timeout", "unreachable": "upstream_unreachable"}.get(exc.kind,
                                                                                             "upstream_error")
            log.warning("upstream %s failed: %s", proxy.target.url, exc)
            self._reply(status, _error(status, kind, f"clown proxy: {exc}", proxy.target.url))
            return
        self._upstream = upstream
        if self._gone:
            upstream.close()
            return
        content_type = (upstream.header("Content-Type") or "").lower()
        streaming = content_type.startswith("text/event-stream")
        meter = ResponseMeter(api, streaming) if api and 200 <= upstream.status < 300 else None
        self.set_status(upstream.status, upstream.reason or None)
        connection_tokens = set()
        for name, value in upstream.headers:
            if name.lower() == "connection":
                connection_tokens.update(token.strip().lower() for token in value.split(","))
        for name, value in upstream.headers:
            lowered = name.lower()
            if lowered in DROP_RESPONSE or lowered in connection_tokens:
                continue
            self.add_header(name, value)
        length = upstream.header("Content-Length")
        if length is not None and "chunked" not in (upstream.header("Transfer-Encoding") or "").lower():
            self.set_header("Content-Length", length)
        request_id = next((upstream.header(name) for name in REQUEST_ID_HEADERS if upstream.header(name)), None)
        recorded = False
        held = b""      # a metered JSON body's last byte, forwarded only once its usage is committed
        try:
            async for chunk in upstream.body():
                if meter is None or recorded:
                    self.write(chunk)
                    await self.flush()
                    continue
                meter.feed(chunk)
                if streaming and not meter.complete:
                    self.write(chunk)
                    await self.flush()
                    continue
                data = held + chunk
                if not streaming and not upstream.at_end:
                    held = data[-1:]
                    if len(data) > 1:
                        self.write(data[:-1])
                        await self.flush()
                    continue
                # The chunk that completes the response: all but its last byte goes out while the
                # usage row is committed; the last byte only after the commit.
                if not streaming:
                    meter.finish()
                recorded = True
                held = b""
                await self._forward_around_commit(data, self._submit(meter, request_id, body, started),
                                                  last=not streaming and upstream.at_end)
            if meter is not None and not recorded:
                meter.finish()
                recorded = True
                await self._forward_around_commit(held, self._submit(meter, request_id, body, started), last=True)
                held = b""
            self.finish()
        except UpstreamError as exc:
            log.warning("upstream response from %s ended early: %s", proxy.target.url, exc)
            self._abort()
        except tornado.iostream.StreamClosedError:
            pass   # the agent went away; the upstream is closed below
        finally:
            upstream.release()
            if meter is not None and not recorded:
                meter.finish()
                commit = self._submit(meter, request_id, body, started)
                if commit is not None:
                    await self._settled(commit)

    async def _forward_around_commit(self, data: bytes, commit, last: bool) -> None:
        """Forward ``data`` but its last byte, wait for ``commit`` (running meanwhile), then the last byte
        (flushed unless ``last``: the body is over and ``finish`` follows at once)."""
        if len(data) > 1:
            self.write(data[:-1])
            await self.flush()
        if commit is not None:
            await self._settled(commit)
        if data:
            self.write(data[-1:])
            if not last:    # more may follow (a stream's terminator): the agent gets this event now
                await self.flush()

    async def _settled(self, commit) -> bool:
        try:
            await commit
        except Exception:
            log.exception("could not record usage")
            return False
        return True

    def _abort(self) -> None:
        """End a response whose upstream broke: close the connection so the agent sees it cut."""
        if self.request.connection and self.request.connection.stream:
            self.request.connection.stream.close()

    def _upstream_headers(self) -> list:
        listed = {token.strip().lower() for token in self.request.headers.get("Connection", "").split(",")}
        headers = []
        used_bearer = "authorization" in self.request.headers and "x-api-key" not in self.request.headers
        for name, value in self.request.headers.get_all():
            lowered = name.lower()
            if lowered in DROP_REQUEST or lowered in listed:
                continue
            headers.append((name, value))
        key = self.proxy.real_key()
        style = self.proxy.auth_header
        if style == "mirror":
            style = "bearer" if used_bearer else "x-api-key"
        if key:
            headers.append(("x-api-key", key) if style == "x-api-key" else ("Authorization", f"Bearer {key}"))
        headers.append(("Accept-Encoding", "identity"))
        return headers

    def _submit(self, meter: ResponseMeter, request_id: str | None, body: bytes, started: float):
        """Start committing the response's usage row on the writer thread; an awaitable, or None (no usage)."""
        usage = meter.usage
        if usage is None or usage.total == 0:
            return None
        proxy = self.proxy
        model = usage.model or _request_model(body) or proxy.spec.get("model") or ""
        session = next((self.request.headers.get(name) for name in SESSION_HEADERS if self.request.headers.get(name)),
                       None) or f"proxy:{proxy.alias}:{proxy.run_id}"
        key = usage_key(usage.message_id, request_id) or f"proxy:{proxy.alias}:{uuid.uuid4().hex}"
        event = UsageEvent(
            dedup_key=key, source="proxy", at=time.time(), model=model, profile=proxy.alias,
            agent=proxy.spec.get("agent") or "", provider=proxy.spec.get("provider") or "", session=session,
            request_id=request_id, message_id=usage.message_id or None, **usage.tokens())
        return proxy.meterer.submit(event)


def _with_stream_usage(body: bytes) -> bytes:
    """A streamed chat completion asks for the final usage chunk (else it has none to meter)."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict) or not document.get("stream"):
        return body
    options = document.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options:
        return body
    document["stream_options"] = dict(options or {}, include_usage=True)
    return json.dumps(document, separators=(",", ":")).encode()


def _request_model(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, str) else None


class Proxy:
    """The worker's state: spec, secrets, the target, the usage writer."""

    def __init__(self, home: Home, spec: dict, run_id: int):
        self.home = home
        self.spec = spec
        self.alias = spec["profile"]
        self.run_id = run_id
        self.target = Target.parse(spec["upstream"])
        self.timeout = float(spec.get("upstream_timeout_secs", 600))
        self.max_body_bytes = int(spec.get("max_body_bytes", 32 << 20))
        self.auth_header = spec.get("auth_header", "x-api-key")
        self.inject_stream_usage = bool(spec.get("inject_stream_usage", True))
        self.secrets = SecretStore(home.secrets)
        self.meterer = Meterer(home, spec, run_id)
        self._placeholder = None
        self._key = None
        self._key_stamp = None

    def placeholder(self) -> str | None:
        if self._placeholder is None:
            value = self.secrets.read(self.spec["placeholder_secret"])
            self._placeholder = value.strip() if value else None
        return self._placeholder

    def real_key(self) -> str | None:
        """Read per request (a key change needs no restart), but only when the secret file changed."""
        name = self.spec.get("key_secret")
        if not name:
            return None
        try:
            st = os.stat(self.secrets._path(name))
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except (OSError, ValueError):
            stamp = None
        if stamp is None or stamp != self._key_stamp:
            value = self.secrets.read(name)
            self._key = value.strip() if value else None
            self._key_stamp = stamp
        return self._key


def bind_socket(port: int) -> socket.socket:
    """Listen on 127.0.0.1:port (SO_REUSEADDR: a restart after a crash gets the same port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def open_run(conn, alias: str, port: int) -> int:
    with store.transaction(conn):
        conn.execute("UPDATE proxy_runs SET stopped_at = ?, reason = 'crashed' WHERE profile = ? AND stopped_at IS NULL",
                     (clock.utc_iso(), alias))
        cursor = conn.execute("INSERT INTO proxy_runs (profile, port, pid, started_at) VALUES (?, ?, ?, ?)",
                              (alias, port, os.getpid(), clock.utc_iso()))
        return cursor.lastrowid


def close_run(conn, run_id: int, reason: str) -> None:
    conn.execute("UPDATE proxy_runs SET stopped_at = ?, reason = ? WHERE id = ? AND stopped_at IS NULL",
                 (clock.utc_iso(), reason, run_id))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="clown-proxy")
    parser.add_argument("--home", required=True)
    parser.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parent = os.getppid()
    procs.set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(0)   # supervisord died before we could ask
    home = Home(args.home)
    with open(home.spec("proxy-" + args.profile)) as handle:
        spec = json.load(handle)
    sys.setswitchinterval(0.0002)   # the usage writer thread must not hold the loop up for 5 ms
    asyncio.run(serve(home, spec))


async def serve(home: Home, spec: dict) -> None:
    """Listen until SIGTERM/SIGINT; the run is recorded in ``proxy_runs``."""
    sock = bind_socket(int(spec["port"]))
    conn = store.open_store(home.db)
    run_id = open_run(conn, spec["profile"], int(spec["port"]))
    proxy = Proxy(home, spec, run_id)
    app = tornado.web.Application([(r".*", ProxyHandler, {"proxy": proxy})], compress_response=False,
                                  serve_traceback=False)
    server = tornado.httpserver.HTTPServer(app, max_body_size=1 << 40, idle_connection_timeout=3600,
                                           body_timeout=proxy.timeout)
    server.add_sockets([sock])
    log.info("proxy of profile %s listening on 127.0.0.1:%s -> %s", proxy.alias, spec["port"], proxy.target.url)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        server.stop()
        close_run(conn, run_id, "stopped")
        proxy.meterer.close()
        conn.close()
        log.info("proxy of profile %s stopped", proxy.alias)

if __name__ == "__main__":
    main()
