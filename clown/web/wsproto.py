"""A lean server side of RFC 6455 on an asyncio transport, for the terminal relay.

Tornado's WebSocket connection reads each frame through its IOStream with a future per
read and a coroutine step per message (two ``epoll_ctl`` calls and a failed read per
keystroke); on a terminal's keystroke → echo path that was most of the front's CPU. Here a
handler does the handshake checks on the Tornado request, then ``accept()`` detaches the
socket from Tornado, answers 101 and hands the socket to an asyncio Protocol that parses
frames in ``data_received`` and writes frames straight to the transport.

What it implements: masked client frames only (1002 otherwise), fragmented messages up
to ``max_message_bytes`` (1009 past it), UTF-8 text (1007 otherwise), ping → pong,
the closing handshake (the close frame goes out after what is queued; the socket is
dropped ``CLOSE_GRACE_SECS`` later if the client does not answer), a keep-alive ping every
``ping_interval`` seconds (the connection is dropped when nothing came back for two
intervals), write flow control through ``on_pause``/``on_resume``, and ``on_stalled``
when the client, with more than WRITE_HIGH waiting for it, takes none of it for
``stall_secs``. No extensions (permessage-deflate is not offered) and no subprotocols.
"""

import asyncio
import base64
import hashlib
import socket
import struct

import tornado.iostream
import tornado.web

from clown.web.base import ApiError

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_GRACE_SECS = 5.0
# Outgoing bytes queued in the transport before the owner is told to stop producing.
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024
# Past this much unsent, the client is taking nothing while making us answer (pings, bad
# control messages): the connection is dropped rather than buffered without end.
MAX_BUFFERED = 8 * WRITE_HIGH
# Fragments of one message, however small: a stream of empty continuations is refused.
MAX_FRAGMENTS = 4096
# How often a paused connection (more than WRITE_HIGH unsent) is looked at for progress.
STALL_CHECK_SECS = 0.25
_SMALL = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LARGE = struct.Struct("!BBQ")
_CLOSE_CODE = struct.Struct("!H")


