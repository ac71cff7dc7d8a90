"""HTTP/1.1 message parsing for the proxy worker, with no I/O (the protocols feed it bytes).

``RequestReader`` reads what an agent sends, and treats every byte as hostile: the head is
capped (``MAX_HEAD_BYTES``, ``MAX_HEADERS``), the request line and each header line are
checked against the grammar (no obs-fold, no whitespace before the colon, no control
characters, CRLF line ends only), and the body's framing is unambiguous or refused: both
``Content-Length`` and ``Transfer-Encoding`` (the request-smuggling pair), a repeated or
non-decimal ``Content-Length``, a transfer coding other than a lone ``chunked``, and a bad
chunk size or chunk end are errors. Each error is an ``HTTPError`` carrying the status to
answer; the connection is then closed, since the framing of what follows is unknown.

``ResponseReader`` reads what the upstream (the provider) answers: the head, then the body
as it arrives (``Content-Length``, chunked, or until the connection closes), so each piece
can be forwarded at once. The upstream is trusted more, but a malformed answer is still an
``UpstreamProtocolError``, never a crash.
"""

import re
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_CHUNK_LINE = 4096            # a chunk-size line, extensions included
MAX_TRAILER_BYTES = 16 * 1024
MAX_RESPONSE_HEAD_BYTES = 256 * 1024

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) (/[!-~]*) (HTTP/\d\.\d)")
_HEADER_BLOCK = re.compile(rf"(?:{_TOKEN}:[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
_TRAILER_LINE = re.compile(rf"{_TOKEN}:[^\x00-\x08\x0a-\x1f\x7f]*".encode())
_FRAMING = frozenset({"content-length", "transfer-encoding", "host"})
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[^\x00-\x08\x0a-\x1f\x7f]*)?")
_STATUS_LINE = re.compile(r"HTTP/1\.[01] (\d{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")


class HTTPError(Exception):
    """A request that cannot be served as sent; ``status`` is the answer (400, 405, 413, 431, 501, 505...)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class UpstreamProtocolError(Exception):
    """The upstream's answer is not HTTP/1.1 we can forward."""


@dataclass
class RequestHead:
    method: str
    target: str                  # origin-form: /path?query
    version: str                 # HTTP/1.1 | HTTP/1.0
    headers: list                # [(name, value)] as received
    fields: dict                 # lower-cased name -> value (repeats joined with ", ")
    keep_alive: bool
    expect_continue: bool
    content_length: int | None   # None: chunked, or no body

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def get(self, name: str) -> str | None:
        """The value of header ``name`` (lower case)."""
        return self.fields.get(name)


