"""The proxy worker, run as its own process (no supervisord), spoken to over raw sockets.

What an agent (or anything else on the machine) can send that is not plain HTTP/1.1: each
answer is checked exactly (status, the proxy's JSON error, whether the connection closes),
nothing of it reaches the upstream, and the worker keeps serving. Also the framing a
well-behaved client may use: chunked request bodies, pipelining, 100-continue, HTTP/1.0,
and the usage commit when another writer holds the store.
"""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from clown import store
from clown.home import Home
from clown.secrets import SecretStore
from tests.fakes.upstream import FakeUpstream

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLACEHOLDER = "placeholder-0123"
REAL_KEY = "sk-real-worker-test"
MAX_BODY = 4096
BODY = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5}).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Worker:
    def __init__(self, tmp, upstream: FakeUpstream):
        self.home = Home(str(tmp / "home"))
        self.home.ensure()
        store.open_store(self.home.db).close()
        secrets = SecretStore(self.home.secrets)
        secrets.write("profile-w.key", REAL_KEY)
        secrets.write("profile-w.placeholder", PLACEHOLDER)
        self.port = free_port()
        spec = {"profile": "w", "port": self.port, "upstream": upstream.url, "provider_type": "anthropic",
                "auth_header": "x-api-key", "key_secret": "profile-w.key",
                "placeholder_secret": "profile-w.placeholder", "upstream_timeout_secs": 5,
                "max_body_bytes": MAX_BODY, "agent": "claude", "provider": "anthropic",
                "model": "claude-sonnet-4-5"}
        with open(self.home.spec("proxy-w"), "w") as handle:
            json.dump(spec, handle)
        self.process = subprocess.Popen([sys.executable, "-m", "clown.workers.proxy", "--home", self.home.root,
                                         "--profile", "w"], cwd=REPO)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the proxy worker did not listen"
                time.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def usage_rows(self) -> int:
        conn = sqlite3.connect(self.home.db)
        try:
            # committed: folded into usage_events, or still in the inbox
            return conn.execute("SELECT (SELECT COUNT(*) FROM usage_events)"
                                " + (SELECT COUNT(*) FROM usage_inbox)").fetchone()[0]
        finally:
            conn.close()


@pytest.fixture(scope="module")
def upstream():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory, upstream):
    running = Worker(tmp_path_factory.mktemp("proxy-worker"), upstream)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def fresh_upstream(upstream):
    upstream.mode = None
    upstream.anthropic_request_id_header = "request-id"
    upstream.requests.clear()
    yield


def connect(worker) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", worker.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket, buffered: bytearray) -> tuple[int, dict, bytes]:
    """One response (Content-Length or chunked body) from ``sock``; extra bytes stay in ``buffered``."""
    while b"\r\n\r\n" not in buffered:
        data = sock.recv(65536)
        assert data, f"connection closed before a whole head: {bytes(buffered)!r}"
        buffered += data
    end = buffered.index(b"\r\n\r\n")
    lines = bytes(buffered[:end]).decode("latin-1").split("\r\n")
    del buffered[:end + 4]
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if 100 <= status < 200:
        return status, headers, b""
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(buffered) < length:
            data = sock.recv(65536)
            assert data, "connection closed inside the body"
            buffered += data
        body = bytes(buffered[:length])
        del buffered[:length]
        return status, headers, body
    assert headers.get("transfer-encoding") == "chunked", headers
    body = b""
    while True:
        while b"\r\n" not in buffered:
            buffered += sock.recv(65536)
        line_end = buffered.index(b"\r\n")
        size = int(bytes(buffered[:line_end]), 16)
        while len(buffered) < line_end + 2 + size + 2:
            buffered += sock.recv(65536)
        body += bytes(buffered[line_end + 2:line_end + 2 + size])
        del buffered[:line_end + 2 + size + 2]
        if size == 0:
            return status, headers, body


def exchange(worker, raw: bytes) -> tuple[int, dict, bytes, bool]:
    """Send ``raw`` on a new connection: (status, headers, body, whether the proxy then closed it)."""
    sock = connect(worker)
    try:
        sock.sendall(raw)
        buffered = bytearray()
        status, headers, body = read_response(sock, buffered)
        sock.settimeout(3)
        try:
            closed = not buffered and sock.recv(65536) == b""
        except socket.timeout:
            closed = False
        return status, headers, body, closed
    finally:
        sock.close()


