"""TerminalWorkerClient's decoding in data_received: frames split anywhere, whole frames
handed over without copies, events by queue or by callback."""

import asyncio

import pytest

from clown.ipc import Output, ProtocolError, TerminalWorkerClient, encode_control, encode_output


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.written = []
        self.reading = True
        self.aborted = False

    def write(self, data):
        self.written.append(bytes(data))

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def abort(self):
        self.aborted = True

    def close(self):
        pass


def stream():
    return (encode_control({"op": "hello", "version": 1, "kind": "terminal"})
            + encode_control({"op": "snapshot", "start": 0, "end": 3})
            + encode_output(0, b"abc")
            + encode_output(3, b"x" * 70000)
            + encode_control({"op": "state", "state": "terminated"}))


def expected():
    return [{"op": "snapshot", "start": 0, "end": 3}, Output(0, b"abc"), Output(3, b"x" * 70000),
            {"op": "state", "state": "terminated"}]


@pytest.mark.parametrize("step", [1, 2, 5, 13, 4096, 1 << 20])
def test_frames_split_anywhere_come_out_whole(step):
    async def scenario():
        client = TerminalWorkerClient()
        client.connection_made(FakeTransport())
        data = stream()
        for position in range(0, len(data), step):
            client.data_received(data[position:position + step])
        assert client._hello_waiter.result()["kind"] == "terminal"
        client.hello = client._hello_waiter.result()
        client.connection_lost(None)
        assert [event async for event in client] == expected()
        assert client.error is None

    asyncio.run(scenario())


def test_consumer_callbacks_get_memoryviews_and_the_end():
    async def scenario():
        client = TerminalWorkerClient()
        client.connection_made(FakeTransport())
        data = stream()
        client.data_received(data[:40])
        got, ended = [], []
        client.set_consumer(lambda offset, view: got.append(Output(offset, bytes(view))), got.append,
                            lambda: ended.append(True))
        client.data_received(data[40:])
        assert not ended
        client.connection_lost(None)
        assert got == expected() and ended == [True]

    asyncio.run(scenario())


def test_a_full_queue_pauses_reading_until_taken():
    async def scenario():
        client = TerminalWorkerClient(max_events=2)
        transport = FakeTransport()
        client.connection_made(transport)
        client.hello = {"op": "hello"}
        client.data_received(b"".join(encode_output(i, b"z") for i in range(3)))
        assert not transport.reading
        await client.next_event()
        await client.next_event()
        assert transport.reading

    asyncio.run(scenario())


def test_a_bad_frame_aborts():
    async def scenario():
        client = TerminalWorkerClient()
        transport = FakeTransport()
        client.connection_made(transport)
        client.data_received(b"\x09\x00\x00\x00\x01x")
        assert transport.aborted and client.error.startswith("protocol error")

    asyncio.run(scenario())