def parse_request_head(head: bytes, max_body: int) -> RequestHead:
    """Parse a request head (without its final blank line). Raises HTTPError."""
    text = head.decode("latin-1")
    line_end = text.find("\r\n")
    match = _REQUEST_LINE.fullmatch(text if line_end < 0 else text[:line_end])
    if match is None:
        raise HTTPError(400, "clown proxy: malformed request line")
    method, target, version = match.groups()
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HTTPError(505, f"clown proxy: {version} is not supported")
    headers = []
    fields: dict[str, str] = {}
    lengths: list[str] = []
    codings: list[str] = []
    hosts = 0
    if line_end >= 0:
        block = text[line_end + 2:] + "\r\n"
        # One match checks every line: a token, a colon, no control character (so no bare CR or
        # LF, no NUL), CRLF ends; a line starting with whitespace (obs-fold) fails the token.
        if _HEADER_BLOCK.fullmatch(block) is None:
            raise HTTPError(400, "clown proxy: malformed header line")
        lines = block.split("\r\n")
        lines.pop()
        if len(lines) > MAX_HEADERS:
            raise HTTPError(431, f"clown proxy: more than {MAX_HEADERS} header fields")
        for line in lines:
            name, _, value = line.partition(":")
            value = value.strip(" \t")
            headers.append((name, value))
            lowered = name.lower()
            if lowered in fields:
                fields[lowered] = fields[lowered] + ", " + value
            else:
                fields[lowered] = value
            if lowered in _FRAMING:
                if lowered == "content-length":
                    lengths.append(value)
                elif lowered == "transfer-encoding":
                    codings.append(value)
                else:
                    hosts += 1
    if method not in METHODS:
        raise HTTPError(405, f"clown proxy: method {method} is not allowed")
    if version == "HTTP/1.1" and hosts != 1:
        raise HTTPError(400, "clown proxy: an HTTP/1.1 request needs exactly one Host header")
    content_length = None
    if codings:
        if lengths:
            raise HTTPError(400, "clown proxy: both Content-Length and Transfer-Encoding")
        if version != "HTTP/1.1":
            raise HTTPError(400, "clown proxy: Transfer-Encoding in an HTTP/1.0 request")
        listed = [token.strip().lower() for token in ",".join(codings).split(",")]
        if listed != ["chunked"]:
            raise HTTPError(501, "clown proxy: only the chunked transfer coding is supported")
    elif lengths:
        if len(lengths) > 1 or not lengths[0].isdigit() or not lengths[0].isascii() or len(lengths[0]) > 18:
            raise HTTPError(400, "clown proxy: bad Content-Length")
        content_length = int(lengths[0])
        if content_length > max_body:
            raise HTTPError(413, f"clown proxy: request body of {content_length} bytes is over the "
                                 f"{max_body}-byte cap")
    else:
        content_length = 0
    connection = fields.get("connection", "").lower()
    if version == "HTTP/1.1":
        keep_alive = "close" not in connection
    else:
        keep_alive = False
    expect = fields.get("expect")
    if expect is not None and expect.lower() != "100-continue":
        raise HTTPError(417, "clown proxy: only the 100-continue expectation is supported")
    return RequestHead(method, target, version, headers, fields, keep_alive,
                       expect is not None and version == "HTTP/1.1", content_length)


class RequestReader:
    """Requests from an agent's connection, one at a time.

    ``feed`` appends received bytes. ``read_head`` returns the next request's head once it
    is whole (None until then); ``read_body`` then returns its whole body (None until it
    has arrived). ``next_request`` forgets the request and starts on the next one; bytes
    already received for it (a pipelined request) are kept. Both raise HTTPError.

    The buffer is a bytearray consumed from the front, and the search for the end of a head
    resumes where the last one stopped: a request that arrives a few bytes at a time costs
    linear time, not quadratic.
    """

    def __init__(self, max_body: int):
        self.max_body = max_body
        self.buffer = bytearray()
        self.head: RequestHead | None = None
        self._scanned = 0           # bytes of the buffer searched for the head's end so far
        # a chunked body: the chunks so far (the buffer then starts at the next size line)
        self._parts: list[bytes] = []
        self._received = 0
        self._in_trailers = False

    def feed(self, data: bytes) -> None:
        self.buffer += data

    @property
    def pending(self) -> int:
        return len(self.buffer)

    def read_head(self) -> RequestHead | None:
        buffer = self.buffer
        # A client may send an empty line before a request (RFC 9112 2.2).
        while buffer[:2] == b"\r\n":
            del buffer[:2]
            self._scanned = 0
        end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(buffer)
            if len(buffer) > MAX_HEAD_BYTES:
                raise HTTPError(431, f"clown proxy: request head over {MAX_HEAD_BYTES} bytes")
            return None
        self._scanned = 0
        if end > MAX_HEAD_BYTES:
            raise HTTPError(431, f"clown proxy: request head over {MAX_HEAD_BYTES} bytes")
        self.head = parse_request_head(bytes(buffer[:end]), self.max_body)
        del buffer[:end + 4]
        return self.head

    def read_body(self) -> bytes | None:
        length = self.head.content_length
        if length is not None:
            buffer = self.buffer
            if len(buffer) < length:
                return None
            body = bytes(buffer[:length])
            del buffer[:length]
            return body
        return self._read_chunked()

    def _read_chunked(self) -> bytes | None:
        buffer = self.buffer
        pos = 0
        while True:
            if self._in_trailers:
                while True:
                    end = buffer.find(b"\r\n", pos)
                    if end < 0:
                        if len(buffer) - pos > MAX_TRAILER_BYTES:
                            raise HTTPError(431, "clown proxy: chunked trailers too large")
                        del buffer[:pos]
                        return None
                    if end == pos:       # the blank line: the body is complete
                        body = b"".join(self._parts)
                        del buffer[:end + 2]
                        self._parts, self._received, self._in_trailers = [], 0, False
                        return body
                    if end - pos > MAX_TRAILER_BYTES or _TRAILER_LINE.fullmatch(buffer, pos, end) is None:
                        raise HTTPError(400, "clown proxy: malformed chunked trailer")
                    pos = end + 2
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                if len(buffer) - pos > MAX_CHUNK_LINE:
                    raise HTTPError(400, "clown proxy: bad chunk size line")
                del buffer[:pos]
                return None
            match = _CHUNK_SIZE.fullmatch(buffer, pos, end)
            if match is None or end - pos > MAX_CHUNK_LINE:
                raise HTTPError(400, "clown proxy: bad chunk size")
            size = int(match.group(1), 16)
            if size == 0:
                self._in_trailers = True
                pos = end + 2
                continue
            if self._received + size > self.max_body:
                raise HTTPError(413, f"clown proxy: request body is over the {self.max_body}-byte cap")
            start = end + 2
            if len(buffer) < start + size + 2:
                del buffer[:pos]     # wait for the whole chunk, from its size line
                return None
            if buffer[start + size:start + size + 2] != b"\r\n":
                raise HTTPError(400, "clown proxy: a chunk does not end with CRLF")
            self._parts.append(bytes(buffer[start:start + size]))
            self._received += size
            pos = start + size + 2

    def next_request(self) -> None:
        self.head = None


