"""A fake model provider: a real HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks enough of three APIs for real agent CLIs to complete turns against it:

- Anthropic Messages: ``POST /v1/messages`` (SSE with ``stream: true``, exactly Anthropic's
  event sequence: message_start (usage), content_block_start/delta/stop, message_delta
  (usage), message_stop; else one JSON message) and ``POST /v1/messages/count_tokens``;
- OpenAI Responses (what Codex uses): ``POST /v1/responses`` and ``POST /responses``
  (SSE: response.created, response.output_item.added, response.output_text.delta,
  response.output_item.done, response.completed with usage; or one JSON response);
- OpenAI Chat Completions: ``POST /v1/chat/completions`` and ``/chat/completions``
  (a stream ends with a usage chunk when ``stream_options.include_usage`` is set, as OpenAI does).

``GET /v1/models`` lists the models; any other GET/HEAD answers 200 ``{}`` and any other
POST answers 404 with an Anthropic-style error; both are recorded in ``unknown_paths``.

Usage::

    with FakeUpstream(turns=[tool_use("Read", {"file_path": p}), text("done")]) as up:
        up.url                       # http://127.0.0.1:<port>
        ...
        up.requests[-1].headers["x-api-key"]
        up.mode = "hang"             # faults: hang | garbage | error500 | drip | cut

Each model request takes the next turn of the script; when the script runs out, the
``default_text`` answer is given. With ``script_only_with_tools=True`` only requests
that offer tools (an agent's main loop) consume the script, so an agent's side requests
(titles, quota probes) do not eat it.
"""

import gzip
import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("tests.fakes.upstream")

DEFAULT_USAGE = {
    "input_tokens": 100,
    "output_tokens": 20,
    "cache_creation_input_tokens": 10,
    "cache_read_input_tokens": 50,
}
MODES = (None, "hang", "garbage", "error500", "drip", "cut")


@dataclass
class Turn:
    """One answer of the script: text, or a tool call (a second turn then follows)."""

    text: str | None = None
    tool_name: str | None = None
    tool_input: dict | None = None
    usage: dict | None = None       # overrides the upstream's usage for this answer


def text(answer: str, usage: dict | None = None) -> Turn:
    return Turn(text=answer, usage=usage)


def tool_use(name: str, tool_input: dict, usage: dict | None = None) -> Turn:
    return Turn(tool_name=name, tool_input=tool_input, usage=usage)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict          # names lower-cased
    body: object           # parsed JSON, or None
    raw: bytes = b""
    at: float = field(default_factory=time.time)


