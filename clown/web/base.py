"""Base handlers: the two envelopes, request checks, body caps and schema validation.

Two families share the listener (DESIGN.md, "Which envelope"):

- the clown API answers ``{"success": true, "data": ...}`` / ``{"success": false, "error": "..."}``;
- the sessions API (``/health``, ``/api/sessions...``, ``/api/config``, ``/api/credentials``,
  ``/api/auth...``, ``/ws``) answers bare objects and ``{"error": {"code", "message"}}``.

Every request passes the same gate in ``prepare``: a known ``Host``, an allowed ``Origin``
for anything that changes state, the token when one is set, and a body under the cap.
Handlers then call ``load_body(schema)`` / ``load_query(schema)`` and ``ok(...)``.
"""

import http
import json
import logging
import re
from dataclasses import dataclass, field

import tornado.web
import tornado.websocket
from marshmallow import Schema, ValidationError

from clown.web.security import COOKIE

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
# An over-cap body up to this size is read and dropped so the client sees the 413
# (many clients do not read a reply before they have sent their whole body).
DRAIN_BODY_BYTES = 16 << 20
_SESSIONS_FAMILY = re.compile(r"^/(health$|ws$|api/(sessions|config|credentials|auth)(/|$))")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
CORS_HEADERS = "Content-Type, Authorization"

SESSIONS_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    429: "TOO_MANY_REQUESTS",
    500: "BACKEND_ERROR",
}


def is_sessions_path(path: str) -> bool:
    return bool(_SESSIONS_FAMILY.match(path))


