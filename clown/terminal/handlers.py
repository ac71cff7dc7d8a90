"""Terminal session routes: REST under /api/terminal and the /ws/terminal/{id} relay."""

import asyncio
import json
import logging
import struct

import tornado.iostream
import tornado.websocket
from marshmallow import ValidationError

from clown.ipc import WorkerError
from clown.paths import ClientPathError, check_client_path
from clown.terminal.manager import TerminalError, TerminalManager
from clown.terminal.schemas import (CONTROL_MESSAGES, TerminalCreatedSchema, TerminalCreateSchema,
                                    TerminalSessionSchema)
from clown.web.base import ApiError, ClownHandler, JsonWebSocketHandler, Op, describe_validation_error
from clown.workers.terminal import load_scrollback

log = logging.getLogger(__name__)

# What the front buffers for one client before it stops reading that client's worker
# connection (and resumes at half): writes not yet flushed to the socket, and their bytes.
MAX_WRITES_IN_FLIGHT = 8
MAX_BYTES_IN_FLIGHT = 1024 * 1024
CLOSE_TOO_SLOW = 4008
_SMALL_HEADER = struct.Struct("!BB")
_MEDIUM_HEADER = struct.Struct("!BBH")
_LARGE_HEADER = struct.Struct("!BBQ")
CLOSE_NOT_FOUND = 4004


def setup(ctx) -> None:
    ctx.terminals = TerminalManager(ctx)


def _api_error(exc: TerminalError) -> ApiError:
    return ApiError(exc.status, str(exc))


class TerminalSessionsHandler(ClownHandler):
    api = {
        "get": Op("List terminal sessions", response=TerminalSessionSchema, many=True, errors=(401,)),
        "post": Op("Start a terminal session of a profile", body=TerminalCreateSchema,
                   response=TerminalCreatedSchema, errors=(400, 401, 404, 429)),
    }

    async def get(self):
        self.ok(await self.ctx.terminals.all())

    async def post(self):
        body = self.load_body(TerminalCreateSchema())
        working_dir = body["working_dir"]
        if working_dir is not None:
            try:
                working_dir = check_client_path(working_dir, "working_dir", self.ctx.config.server.allowed_roots)
            except ClientPathError as exc:
                raise ApiError(400, str(exc))
        try:
            session = await self.ctx.terminals.create(body["profile_alias"], body["args"], body["cols"],
                                                      body["rows"], working_dir)
        except TerminalError as exc:
            raise _api_error(exc)
        self.ok({"session_id": session["id"], "ws_url": f"/ws/terminal/{session['id']}"})


class TerminalSessionHandler(ClownHandler):
    api = {
        "get": Op("Get a terminal session", response=TerminalSessionSchema, errors=(401, 404)),
        "delete": Op("Terminate a terminal session (its whole process tree)", errors=(401, 404)),
    }

    async def get(self, session_id):
        try:
            self.ok(await self.ctx.terminals.get(session_id))
        except TerminalError as exc:
            raise _api_error(exc)

    async def delete(self, session_id):
        try:
            await self.ctx.terminals.terminate(session_id)
        except TerminalError as exc:
            raise _api_error(exc)
        self.ok(bare=True)


class TerminalCleanupHandler(ClownHandler):
    api = {"post": Op("Forget terminated terminal sessions", errors=(401,))}

    async def post(self):
        await self.ctx.terminals.cleanup()
        self.ok(bare=True)


