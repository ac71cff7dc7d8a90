"""Terminal session routes: REST under /api/terminal and the /ws/terminal/{id} relay."""

import asyncio
import json
import logging

import tornado.web
from marshmallow import ValidationError

from clown.ipc import WorkerError
from clown.paths import ClientPathError, check_client_path
from clown.terminal.manager import TerminalError, TerminalManager
from clown.terminal.schemas import (CONTROL_MESSAGES, TerminalCreatedSchema, TerminalCreateSchema,
                                    TerminalSessionSchema)
from clown.web.base import ApiError, ClownHandler, GateMixin, Op, describe_validation_error
from clown.web.wsproto import ServerWebSocket, accept, check_upgrade
from clown.workers.terminal import load_scrollback

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008
CLOSE_NOT_FOUND = 4004
# A client with more than the relay's WRITE_HIGH (1 MiB) waiting for it that takes none of
# it for this long has stopped reading: closed with 4008. The worker cannot tell it so
# itself: the relay has stopped reading that client's worker connection, so the worker's
# ``closing`` would wait behind the output the client does not take.
SLOW_CLIENT_SECS = 3.0


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


class TerminalSocket(GateMixin, tornado.web.RequestHandler):
    """``/ws/terminal/{id}``: the gate and the upgrade checks here, then ``TerminalRelay``
    takes the socket over (clown.web.wsproto)."""

    def prepare(self):
        self.gate(websocket=True)

    async def get(self, session_id):
        check_upgrade(self.request)   # a bad upgrade is answered here, in the envelope
        relay = TerminalRelay(self.ctx, session_id, self.settings.get("websocket_ping_interval") or 0)
        try:
            await accept(self, relay)
        except ConnectionError:
            return
        await relay.start()


