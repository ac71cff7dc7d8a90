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

Backpressure: events wait in a small bounded queue; when the consumer stops taking them
(or calls ``pause_reading()``), the client stops reading the socket, the worker's backlog
for this connection grows, and past ``client_backlog_bytes`` the worker sends
``{"op":"closing","code":4008,...}`` and closes it. Reconnect and attach again: the
snapshot starts where the ring does, so nothing still in the ring is lost.
"""

import asyncio
import collections
from typing import NamedTuple

from clown.ipc.frames import (CONTROL, DATA, MAX_FRAME, PROTOCOL_VERSION, Frame, FrameDecoder,
                              ProtocolError, decode_output, encode_control, encode_data,
                              encode_output, parse_control, read_frame, read_frame_iostream)

__all__ = [
    "CONTROL", "DATA", "MAX_FRAME", "PROTOCOL_VERSION", "Frame", "FrameDecoder", "ProtocolError",
    "decode_output", "encode_control", "encode_data", "encode_output", "parse_control",
    "read_frame", "read_frame_iostream", "Output", "WorkerError", "TerminalWorkerClient",
]

_READ_LIMIT = 256 * 1024


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


class TerminalWorkerClient:
    """One connection to a terminal worker. Make it with ``await connect(path)``.

    Events (from ``next_event()`` or ``async for``) are, in the order the worker sent them:
    ``Output(offset, data)``; control dicts ``{"op":"snapshot","start","end"}``,
    ``{"op":"state",...}``, ``{"op":"closing",...}``, ``{"op":"error",...}``. Answers to
    ``status()`` and ``terminate()`` go to those calls, not to the events.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 hello: dict, max_events: int = 64):
        self._reader = reader
        self._writer = writer
        self.hello = hello
        self._events: asyncio.Queue = asyncio.Queue(max_events)
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._status_waiters: collections.deque[asyncio.Future] = collections.deque()
        self._terminate_waiters: list[asyncio.Future] = []
        self.closed = False
        self.error: str | None = None   # why the connection ended, when it was not a clean EOF
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(cls, path: str, *, timeout: float = 5.0,
                      max_events: int = 64) -> "TerminalWorkerClient":
        """Connect to the worker socket at ``path`` and exchange hello.

        Returns a client whose ``hello`` is the worker's hello (``kind``, ``state``,
        ``start``, ``end``, ...). Raises OSError when the socket cannot be reached,
        WorkerError when the worker refuses the hello, ProtocolError when it answers
        anything else, asyncio.TimeoutError after ``timeout`` seconds.
        """
        async def handshake():
            reader, writer = await asyncio.open_unix_connection(path, limit=_READ_LIMIT)
            try:
                writer.write(encode_control({"op": "hello", "version": PROTOCOL_VERSION}))
                await writer.drain()
                frame = await read_frame(reader)
                if frame is None:
                    raise WorkerError("the worker closed the connection during hello")
                if frame.type != CONTROL:
                    raise ProtocolError("the worker's first frame is not hello")
                message = parse_control(frame.payload)
                if message["op"] == "error":
                    raise WorkerError(message.get("message", "hello refused"))
                if message["op"] != "hello":
                    raise ProtocolError(f"the worker answered hello with {message['op']!r}")
            except BaseException:
                writer.close()
                raise
            return reader, writer, message

        reader, writer, hello = await asyncio.wait_for(handshake(), timeout)
        return cls(reader, writer, hello, max_events)

    # ---- requests

    async def _send(self, frame: bytes) -> None:
        if self.closed:
            raise ConnectionError("the worker connection is closed")
        self._writer.write(frame)
        await self._writer.drain()

    async def attach(self) -> None:
        """Ask for the snapshot and the live stream. Returns once sent; the ``snapshot``
        event and its Output events follow. Raises ConnectionError when closed."""
        await self._send(encode_control({"op": "attach"}))

    async def send_input(self, data: bytes) -> None:
        """Send keystrokes (split into frames of at most MAX_FRAME). Raises ConnectionError
        when closed."""
        for position in range(0, len(data), MAX_FRAME):
            self._writer.write(encode_data(data[position:position + MAX_FRAME]))
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
        connection ends first, asyncio.TimeoutError after ``timeout``. The answer is read
        by the same loop as events: it waits while reading is paused or events are not
        consumed."""
        waiter = asyncio.get_running_loop().create_future()
        self._status_waiters.append(waiter)
        await self._send(encode_control({"op": "status"}))
        return await asyncio.wait_for(waiter, timeout)

    async def terminate(self, timeout: float = 15.0) -> dict:
        """End the session; returns the ``state`` message the worker sent to every client
        (``exit_code``, ``exit_signal``, ``reason``) once it confirmed with ``terminated``.
        Raises WorkerError when the connection ends first, asyncio.TimeoutError after
        ``timeout``. Same reading caveat as ``status``."""
        waiter = asyncio.get_running_loop().create_future()
        self._terminate_waiters.append(waiter)
        await self._send(encode_control({"op": "terminate"}))
        return await asyncio.wait_for(waiter, timeout)

    # ---- events and flow control

    def pause_reading(self) -> None:
        """Stop reading from the worker after the current frame (e.g. the WebSocket is
        backed up). The worker closes us with 4008 if the pause lasts too long."""
        self._resumed.clear()

    def resume_reading(self) -> None:
        self._resumed.set()

    async def next_event(self):
        """The next event (Output or control dict), or None once the connection has ended
        and every event before the end was taken; keeps returning None after that."""
        if self._events.empty() and self._task.done():
            return None
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)   # keep answering None
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
            self._writer.close()
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def _read_loop(self) -> None:
        last_state = None
        try:
            while True:
                await self._resumed.wait()
                frame = await read_frame(self._reader)
                if frame is None:
                    break
                if frame.type == DATA:
                    offset, data = decode_output(frame.payload)
                    await self._events.put(Output(offset, data))
                    continue
                message = parse_control(frame.payload)
                op = message["op"]
                if op == "status" and self._status_waiters:
                    message.pop("op")
                    _resolve(self._status_waiters.popleft(), message)
                    continue
                if op == "terminated" and self._terminate_waiters:
                    for waiter in self._terminate_waiters:
                        _resolve(waiter, last_state or {})
                    self._terminate_waiters.clear()
                    continue
                if op == "state":
                    last_state = message
                await self._events.put(message)
        except ProtocolError as error:
            self.error = f"protocol error: {error}"
        except (ConnectionError, OSError) as error:
            self.error = f"connection error: {error}"
        finally:
            self.closed = True
            self._writer.close()
            ended = WorkerError(self.error or "the worker closed the connection")
            for waiter in [*self._status_waiters, *self._terminate_waiters]:
                if not waiter.done():
                    waiter.set_exception(ended)
            self._status_waiters.clear()
            self._terminate_waiters.clear()
            try:
                self._events.put_nowait(None)
            except asyncio.QueueFull:
                pass   # next_event sees the finished task once the queue is drained


def _resolve(waiter: asyncio.Future, value) -> None:
    if not waiter.done():
        waiter.set_result(value)