def request(method="POST", target="/v1/messages", headers=None, body=BODY, version="HTTP/1.1") -> bytes:
    lines = [f"{method} {target} {version}"]
    given = {"Host": "127.0.0.1", "x-api-key": PLACEHOLDER, "Content-Type": "application/json"}
    given.update(headers or {})
    if body is not None and "Content-Length" not in given and "Transfer-Encoding" not in given:
        given["Content-Length"] = str(len(body))
    lines += [f"{name}: {value}" for name, value in given.items() if value is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def refused(status: int, kind: str, message: str) -> tuple:
    return status, {"type": "error", "error": {"type": kind, "message": message}}


def check_refused(worker, upstream, raw: bytes, status: int, kind: str, message: str) -> None:
    got_status, headers, body, closed = exchange(worker, raw)
    assert (got_status, json.loads(body)) == refused(status, kind, message)
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close" and closed
    assert upstream.requests == []


# --- hostile or broken requests ----------------------------------------------------------

def test_content_length_and_transfer_encoding_together_is_400(worker, upstream):
    raw = request(headers={"Content-Length": "5", "Transfer-Encoding": "chunked"}, body=b"0\r\n\r\n")
    check_refused(worker, upstream, raw, 400, "invalid_request_error",
                  "clown proxy: both Content-Length and Transfer-Encoding")


def test_a_transfer_coding_other_than_chunked_is_501(worker, upstream):
    for coding in ("gzip", "gzip, chunked", "chunked, chunked", "identity"):
        raw = request(headers={"Transfer-Encoding": coding}, body=b"0\r\n\r\n")
        check_refused(worker, upstream, raw, 501, "invalid_request_error",
                      "clown proxy: only the chunked transfer coding is supported")


def test_a_bad_content_length_is_400(worker, upstream):
    for value in ("abc", "+5", "-1", "5, 5", "0x10", " "):
        raw = request(headers={"Content-Length": value}, body=b"")
        check_refused(worker, upstream, raw, 400, "invalid_request_error", "clown proxy: bad Content-Length")


def test_two_content_length_headers_are_400(worker, upstream):
    raw = (b"POST /v1/messages HTTP/1.1\r\nHost: h\r\nx-api-key: " + PLACEHOLDER.encode()
           + b"\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}")
    check_refused(worker, upstream, raw, 400, "invalid_request_error", "clown proxy: bad Content-Length")


def test_a_bad_chunk_size_is_400(worker, upstream):
    for chunks in (b"zz\r\nab\r\n0\r\n\r\n", b"-2\r\nab\r\n0\r\n\r\n", b"\r\nab\r\n0\r\n\r\n",
                   b"2 2\r\nab\r\n0\r\n\r\n", b"11111111111111111\r\n"):
        raw = request(headers={"Transfer-Encoding": "chunked"}, body=chunks)
        check_refused(worker, upstream, raw, 400, "invalid_request_error", "clown proxy: bad chunk size")


def test_a_chunk_longer_than_its_size_is_400(worker, upstream):
    raw = request(headers={"Transfer-Encoding": "chunked"}, body=b"2\r\nabc\r\n0\r\n\r\n")
    check_refused(worker, upstream, raw, 400, "invalid_request_error",
                  "clown proxy: a chunk does not end with CRLF")


def test_a_chunked_body_over_the_cap_is_413(worker, upstream):
    raw = request(headers={"Transfer-Encoding": "chunked"}, body=b"%x\r\n" % (MAX_BODY + 1))
    check_refused(worker, upstream, raw, 413, "request_too_large",
                  f"clown proxy: request body is over the {MAX_BODY}-byte cap")


def test_a_declared_body_over_the_cap_is_413_before_it_is_read(worker, upstream):
    raw = request(headers={"Content-Length": str(MAX_BODY + 1)}, body=b"")
    check_refused(worker, upstream, raw, 413, "request_too_large",
                  f"clown proxy: request body of {MAX_BODY + 1} bytes is over the {MAX_BODY}-byte cap")


def test_a_head_over_64_kib_is_431(worker, upstream):
    raw = request(headers={"x-padding": "a" * (65 * 1024)})
    check_refused(worker, upstream, raw, 431, "request_too_large",
                  "clown proxy: request head over 65536 bytes")


def test_a_head_that_never_ends_is_431(worker, upstream):
    raw = b"POST /v1/messages HTTP/1.1\r\nx-padding: " + b"a" * (70 * 1024)
    check_refused(worker, upstream, raw, 431, "request_too_large",
                  "clown proxy: request head over 65536 bytes")


def test_too_many_header_fields_is_431(worker, upstream):
    raw = request(headers={f"x-h{index}": "1" for index in range(101)})
    check_refused(worker, upstream, raw, 431, "request_too_large", "clown proxy: more than 100 header fields")


def test_malformed_header_lines_are_400(worker, upstream):
    base = b"POST /v1/messages HTTP/1.1\r\nHost: h\r\nx-api-key: " + PLACEHOLDER.encode() + b"\r\n"
    for line in (b"Content-Length : 2", b" folded: value", b"no colon here", b"bad\x00name: v",
                 b"x-value: nul\x00inside", b"x-bare: cr\rinside", b"x-bare-lf: one\nx-two: 2", b"(): v"):
        check_refused(worker, upstream, base + line + b"\r\n\r\n", 400, "invalid_request_error",
                      "clown proxy: malformed header line")


def test_a_malformed_request_line_is_400(worker, upstream):
    for line in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"POST http://evil.example/v1/messages HTTP/1.1",
                 b"POST  /v1/messages HTTP/1.1", b"POST /v1/messages", b"POST /v1/mess ages HTTP/1.1",
                 b"POST /v1/messages HTTP/1.1 extra", b"GET * HTTP/1.1"):
        check_refused(worker, upstream, line + b"\r\nHost: h\r\n\r\n", 400, "invalid_request_error",
                      "clown proxy: malformed request line")