class TerminalSocket(JsonWebSocketHandler):
    """One client of one terminal session: binary in = keystrokes, binary out = the PTY's bytes.

    The front keeps no copy of the stream: each client has its own connection to the
    worker, which sends the ring then live output. A client that does not read makes its
    writes wait here (at most MAX_WRITES_IN_FLIGHT), then this relay stops reading the
    worker, and the worker drops the connection past ``client_backlog_bytes``; the client
    is then closed with 4008 "client too slow" and may reconnect for the ring.
    """

    client = None

    async def open(self, session_id):
        self.session_id = session_id
        manager = self.ctx.terminals
        row = manager.row(session_id)
        if row is None:
            await self._send_json({"type": "error", "message": "Session not found"})
            self.close(CLOSE_NOT_FOUND, "Session not found")
            return
        client = None
        if row["state"] != "terminated":
            try:
                client = await manager.connect(session_id)
            except (OSError, WorkerError, asyncio.TimeoutError) as exc:
                await self._send_json({"type": "error", "message": f"terminal worker is not reachable: {exc}"})
                self.close(1011, "terminal worker is not reachable")
                return
        if client is None:
            await self._replay_ended(session_id)
            return
        self.client = client
        await client.attach()
        await self._send_json({"type": "connected", "session_id": session_id})
        self._start_relay()

    async def _send_json(self, message: dict) -> None:
        try:
            await self.write_message(json.dumps(message))
        except (tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
            pass

    async def _replay_ended(self, session_id: str) -> None:
        """An ended session: its scrollback dump, then its end state, then close."""
        await self._send_json({"type": "connected", "session_id": session_id})
        try:
            _start, data = load_scrollback(self.ctx.terminals.scrollback_path(session_id))
        except (OSError, ValueError):
            data = b""
        try:
            if data:
                await self.write_message(data, binary=True)
        except (tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
            return
        await self._send_state(self.ctx.terminals.row(session_id))
        self.close(1000, "session ended")

    async def _send_state(self, row) -> None:
        await self._send_json({"type": "state_changed", "state": "terminated",
                               "exit_code": row["exit_code"] if row else None,
                               "exit_signal": row["exit_signal"] if row else None,
                               "reason": row["reason"] if row else None})

    # ---- worker → browser, driven by the worker connection's data_received

    def _start_relay(self) -> None:
        self._in_flight = 0        # bytes handed to the WebSocket and not yet flushed
        self._writes = 0           # writes not yet flushed
        self._paused = False
        self._ended_cleanly = False
        self._closing = False
        self._last_write = None
        self.client.set_consumer(self._on_output, self._on_worker_event, self._on_worker_end)

    def _write(self, message, binary: bool) -> bool:
        """Write without waiting; False when the WebSocket is gone."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return False
        try:
            future = self.write_message(message, binary=binary)
        except (tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
            return False
        size = len(message)
        self._track(future, size)
        return True

    def _track(self, future, size: int) -> None:
        self._in_flight += size
        self._writes += 1
        self._last_write = future
        future.add_done_callback(lambda f, size=size: self._written(f, size))
        if not self._paused and (self._in_flight > MAX_BYTES_IN_FLIGHT or self._writes >= MAX_WRITES_IN_FLIGHT):
            self._paused = True
            self.client.pause_reading()

    def _written(self, future, size: int) -> None:
        if not future.cancelled():
            future.exception()   # retrieved: a closed socket ends the relay elsewhere
        self._in_flight -= size
        self._writes -= 1
        if self._paused and self._in_flight <= MAX_BYTES_IN_FLIGHT // 2 and self._writes < MAX_WRITES_IN_FLIGHT:
            self._paused = False
            if self.client is not None:
                self.client.resume_reading()

    def _on_output(self, offset: int, data: memoryview) -> None:
        conn = self.ws_connection
        stream = getattr(conn, "stream", None)
        if (stream is None or getattr(conn, "_compressor", True) is not None
                or getattr(conn, "mask_outgoing", True)):
            self._write(bytes(data), True)   # compression (or another Tornado): the public way
            return
        # One unmasked, uncompressed binary frame written straight to the IOStream: what
        # write_message does, without its two copies of the data and its task per message.
        if conn.is_closing():
            return
        size = len(data)
        if size < 126:
            header = _SMALL_HEADER.pack(0x82, size)
        elif size <= 0xFFFF:
            header = _MEDIUM_HEADER.pack(0x82, 126, size)
        else:
            header = _LARGE_HEADER.pack(0x82, 127, size)
        try:
            future = stream.write(header + data)
        except tornado.iostream.StreamClosedError:
            return
        self._track(future, size)

    def _on_worker_event(self, event: dict) -> None:
        op = event.get("op")
        if op == "state":
            self._ended_cleanly = True
            self._write(json.dumps({"type": "state_changed", "state": event.get("state", "terminated"),
                                    "exit_code": event.get("exit_code"),
                                    "exit_signal": event.get("exit_signal"),
                                    "reason": event.get("reason")}), False)
        elif op == "closing":
            self._closing = True
            self._close_after_writes(event.get("code", CLOSE_TOO_SLOW), event.get("reason", "client too slow"))
        elif op == "error":
            self._write(json.dumps({"type": "error", "message": event.get("message", "worker error")}), False)

    def _on_worker_end(self) -> None:
        if not self._closing:
            asyncio.ensure_future(self._finish())

    def _close_after_writes(self, code: int, reason: str) -> None:
        if self.ws_connection is not None:
            self.close(code, reason)

    async def _finish(self) -> None:
        """The worker connection ended: flush, say why if the worker did not, close."""
        if self._last_write is not None:
            try:
                await self._last_write
            except (tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
                return
        if self.ws_connection is None:
            return
        if not self._ended_cleanly:
            await self._report_lost_worker()
        self.close(1000, "session ended")

    async def _report_lost_worker(self) -> None:
        """The worker went away without a last word (killed): say what the store says."""
        for _ in range(100):
            row = self.ctx.terminals.row(self.session_id)
            if row is None or row["state"] == "terminated":
                await self._send_state(row)
                return
            await asyncio.sleep(0.05)
        await self._send_json({"type": "error", "message": "lost the connection to the terminal worker"})

    def on_message(self, message):
        # Not a coroutine for keystrokes: Tornado would run it as a task, a loop turn later.
        # A coroutine is returned only when there is something to wait for; Tornado waits for
        # it before reading the next message (backpressure on a worker not taking input).
        if self.client is None:
            return None
        if isinstance(message, bytes):
            try:
                if self.client.write_input(message):
                    return self._drain_input()
            except ConnectionError:
                return self._send_json({"type": "error", "message": "the session has ended"})
            return None
        return self._control_message(message)

    async def _drain_input(self) -> None:
        try:
            await self.client.drain()
        except ConnectionError:
            await self._send_json({"type": "error", "message": "the session has ended"})

    async def _control_message(self, message: str) -> None:
        try:
            await self._control(message)
        except ConnectionError:
            await self._send_json({"type": "error", "message": "the session has ended"})

    async def _control(self, text: str) -> None:
        try:
            document = json.loads(text)
        except ValueError as exc:
            await self._send_json({"type": "error", "message": f"control message is not valid JSON: {exc}"})
            return
        if not isinstance(document, dict):
            await self._send_json({"type": "error", "message": "control message must be a JSON object"})
            return
        schema = CONTROL_MESSAGES.get(document.get("type"))
        if schema is None:
            await self._send_json({"type": "error", "message": "control message type must be one of: "
                                   + ", ".join(sorted(CONTROL_MESSAGES))})
            return
        try:
            message = schema().load(document)
        except ValidationError as exc:
            await self._send_json({"type": "error", "message": describe_validation_error(exc, document["type"])})
            return
        if message["type"] == "resize":
            await self.client.resize(message["cols"], message["rows"])
        else:
            await self.client.signal(message["signal"])

    def on_close(self):
        if self.client is not None:
            asyncio.ensure_future(self.client.close())


default_handlers = [
    (r"/api/terminal/sessions", TerminalSessionsHandler),
    (r"/api/terminal/sessions/(?P<session_id>[^/]+)", TerminalSessionHandler),
    (r"/api/terminal/cleanup", TerminalCleanupHandler),
    (r"/ws/terminal/(?P<session_id>[^/]+)", TerminalSocket),
]