# -- responses ------------------------------------------------------------------------------

BODY_NONE = 0
BODY_LENGTH = 1
BODY_CHUNKED = 2
BODY_UNTIL_CLOSE = 3


class ResponseReader:
    """An upstream response: ``read_head`` until it returns True, then ``read_body`` per arrival.

    ``read_body(data)`` returns ``(payload, ended)``: the body bytes that ``data`` (and what
    was buffered) completed, and whether the body is over. ``at_eof()`` says the connection
    closed: the body then ends if it runs until close, else it was cut (raises). 1xx
    answers are skipped. ``reusable`` is True once a body framed by length or chunks ended.
    """

    def __init__(self, method: str):
        self.method = method
        self.buffer = b""
        self.status = 0
        self.reason = ""
        self.headers: list = []
        self.fields: dict = {}       # lower-cased name -> value (repeats joined with ", ")
        self.framing = BODY_NONE
        self.remaining = 0          # BODY_LENGTH: bytes left; BODY_CHUNKED: bytes left in this chunk
        self.ended = False
        self.close_after = False    # the upstream said Connection: close
        self._chunk_state = 0       # 0 size line, 1 data, 2 CRLF after data, 3 trailers

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (lower case)."""
        return self.fields.get(name)

    @property
    def reusable(self) -> bool:
        return self.ended and not self.close_after and self.framing != BODY_UNTIL_CLOSE

    def read_head(self, data: bytes) -> bool:
        """Add ``data``; True once a final (non-1xx) head is parsed. Raises UpstreamProtocolError."""
        buffer = self.buffer + data if self.buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_RESPONSE_HEAD_BYTES:
                    raise UpstreamProtocolError(f"response head over {MAX_RESPONSE_HEAD_BYTES} bytes")
                self.buffer = buffer
                return False
            lines = buffer[:end].decode("latin-1").split("\r\n")
            match = _STATUS_LINE.fullmatch(lines[0])
            if match is None:
                raise UpstreamProtocolError(f"did not answer HTTP: {lines[0][:80]!r}")
            status = int(match.group(1))
            buffer = buffer[end + 4:]
            if 100 <= status < 200:
                if status == 101:
                    raise UpstreamProtocolError("switched protocols, which the proxy never asks for")
                continue
            headers = []
            fields = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon or not name or name != name.strip() or "\n" in line or "\x00" in line:
                    raise UpstreamProtocolError(f"sent a malformed header line: {line[:80]!r}")
                value = value.strip(" \t")
                headers.append((name, value))
                lowered = name.lower()
                fields[lowered] = fields[lowered] + ", " + value if lowered in fields else value
            self.status, self.reason, self.headers, self.fields = status, match.group(2) or "", headers, fields
            self.buffer = buffer
            self._frame()
            return True

    def _frame(self) -> None:
        connection = (self.header("connection") or "").lower()
        self.close_after = "close" in connection
        if self.method == "HEAD" or self.status in (204, 304):
            self.framing = BODY_NONE
            self.ended = True
            return
        coding = self.header("transfer-encoding")
        if coding is not None:
            if coding.split(",")[-1].strip().lower() == "chunked":
                self.framing = BODY_CHUNKED
            else:
                self.framing = BODY_UNTIL_CLOSE
            return
        length = self.header("content-length")
        if length is not None:
            values = {value.strip() for value in length.split(",")}
            value = values.pop() if len(values) == 1 else ""
            if not value.isdigit() or not value.isascii():
                raise UpstreamProtocolError(f"sent a bad Content-Length: {length[:40]!r}")
            self.framing = BODY_LENGTH
            self.remaining = int(value)
            self.ended = self.remaining == 0
            return
        self.framing = BODY_UNTIL_CLOSE

    def read_body(self, data: bytes) -> tuple[bytes, bool]:
        framing = self.framing
        if framing == BODY_LENGTH:
            if self.buffer:
                data, self.buffer = self.buffer + data, b""
            if len(data) >= self.remaining:
                if len(data) > self.remaining:      # bytes past the end: answer this one, then drop the connection
                    data = data[:self.remaining]
                    self.close_after = True
                self.remaining = 0
                self.ended = True
                return data, True
            self.remaining -= len(data)
            return data, False
        if framing == BODY_CHUNKED:
            return self._chunked(data)
        if framing == BODY_UNTIL_CLOSE:
            if self.buffer:
                data, self.buffer = self.buffer + data, b""
            return data, False
        if data or self.buffer:
            raise UpstreamProtocolError("sent a body where none belongs")
        return b"", True

    def at_eof(self) -> tuple[bytes, bool]:
        """The upstream closed: ``(b"", True)`` for a body that runs until close; else raises (cut short)."""
        if self.framing == BODY_UNTIL_CLOSE:
            self.ended = True
            return b"", True
        if self.ended:
            return b"", True
        raise UpstreamProtocolError("closed the connection before the end of the body")

    def _chunked(self, data: bytes) -> tuple[bytes, bool]:
        buffer = self.buffer + data if self.buffer else data
        pos, size = 0, len(buffer)
        parts = []
        while pos < size:
            state = self._chunk_state
            if state == 1:
                take = min(self.remaining, size - pos)
                parts.append(buffer[pos:pos + take] if take < size or pos else buffer)
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self._chunk_state = 2
                continue
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                if size - pos > MAX_CHUNK_LINE:
                    raise UpstreamProtocolError("sent a chunk-size line that does not end")
                break
            if state == 2:
                if end != pos:
                    raise UpstreamProtocolError("sent a chunk that does not end with CRLF")
                self._chunk_state = 0
            elif state == 0:
                match = _CHUNK_SIZE.fullmatch(buffer, pos, end)
                if match is None:
                    raise UpstreamProtocolError("sent a bad chunk size")
                self.remaining = int(match.group(1), 16)
                self._chunk_state = 1 if self.remaining else 3
            else:       # trailers, up to the blank line
                if end == pos:
                    if end + 2 != size:     # bytes after the end: answer this one, then drop the connection
                        self.close_after = True
                    self.buffer = b""
                    self.ended = True
                    return b"".join(parts), True
            pos = end + 2
        self.buffer = buffer[pos:] if pos < size else b""
        return (parts[0] if len(parts) == 1 else b"".join(parts)), False