def test_an_unknown_http_version_is_505(worker, upstream):
    check_refused(worker, upstream, request(version="HTTP/2.0"), 505, "invalid_request_error",
                  "clown proxy: HTTP/2.0 is not supported")


def test_an_unknown_method_is_405(worker, upstream):
    check_refused(worker, upstream, request(method="BREW"), 405, "invalid_request_error",
                  "clown proxy: method BREW is not allowed")


def test_an_http_1_1_request_without_host_is_400(worker, upstream):
    check_refused(worker, upstream, request(headers={"Host": None}), 400, "invalid_request_error",
                  "clown proxy: an HTTP/1.1 request needs exactly one Host header")


def test_an_unknown_expectation_is_417(worker, upstream):
    check_refused(worker, upstream, request(headers={"Expect": "the-unexpected"}), 417, "invalid_request_error",
                  "clown proxy: only the 100-continue expectation is supported")


def test_without_the_placeholder_a_body_request_is_401_and_closed(worker, upstream):
    check_refused(worker, upstream, request(headers={"x-api-key": "wrong"}), 401, "authentication_error",
                  "clown proxy: send this profile's placeholder credential")


def test_a_401_without_a_body_keeps_the_connection(worker, upstream):
    sock = connect(worker)
    try:
        sock.sendall(request(method="GET", target="/v1/models", headers={"x-api-key": None}, body=None))
        buffered = bytearray()
        status, headers, body = read_response(sock, buffered)
        assert (status, json.loads(body)) == refused(401, "authentication_error",
                                                     "clown proxy: send this profile's placeholder credential")
        assert "connection" not in headers
        sock.sendall(request(method="GET", target="/v1/models", body=None))
        status, _, body = read_response(sock, buffered)
        assert status == 200 and "data" in json.loads(body)
    finally:
        sock.close()
    assert [r.path for r in upstream.requests] == ["/v1/models"]


def test_garbage_never_stops_the_worker(worker, upstream):
    for raw in (b"\x00" * 1000, os.urandom(4096), b"\r\n" * 100, b"GET / HTTP/1.1\r\n" * 50):
        sock = connect(worker)
        sock.sendall(raw)
        sock.close()
    status, _, body, _ = exchange(worker, request())
    assert status == 200 and json.loads(body)["type"] == "message"
    assert worker.process.poll() is None


# --- well-formed framing -------------------------------------------------------------------

def test_a_chunked_request_body_goes_upstream_whole(worker, upstream):
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (BODY[:7], BODY[7:]))
    raw = request(headers={"Transfer-Encoding": "chunked"}, body=chunks + b"0\r\nx-trailer: 1\r\n\r\n")
    status, _, body, closed = exchange(worker, raw)
    assert status == 200 and json.loads(body)["type"] == "message" and not closed
    seen = upstream.requests[-1]
    assert seen.raw == BODY and seen.headers["content-length"] == str(len(BODY))
    assert "transfer-encoding" not in seen.headers and seen.headers["x-api-key"] == REAL_KEY


def test_pipelined_requests_are_answered_in_order(worker, upstream):
    sock = connect(worker)
    try:
        sock.sendall(request(target="/v1/messages?first=1") + request(method="GET", target="/v1/models", body=None)
                     + request(target="/v1/messages?third=1"))
        buffered = bytearray()
        answers = [read_response(sock, buffered) for _ in range(3)]
    finally:
        sock.close()
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert [json.loads(body).get("type") for _, _, body in answers] == ["message", None, "message"]
    assert [r.path for r in upstream.requests] == ["/v1/messages?first=1", "/v1/models", "/v1/messages?third=1"]


