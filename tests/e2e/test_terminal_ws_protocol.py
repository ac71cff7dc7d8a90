"""RFC 6455 on /ws/terminal/{id}, byte by byte: the handshake checks and every bad frame.

The terminal relay speaks WebSocket itself (clown.web.wsproto), so these tests drive it
with a raw socket: what a browser never sends (unmasked frames, reserved bits, broken
UTF-8, stray continuations) must get the right close code, and what it does send
(fragments, pings, a close) the right answer.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import time

import pytest

from tests.clownd import Daemon, wait_for
from tests.e2e.terminal_client import TerminalClient
from tests.e2e.test_terminal import create_session, make_profile, session

ECHO = ["-c", "stty raw -echo; printf READY; exec cat"]


class RawClient:
    def __init__(self, daemon, path: str, extra: bytes = b""):
        host, port = daemon.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            + extra)
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, rest = self.buffer.split(b"\r\n\r\n", 1)
        self.buffer = bytearray(rest)
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 101 Switching Protocols", head
        expected = base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert f"Sec-WebSocket-Accept: {expected.decode()}" in lines

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        return data

    def send(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True, first: int | None = None):
        self.sock.sendall(frame(opcode, payload, fin, mask, first))

    def recv(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        while True:
            if len(self.buffer) >= 2:
                size, start = self.buffer[1] & 0x7F, 2
                if size == 126:
                    size, start = (struct.unpack_from("!H", self.buffer, 2)[0], 4) if len(self.buffer) >= 4 else (0, 0)
                elif size == 127:
                    size, start = (struct.unpack_from("!Q", self.buffer, 2)[0], 10) if len(self.buffer) >= 10 else (0, 0)
                if start and len(self.buffer) >= start + size:
                    assert not self.buffer[1] & 0x80, "server frames are never masked"
                    opcode, payload = self.buffer[0] & 0x0F, bytes(self.buffer[start:start + size])
                    del self.buffer[:start + size]
                    return opcode, payload
            self.buffer += self._recv()

    def output_until(self, needle: bytes) -> bytes:
        seen = b""
        while needle not in seen:
            opcode, payload = self.recv()
            if opcode == 2:
                seen += payload
        return seen

    def closed_with(self) -> int:
        """Read to the server's close frame: its code; then the server hangs up."""
        code = self.close_frame()[0]
        try:
            while self._recv():
                pass
        except EOFError:
            return code

    def close_frame(self) -> tuple[int, str]:
        """Read to the server's close frame: (code, reason)."""
        while True:
            opcode, payload = self.recv()
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, first: int | None = None) -> bytes:
    head = bytes([first if first is not None else (0x80 if fin else 0) | opcode])
    size = len(payload)
    length = bytes([size]) if size < 126 else bytes([126]) + struct.pack("!H", size)
    if not mask:
        return head + length + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + bytes([length[0] | 0x80]) + length[1:] + key + masked


@pytest.fixture(scope="module")
def echo_session(shared_daemon):
    make_profile(shared_daemon, "wsproto")
    return shared_daemon, create_session(shared_daemon, "wsproto", args=ECHO)


def connect(echo_session, extra: bytes = b"") -> RawClient:
    daemon, session_id = echo_session
    client = RawClient(daemon, f"/ws/terminal/{session_id}", extra)
    opcode, payload = client.recv()
    assert (opcode, json.loads(payload)) == (1, {"type": "connected", "session_id": session_id})
    client.output_until(b"READY")
    return client


def test_a_fragmented_message_reaches_the_terminal_whole(echo_session):
    client = connect(echo_session)
    client.send(2, b"frag", fin=False)
    client.send(9, b"in-between")   # a control frame may come between fragments
    assert client.recv() == (0xA, b"in-between")
    client.send(0, b"mented-", fin=False)
    client.send(0, b"message")
    assert client.output_until(b"fragmented-message") == b"fragmented-message"


def test_ping_gets_a_pong_with_its_payload(echo_session):
    client = connect(echo_session)
    client.send(9, b"are you there")
    assert client.recv() == (0xA, b"are you there")


def test_a_frame_sent_with_the_handshake_is_not_lost(echo_session):
    client = connect(echo_session, extra=frame(2, b"early-bird"))
    assert client.output_until(b"early-bird") == b"early-bird"


def test_client_close_is_answered_with_the_same_code(echo_session):
    client = connect(echo_session)
    client.send(8, struct.pack("!H", 1001) + b"going away")
    assert client.closed_with() == 1001


@pytest.mark.parametrize("bad, code", [
    (frame(2, b"plain", mask=False), 1002),                 # client frames must be masked
    (frame(2, b"x", first=0x80 | 0x40 | 2), 1002),         # RSV1 without an extension
    (frame(1, b"\xff\xfe not utf-8"), 1007),
    (frame(0, b"orphan"), 1002),                           # continuation outside a message
    (frame(2, b"a", fin=False) + frame(2, b"b"), 1002),    # new message inside a fragmented one
    (frame(8, b"\x03"), 1002),                             # close payload of one byte
    (frame(9, b"p", fin=False), 1002),                     # fragmented control frame
    (frame(3, b"?"), 1002),                                # reserved opcode
    (frame(2, b"a", fin=False) + frame(0, b"", fin=False) * 4096, 1009),   # endless fragments
])
def test_a_broken_frame_closes_with_the_right_code(echo_session, bad, code):
    client = connect(echo_session)
    client.sock.sendall(bad)
    assert client.closed_with() == code


def test_the_session_outlives_broken_clients(echo_session):
    client = connect(echo_session)
    client.send(2, b"still-here")
    assert client.output_until(b"still-here").endswith(b"still-here")


