"""Reading token usage out of model responses as they stream past, without slowing them.

Three wire formats are understood:

- ``anthropic`` (Messages API): a JSON body's ``usage``, or the SSE ``message_start``
  event's ``message.usage`` updated by each ``message_delta`` event's ``usage`` (its counts
  are cumulative, so a field present there replaces the one from message_start).
- ``openai-responses`` (what Codex speaks): ``response.completed`` (or ``.incomplete`` /
  ``.failed``) carrying ``response.usage``, or a JSON body's ``usage``.
- ``openai-chat`` (Chat Completions): a JSON body's ``usage``, or the stream chunk that
  carries ``usage`` (sent when ``stream_options.include_usage`` is set).

OpenAI counts cached tokens inside ``input_tokens``/``prompt_tokens``; clown, like
Anthropic, keeps ``input_tokens`` for the uncached part only, so for OpenAI formats
``input_tokens = input - cached`` and ``cache_read_input_tokens = cached``.

``SSEScanner`` splits the byte stream into events and JSON-decodes only ``data:`` lines
that mention ``"usage"`` or open a response (``message_start``, ``response.created``):
the text deltas that make up nearly all of a stream are never decoded.
"""

from dataclasses import dataclass

try:
    import orjson

    def _loads(raw: bytes):
        return orjson.loads(raw)
except ImportError:  # pragma: no cover - orjson is a dependency, json the fallback
    import json

    def _loads(raw: bytes):
        return json.loads(raw)

API_ANTHROPIC = "anthropic"
API_RESPONSES = "openai-responses"
API_CHAT = "openai-chat"
# Most bytes of a non-streamed body kept for metering; a bigger body is forwarded unmetered.
MAX_JSON_BODY = 16 << 20
MAX_LINE = 4 << 20


def api_of_path(path: str) -> str | None:
    """The wire format a request path speaks, or None for paths that carry no usage."""
    bare = path.split("?", 1)[0].rstrip("/")
    if bare.endswith("/messages"):
        return API_ANTHROPIC
    if bare.endswith("/responses"):
        return API_RESPONSES
    if bare.endswith("/chat/completions"):
        return API_CHAT
    return None


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    model: str = ""
    message_id: str = ""

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def tokens(self) -> dict:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens}


def _int(value) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def anthropic_cache_creation(usage: dict) -> int:
    """Cache writes: the 5m + 1h breakdown when present, else the flat field (as ccusage)."""
    breakdown = usage.get("cache_creation")
    if isinstance(breakdown, dict):
        return _int(breakdown.get("ephemeral_5m_input_tokens")) + _int(breakdown.get("ephemeral_1h_input_tokens"))
    return _int(usage.get("cache_creation_input_tokens"))


def apply_anthropic_usage(target: Usage, usage: dict) -> None:
    """Set the fields ``usage`` has (message_delta's counts are cumulative: they replace)."""
    if not isinstance(usage, dict):
        return
    if "input_tokens" in usage:
        target.input_tokens = _int(usage["input_tokens"])
    if "output_tokens" in usage:
        target.output_tokens = _int(usage["output_tokens"])
    if "cache_creation" in usage or "cache_creation_input_tokens" in usage:
        target.cache_creation_input_tokens = anthropic_cache_creation(usage)
    if "cache_read_input_tokens" in usage:
        target.cache_read_input_tokens = _int(usage["cache_read_input_tokens"])


def openai_usage(usage: dict, target: Usage | None = None) -> Usage:
    """Usage of an OpenAI ``usage`` object (Responses or Chat names), cached split out."""
    target = target or Usage()
    if not isinstance(usage, dict):
        return target
    if "input_tokens" in usage:      # Responses API
        total_in = _int(usage.get("input_tokens"))
        details = usage.get("input_tokens_details") or {}
        out = _int(usage.get("output_tokens"))
    else:                            # Chat Completions
        total_in = _int(usage.get("prompt_tokens"))
        details = usage.get("prompt_tokens_details") or {}
        out = _int(usage.get("completion_tokens"))
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    cached = min(cached, total_in)
    target.input_tokens = total_in - cached
    target.cache_read_input_tokens = cached
    target.output_tokens = out
    return target


