"""The proxy worker's HTTP/1.1 server, on asyncio Protocols: agent connection -> exchange -> upstream.

An ``AgentConnection`` reads requests with ``clown.proxy.http.RequestReader``, one at a
time (bytes of a pipelined next request wait, reading pauses past ``PIPELINE_LIMIT``).
Once a request is whole it becomes an ``Exchange``, which sends it upstream on a pooled
connection and forwards the answer from the upstream connection's ``data_received``
straight to the agent's transport: the head rebuilt (hop-by-hop headers dropped, the
framing set), the body piece by piece as it arrives (a chunked or until-close body goes
out chunked), metered on the way. No task, future or extra loop iteration per request
when a pooled connection is free and the usage row commits inline.

Usage: when the piece that completes a metered answer arrives, the usage row commits
inline on the loop (to the usage inbox, see ``clown.workers.proxy.Meterer``) and then the
piece goes out. When another writer holds the store, the
row goes to the writer thread instead: everything but the piece's last byte goes out, the
upstream is not read meanwhile, and the last byte follows the commit. An agent that has
the whole answer has its usage committed.

Errors the proxy makes itself are JSON in Anthropic's error shape. A request that breaks
HTTP gets its status (400, 405, 413, 417, 431, 501, 505) and the connection closes after
a lingering half-close (the rest of what the agent sends is read and dropped for up to
``LINGER_SECS``, so the answer is not lost to a reset). Timeouts are checked by one sweep
timer (``sweep``), not a timer per request.
"""

import asyncio
import json
import logging
import socket
import time
import uuid
from http import HTTPStatus

from clown.proxy.http import (BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, HTTPError, RequestHead, RequestReader,
                              ResponseReader, UpstreamProtocolError)
from clown.proxy.upstream import RECEIVE_BUFFER, UpstreamConnection, UpstreamError
from clown.usage.meter import API_CHAT, ResponseMeter, api_of_path
from clown.usage.store import UsageEvent, usage_key

log = logging.getLogger("clown.workers.proxy")

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "trailers", "transfer-encoding", "upgrade", "proxy-connection"})
# Request headers never forwarded: hop-by-hop ones, the ones rebuilt here, and the credential.
DROP_REQUEST = HOP_BY_HOP | {"host", "content-length", "accept-encoding", "x-api-key", "authorization", "expect"}
DROP_RESPONSE = HOP_BY_HOP | {"content-length"}
SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id")
REQUEST_ID_HEADERS = ("request-id", "x-request-id")

PIPELINE_LIMIT = 1 << 20        # bytes of later requests buffered while one is served
IDLE_CONNECTION_SECS = 3600.0   # an agent connection with no request for this long is closed
LINGER_SECS = 2.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_KIND_OF_STATUS = {401: "authentication_error", 413: "request_too_large", 431: "request_too_large"}


def error_body(kind: str, message: str, upstream: str | None = None) -> bytes:
    """A JSON error the agent's SDK can read (Anthropic's shape, which OpenAI SDKs also parse)."""
    error = {"type": kind, "message": message}
    if upstream:
        error["upstream"] = upstream
    return json.dumps({"type": "error", "error": error}).encode()


def error_response(status: int, kind: str, message: str, upstream: str | None = None, close: bool = False) -> bytes:
    """A whole HTTP/1.1 response carrying ``error_body``."""
    body = error_body(kind, message, upstream)
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n")
    if close:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode("latin-1") + body


