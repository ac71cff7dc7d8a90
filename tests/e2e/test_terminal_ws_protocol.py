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

import pytest

from tests.e2e.test_terminal import create_session, make_profile

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
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
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
                if size == 126 and len(self.buffer) >= 4:
                    size, start = struct.unpack_from("!H", self.buffer, 2)[0], 4
                elif size == 127 and len(self.buffer) >= 10:
                    size, start = struct.unpack_from("!Q", self.buffer, 2)[0], 10
                if size < 126 and len(self.buffer) >= start + size:
                    assert not self.buffer[1] & 0x80, "server frames are never masked"
                    opcode, payload = self.buffer[0] & 0x0F, self.buffer[start:start + size]
                    self.buffer = self.buffer[start + size:]
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
        while True:
            opcode, payload = self.recv()
            if opcode == 8:
                code = struct.unpack("!H", payload[:2])[0]
                try:
                    while self._recv():
                        pass
                except EOFError:
                    return code


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
