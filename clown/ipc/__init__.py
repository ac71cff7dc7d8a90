"""How clown processes talk over Unix sockets (docs/worker-protocol.md).

``frames`` has the wire format; ``TerminalWorkerClient`` is the front's side of a
terminal worker connection, on the asyncio loop (Tornado's loop is asyncio's).

Typical use in the front::

    client = await TerminalWorkerClient.connect(home.socket(f"term-{sid}.sock"))
    await client.attach()
    async for event in client:             # Output(offset, data) or a control dict
        if isinstance(event, Output):
            await websocket.write_message(event.data, binary=True)   # backpressure
        elif event["op"] == "state": ...
    # the loop ends when the worker closes the connection

or, without a task and a queue in between (the WebSocket relay does this)::

    client.set_consumer(on_output, on_event, on_end)   # called from data_received

Backpressure: events wait in a small bounded queue; when the consumer stops taking them
(or calls ``pause_reading()``), the client stops reading the socket, the worker's backlog
for this connection grows, and past ``client_backlog_bytes`` the worker sends
``{"op":"closing","code":4008,...}`` and closes it. Reconnect and attach again: the
snapshot starts where the ring does, so nothing still in the ring is lost.
"""

import asyncio
import collections
from typing import NamedTuple

from clown.ipc.frames import (CONTROL, DATA, HEADER, MAX_FRAME, OFFSET, PROTOCOL_VERSION, Frame,
                              FrameDecoder, ProtocolError, check_header, decode_output,
                              encode_control, encode_data, encode_output, parse_control, read_frame,
                              read_frame_iostream)

__all__ = [
    "CONTROL", "DATA", "MAX_FRAME", "PROTOCOL_VERSION", "Frame", "FrameDecoder", "ProtocolError",
    "decode_output", "encode_control", "encode_data", "encode_output", "parse_control",
    "read_frame", "read_frame_iostream", "Output", "WorkerError", "TerminalWorkerClient",
]

class Output(NamedTuple):
    """Terminal output: ``data`` is bytes ``[offset, offset + len(data))`` of the session."""
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


class WorkerError(Exception):
    """The worker refused a request (an ``error`` op where an answer was due), or the
    connection ended before the answer came."""