class WebSocketProtocolError(Exception):
    """The client broke RFC 6455: close with ``code``."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def check_upgrade(request) -> str:
    """The ``Sec-WebSocket-Key`` of a valid upgrade request; raises ApiError otherwise."""
    headers = request.headers
    if request.method != "GET":
        raise ApiError(405, f"Method {request.method} is not allowed on {request.path}")
    if headers.get("Upgrade", "").lower() != "websocket":
        raise ApiError(400, 'Can "Upgrade" only to "WebSocket"')
    connection = [part.strip().lower() for part in headers.get("Connection", "").split(",")]
    if "upgrade" not in connection:
        raise ApiError(400, '"Connection" must be "Upgrade"')
    if headers.get("Sec-WebSocket-Version") != "13":
        raise ApiError(426, "Sec-WebSocket-Version must be 13")
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise ApiError(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    return key


def accept_value(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")


def frame_header(opcode: int, size: int) -> bytes:
    if size < 126:
        return _SMALL.pack(0x80 | opcode, size)
    if size <= 0xFFFF:
        return _MEDIUM.pack(0x80 | opcode, 126, size)
    return _LARGE.pack(0x80 | opcode, 127, size)


def unmask(mask: bytes, payload) -> bytes:
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


async def accept(handler: tornado.web.RequestHandler, connection: "ServerWebSocket") -> None:
    """Finish the handshake of a request ``check_upgrade`` passed and run ``connection``
    on its socket. Returns once the 101 is queued; the connection's callbacks take it
    from there. Raises ConnectionError when the client has gone."""
    key = check_upgrade(handler.request)
    stream = handler.detach()
    if isinstance(stream, tornado.iostream.SSLIOStream):   # clown serves plain HTTP only
        stream.close()
        raise ConnectionError("TLS streams are not handed over")
    # A client may not send frames before it has our 101, so nothing should be buffered;
    # whatever a broken client did send early is kept and parsed first.
    early = b""
    pending = getattr(stream, "_read_buffer_size", 0)
    if pending:
        early = await stream.read_bytes(pending, partial=True)
    if stream.closed() or stream.socket is None:
        raise ConnectionError("the client closed the connection during the handshake")
    sock = stream.socket.dup()
    stream.close()   # closes Tornado's descriptor only: the connection lives on in ``sock``
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: connection, sock=sock)
    connection._write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_value(key).encode("ascii") + b"\r\n\r\n")
    connection.early_data(early)


class ServerWebSocket(asyncio.Protocol):
    """One accepted WebSocket connection. Subclass and override the ``on_*`` methods.

    It starts with reading paused, so that nothing the client sends arrives before its
    owner is ready: call ``start_reading()`` then.

    ``on_message(data, binary)`` gets each whole message (``bytes`` for binary, ``str``
    for text); ``on_close(code, reason)`` runs once when the connection is gone (``code``
    is the client's close code, 1006 when there was none); ``on_pause()``/``on_resume()``
    when the outgoing buffer passes WRITE_HIGH / falls under WRITE_LOW; ``on_stalled()``
    (with ``stall_secs`` set) once the buffer is past WRITE_HIGH and the client has taken
    none of it for ``stall_secs``: the client stopped reading.
    """

    def __init__(self, max_message_bytes: int, ping_interval: float = 30.0, stall_secs: float = 0.0):
        self.max_message_bytes = max_message_bytes
        self.ping_interval = ping_interval
        self.stall_secs = stall_secs
        self.sent_bytes = 0            # every byte handed to the transport
        self._write_paused = False
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stall_since = 0.0        # loop time the client last took bytes while paused
        self._taken_at_look = 0
        self.transport: asyncio.Transport | None = None
        self.closing = False           # our close frame is queued (or the transport is gone)
        self.closed = False
        self.close_code = 1006
        self.close_reason = ""
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._fragment_opcode = None
        self._received_since_ping = True
        self._reading = False
        self._ping_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    # ---- for the owner

    def on_message(self, data, binary: bool) -> None:
        pass

    def on_close(self, code: int, reason: str) -> None:
        pass

    def on_pause(self) -> None:
        pass

    def on_resume(self) -> None:
        pass

    def on_stalled(self) -> None:
        pass

    def start_reading(self) -> None:
        """Deliver what the client sent so far, then read on."""
        if self.closed:
            return
        self._reading = True
        self.transport.resume_reading()
        if self._buffer:
            self.data_received(b"")

    def pause_reading(self) -> None:
        """Stop taking messages until ``resume_reading()`` (the client's send blocks)."""
        if self._reading and not self.closed:
            self._reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._reading and not self.closed:
            self.start_reading()

    def early_data(self, data: bytes) -> None:
        """Bytes read with the handshake: parsed first, once reading starts."""
        self._buffer += data

    def send(self, data, binary: bool = True) -> bool:
        """Queue one message (``bytes``/memoryview for binary, ``str`` for text); False
        when the connection is closing and nothing was sent."""
        if self.closing:
            return False
        if binary:
            frame = frame_header(BINARY, len(data)) + data
        else:
            payload = data.encode("utf-8")
            frame = frame_header(TEXT, len(payload)) + payload
        self.sent_bytes += len(frame)
        self.transport.write(frame)
        if self.transport.get_write_buffer_size() > MAX_BUFFERED:
            self.abort()
            return False
        return True

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame after what is queued; drop the socket if the client has not
        answered within CLOSE_GRACE_SECS."""
        if self.closing:
            return
        self.closing = True
        self._stop_stall_watch()
        payload = _CLOSE_CODE.pack(code) + reason.encode("utf-8")[:123]
        self._write(frame_header(CLOSE, len(payload)) + payload)
        self._close_timer = self._loop.call_later(CLOSE_GRACE_SECS, self.abort)
        if not self._reading:   # for the client's answering close frame
            self.start_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # ---- asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        transport.pause_reading()
        if self.ping_interval:
            self._ping_timer = self._loop.call_later(self.ping_interval, self._keepalive)

    def data_received(self, data):
        buffer = self._buffer
        buffer += data
        if self.closed or not self._reading:
            return
        try:
            position = self._parse(buffer)
        except WebSocketProtocolError as error:
            buffer.clear()
            self._fail(error.code, error.reason)
            return
        if position:
            del buffer[:position]

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if self.closed:
            return
        self.closed = self.closing = True
        self._stop_stall_watch()
        for timer in (self._ping_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._buffer = bytearray()
        self._fragments = []
        self.on_close(self.close_code, self.close_reason)

    def pause_writing(self):
        self._write_paused = True
        if self.stall_secs and not self.closing:
            self._taken_at_look = self._taken()
            self._stall_since = self._loop.time()
            self._stop_stall_watch()
            self._stall_timer = self._loop.call_later(STALL_CHECK_SECS, self._check_stall)
        self.on_pause()

    def resume_writing(self):
        self._write_paused = False
        self._stop_stall_watch()
        self.on_resume()

    # ---- a client that stops reading

    def _write(self, frame: bytes) -> None:
        self.sent_bytes += len(frame)
        self.transport.write(frame)

    def _taken(self) -> int:
        """Bytes of frames the kernel has taken from us."""
        return self.sent_bytes - self.transport.get_write_buffer_size()

    def _stop_stall_watch(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _check_stall(self) -> None:
        """While paused: did the client take any of its bytes since the last look?"""
        self._stall_timer = None
        if self.closing or not self._write_paused:
            return
        now = self._loop.time()
        taken = self._taken()
        if taken > self._taken_at_look:
            self._taken_at_look = taken
            self._stall_since = now
        elif now - self._stall_since >= self.stall_secs:
            self.on_stalled()
            return
        self._stall_timer = self._loop.call_later(STALL_CHECK_SECS, self._check_stall)

    # ---- frames

    def _parse(self, buffer: bytearray) -> int:
        """Handle every whole frame in ``buffer``; return how many bytes were used."""
        position, size = 0, len(buffer)
        while size - position >= 2 and self._reading and not self.closed:
            first, second = buffer[position], buffer[position + 1]
            if first & 0x70:
                raise WebSocketProtocolError(1002, "reserved bits set without an extension")
            if not second & 0x80:
                raise WebSocketProtocolError(1002, "client frames must be masked")
            opcode, length, start = first & 0x0F, second & 0x7F, position + 2
            if length == 126:
                if size - start < 2:
                    break
                length = _MEDIUM.unpack_from(buffer, position)[2]
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                length = _LARGE.unpack_from(buffer, position)[2]
                start += 8
            if opcode >= CLOSE:
                if not first & 0x80 or length > 125:
                    raise WebSocketProtocolError(1002, "control frames must be whole and at most 125 bytes")
            elif length + self._fragments_size > self.max_message_bytes:
                raise WebSocketProtocolError(1009, "message too big")
            end = start + 4 + length
            if end > size:
                break
            with memoryview(buffer) as view:
                payload = unmask(bytes(view[start:start + 4]), view[start + 4:end])
            position = end
            self._frame(opcode, bool(first & 0x80), payload)
        return position

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        self._received_since_ping = True
        if opcode == PING:
            if not self.closing:
                self._write(frame_header(PONG, len(payload)) + payload)
                if self.transport.get_write_buffer_size() > MAX_BUFFERED:
                    self.abort()
            return
        if opcode == PONG:
            return
        if opcode == CLOSE:
            self._close_received(payload)
            return
        if opcode == CONTINUATION:
            if self._fragment_opcode is None:
                raise WebSocketProtocolError(1002, "continuation frame outside a message")
            if len(self._fragments) >= MAX_FRAGMENTS:
                raise WebSocketProtocolError(1009, f"message in more than {MAX_FRAGMENTS} fragments")
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            if not fin:
                return
            opcode, payload = self._fragment_opcode, b"".join(self._fragments)
            self._fragment_opcode, self._fragments, self._fragments_size = None, [], 0
        elif opcode in (TEXT, BINARY):
            if self._fragment_opcode is not None:
                raise WebSocketProtocolError(1002, "new message inside a fragmented one")
            if not fin:
                self._fragment_opcode, self._fragments, self._fragments_size = opcode, [payload], len(payload)
                return
        else:
            raise WebSocketProtocolError(1002, f"unknown opcode {opcode}")
        if self.closing:
            return   # after our close frame, messages are no longer delivered
        if opcode == TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise WebSocketProtocolError(1007, "text message is not UTF-8") from None
            self.on_message(text, False)
        else:
            self.on_message(payload, True)

    def _close_received(self, payload: bytes) -> None:
        if len(payload) >= 2:
            self.close_code = _CLOSE_CODE.unpack_from(payload)[0]
            self.close_reason = payload[2:].decode("utf-8", "replace")
        elif payload:
            raise WebSocketProtocolError(1002, "close frame with a 1-byte payload")
        else:
            self.close_code = 1005
        if not self.closing:   # answer with the same code, then hang up
            self.closing = True
            echo = payload[:2]
            self._write(frame_header(CLOSE, len(echo)) + echo)
        self.transport.close()

    def _fail(self, code: int, reason: str) -> None:
        if not self.closing:
            self.close(code, reason)
        if self.transport is not None:
            self.transport.close()   # after the close frame; no more reading

    # ---- keep-alive

    def _keepalive(self) -> None:
        if self.closed:
            return
        if not self._received_since_ping and self._reading:
            self.abort()   # nothing back for a whole interval after a ping
            return
        self._received_since_ping = False
        if not self.closing:
            self._write(frame_header(PING, 0))
        self._ping_timer = self._loop.call_later(self.ping_interval, self._keepalive)