def test_expect_100_continue_gets_100_then_the_answer(worker, upstream):
    sock = connect(worker)
    try:
        head = request(headers={"Expect": "100-continue", "Content-Length": str(len(BODY))}, body=b"")
        sock.sendall(head)
        buffered = bytearray()
        assert read_response(sock, buffered)[0] == 100
        sock.sendall(BODY)
        status, _, body = read_response(sock, buffered)
    finally:
        sock.close()
    assert status == 200 and json.loads(body)["type"] == "message"


def test_connection_close_is_honoured(worker, upstream):
    status, headers, body, closed = exchange(worker, request(headers={"Connection": "close"}))
    assert status == 200 and headers["connection"] == "close" and closed


def test_http_1_0_gets_its_answer_then_the_connection_closes(worker, upstream):
    status, headers, body, closed = exchange(worker, request(version="HTTP/1.0", headers={"Host": None}))
    assert status == 200 and json.loads(body)["type"] == "message"
    assert headers["connection"] == "close" and closed


def test_a_streamed_answer_goes_out_chunked(worker, upstream):
    raw = request(body=json.dumps({"model": "claude-sonnet-4-5", "stream": True}).encode())
    status, headers, body, closed = exchange(worker, raw)
    assert status == 200 and headers["transfer-encoding"] == "chunked" and not closed
    assert headers["content-type"].startswith("text/event-stream")
    assert body.startswith(b"event: message_start") and body.rstrip().endswith(b'{"type":"message_stop"}')


def test_an_agent_that_goes_away_cancels_the_upstream_and_keeps_the_usage_so_far(worker, upstream):
    upstream.mode, upstream.drip_interval = "drip", 0.2
    before, completed = worker.usage_rows(), upstream.completed
    sock = connect(worker)
    try:
        sock.sendall(request(body=json.dumps({"model": "claude-sonnet-4-5", "stream": True}).encode()))
        received = b""
        while b"message_start" not in received:
            data = sock.recv(65536)
            assert data, received
            received += data
    finally:
        sock.close()
    time.sleep(8 * 0.2 + 0.5)           # the whole drip, had it gone on
    assert upstream.completed == completed
    assert worker.usage_rows() == before + 1     # message_start's usage


# --- usage commit ----------------------------------------------------------------------------

def test_with_the_store_locked_the_last_byte_waits_for_the_commit(worker, upstream):
    # Another writer holds the store: the row goes to the writer thread, and the answer's last
    # byte only after that commit. The connection then serves the next request as usual.
    before = worker.usage_rows()
    blocker = sqlite3.connect(worker.home.db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    sock = connect(worker)
    released = False
    try:
        sock.sendall(request())
        buffered = bytearray()
        received = threading.Event()
        result = {}

        def read():
            result["answer"] = read_response(sock, buffered)
            received.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert not received.wait(0.8)           # everything but the last byte, at most
        blocker.execute("COMMIT")
        released = True
        assert received.wait(10)
        reader.join()
        status, _, body = result["answer"]
        assert status == 200 and json.loads(body)["usage"]["output_tokens"] == 20
        assert worker.usage_rows() == before + 1
        sock.sendall(request())
        status, _, body = read_response(sock, buffered)
        assert status == 200 and json.loads(body)["type"] == "message"
        assert worker.usage_rows() == before + 2
    finally:
        if not released:
            blocker.execute("ROLLBACK")
        blocker.close()
        sock.close()


@pytest.mark.parametrize("header,session,key", [
    ("request-id", "sess-1", "{msg}:{req}"),              # ccusage's key, message id:requestId
    ("x-request-id", "sess-1", "{msg}:session:sess-1"),   # Claude Code stores no requestId then
    (None, "sess-1", "{msg}:session:sess-1"),
    (None, None, "proxy:w:"),                             # nothing a transcript could match
])
def test_the_usage_key_is_the_one_the_transcript_import_derives(worker, upstream, header, session, key):
    upstream.anthropic_request_id_header = header
    sock = connect(worker)
    try:
        sock.sendall(request(headers={"X-Claude-Code-Session-Id": session}))
        status, headers, body = read_response(sock, bytearray())
    finally:
        sock.close()
    assert status == 200
    message_id = json.loads(body)["id"]
    request_id = headers.get(header) if header else None
    conn = sqlite3.connect(worker.home.db)
    try:
        stored = conn.execute("SELECT dedup_key, request_id FROM usage_inbox WHERE message_id = ?"
                              " UNION ALL SELECT dedup_key, request_id FROM usage_events WHERE message_id = ?",
                              (message_id, message_id)).fetchall()
    finally:
        conn.close()
    assert len(stored) == 1
    expected = key.format(msg=message_id, req=request_id)
    if key.startswith("proxy:"):
        assert stored[0][0].startswith(expected) and len(stored[0][0]) == len(expected) + 32
    else:
        assert stored[0][0] == expected
    assert stored[0][1] == request_id
