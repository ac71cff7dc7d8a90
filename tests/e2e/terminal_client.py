"""A real WebSocket client of ``/ws/terminal/{id}`` for the tests."""

import json
import time

import websockets.sync.client
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close


class TerminalClient:
    def __init__(self, daemon, session_id: str, expect_connected: bool = True, **connect_args):
        self.url = daemon.url.replace("http://", "ws://") + f"/ws/terminal/{session_id}"
        # Entered as a context manager would be (websockets 17.1 deprecates using it bare);
        # closed by close().
        self.ws = websockets.sync.client.connect(self.url, open_timeout=10, max_size=None,
                                                 **connect_args).__enter__()
        self.output = bytearray()
        self.controls: list[dict] = []
        self.closed = None
        if expect_connected:
            first = self.ws.recv(timeout=10)
            assert json.loads(first) == {"type": "connected", "session_id": session_id}

    def wait_prompt(self, timeout: float = 20.0) -> None:
        """Wait for an interactive shell's prompt: typeahead sent before its rc files ran
        can be eaten by them, as in any terminal."""
        deadline = time.monotonic() + timeout
        while not bytes(self.output).rstrip(b" ").endswith((b"$", b"#")):
            if time.monotonic() > deadline:
                raise AssertionError(f"no prompt; got {bytes(self.output[-300:])!r}")
            self.pump(0.1)

    def pump(self, timeout: float = 0.2) -> bool:
        """Take one message; False when none came in ``timeout`` or the socket has closed
        (``self.closed`` then holds the server's close frame)."""
        if self.closed is not None:
            time.sleep(timeout)
            return False
        try:
            message = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return False
        except ConnectionClosed as closed:
            # No close frame (the server process died): report it as 1006, abnormal closure.
            self.closed = closed.rcvd if closed.rcvd is not None else Close(1006, "")
            return False
        if isinstance(message, bytes):
            self.output += message
        else:
            self.controls.append(json.loads(message))
        return True

    def read_until(self, needle: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        searched = 0
        while self.output.find(needle, max(0, searched - len(needle))) < 0:
            searched = len(self.output)
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not seen; got {bytes(self.output[-500:])!r}")
            self.pump(min(0.2, max(0.01, deadline - time.monotonic())))
        return bytes(self.output)

    def control_until(self, kind: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.controls:
                if message.get("type") == kind:
                    return message
            if time.monotonic() > deadline or (self.closed is not None and not self.pump(0)):
                raise AssertionError(f"no {kind!r} message; got {self.controls}")
            self.pump(0.2)

    def type(self, text: str) -> None:
        self.ws.send(text.encode())

    def control(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def wait_closed(self, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.2)
            if self.closed is not None:
                return self.closed
        raise AssertionError("connection still open")

    def close(self):
        self.ws.close()
