"""``/ws``: the sessions spec's event socket, with clown's daemon events beside it.

Every message is a flat JSON object (DESIGN.md, "/ws messages are flat"):

- ``{"type":"subscribe","session_id":…}`` → ``{"type":"subscribed","session_id":…}``, then the
  session's current ``session_status``; from then on its ``session_status``,
  ``chat_message``, ``tool_call`` and ``tool_result`` messages;
- ``{"type":"unsubscribe","session_id":…}`` stops them (no answer);
- ``{"type":"send_message","session_id":…,"content":…}`` types into the agent (no answer;
  the message comes back as a ``chat_message`` once the agent has it in its transcript);
- ``{"type":"subscribe","topics":[…]}`` → ``{"type":"subscribed","topics":[…]}``, then
  ``{"type":"event","topic":…,"event":…,"data":{…}}``; ``unsubscribe`` with ``topics`` too;
- ``{"type":"ping"}`` → ``{"type":"pong"}``.

A bad message gets ``{"type":"error","error":{"code","message"}}`` and the socket stays
open. A client whose unsent output passes ``[terminal] client_backlog_bytes`` is closed
(4008 "client too slow"): a slow client never makes the front hold more than that.
"""

import asyncio
import json
import logging

import tornado.websocket
from marshmallow import ValidationError

from clown.sessions.schemas import WsSendMessageSchema, WsSubscribeSchema
from clown.web.base import ApiError, JsonWebSocketHandler, describe_validation_error
from clown.web.events import TOPICS

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008


class EventSocketHandler(JsonWebSocketHandler):
    @property
    def max_message_size(self) -> int:
        # Tornado closes the socket past this; up to it, an oversized message gets an error
        # and the socket stays open.
        return 4 * self.ctx.config.terminal.max_message_bytes

    def initialize(self, **_):
        self._sessions: set[str] = set()
        self._topics: set[str] = set()
        self._unsent = 0
        self._limit = self.ctx.config.terminal.client_backlog_bytes

    # -- output --------------------------------------------------------------------------------

    def send(self, message: dict) -> None:
        """Queue ``message``; close the client when its unsent output is over the limit."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        text = json.dumps(message, separators=(",", ":"))
        if self._unsent + len(text) > self._limit:
            log.info("closing a /ws client that does not keep up (%d bytes unsent)", self._unsent)
            self.close(CLOSE_TOO_SLOW, "client too slow")
            return
        try:
            written = self.write_message(text)
        except tornado.websocket.WebSocketClosedError:
            return
        size = len(text)
        self._unsent += size

        def done(future):
            self._unsent -= size
            if not future.cancelled():
                future.exception()  # a closed socket: nothing to do, but do not log it as unhandled

        written.add_done_callback(done)

    def send_error_message(self, code: str, message: str) -> None:
        self.send({"type": "error", "error": {"code": code, "message": message}})

    # -- input ---------------------------------------------------------------------------------

    def on_message(self, message):
        limit = self.ctx.config.terminal.max_message_bytes
        if isinstance(message, bytes):
            self.send_error_message("INVALID_REQUEST", "messages must be JSON text, not binary")
            return
        if len(message) > limit or len(message.encode("utf-8", "surrogatepass")) > limit:
            self.send_error_message("INVALID_REQUEST", f"message is over the {limit}-byte limit")
            return
        try:
            document = json.loads(message)
        except ValueError as exc:
            self.send_error_message("INVALID_REQUEST", f"message is not valid JSON: {exc}")
            return
        if not isinstance(document, dict):
            self.send_error_message("INVALID_REQUEST", "message must be a JSON object")
            return
        if isinstance(document.get("data"), dict):  # the spec's {"type", "data"} shape, flattened
            document = {**document["data"], **{k: v for k, v in document.items() if k != "data"}}
        kind = document.get("type")
        handler = {"subscribe": self._subscribe, "unsubscribe": self._unsubscribe,
                   "send_message": self._send_message, "ping": self._ping}.get(kind)
        if handler is None:
            what = "message has no 'type'" if kind is None else f"unknown message type {kind!r}"
            self.send_error_message("INVALID_REQUEST", what)
            return
        try:
            handler(document)
        except ValidationError as exc:
            self.send_error_message("INVALID_REQUEST", describe_validation_error(exc, "message"))
        except ApiError as exc:
            self.send_error_message(exc.code, exc.message)

    def _ping(self, _document):
        self.send({"type": "pong"})

    def _subscribe(self, document):
        request = WsSubscribeSchema().load(document)
        if "topics" not in request and "session_id" not in request:
            raise ValidationError("needs 'session_id' (a session) or 'topics' (daemon events)")
        if "topics" in request:
            unknown = [topic for topic in request["topics"] if topic not in TOPICS]
            if unknown:
                raise ApiError(400, f"unknown topic {unknown[0]!r}; topics are: {', '.join(TOPICS)}")
            for topic in request["topics"]:
                if topic not in self._topics:
                    self._topics.add(topic)
                    self.ctx.events.subscribe(topic, self.send)
            self.send({"type": "subscribed", "topics": list(request["topics"])})
        if "session_id" in request:
            session_id = request["session_id"]
            row = self.ctx.sessions.row(session_id)     # 404 → error SESSION_NOT_FOUND
            if session_id not in self._sessions:
                self._sessions.add(session_id)
                self.ctx.sessions.watch(session_id, self.send)
            self.send({"type": "subscribed", "session_id": session_id})
            self.send({"type": "session_status", "session_id": session_id, "status": row["status"]})

    def _unsubscribe(self, document):
        request = WsSubscribeSchema().load(document)
        if "topics" not in request and "session_id" not in request:
            raise ValidationError("needs 'session_id' or 'topics'")
        for topic in request.get("topics", ()):
            if topic in self._topics:
                self._topics.discard(topic)
                self.ctx.events.unsubscribe(topic, self.send)
        session_id = request.get("session_id")
        if session_id in self._sessions:
            self._sessions.discard(session_id)
            self.ctx.sessions.unwatch(session_id, self.send)

    def _send_message(self, document):
        request = WsSendMessageSchema().load(document)
        self.ctx.sessions.row(request["session_id"])    # 404 at once, before typing
        asyncio.ensure_future(self._type(request["session_id"], request["content"]))

    async def _type(self, session_id: str, content: str) -> None:
        try:
            await self.ctx.sessions.send_message(session_id, content)
        except ApiError as exc:
            self.send_error_message(exc.code, exc.message)
        except Exception:
            log.exception("send_message to session %s failed", session_id)
            self.send_error_message("BACKEND_ERROR", "could not send the message to the agent")

    def on_close(self):
        for topic in self._topics:
            self.ctx.events.unsubscribe(topic, self.send)
        for session_id in self._sessions:
            self.ctx.sessions.unwatch(session_id, self.send)
        self._topics.clear()
        self._sessions.clear()