class TerminalWorkerClient(asyncio.Protocol):
    """One connection to a terminal worker. Make it with ``await connect(path)``.

    Events (from ``next_event()`` or ``async for``, or handed to ``set_consumer``'s
    callbacks) are, in the order the worker sent them: ``Output(offset, data)``; control
    dicts ``{"op":"snapshot","start","end"}``, ``{"op":"state",...}``,
    ``{"op":"closing",...}``, ``{"op":"error",...}``. Answers to ``status()`` and
    ``terminate()`` go to those calls, not to the events.

    It is an asyncio Protocol: frames are decoded in ``data_received`` straight from the
    bytes the socket gave (no reader task, no copies for whole frames).
    """

    # Outgoing bytes buffered before requests wait for the socket to take them.
    WRITE_HIGH = 64 * 1024

    def __init__(self, max_events: int = 64):
        self.hello: dict | None = None
        self.closed = False
        self.error: str | None = None   # why the connection ended, when it was not a clean EOF
        self._max_events = max_events
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._hello_waiter = self._loop.create_future()
        self._lost = self._loop.create_future()
        self._events: collections.deque = collections.deque()
        self._event_waiter: asyncio.Future | None = None
        self._ended = False            # the connection is gone (events may still be queued)
        self._user_paused = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future] = []
        self._partial = bytearray()    # the start of a frame split across reads
        self._last_state = None
        self._status_waiters: collections.deque[asyncio.Future] = collections.deque()
        self._terminate_waiters: list[asyncio.Future] = []
        self._on_output = self._on_event = self._on_end = None

    @classmethod
    async def connect(cls, path: str, *, timeout: float = 5.0,
                      max_events: int = 64) -> "TerminalWorkerClient":
        """Connect to the worker socket at ``path`` and exchange hello.

        Returns a client whose ``hello`` is the worker's hello (``kind``, ``state``,
        ``start``, ``end``, ...). Raises OSError when the socket cannot be reached,
        WorkerError when the worker refuses the hello, ProtocolError when it answers
        anything else, asyncio.TimeoutError after ``timeout`` seconds.
        """
        client = cls(max_events)

        async def handshake():
            await client._loop.create_unix_connection(lambda: client, path)
            client._transport.write(encode_control({"op": "hello", "version": PROTOCOL_VERSION}))
            return await client._hello_waiter

        try:
            client.hello = await asyncio.wait_for(handshake(), timeout)
        except BaseException:
            if client._transport is not None:
                client._transport.abort()
            raise
        return client

    # ---- asyncio.Protocol

    def connection_made(self, transport):
        self._transport = transport

    def data_received(self, data):
        try:
            self._decode(data)
        except ProtocolError as error:
            self.error = f"protocol error: {error}"
            self._transport.abort()

    def eof_received(self):
        return False   # close

    def connection_lost(self, exc):
        if exc is not None and self.error is None:
            self.error = f"connection error: {exc}"
        if self._partial and self.error is None:
            self.error = "protocol error: connection closed inside a frame"
        self._partial = bytearray()
        self.closed = True
        self._ended = True
        ended = WorkerError(self.error or "the worker closed the connection")
        if not self._hello_waiter.done():
            self._hello_waiter.set_exception(
                WorkerError("the worker closed the connection during hello") if exc is None and not self.error
                else ConnectionError(self.error))
            self._hello_waiter.exception()   # retrieved: connect() may have given up already
        for waiter in [*self._status_waiters, *self._terminate_waiters]:
            if not waiter.done():
                waiter.set_exception(ended)
        self._status_waiters.clear()
        self._terminate_waiters.clear()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if not self._lost.done():
            self._lost.set_result(None)
        self._wake()
        if self._on_end is not None and not self._events:
            on_end, self._on_end = self._on_end, None
            on_end()

    def pause_writing(self):
        self._write_paused = True

    def resume_writing(self):
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # ---- decoding

    def _decode(self, data: bytes) -> None:
        view = memoryview(data)
        position = 0
        size = len(data)
        partial = self._partial
        if partial:   # finish the split frame first, copying only what it still lacks
            if len(partial) < HEADER.size:
                take = min(HEADER.size - len(partial), size)
                partial += view[:take]
                position = take
                if len(partial) < HEADER.size:
                    return
            _kind, length = check_header(partial[:HEADER.size])
            take = min(HEADER.size + length - len(partial), size - position)
            partial += view[position:position + take]
            position += take
            if len(partial) < HEADER.size + length:
                return
            self._partial = bytearray()   # the frame's bytes now belong to whoever gets them
            self._frame(partial[0], memoryview(partial)[HEADER.size:])
        while size - position >= HEADER.size:
            kind, length = check_header(data[position:position + HEADER.size])
            end = position + HEADER.size + length
            if end > size:
                break
            self._frame(kind, view[position + HEADER.size:end])
            position = end
        if position < size:
            self._partial = bytearray(view[position:])
            if len(self._partial) >= HEADER.size:
                check_header(self._partial[:HEADER.size])

    def _frame(self, kind: int, payload: memoryview) -> None:
        if self.hello is None and not self._hello_waiter.done():
            if kind != CONTROL:
                raise ProtocolError("the worker's first frame is not hello")
            message = parse_control(bytes(payload))
            if message["op"] == "error":
                self._hello_waiter.set_exception(WorkerError(message.get("message", "hello refused")))
            elif message["op"] != "hello":
                self._hello_waiter.set_exception(
                    ProtocolError(f"the worker answered hello with {message['op']!r}"))
            else:
                self._hello_waiter.set_result(message)
            return
        if kind == DATA:
            if len(payload) < OFFSET.size:
                raise ProtocolError("output frame shorter than its offset")
            offset = OFFSET.unpack_from(payload)[0]
            if self._on_output is not None and not self._events:
                self._on_output(offset, payload[OFFSET.size:])
            else:
                self._push(Output(offset, bytes(payload[OFFSET.size:])))
            return
        message = parse_control(bytes(payload))
        op = message["op"]
        if op == "status" and self._status_waiters:
            message.pop("op")
            _resolve(self._status_waiters.popleft(), message)
            return
        if op == "terminated" and self._terminate_waiters:
            for waiter in self._terminate_waiters:
                _resolve(waiter, self._last_state or {})
            self._terminate_waiters.clear()
            return
        if op == "state":
            self._last_state = message
        if self._on_event is not None and not self._events:
            self._on_event(message)
        else:
            self._push(message)

    # ---- requests

    async def _send(self, frame: bytes) -> None:
        if self.closed:
            raise ConnectionError("the worker connection is closed")
        if frame:
            self._transport.write(frame)
        if self._write_paused:   # only when the worker is not taking what we send
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def attach(self) -> None:
        """Ask for the snapshot and the live stream. Returns once sent; the ``snapshot``
        event and its Output events follow. Raises ConnectionError when closed."""
        await self._send(encode_control({"op": "attach"}))

    async def send_input(self, data: bytes) -> None:
        """Send keystrokes (split into frames of at most MAX_FRAME). Waits only while the
        worker is not taking input. Raises ConnectionError when closed."""
        if self.closed:
            raise ConnectionError("the worker connection is closed")
        if len(data) <= MAX_FRAME:
            self._transport.write(encode_data(data))
        else:
            for position in range(0, len(data), MAX_FRAME):
                self._transport.write(encode_data(data[position:position + MAX_FRAME]))
        await self._send(b"")

    def write_input(self, data: bytes) -> bool:
        """``send_input`` without a coroutine: the keystrokes are written at once. Returns
        True when the caller should ``await drain()`` before sending more (the worker is
        not taking input). Raises ConnectionError when closed."""
        if self.closed:
            raise ConnectionError("the worker connection is closed")
        for position in range(0, len(data), MAX_FRAME):
            self._transport.write(encode_data(data[position:position + MAX_FRAME]))
        return self._write_paused

    def write_control(self, message: dict) -> bool:
        """Write a control frame at once (``resize``, ``signal``), in order with the
        keystrokes written around it. Returns True when the caller should ``await drain()``
        before sending more. Raises ConnectionError when closed."""
        if self.closed:
            raise ConnectionError("the worker connection is closed")
        self._transport.write(encode_control(message))
        return self._write_paused

    async def drain(self) -> None:
        """Wait until the worker takes what was written (returns at once if it does)."""
        await self._send(b"")

    async def resize(self, cols: int, rows: int) -> None:
        """Ask for a PTY size (cols 1-1000, rows 1-500); a bad one comes back as an
        ``error`` event."""
        await self._send(encode_control({"op": "resize", "cols": cols, "rows": rows}))

    async def signal(self, signum: int) -> None:
        """Signal the PTY's foreground process group (1, 2, 3, 9, 15, 18, 19, 20); a
        refusal comes back as an ``error`` event."""
        await self._send(encode_control({"op": "signal", "signal": signum}))

    async def status(self, timeout: float = 5.0) -> dict:
        """The worker's status dict (without ``op``). Raises WorkerError when the
        connection ends first, asyncio.TimeoutError after ``timeout``. The answer comes in
        the same stream as events: it waits while reading is paused."""
        waiter = self._loop.create_future()
        self._status_waiters.append(waiter)
        await self._send(encode_control({"op": "status"}))
        return await asyncio.wait_for(waiter, timeout)

    async def terminate(self, timeout: float = 15.0) -> dict:
        """End the session; returns the ``state`` message the worker sent to every client
        (``exit_code``, ``exit_signal``, ``reason``) once it confirmed with ``terminated``.
        Raises WorkerError when the connection ends first, asyncio.TimeoutError after
        ``timeout``. Same reading caveat as ``status``."""
        waiter = self._loop.create_future()
        self._terminate_waiters.append(waiter)
        await self._send(encode_control({"op": "terminate"}))
        return await asyncio.wait_for(waiter, timeout)

    # ---- events and flow control

    def pause_reading(self) -> None:
        """Stop reading from the worker (e.g. the WebSocket is backed up); frames already
        received are still delivered. The worker closes us with 4008 if the pause lasts
        too long."""
        self._user_paused = True
        self._update_reading()

    def resume_reading(self) -> None:
        self._user_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        pause = self._user_paused or len(self._events) >= self._max_events
        if pause != self._reading_paused and self._transport is not None and not self._ended:
            self._reading_paused = pause
            if pause:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    def _push(self, event) -> None:
        self._events.append(event)
        if len(self._events) >= self._max_events:
            self._update_reading()
        self._wake()

    def _wake(self) -> None:
        waiter = self._event_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def set_consumer(self, on_output, on_event, on_end) -> None:
        """Take events by callback instead of ``next_event``: ``on_output(offset, data)``
        (``data`` a memoryview, valid for as long as the callee keeps it),
        ``on_event(message)`` for control dicts, ``on_end()`` once after the last event.
        Events queued so far are handed over first. The callbacks run inside
        ``data_received``: they must not block; ``pause_reading()`` is their brake."""
        self._on_output, self._on_event, self._on_end = on_output, on_event, on_end
        while self._events:
            event = self._events.popleft()
            if isinstance(event, Output):
                on_output(event.offset, memoryview(event.data))
            else:
                on_event(event)
        self._update_reading()
        if self._ended and self._on_end is not None:
            self._on_end = None
            on_end()

    async def next_event(self):
        """The next event (Output or control dict), or None once the connection has ended
        and every event before the end was taken; keeps returning None after that."""
        while not self._events:
            if self._ended:
                return None
            self._event_waiter = self._loop.create_future()
            try:
                await self._event_waiter
            finally:
                self._event_waiter = None
        event = self._events.popleft()
        self._update_reading()
        return event

    def __aiter__(self):
        return self

    async def __anext__(self):
        event = await self.next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def close(self) -> None:
        """Close the connection (the session goes on); idempotent."""
        if not self.closed:
            self.closed = True
            self._transport.close()
        if self._transport is not None:
            await self._lost


def _resolve(waiter: asyncio.Future, value) -> None:
    if not waiter.done():
        waiter.set_result(value)
