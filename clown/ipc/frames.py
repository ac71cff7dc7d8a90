"""The framed worker protocol (docs/worker-protocol.md): encoding, decoding, reading.

A frame is a 5-byte header (1-byte type, 4-byte big-endian payload length) and a payload.
``CONTROL`` payloads are UTF-8 JSON objects with an ``"op"`` string; ``DATA`` payloads are
raw bytes. A terminal worker's output DATA payload starts with the 8-byte big-endian offset
of its first byte in the session's output stream.

Anything that breaks these rules raises ``ProtocolError``: the caller closes that
connection and trusts nothing more from it.
"""

import asyncio
import json
import struct
from typing import NamedTuple

CONTROL = 1
DATA = 2
MAX_FRAME = 4 * 1024 * 1024
PROTOCOL_VERSION = 1

HEADER = struct.Struct(">BI")
OFFSET = struct.Struct(">Q")
_OUTPUT_HEADER = struct.Struct(">BIQ")


class ProtocolError(Exception):
    """The peer broke the framing rules; the connection must be closed."""


class Frame(NamedTuple):
    type: int       # CONTROL or DATA
    payload: bytes


def encode_control(message: dict) -> bytes:
    """One CONTROL frame carrying ``message`` (which must have an ``"op"``) as compact JSON.

    Raises ValueError when ``message`` has no ``op`` or encodes to more than MAX_FRAME.
    """
    if not isinstance(message.get("op"), str):
        raise ValueError("a control message needs an 'op' string")
    payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(payload) > MAX_FRAME:
        raise ValueError("control message larger than a frame")
    return HEADER.pack(CONTROL, len(payload)) + payload


def encode_data(payload: bytes) -> bytes:
    """One DATA frame carrying ``payload`` as it is (front → worker: keystrokes).

    Raises ValueError when ``payload`` is longer than MAX_FRAME; split it first
    (``TerminalWorkerClient.send_input`` does).
    """
    if len(payload) > MAX_FRAME:
        raise ValueError("data payload larger than a frame")
    return HEADER.pack(DATA, len(payload)) + payload


def encode_output(offset: int, data: bytes) -> bytes:
    """One DATA frame of terminal output: ``offset`` (8 bytes, big-endian) then ``data``.

    One copy of ``data``; the result can be written to any number of clients.
    Raises ValueError when ``8 + len(data)`` is longer than MAX_FRAME.
    """
    if len(data) + OFFSET.size > MAX_FRAME:
        raise ValueError("output chunk larger than a frame")
    return _OUTPUT_HEADER.pack(DATA, OFFSET.size + len(data), offset) + data


def output_header(offset: int, length: int) -> bytes:
    """The 13 bytes that precede ``length`` output bytes starting at ``offset``.

    For callers that assemble the frame themselves (``b"".join([header, *chunks])``) to
    avoid a second copy.
    """
    return _OUTPUT_HEADER.pack(DATA, OFFSET.size + length, offset)


def decode_output(payload: bytes) -> tuple[int, bytes]:
    """Split a worker → front DATA payload into ``(offset, data)``.

    Raises ProtocolError when the payload is shorter than the 8-byte offset.
    """
    if len(payload) < OFFSET.size:
        raise ProtocolError("output frame shorter than its offset")
    return OFFSET.unpack_from(payload)[0], payload[OFFSET.size:]


def parse_control(payload: bytes) -> dict:
    """The JSON object of a CONTROL payload.

    Raises ProtocolError when it is not UTF-8 JSON, not an object, or has no ``op`` string.
    """
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as error:
        raise ProtocolError(f"control frame is not JSON: {error}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("control frame is not an object with an 'op' string")
    return message


def check_header(header: bytes, max_size: int = MAX_FRAME) -> tuple[int, int]:
    """``(type, length)`` of a 5-byte header; raises ProtocolError on an unknown type or
    a length over ``max_size``."""
    kind, length = HEADER.unpack(header)
    if kind not in (CONTROL, DATA):
        raise ProtocolError(f"unknown frame type {kind}")
    if length > max_size:
        raise ProtocolError(f"frame of {length} bytes is over the {max_size}-byte cap")
    return kind, length


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get whole frames back.

    ``feed(data)`` returns the list of frames completed by ``data`` (possibly empty) and
    keeps any partial frame for the next call. It raises ProtocolError on an unknown type
    or a length over ``max_size`` as soon as the header is seen (before the payload is
    buffered), and keeps raising afterwards. CONTROL payloads are not parsed here; use
    ``parse_control``. Memory held is at most one frame plus one ``feed`` argument.
    """

    def __init__(self, max_size: int = MAX_FRAME):
        self.max_size = max_size
        self._buffer = bytearray()
        self._need = None       # (type, length) of the frame being assembled
        self._broken = None

    @property
    def pending(self) -> int:
        """Bytes received towards the next frame, its header included (0 at a frame
        boundary)."""
        return len(self._buffer) + (HEADER.size if self._need is not None else 0)

    def feed(self, data: bytes) -> list[Frame]:
        if self._broken:
            raise ProtocolError(self._broken)
        buffer = self._buffer
        buffer += data
        frames = []
        position = 0
        size = len(buffer)
        try:
            with memoryview(buffer) as view:
                while True:
                    if self._need is None:
                        if size - position < HEADER.size:
                            break
                        self._need = check_header(bytes(view[position:position + HEADER.size]),
                                                  self.max_size)
                        position += HEADER.size
                    kind, length = self._need
                    if size - position < length:
                        break
                    frames.append(Frame(kind, bytes(view[position:position + length])))
                    position += length
                    self._need = None
        except ProtocolError as error:
            self._broken = str(error)
            buffer.clear()
            raise
        if position:
            del buffer[:position]
        return frames


async def read_frame(reader: asyncio.StreamReader, max_size: int = MAX_FRAME) -> Frame | None:
    """Read one frame from an asyncio StreamReader.

    Returns the Frame, or None on EOF at a frame boundary. Raises ProtocolError on an
    unknown type, a length over ``max_size`` (before reading the payload), or EOF inside a
    frame. Connection errors (ConnectionResetError, ...) propagate.
    """
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise ProtocolError("connection closed inside a frame header") from None
    kind, length = check_header(header, max_size)
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame") from None
    return Frame(kind, payload)


async def read_frame_iostream(stream, max_size: int = MAX_FRAME) -> Frame | None:
    """Read one frame from a Tornado IOStream.

    Returns the Frame, or None when the stream closes before a whole header (Tornado does
    not say how much of it came). Raises ProtocolError on an unknown type, a length over
    ``max_size``, or a close inside a payload.
    """
    from tornado.iostream import StreamClosedError

    try:
        header = await stream.read_bytes(HEADER.size)
    except StreamClosedError:
        return None
    kind, length = check_header(header, max_size)
    try:
        payload = await stream.read_bytes(length) if length else b""
    except StreamClosedError:
        raise ProtocolError("connection closed inside a frame") from None
    return Frame(kind, payload)
