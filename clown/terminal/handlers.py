"""Terminal session routes: REST under /api/terminal and the /ws/terminal/{id} relay."""

import asyncio
import collections
import json
import logging

import tornado.iostream
import tornado.websocket
from marshmallow import ValidationError

from clown.ipc import Output, WorkerError
from clown.paths import ClientPathError, check_client_path
from clown.terminal.manager import TerminalError, TerminalManager
from clown.terminal.schemas import (CONTROL_MESSAGES, TerminalCreatedSchema, TerminalCreateSchema,
                                    TerminalSessionSchema)
from clown.web.base import ApiError, ClownHandler, JsonWebSocketHandler, Op, describe_validation_error
from clown.workers.terminal import load_scrollback

log = logging.getLogger(__name__)

# WebSocket writes awaited at once per client: bounds what the front buffers for one client.
MAX_WRITES_IN_FLIGHT = 8
CLOSE_TOO_SLOW = 4008
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
        asyncio.ensure_future(self._pump())

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

    async def _pump(self) -> None:
        in_flight = collections.deque()
        ended_cleanly = False
        try:
            async for event in self.client:
                if isinstance(event, Output):
                    in_flight.append(self.write_message(event.data, binary=True))
                    if len(in_flight) >= MAX_WRITES_IN_FLIGHT:
                        await in_flight.popleft()
                    continue
                op = event.get("op")
                if op == "state":
                    ended_cleanly = True
                    await self._send_json({"type": "state_changed", "state": event.get("state", "terminated"),
                                           "exit_code": event.get("exit_code"),
                                           "exit_signal": event.get("exit_signal"),
                                           "reason": event.get("reason")})
                elif op == "closing":
                    self.close(event.get("code", CLOSE_TOO_SLOW), event.get("reason", "client too slow"))
                    return
                elif op == "error":
                    await self._send_json({"type": "error", "message": event.get("message", "worker error")})
            for write in in_flight:
                await write
        except (tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
            return
        if self.ws_connection is None:
            return
        if not ended_cleanly:
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

    async def on_message(self, message):
        if self.client is None:
            return
        try:
            if isinstance(message, bytes):
                await self.client.send_input(message)
                return
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