class TerminalRelay(ServerWebSocket):
    """One client of one terminal session: binary in = keystrokes, binary out = the PTY's bytes.

    The front keeps no copy of the stream: each client has its own connection to the
    worker, which sends the ring then live output, and each output frame from the worker
    becomes one WebSocket frame written straight to the client's socket. When the client
    does not read, its socket buffer passes WRITE_HIGH and this relay stops reading the
    worker (whose own backlog for the connection then grows: past ``client_backlog_bytes``
    it drops it). A client that takes none of its bytes for SLOW_CLIENT_SECS meanwhile
    is closed with 4008 "client too slow" here, and its worker connection with it (so
    ``client_count`` is exact at once); it may reconnect for the ring. When the worker does
    not take keystrokes, the relay stops reading the client.
    """

    def __init__(self, ctx, session_id: str, ping_interval: float):
        super().__init__(ctx.config.terminal.max_message_bytes, ping_interval, stall_secs=SLOW_CLIENT_SECS)
        self.ctx = ctx
        self.session_id = session_id
        self.client = None
        self._ws_paused = False
        self._ended_cleanly = False
        self._worker_closing = False

    async def start(self) -> None:
        manager = self.ctx.terminals
        row = manager.row(self.session_id)
        if row is None:
            self.send_json({"type": "error", "message": "Session not found"})
            self.close(CLOSE_NOT_FOUND, "Session not found")
            return
        client = None
        if row["state"] != "terminated":
            try:
                client = await manager.connect(self.session_id)
            except (OSError, WorkerError, asyncio.TimeoutError) as exc:
                self.send_json({"type": "error", "message": f"terminal worker is not reachable: {exc}"})
                self.close(1011, "terminal worker is not reachable")
                return
        if client is None:
            self._replay_ended()
            return
        if self.closed:   # the client left while we connected
            await client.close()
            return
        self.client = client
        try:
            await client.attach()
        except ConnectionError:
            pass   # the worker went away: on_end below says so
        self.send_json({"type": "connected", "session_id": self.session_id})
        client.set_consumer(self._on_output, self._on_worker_event, self._on_worker_end)
        if self._ws_paused:
            client.pause_reading()
        self.start_reading()

    def send_json(self, message: dict) -> None:
        self.send(json.dumps(message), binary=False)

    def _replay_ended(self) -> None:
        """An ended session: its scrollback dump, then its end state, then close."""
        self.send_json({"type": "connected", "session_id": self.session_id})
        try:
            _start, data = load_scrollback(self.ctx.terminals.scrollback_path(self.session_id))
        except (OSError, ValueError):
            data = b""
        if data:
            self.send(data)
        self._send_state(self.ctx.terminals.row(self.session_id))
        self.close(1000, "session ended")

    def _send_state(self, row) -> None:
        self.send_json({"type": "state_changed", "state": "terminated",
                        "exit_code": row["exit_code"] if row else None,
                        "exit_signal": row["exit_signal"] if row else None,
                        "reason": row["reason"] if row else None})

    # ---- worker → client, called from the worker connection's data_received

    def _on_output(self, offset: int, data: memoryview) -> None:
        self.send(data)

    def _on_worker_event(self, event: dict) -> None:
        op = event.get("op")
        if op == "state":
            self._ended_cleanly = True
            self.send_json({"type": "state_changed", "state": event.get("state", "terminated"),
                            "exit_code": event.get("exit_code"),
                            "exit_signal": event.get("exit_signal"),
                            "reason": event.get("reason")})
        elif op == "closing":
            self._worker_closing = True
            self.close(event.get("code", CLOSE_TOO_SLOW), event.get("reason", "client too slow"))
        elif op == "error":
            self.send_json({"type": "error", "message": event.get("message", "worker error")})

    def _on_worker_end(self) -> None:
        if self._worker_closing or self.closing:
            return
        if self._ended_cleanly:
            self.close(1000, "session ended")
        else:
            asyncio.ensure_future(self._report_lost_worker())

    async def _report_lost_worker(self) -> None:
        """The worker went away without a last word (killed): say what the store says."""
        for _ in range(100):
            if self.closing:
                return
            row = self.ctx.terminals.row(self.session_id)
            if row is None or row["state"] == "terminated":
                self._send_state(row)
                self.close(1000, "session ended")
                return
            await asyncio.sleep(0.05)
        self.send_json({"type": "error", "message": "lost the connection to the terminal worker"})
        self.close(1000, "session ended")

    # ---- flow control: the client's socket backs up → stop reading the worker

    def on_pause(self) -> None:
        self._ws_paused = True
        if self.client is not None:
            self.client.pause_reading()

    def on_resume(self) -> None:
        self._ws_paused = False
        if self.client is not None:
            self.client.resume_reading()

    def on_stalled(self) -> None:
        """The client stopped reading (see SLOW_CLIENT_SECS): close it with 4008 behind what
        it has not taken (dropped CLOSE_GRACE_SECS later if it never reads), and leave the
        worker at once."""
        log.info("terminal %s: closing a client that takes nothing (%d bytes waiting)",
                 self.session_id, self.buffered())
        self._worker_closing = True
        self.close(CLOSE_TOO_SLOW, "client too slow")
        if self.client is not None:
            asyncio.ensure_future(self.client.close())

    # ---- client → worker

    def on_message(self, data, binary: bool) -> None:
        try:
            if binary:
                backed_up = self.client.write_input(data)
            else:
                backed_up = self._control(data)
        except ConnectionError:
            self.send_json({"type": "error", "message": "the session has ended"})
            return
        if backed_up:   # the worker is not taking input: stop reading the client meanwhile
            self.pause_reading()
            asyncio.ensure_future(self._drain_input())

    async def _drain_input(self) -> None:
        try:
            await self.client.drain()
        except ConnectionError:
            self.send_json({"type": "error", "message": "the session has ended"})
        self.resume_reading()

    def _control(self, text: str) -> bool:
        """Check a JSON control message and pass it on; an ``error`` message otherwise."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            self.send_json({"type": "error", "message": f"control message is not valid JSON: {exc}"})
            return False
        if not isinstance(document, dict):
            self.send_json({"type": "error", "message": "control message must be a JSON object"})
            return False
        schema = CONTROL_MESSAGES.get(document.get("type"))
        if schema is None:
            self.send_json({"type": "error", "message": "control message type must be one of: "
                            + ", ".join(sorted(CONTROL_MESSAGES))})
            return False
        try:
            message = schema().load(document)
        except ValidationError as exc:
            self.send_json({"type": "error", "message": describe_validation_error(exc, document["type"])})
            return False
        if message["type"] == "resize":
            return self.client.write_control({"op": "resize", "cols": message["cols"], "rows": message["rows"]})
        return self.client.write_control({"op": "signal", "signal": message["signal"]})

    def on_close(self, code: int, reason: str) -> None:
        if self.client is not None:
            asyncio.ensure_future(self.client.close())


default_handlers = [
    (r"/api/terminal/sessions", TerminalSessionsHandler),
    (r"/api/terminal/sessions/(?P<session_id>[^/]+)", TerminalSessionHandler),
    (r"/api/terminal/cleanup", TerminalCleanupHandler),
    (r"/ws/terminal/(?P<session_id>[^/]+)", TerminalSocket),
]
