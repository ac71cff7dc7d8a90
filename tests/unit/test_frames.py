"""The worker protocol's frames: encoding, the incremental decoder, the stream readers."""

import asyncio
import socket

import pytest

from clown.ipc import frames
from clown.ipc.frames import (CONTROL, DATA, MAX_FRAME, Frame, FrameDecoder, ProtocolError,
                              decode_output, encode_control, encode_data, encode_output,
                              parse_control, read_frame, read_frame_iostream)


def test_control_frame_is_type_length_and_compact_json():
    assert encode_control({"op": "hello", "version": 1}) == \
        b"\x01\x00\x00\x00\x1a" + b'{"op":"hello","version":1}'


def test_control_without_op_is_refused():
    with pytest.raises(ValueError):
        encode_control({"version": 1})


def test_data_frame_carries_the_bytes_as_they_are():
    assert encode_data(b"\x03ls\r") == b"\x02\x00\x00\x00\x04\x03ls\r"


def test_output_frame_starts_with_the_8_byte_offset():
    frame = encode_output(0x0102030405, b"hi")
    assert frame == b"\x02\x00\x00\x00\x0a" + b"\x00\x00\x00\x01\x02\x03\x04\x05" + b"hi"
    assert frames.output_header(0x0102030405, 2) + b"hi" == frame
    assert decode_output(frame[5:]) == (0x0102030405, b"hi")


def test_output_payload_shorter_than_the_offset_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        decode_output(b"\x00" * 7)


def test_payloads_over_the_cap_cannot_be_encoded():
    with pytest.raises(ValueError):
        encode_data(b"x" * (MAX_FRAME + 1))
    with pytest.raises(ValueError):
        encode_output(0, b"x" * (MAX_FRAME - 7))
    assert len(encode_output(0, b"x" * (MAX_FRAME - 8))) == 5 + MAX_FRAME


def test_decoder_returns_whole_frames_fed_one_byte_at_a_time():
    stream = encode_control({"op": "attach"}) + encode_data(b"") + encode_output(7, b"abc")
    decoder = FrameDecoder()
    got = []
    for index in range(len(stream)):
        got += decoder.feed(stream[index:index + 1])
    assert got == [Frame(CONTROL, b'{"op":"attach"}'), Frame(DATA, b""),
                   Frame(DATA, b"\x00" * 7 + b"\x07abc")]
    assert decoder.pending == 0


def test_decoder_returns_every_frame_of_one_feed_and_keeps_the_partial_one():
    decoder = FrameDecoder()
    stream = encode_data(b"one") + encode_data(b"two") + encode_data(b"three")
    assert decoder.feed(stream[:-2]) == [Frame(DATA, b"one"), Frame(DATA, b"two")]
    assert decoder.pending == 5 + 3
    assert decoder.feed(stream[-2:]) == [Frame(DATA, b"three")]


def test_decoder_refuses_an_oversize_length_before_the_payload_comes():
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="over the 4194304-byte cap"):
        decoder.feed(b"\x02" + (MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(ProtocolError):
        decoder.feed(encode_data(b"ok"))   # a broken stream stays broken


def test_decoder_accepts_a_frame_of_exactly_the_cap():
    decoder = FrameDecoder()
    assert decoder.feed(encode_data(b"x" * MAX_FRAME)) == [Frame(DATA, b"x" * MAX_FRAME)]


def test_decoder_refuses_an_unknown_type():
    with pytest.raises(ProtocolError, match="unknown frame type 3"):
        FrameDecoder().feed(b"\x03\x00\x00\x00\x00")


def test_decoder_honours_a_smaller_cap():
    with pytest.raises(ProtocolError):
        FrameDecoder(max_size=10).feed(encode_data(b"x" * 11))


@pytest.mark.parametrize("payload", [b"{", b"\xff\xfe", b"[]", b'"op"', b"{}", b'{"op":5}'])
def test_parse_control_refuses_what_is_not_an_object_with_an_op(payload):
    with pytest.raises(ProtocolError):
        parse_control(payload)


def test_parse_control_returns_the_object():
    assert parse_control(b'{"op":"resize","cols":80,"rows":24}') == \
        {"op": "resize", "cols": 80, "rows": 24}


def _reader_with(data: bytes, eof=True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def test_read_frame_reads_frames_then_none_at_a_clean_eof():
    async def scenario():
        reader = _reader_with(encode_control({"op": "status"}) + encode_data(b"k"))
        assert await read_frame(reader) == Frame(CONTROL, b'{"op":"status"}')
        assert await read_frame(reader) == Frame(DATA, b"k")
        assert await read_frame(reader) is None
    asyncio.run(scenario())


@pytest.mark.parametrize("cut", [2, 7], ids=["in-header", "in-payload"])
def test_read_frame_raises_on_eof_inside_a_frame(cut):
    async def scenario():
        with pytest.raises(ProtocolError):
            await read_frame(_reader_with(encode_data(b"abcdef")[:cut]))
    asyncio.run(scenario())


def test_read_frame_refuses_an_oversize_length_without_reading_the_payload():
    async def scenario():
        reader = _reader_with(b"\x02" + (MAX_FRAME + 1).to_bytes(4, "big"), eof=False)
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(read_frame(reader), 1)
    asyncio.run(scenario())


def test_read_frame_iostream_over_a_socket_pair():
    from tornado.iostream import IOStream

    async def scenario():
        left, right = socket.socketpair()
        stream = IOStream(left)
        right.sendall(encode_output(42, b"out") + encode_control({"op": "state"}))
        right.close()
        first = await read_frame_iostream(stream)
        assert decode_output(first.payload) == (42, b"out")
        assert await read_frame_iostream(stream) == Frame(CONTROL, b'{"op":"state"}')
        assert await read_frame_iostream(stream) is None
        stream.close()
    asyncio.run(scenario())


def test_read_frame_iostream_raises_on_close_inside_a_payload():
    from tornado.iostream import IOStream

    async def scenario():
        left, right = socket.socketpair()
        stream = IOStream(left)
        right.sendall(encode_data(b"abcdef")[:8])
        right.close()
        with pytest.raises(ProtocolError):
            await read_frame_iostream(stream)
        stream.close()
    asyncio.run(scenario())