class ResponseMeter:
    """Feed a response's body bytes; ``usage`` is set once the response reported it.

    ``complete`` turns True when the event that ends the response's usage has been seen
    (message_stop / response.completed / the chat usage chunk or ``[DONE]``): the proxy
    commits the usage row before forwarding that chunk.
    """

    def __init__(self, api: str, streaming: bool):
        self.api = api
        self.streaming = streaming
        self.usage: Usage | None = None
        self.complete = False
        self.malformed = 0
        self._buffer = bytearray()
        self._event = b""
        self._body = bytearray() if not streaming else None
        self._body_overflow = False

    # -- input -------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        if not self.streaming:
            if not self._body_overflow:
                if len(self._body) + len(chunk) > MAX_JSON_BODY:
                    self._body_overflow = True
                    self._body = bytearray()
                else:
                    self._body += chunk
            return
        self._buffer += chunk
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end < 0:
                break
            self._line(bytes(self._buffer[start:end]).rstrip(b"\r"))
            start = end + 1
        del self._buffer[:start]
        if len(self._buffer) > MAX_LINE:     # no newline for megabytes: not SSE we can read
            self._buffer.clear()
            self.malformed += 1

    def finish(self) -> Usage | None:
        """Call at the end of the body: parses a JSON body; returns the usage (or None)."""
        if self.streaming:
            if self._buffer:
                self._line(bytes(self._buffer).rstrip(b"\r"))
                self._buffer.clear()
            return self.usage
        if self._body_overflow or not self._body:
            return self.usage
        try:
            document = _loads(bytes(self._body))
        except ValueError:
            self.malformed += 1
            return None
        if isinstance(document, dict):
            self._json_document(document)
        self.complete = True
        return self.usage

    # -- SSE ---------------------------------------------------------------------------------

    def _line(self, line: bytes) -> None:
        if not line:
            self._event = b""
            return
        if line.startswith(b"event:"):
            self._event = line[6:].strip()
            return
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if data == b"[DONE]":
            self.complete = True
            return
        if b'"usage"' not in data and b"message_start" not in data and b"response.created" not in data:
            return
        try:
            document = _loads(data)
        except ValueError:
            self.malformed += 1
            return
        if isinstance(document, dict):
            self._stream_event(document)

    def _stream_event(self, document: dict) -> None:
        kind = document.get("type")
        if self.api == API_ANTHROPIC:
            if kind == "message_start":
                message = document.get("message") or {}
                if isinstance(message, dict):
                    self.usage = Usage(model=str(message.get("model") or ""), message_id=str(message.get("id") or ""))
                    apply_anthropic_usage(self.usage, message.get("usage") or {})
            elif kind == "message_delta":
                if self.usage is None:
                    self.usage = Usage()
                apply_anthropic_usage(self.usage, document.get("usage") or {})
                self.complete = True   # message_stop carries nothing more
        elif self.api == API_RESPONSES:
            response = document.get("response")
            if not isinstance(response, dict):
                return
            if kind == "response.created":
                self.usage = self.usage or Usage()
                self.usage.model = str(response.get("model") or self.usage.model)
                self.usage.message_id = str(response.get("id") or self.usage.message_id)
            elif kind in ("response.completed", "response.incomplete", "response.failed", "response.done"):
                self.usage = self.usage or Usage()
                self.usage.model = str(response.get("model") or self.usage.model)
                self.usage.message_id = str(response.get("id") or self.usage.message_id)
                openai_usage(response.get("usage") or {}, self.usage)
                self.complete = True
        elif self.api == API_CHAT:
            usage = document.get("usage")
            if isinstance(usage, dict):
                # The latest counts win: some providers repeat a running usage in every chunk.
                self.usage = openai_usage(usage, Usage(model=str(document.get("model") or ""),
                                                       message_id=str(document.get("id") or "")))
                if not document.get("choices"):
                    self.complete = True    # OpenAI's last chunk: the usage, no choices (else [DONE])

    # -- JSON --------------------------------------------------------------------------------

    def _json_document(self, document: dict) -> None:
        usage = document.get("usage")
        if not isinstance(usage, dict):
            return
        found = Usage(model=str(document.get("model") or ""), message_id=str(document.get("id") or ""))
        if self.api == API_ANTHROPIC:
            apply_anthropic_usage(found, usage)
        else:
            openai_usage(usage, found)
        self.usage = found