class FakeUpstream:
    """The server; ``start()``/``stop()`` or use as a context manager."""

    def __init__(self, turns: list | None = None, usage: dict | None = None, mode: str | None = None,
                 drip_interval: float = 0.2, default_text: str = "OK", script_only_with_tools: bool = False,
                 full_delta_usage: bool = False, port: int = 0):
        self.turns = list(turns or [])
        self.usage = dict(DEFAULT_USAGE, **(usage or {}))
        self.mode = mode
        self.drip_interval = drip_interval
        self.default_text = default_text
        self.script_only_with_tools = script_only_with_tools
        # Newer Anthropic responses repeat every usage field in message_delta.
        self.full_delta_usage = full_delta_usage
        # The header an Anthropic answer carries its request id in: "request-id" (Anthropic's),
        # "x-request-id" (some compatible providers) or None (none at all).
        self.anthropic_request_id_header = "request-id"
        self.requests: list[RecordedRequest] = []
        self.unknown_paths: list[str] = []
        self.completed = 0          # responses written to their end
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._port = port
        self._server = None
        self._thread = None

    # -- life --------------------------------------------------------------------------------

    def start(self) -> "FakeUpstream":
        upstream = self

        class Handler(_Handler):
            fake = upstream

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- script ------------------------------------------------------------------------------

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def next_turn(self, body: dict) -> Turn:
        with self._lock:
            if self.turns and (not self.script_only_with_tools or body.get("tools")):
                return self.turns.pop(0)
        return Turn(text=self.default_text)

    def usage_of(self, turn: Turn) -> dict:
        return dict(self.usage, **(turn.usage or {}))

    def model_requests(self, path_suffix: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.split("?")[0].endswith(path_suffix)]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeUpstream
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True      # else keep-alive clients wait out delayed ACKs (40 ms)

    def log_message(self, fmt, *args):
        log.debug("fake upstream: " + fmt, *args)

    # -- plumbing ----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            raw = b"".join(parts)
        else:
            raw = b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        return raw

    def _record(self, raw: bytes) -> RecordedRequest:
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        record = RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, raw)
        self.fake.requests.append(record)
        return record

    def _send_json(self, status: int, document, headers: dict | None = None) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _start_stream(self, headers: dict | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _stream_events(self, events: list[tuple[str | None, object]], headers: dict) -> None:
        """Write SSE events one chunk each; the fault modes act here."""
        mode = self.fake.mode
        self._start_stream(headers)
        for index, (name, data) in enumerate(events):
            payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
            frame = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
            self._chunk(frame.encode())
            if mode == "drip":
                if self.fake._stopping.wait(self.fake.drip_interval):
                    return
            if mode == "cut" and index == 1:
                self.close_connection = True
                return        # the connection closes with the response unfinished
        self._end_stream()
        self.fake.completed += 1

    def _fault(self) -> bool:
        """Answer per the fault mode; True when the request is handled."""
        mode = self.fake.mode
        if mode == "hang":
            self.fake._stopping.wait(3600)
            self.close_connection = True
            return True
        if mode == "error500":
            self._send_json(500, {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
                            {"request-id": self.fake.next_id("req")})
            return True
        if mode == "garbage":
            payload = b"\x00\xffnot json {{{ data: \xfe\r\n\r\ndata: {\"type\":\"message_start\",\n\n" * 20
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
            return True
        return False

    # -- routes ------------------------------------------------------------------------------

    def do_HEAD(self):
        self._record(b"")
        self._send_json(200, {})

    def do_GET(self):
        self._record(b"")
        path = self.path.split("?")[0]
        if path in ("/v1/models", "/models"):
            models = ["claude-sonnet-4-5", "gpt-5", "fake-model"]
            self._send_json(200, {"object": "list", "data": [
                {"id": name, "object": "model", "type": "model", "created": 0, "owned_by": "fake",
                 "display_name": name} for name in models], "models": []})
            return
        self.fake.unknown_paths.append(f"GET {self.path}")
        log.info("fake upstream: unknown GET %s", self.path)
        self._send_json(200, {})

    def do_POST(self):
        raw = self._read_body()
        record = self._record(raw)
        body = record.body if isinstance(record.body, dict) else {}
        path = self.path.split("?")[0]
        if path == "/v1/messages/count_tokens":
            self._send_json(200, {"input_tokens": max(1, len(raw) // 4)})
            return
        if path in ("/v1/messages", "/v1/responses", "/responses", "/v1/chat/completions", "/chat/completions"):
            if self._fault():
                return
            turn = self.fake.next_turn(body)
            if path == "/v1/messages":
                self._anthropic(body, turn)
            elif path.endswith("/responses"):
                self._responses(body, turn)
            else:
                self._chat(body, turn)
            return
        self.fake.unknown_paths.append(f"POST {self.path}")
        log.info("fake upstream: unknown POST %s", self.path)
        self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {path}"}})

    # -- Anthropic Messages ------------------------------------------------------------------

    def _anthropic(self, body: dict, turn: Turn) -> None:
        fake = self.fake
        model = body.get("model") or "claude-sonnet-4-5"
        usage = fake.usage_of(turn)
        message_id = fake.next_id("msg")
        header = fake.anthropic_request_id_header
        headers = {header: fake.next_id("req")} if header else {}
        if turn.tool_name:
            block = {"type": "tool_use", "id": fake.next_id("toolu"), "name": turn.tool_name,
                     "input": turn.tool_input or {}}
            stop_reason = "tool_use"
        else:
            block = {"type": "text", "text": turn.text or ""}
            stop_reason = "end_turn"
        if not body.get("stream"):
            fake.completed += 1
            self._send_json(200, {
                "id": message_id, "type": "message", "role": "assistant", "model": model,
                "content": [block], "stop_reason": stop_reason, "stop_sequence": None,
                "usage": {**usage, "service_tier": "standard"},
            }, headers)
            return
        start_usage = dict(usage, output_tokens=1)
        delta_usage = dict(usage) if fake.full_delta_usage else {"output_tokens": usage["output_tokens"]}
        events = [("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]
        if turn.tool_name:
            events.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": dict(block, input={})}))
            events.append(("ping", {"type": "ping"}))
            partial = json.dumps(block["input"])
            for piece in (partial[:len(partial) // 2], partial[len(partial) // 2:]):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "input_json_delta", "partial_json": piece}}))
        else:
            events.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": {"type": "text", "text": ""}}))
            events.append(("ping", {"type": "ping"}))
            for piece in _pieces(block["text"]):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "text_delta", "text": piece}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        events.append(("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": stop_reason, "stop_sequence": None}, "usage": delta_usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        self._stream_events(events, headers)

    # -- OpenAI Responses --------------------------------------------------------------------

    def _responses(self, body: dict, turn: Turn) -> None:
        fake = self.fake
        model = body.get("model") or "gpt-5"
        usage = fake.usage_of(turn)
        response_id = fake.next_id("resp")
        headers = {"x-request-id": fake.next_id("req")}
        cached = usage.get("cache_read_input_tokens", 0)
        api_usage = {
            # OpenAI's input_tokens include the cached ones.
            "input_tokens": usage["input_tokens"] + cached,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": usage["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["input_tokens"] + cached + usage["output_tokens"],
        }
        if turn.tool_name:
            item = {"type": "function_call", "id": fake.next_id("fc"), "call_id": fake.next_id("call"),
                    "name": turn.tool_name, "arguments": json.dumps(turn.tool_input or {}), "status": "completed"}
        else:
            item = {"type": "message", "id": fake.next_id("msg"), "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": turn.text or "", "annotations": []}]}
        base = {"id": response_id, "object": "response", "created_at": int(time.time()), "model": model,
                "status": "in_progress", "output": [], "usage": None}
        done = dict(base, status="completed", output=[item], usage=api_usage)
        if not body.get("stream"):
            fake.completed += 1
            self._send_json(200, done, headers)
            return
        seq = itertools.count()
        events = [
            ("response.created", {"type": "response.created", "sequence_number": next(seq), "response": base}),
            ("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq), "response": base}),
        ]
        if turn.tool_name:
            events.append(("response.output_item.added", {
                "type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0,
                "item": dict(item, arguments="", status="in_progress")}))
            events.append(("response.function_call_arguments.delta", {
                "type": "response.function_call_arguments.delta", "sequence_number": next(seq),
                "item_id": item["id"], "output_index": 0, "delta": item["arguments"]}))
            events.append(("response.function_call_arguments.done", {
                "type": "response.function_call_arguments.done", "sequence_number": next(seq),
                "item_id": item["id"], "output_index": 0, "arguments": item["arguments"]}))
        else:
            events.append(("response.output_item.added", {
                "type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0,
                "item": dict(item, status="in_progress", content=[])}))
            events.append(("response.content_part.added", {
                "type": "response.content_part.added", "sequence_number": next(seq), "item_id": item["id"],
                "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}))
            for piece in _pieces(turn.text or ""):
                events.append(("response.output_text.delta", {
                    "type": "response.output_text.delta", "sequence_number": next(seq), "item_id": item["id"],
                    "output_index": 0, "content_index": 0, "delta": piece}))
            events.append(("response.output_text.done", {
                "type": "response.output_text.done", "sequence_number": next(seq), "item_id": item["id"],
                "output_index": 0, "content_index": 0, "text": turn.text or ""}))
            events.append(("response.content_part.done", {
                "type": "response.content_part.done", "sequence_number": next(seq), "item_id": item["id"],
                "output_index": 0, "content_index": 0, "part": item["content"][0]}))
        events.append(("response.output_item.done", {
            "type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0, "item": item}))
        events.append(("response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                              "response": done}))
        self._stream_events(events, headers)

    # -- OpenAI Chat Completions -------------------------------------------------------------

    def _chat(self, body: dict, turn: Turn) -> None:
        fake = self.fake
        model = body.get("model") or "gpt-5"
        usage = fake.usage_of(turn)
        chat_id = fake.next_id("chatcmpl")
        headers = {"x-request-id": fake.next_id("req")}
        cached = usage.get("cache_read_input_tokens", 0)
        api_usage = {"prompt_tokens": usage["input_tokens"] + cached, "completion_tokens": usage["output_tokens"],
                     "total_tokens": usage["input_tokens"] + cached + usage["output_tokens"],
                     "prompt_tokens_details": {"cached_tokens": cached}}
        if turn.tool_name:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": fake.next_id("call"), "type": "function",
                "function": {"name": turn.tool_name, "arguments": json.dumps(turn.tool_input or {})}}]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": turn.text or ""}
            finish = "stop"
        base = {"id": chat_id, "object": "chat.completion", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            fake.completed += 1
            self._send_json(200, dict(base, choices=[{"index": 0, "message": message, "finish_reason": finish}],
                                      usage=api_usage), headers)
            return
        chunk = dict(base, object="chat.completion.chunk")
        events = [(None, dict(chunk, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                               "finish_reason": None}]))]
        if turn.tool_name:
            events.append((None, dict(chunk, choices=[{"index": 0, "delta": {"tool_calls": [
                dict(message["tool_calls"][0], index=0)]}, "finish_reason": None}])))
        else:
            for piece in _pieces(turn.text or ""):
                events.append((None, dict(chunk, choices=[{"index": 0, "delta": {"content": piece},
                                                           "finish_reason": None}])))
        events.append((None, dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": finish}])))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append((None, dict(chunk, choices=[], usage=api_usage)))
        events.append((None, "[DONE]"))
        self._stream_events(events, headers)


def _pieces(answer: str) -> list[str]:
    """The text split into word-sized deltas (at least one, possibly empty)."""
    words = answer.split(" ")
    return [word if i == len(words) - 1 else word + " " for i, word in enumerate(words)] or [""]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the fake upstream in the foreground")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=[m for m in MODES if m])
    parser.add_argument("--text", default="OK")
    options = parser.parse_args()
    server = FakeUpstream(mode=options.mode, default_text=options.text, port=options.port).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