def no_delay(transport) -> None:
    """Small writes go out at once (asyncio sets TCP_NODELAY only on sockets made with IPPROTO_TCP)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ProxyServer:
    """The listening side: its agent connections and the timeout sweep."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.connections: set[AgentConnection] = set()
        self._sweeper = None

    def protocol(self) -> "AgentConnection":
        return AgentConnection(self)

    def start_sweeping(self) -> None:
        interval = min(1.0, max(0.05, self.proxy.timeout / 4))
        loop = asyncio.get_running_loop()

        def sweep():
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check(now)
            self._sweeper = loop.call_later(interval, sweep)

        self._sweeper = loop.call_later(interval, sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.transport.abort()


class AgentConnection(asyncio.BufferedProtocol):
    """One agent's connection: reads its requests one at a time and serves each as an Exchange."""

    def __init__(self, server: ProxyServer):
        self.server = server
        self.proxy = server.proxy
        self.transport = None
        self.reader = RequestReader(self.proxy.max_body_bytes)
        self.exchange: Exchange | None = None
        self.last_activity = time.monotonic()
        self.closed = False
        self.lingering = False       # an error was answered: what the agent still sends is dropped
        self.reading_paused = False
        self.writing_paused = False
        self._continued = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections.add(self)
        no_delay(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return RECEIVE_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(RECEIVE_BUFFER[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self.lingering:
            return
        self.reader.feed(data)
        if self.exchange is None:
            self._serve()
        elif self.reader.pending > PIPELINE_LIMIT and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self):
        return False        # the agent is gone: connection_lost cancels what is in flight

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.agent_gone()

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.exchange is not None:
            self.exchange.pause_upstream()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.exchange is not None:
            self.exchange.resume_upstream()

    # -- requests -----------------------------------------------------------------------------

    def _serve(self) -> None:
        """Serve the requests received so far, one at a time."""
        try:
            while self.exchange is None and not self.lingering and not self.closed and self._serve_next():
                pass
        except Exception:        # a bug must cost this connection, never the worker
            log.exception("proxy: unexpected error serving a request")
            if self.exchange is not None:
                self.exchange.agent_gone()
                self.exchange = None
            self._refuse(500, "api_error", "clown proxy: internal error", close=True)

    def _serve_next(self) -> bool:
        """Start the next request once it is whole (checks that need only its head come first).

        Returns True when a request was dealt with and the next may follow at once.
        """
        reader = self.reader
        try:
            head = reader.head
            if head is None:
                head = reader.read_head()
                if head is None:
                    return False
                self._continued = False
                refusal = self.proxy.refusal(head)
                if refusal is not None:
                    status, kind, message = refusal
                    self._refuse(status, kind, message, close=head.content_length != 0)
                    return True
            body = reader.read_body()
        except HTTPError as exc:
            self._refuse(exc.status, _KIND_OF_STATUS.get(exc.status, "invalid_request_error"), exc.message,
                         close=True)
            return False
        if body is None:
            if head.expect_continue and not self._continued:
                self._continued = True
                self.transport.write(CONTINUE)
            return False
        reader.next_request()
        self.exchange = Exchange(self, head, body)
        self.exchange.start()
        return True

    def exchange_done(self, keep_alive: bool) -> None:
        """The answer went out whole (or as an error): serve what the agent sent next, or close."""
        self.exchange = None
        if not keep_alive or self.closed:
            self.transport.close()
            return
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.reader.pending:
            self._serve()

    def _refuse(self, status: int, kind: str, message: str, close: bool) -> None:
        """Answer an error the proxy decided; with ``close``, then linger and close."""
        log.info("proxy: refused a request: %s %s", status, message)
        self.transport.write(error_response(status, kind, message, close=close))
        if not close:
            self.reader.next_request()
            return
        self.lingering = True
        self.reader = RequestReader(0)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_SECS, self.transport.close)

    def check(self, now: float) -> None:
        """Timeouts, from the sweep: a stalled upstream, a stalled request, an idle connection."""
        if self.exchange is not None:
            self.exchange.check(now)
            return
        if self.lingering or self.closed:
            return
        idle = now - self.last_activity
        if (self.reader.pending or self.reader.head is not None) and idle > self.proxy.timeout:
            log.info("proxy: closing a connection whose request stalled for %.0fs", idle)
            self.transport.abort()
        elif idle > IDLE_CONNECTION_SECS:
            self.transport.close()


class Exchange:
    """One request forwarded upstream and its answer forwarded back, metered on the way."""

    def __init__(self, agent: AgentConnection, head: RequestHead, body: bytes):
        self.agent = agent
        self.proxy = agent.proxy
        self.head = head
        self.body = body
        self.api = None
        self.request = b""
        self.upstream: UpstreamConnection | None = None
        self.reused = False
        self.retried = False
        self.connecting = None
        self.response: ResponseReader | None = None
        self.waiting_head = True
        self.head_sent = False
        self.chunked = False        # the answer goes to the agent chunked
        self.hold_tail = False      # a metered until-close body: its last byte waits for the end
        self.tail = b""
        self.keep_alive = head.keep_alive
        self.meter: ResponseMeter | None = None
        self.recorded = False
        self.held = None            # (last byte, ended) while the usage row commits on the writer thread
        self.pending = b""          # upstream bytes that arrived meanwhile
        self.lost_while_held = False
        self.done = False
        self.started = time.time()
        self.last_activity = time.monotonic()

    def start(self) -> None:
        proxy = self.proxy
        head = self.head
        self.api = api_of_path(head.path)
        if self.api == API_CHAT and proxy.inject_stream_usage:
            self.body = _with_stream_usage(self.body)
        self.request = proxy.upstream_request(head, self.body)
        connection = proxy.pool.take()
        if connection is not None:
            self._send(connection, reused=True)
        else:
            self.connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        try:
            connection = await self.proxy.pool.connect()
        except UpstreamError as exc:
            self.connecting = None
            if not self.done:
                self._fail(exc)
            return
        except Exception as exc:    # anything else must still answer the agent
            log.exception("proxy: connecting upstream failed")
            self.connecting = None
            if not self.done:
                self._fail(UpstreamError("unreachable", f"cannot connect to {self.proxy.target.url}: {exc}"))
            return
        self.connecting = None
        if self.done:           # the agent went away meanwhile; the connection is unused
            connection.release(True)
            return
        self._send(connection, reused=False)

    def _send(self, connection: UpstreamConnection, reused: bool) -> None:
        self.upstream = connection
        self.reused = reused
        self.response = ResponseReader(self.head.method)
        self.last_activity = time.monotonic()
        connection.send(self, self.request)
        if self.agent.writing_paused:
            connection.pause_reading()

    # -- from the upstream connection ---------------------------------------------------------

    def upstream_data(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self.held is not None:
            self.pending += data
            return
        response = self.response
        try:
            head = None
            if self.waiting_head:
                if not response.read_head(data):
                    return
                self.waiting_head = False
                head = self._response_head()
                data = b""
            payload, ended = response.read_body(data)
        except UpstreamProtocolError as exc:
            self._upstream_broke(UpstreamError("protocol", f"{self.proxy.target.url} {exc}"))
            return
        self._forward(head, payload, ended)

    def upstream_lost(self, connection: UpstreamConnection) -> None:
        if self.done or connection is not self.upstream:
            return
        if self.held is not None:
            self.lost_while_held = True
            return
        target = self.proxy.target.url
        if self.waiting_head:
            if self.reused and not self.retried and not self.response.buffer:
                # A pooled connection the upstream had closed: nothing came back, so send once more.
                self.retried = True
                self.upstream = None
                self.connecting = asyncio.ensure_future(self._connect())
                return
            self._fail(UpstreamError("protocol", f"{target} closed the connection without a whole response"))
            return
        try:
            payload, ended = self.response.at_eof()
        except UpstreamProtocolError as exc:
            self._upstream_broke(UpstreamError("protocol", f"{target} {exc}"))
            return
        self._forward(None, payload, ended)

    # -- forwarding ---------------------------------------------------------------------------

    def _response_head(self) -> bytes:
        response = self.response
        status = response.status
        if self.api is not None and 200 <= status < 300:
            content_type = (response.header("content-type") or "").lower()
            self.meter = ResponseMeter(self.api, content_type.startswith("text/event-stream"))
        listed = ()
        connection = response.header("connection")
        if connection:
            listed = {token.strip().lower() for token in connection.split(",")}
        lines = [f"HTTP/1.1 {status} {response.reason}"]
        for name, value in response.headers:
            lowered = name.lower()
            if lowered in DROP_RESPONSE or lowered in listed:
                continue
            lines.append(f"{name}: {value}")
        framing = response.framing
        if framing == BODY_LENGTH:
            lines.append(f"Content-Length: {response.remaining}")
        elif framing == BODY_NONE:
            length = response.header("content-length")
            if length is not None and self.head.method == "HEAD":
                lines.append(f"Content-Length: {length}")
        elif self.head.version == "HTTP/1.1":
            lines.append("Transfer-Encoding: chunked")
            self.chunked = True
        else:
            self.keep_alive = False     # an HTTP/1.0 agent: the body ends when the connection does
            self.hold_tail = self.meter is not None and framing == BODY_UNTIL_CLOSE
        if not self.keep_alive:
            lines.append("Connection: close")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    def _forward(self, head: bytes | None, payload: bytes, ended: bool) -> None:
        """Send the agent ``head`` (once) and ``payload``; commit the usage before the answer's last byte."""
        if self.chunked:
            parts = [head] if head else []
            if payload:
                parts += (b"%x\r\n" % len(payload), payload, b"\r\n")
            if ended:
                parts.append(b"0\r\n\r\n")
            data = b"".join(parts)
        else:
            data = head + payload if head else payload
        if self.hold_tail:
            data = self.tail + data
            if not ended:
                self.tail, data = data[-1:], data[:-1]
        event = None
        meter = self.meter
        if meter is not None and not self.recorded:
            if payload:
                meter.feed(payload)
            if ended:
                meter.finish()
            if ended or meter.complete:
                self.recorded = True
                event = self._usage_event()
        self.head_sent = True
        transport = self.agent.transport
        if event is not None and data:
            # Commit, then write: writing all but the last byte first (so the agent reads while the
            # row commits) measured no faster here, and costs a second send.
            commit = self.proxy.meterer.commit(event)
            if commit is not None:
                if len(data) > 1:
                    transport.write(data[:-1])
                self.held = (data[-1:], ended)
                self.upstream.pause_reading()
                commit.add_done_callback(self._committed)
                return
            transport.write(data)
        else:
            if event is not None:
                self.proxy.meterer.commit(event)
            if data:
                transport.write(data)
        if ended:
            self._finish()

    def _committed(self, commit: asyncio.Future) -> None:
        """The writer thread committed the usage row: the held last byte may go."""
        if not commit.cancelled() and commit.exception() is not None:
            log.error("could not record usage: %s", commit.exception())
        last, ended = self.held
        self.held = None
        if self.done:
            return
        self.agent.transport.write(last)
        if ended:
            self._finish()
            return
        if not self.agent.writing_paused:
            self.upstream.resume_reading()
        if self.pending:
            data, self.pending = self.pending, b""
            self.upstream_data(data)
        if self.lost_while_held and not self.done and self.held is None:
            self.upstream_lost(self.upstream)

    def _finish(self) -> None:
        self.done = True
        self.upstream.release(self.response.reusable)
        self.agent.exchange_done(self.keep_alive)

    # -- failures -----------------------------------------------------------------------------

    def _fail(self, error: UpstreamError) -> None:
        """No answer from the upstream: tell the agent in a 502 or 504 of the proxy's own."""
        if self.head_sent:
            self._upstream_broke(error)
            return
        self.done = True
        if self.upstream is not None:
            self.upstream.abort()
        status = 504 if error.kind == "timeout" else 502
        kind = {"timeout": "upstream_timeout", "unreachable": "upstream_unreachable"}.get(error.kind, "upstream_error")
        target = self.proxy.target.url
        log.warning("upstream %s failed: %s", target, error)
        self.agent.transport.write(error_response(status, kind, f"clown proxy: {error}", target,
                                                  close=not self.keep_alive))
        self.agent.exchange_done(self.keep_alive)

    def _upstream_broke(self, error: UpstreamError) -> None:
        """The upstream broke off an answer already under way: cut the agent's connection too."""
        if not self.head_sent:
            self._fail(error)
            return
        log.warning("upstream response from %s ended early: %s", self.proxy.target.url, error)
        self.done = True
        self._record_partial()
        self.upstream.abort()
        self.agent.transport.close()     # the agent sees the answer cut, never a false end

    def agent_gone(self) -> None:
        """The agent closed its connection: drop the upstream request, keep what usage it reported."""
        if self.done:
            return
        self.done = True
        if self.connecting is not None:
            self.connecting.cancel()
        if self.upstream is not None:
            self.upstream.abort()
        self._record_partial()

    def check(self, now: float) -> None:
        if self.done or self.held is not None or self.connecting is not None or self.agent.writing_paused:
            return
        timeout = self.proxy.timeout
        if now - self.last_activity > timeout:
            self._fail(UpstreamError("timeout", f"no data from upstream for {timeout:g}s"))

    def pause_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_upstream(self) -> None:
        if self.upstream is not None and self.held is None:
            self.upstream.resume_reading()
        self.last_activity = time.monotonic()

    # -- usage --------------------------------------------------------------------------------

    def _record_partial(self) -> None:
        """A response cut short still records what it reported."""
        meter = self.meter
        if meter is None or self.recorded:
            return
        self.recorded = True
        meter.finish()
        event = self._usage_event()
        if event is not None:
            self.proxy.meterer.commit(event)

    def _usage_event(self) -> UsageEvent | None:
        usage = self.meter.usage
        if usage is None or usage.total == 0:
            return None
        proxy = self.proxy
        fields = self.head.fields
        response = self.response
        model = usage.model or _request_model(self.body) or proxy.spec.get("model") or ""
        session = next((fields[name] for name in SESSION_HEADERS if fields.get(name)), None) \
            or f"proxy:{proxy.alias}:{proxy.run_id}"
        request_id = next((response.header(name) for name in REQUEST_ID_HEADERS if response.header(name)), None)
        key = usage_key(usage.message_id, response.header("request-id")) \
            or _transcript_key(usage.message_id, fields.get("x-claude-code-session-id")) \
            or f"proxy:{proxy.alias}:{uuid.uuid4().hex}"
        return UsageEvent(
            dedup_key=key, source="proxy", at=time.time(), model=model, profile=proxy.alias,
            agent=proxy.spec.get("agent") or "", provider=proxy.spec.get("provider") or "", session=session,
            request_id=request_id, message_id=usage.message_id or None, **usage.tokens())


def _transcript_key(message_id: str | None, session: str | None) -> str | None:
    """The key Claude Code's transcript gives a response that came without a ``request-id``
    header (it stores no ``requestId`` then, and ``clown.usage.imports`` keys the line by the
    ``msg_`` id and the session), so that importing the transcript does not count it again."""
    if message_id and message_id.startswith("msg_") and session:
        return f"{message_id}:session:{session}"
    return None


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