def raw_request(daemon, path: str, headers: dict) -> tuple[int, dict]:
    host, port = daemon.url.removeprefix("http://").split(":")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize("headers, status, message", [
    ({"Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA=="},
     400, 'Can "Upgrade" only to "WebSocket"'),
    ({"Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA=="},
     400, '"Connection" must be "Upgrade"'),
    ({"Upgrade": "websocket", "Connection": "keep-alive, Upgrade", "Sec-WebSocket-Version": "8",
      "Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA=="}, 426, "Sec-WebSocket-Version must be 13"),
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "not base64!"}, 400, "Sec-WebSocket-Key must be 16 bytes in base64"),
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"},
     400, "Sec-WebSocket-Key must be 16 bytes in base64"),
    ({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA==", "Origin": "http://evil.example"},
     403, "Origin 'http://evil.example' is not allowed"),
])
def test_a_bad_upgrade_gets_the_clown_envelope(echo_session, headers, status, message):
    daemon, session_id = echo_session
    assert raw_request(daemon, f"/ws/terminal/{session_id}", headers) == (status, {"success": False,
                                                                                  "error": message})


# --- a client that never reads --------------------------------------------------------------
#
# A raw socket that stops reading after the scrollback is what a hung browser tab looks like
# to the server: the kernel buffers fill, then the relay's, then the worker's.

FLOOD = ["-c", "stty -echo; printf READY; read go; exec yes"]


def stalled_client(daemon, session_id: str) -> RawClient:
    """A client that reads the scrollback, then never reads again."""
    client = RawClient(daemon, f"/ws/terminal/{session_id}")
    assert json.loads(client.recv()[1]) == {"type": "connected", "session_id": session_id}
    client.output_until(b"READY")
    return client


def test_a_client_that_never_reads_does_not_stall_the_others(shared_daemon):
    make_profile(shared_daemon, "stall")
    session_id = create_session(shared_daemon, "stall", args=FLOOD)
    stalled = stalled_client(shared_daemon, session_id)
    reader = TerminalClient(shared_daemon, session_id)
    reader.read_until(b"READY")
    reader.type("\n")   # the flood starts
    reader.read_until(b"y\r\n")
    last, gaps = time.monotonic(), []
    end = last + 4.0   # the old rule froze everyone for 2 s once the stalled client fell behind
    while time.monotonic() < end:
        if reader.pump(0.05):
            now = time.monotonic()
            gaps.append(now - last)
            last = now
    assert max(gaps) < 1.0, sorted(gaps)[-5:]
    stream = bytes(reader.output[reader.output.index(b"READY") + len(b"READY"):])
    whole = len(stream) // 3 * 3
    assert whole > 1_000_000 and stream[:whole] == b"y\r\n" * (whole // 3)
    assert shared_daemon.delete(f"/api/terminal/sessions/{session_id}") == (200, {"success": True})
    stalled.sock.close()


@pytest.fixture(scope="module")
def roomy_daemon(tmp_path_factory):
    """A backlog limit far above the output the tests make: the worker keeps a client that
    stops reading (and holds its backlog), so what is seen is the relay's rule and the
    end of a session with a stalled client attached."""
    daemon = Daemon(tmp_path_factory.mktemp("roomy"), toml="[terminal]\nclient_backlog_bytes = 67108864\n").start()
    make_profile(daemon, "stall")
    yield daemon
    try:
        daemon.stop()
    finally:
        daemon.kill_everything()


BURST = ["-c", "stty -echo; printf READY; read go; head -c 30000000 /dev/zero | tr '\\0' a; exec cat"]


def test_a_client_that_never_reads_is_closed_with_4008_and_leaves_the_count(roomy_daemon):
    daemon = roomy_daemon
    session_id = create_session(daemon, "stall", args=BURST)
    stalled = stalled_client(daemon, session_id)
    assert session(daemon, session_id)["client_count"] == 1
    stalled.send(2, b"\n")   # it types, but reads nothing
    # The worker keeps it (its backlog is under the limit): the relay sees it take nothing
    # and closes it; before, it sat there until the keep-alive gave up on it (~60 s).
    wait_for(lambda: session(daemon, session_id)["client_count"] == 0, timeout=15,
             message="the stalled client to be dropped")
    # The close frame waits behind what the client never took: reading now finds it.
    assert stalled.close_frame() == (4008, "client too slow")
    assert session(daemon, session_id)["state"] == "running"
    again = RawClient(daemon, f"/ws/terminal/{session_id}")   # it may come back for the ring
    assert json.loads(again.recv()[1]) == {"type": "connected", "session_id": session_id}
    ring = b""
    while len(ring) < 1024 * 1024:   # the ring: the last 1 MiB of the output
        opcode, payload = again.recv()
        assert opcode == 2
        ring += payload
    assert ring == b"a" * len(ring)
    assert session(daemon, session_id)["client_count"] == 1
    again.sock.close()


def test_delete_with_a_client_that_never_reads_is_quick(roomy_daemon):
    daemon = roomy_daemon
    session_id = create_session(daemon, "stall", args=BURST)
    stalled = stalled_client(daemon, session_id)
    stalled.send(2, b"\n")   # the burst starts; the worker holds most of it for the client
    time.sleep(0.5)
    started = time.monotonic()
    assert daemon.delete(f"/api/terminal/sessions/{session_id}") == (200, {"success": True})
    elapsed = time.monotonic() - started
    # It waited for the stalled client to drain: until the relay gave up on it (3 s after
    # it stopped taking bytes) or 5 s, with supervisor's stopProcess blocked meanwhile.
    assert elapsed < 1.5, elapsed
    assert session(daemon, session_id)["state"] == "terminated"
    stalled.sock.close()