class ApiError(tornado.web.HTTPError):
    """An error for the client: ``status``, a human message, and (sessions family) a code."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(status)
        self.message = message
        self.code = code or SESSIONS_CODES.get(status, "INVALID_REQUEST")


@dataclass
class Op:
    """OpenAPI description of one method of a handler (read by ``clown.web.openapi``)."""

    summary: str
    query: type[Schema] | None = None
    body: type[Schema] | None = None
    response: type[Schema] | None = None
    many: bool = False
    errors: tuple = (400,)
    tags: list = field(default_factory=list)


def describe_validation_error(exc: ValidationError, where: str) -> str:
    """``body field 'alias': Missing data for required field.`` for the first bad field."""
    messages = exc.normalized_messages()
    parts = []
    for name, why in messages.items():
        while isinstance(why, dict):
            inner, why = next(iter(why.items()))
            name = f"{name}.{inner}" if name != "_schema" else str(inner)
        if isinstance(why, list):
            why = " ".join(str(item) for item in why)
        if name == "_schema":
            parts.append(f"{where}: {why}")
        else:
            parts.append(f"{where} field '{name}': {why}")
    return "; ".join(parts)


class GateMixin:
    """The checks every request passes, for plain and WebSocket handlers alike."""

    @property
    def ctx(self):
        return self.application.settings["clown"]

    @property
    def sessions_family(self) -> bool:
        return is_sessions_path(self.request.path)

    def set_default_headers(self):
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        origin = self.request.headers.get("Origin")
        if origin and self._origin_ok(origin):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Credentials", "true")
            self.add_header("Vary", "Origin")

    def _origin_ok(self, origin: str) -> bool:
        return self.ctx.access.origin_allowed(origin, self.request.headers.get("Host"))

    def check_trusted_origin(self, origin: str) -> bool:
        # Tornado's cross-origin protection (6.6) asks this for cross-site state changes.
        return self._origin_ok(origin)

    def gate(self, websocket: bool = False) -> None:
        """Raise ApiError unless Host, Origin and the token are acceptable."""
        access = self.ctx.access
        if not access.host_allowed(self.request.headers.get("Host")):
            raise ApiError(403, "Host header is not one this daemon answers to")
        origin = self.request.headers.get("Origin")
        if origin and (websocket or self.request.method not in _SAFE_METHODS) and not self._origin_ok(origin):
            raise ApiError(403, f"Origin {origin!r} is not allowed")
        if self.needs_auth() and not access.token_ok(
                self.request.headers.get("Authorization"), self.get_cookie(COOKIE)):
            raise ApiError(401, "Authentication required: send Authorization: Bearer <token> "
                                "or sign in for the clown_session cookie")

    def needs_auth(self) -> bool:
        path = self.request.path
        return path.startswith("/api/") or path.startswith("/ws")

    def error_body(self, status: int, message: str, code: str | None = None) -> dict:
        if self.sessions_family:
            return {"error": {"code": code or SESSIONS_CODES.get(status, "INVALID_REQUEST"), "message": message}}
        return {"success": False, "error": message}

    def write_error(self, status_code: int, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        code = None
        if isinstance(exc, ApiError):
            message, code = exc.message, exc.code
        elif isinstance(exc, tornado.web.HTTPError) and status_code < 500:
            message = exc.log_message or _reason(status_code)
            if status_code == 405:
                message = f"Method {self.request.method} is not allowed on {self.request.path}"
            elif status_code == 403 and exc.log_message:
                message = exc.log_message
        else:
            message = "Internal server error" if status_code >= 500 else _reason(status_code)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(self.error_body(status_code, message, code)))

    def log_exception(self, typ, value, tb):
        if isinstance(value, tornado.web.HTTPError) and value.status_code < 500:
            return
        log.error("uncaught error in %s %s", self.request.method, self.request.path, exc_info=(typ, value, tb))


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@tornado.web.stream_request_body
class JsonHandler(GateMixin, tornado.web.RequestHandler):
    """Base of every REST handler; subclasses pick the envelope with ``ClownHandler``/``SessionsHandler``."""

    api: dict = {}

    def initialize(self, **_):
        self._chunks: list[bytes] = []
        self._received = 0
        self._too_large = False

    def prepare(self):
        self.gate()
        length = self.request.headers.get("Content-Length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise ApiError(400, "Content-Length is not a number")
            if declared > DRAIN_BODY_BYTES:
                raise ApiError(413, self._too_large_message())
            if declared > MAX_BODY_BYTES:
                self._refuse_body()

    def _too_large_message(self) -> str:
        return f"request body is over the {MAX_BODY_BYTES}-byte cap"

    def _refuse_body(self) -> None:
        """Drop the rest of the body and answer 413 instead of running the method."""
        self._too_large = True
        self._chunks.clear()

        def too_large(*_args, **_kwargs):
            raise ApiError(413, self._too_large_message())

        setattr(self, self.request.method.lower(), too_large)

    def data_received(self, chunk: bytes):
        self._received += len(chunk)
        if self._too_large:
            return
        if self._received > MAX_BODY_BYTES:
            self._refuse_body()
        else:
            self._chunks.append(chunk)

    def options(self, *args, **kwargs):
        """CORS preflight: 204 with the methods and headers (Allow-Origin set only for allowed origins)."""
        self.set_header("Access-Control-Allow-Methods", CORS_METHODS)
        self.set_header("Access-Control-Allow-Headers", CORS_HEADERS)
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    # -- input ----------------------------------------------------------------------------

    def body_json(self):
        """The JSON body (None when empty). Raises ApiError 413/400."""
        if self._too_large:
            raise ApiError(413, self._too_large_message())
        raw = b"".join(self._chunks)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}")

    def load_body(self, schema: Schema, required: bool = True) -> dict:
        """Validate the JSON body with ``schema``; 400 naming the bad field."""
        document = self.body_json()
        if document is None:
            if required:
                raise ApiError(400, "request body is required (a JSON object)")
            document = {}
        if not isinstance(document, dict):
            raise ApiError(400, "request body must be a JSON object")
        try:
            return schema.load(document)
        except ValidationError as exc:
            raise ApiError(400, describe_validation_error(exc, "body"))

    def load_query(self, schema: Schema) -> dict:
        """Validate the query string with ``schema`` (one value per name); 400 naming the bad one."""
        args = {}
        for name, values in self.request.query_arguments.items():
            if len(values) > 1:
                raise ApiError(400, f"query parameter '{name}' is given more than once")
            try:
                args[name] = values[0].decode()
            except UnicodeDecodeError:
                raise ApiError(400, f"query parameter '{name}' is not valid UTF-8")
        try:
            return schema.load(args)
        except ValidationError as exc:
            raise ApiError(400, describe_validation_error(exc, "query"))

    def write_json(self, document) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(document, separators=(",", ":")))


class ClownHandler(JsonHandler):
    """The clown API: ``ok(data)`` answers ``{"success": true, "data": data}``."""

    def ok(self, data=None, bare: bool = False) -> None:
        """Answer 200; ``bare=True`` gives exactly ``{"success": true}`` (where the spec shows it)."""
        self.write_json({"success": True} if bare else {"success": True, "data": data})


class SessionsHandler(JsonHandler):
    """The sessions API: ``ok(document)`` answers the bare document."""

    def ok(self, document) -> None:
        self.write_json(document)


class NotFoundHandler(JsonHandler):
    """Any path no route matches: 404 in the family's envelope."""

    def prepare(self):
        super().prepare()
        raise ApiError(404, f"No route for {self.request.path}", code="NOT_FOUND")


class JsonWebSocketHandler(GateMixin, tornado.websocket.WebSocketHandler):
    """Base of the WebSocket handlers: same gate as REST before the upgrade."""

    def prepare(self):
        self.gate(websocket=True)

    def check_origin(self, origin: str) -> bool:
        return self._origin_ok(origin)
