"""The terminal worker, run as its own process (no supervisord), against a real PTY.

Each test makes a temp home with a ``starting`` row and a launch spec, starts
``python -m clown.workers.terminal``, and talks docs/worker-protocol.md to its socket.
"""

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from clown import clock, store
from clown.home import Home
from clown.ipc import (DATA, Output, TerminalWorkerClient, encode_control,
                       encode_data, frames)
from clown.secrets import SecretStore
from clown.workers.terminal import ScrollbackRing, load_scrollback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"
TIMEOUT = 10.0
# Scripts start with this so that nothing the test types is echoed: they wait for READY.
QUIET = "stty -echo; echo ready; "
READY = b"ready\r\n"


# --- harness ----------------------------------------------------------------------------

class WorkerUnderTest:
    """A temp home with one terminal session row and spec, and its worker process."""

    def __init__(self, root, argv, **spec_fields):
        self.home = Home(str(root))
        self.home.ensure()
        self.conn = store.open_store(self.home.db)
        self.session_id = str(uuid.uuid4())
        self.spec = {
            "session_id": self.session_id, "argv": argv,
            "env": {"PATH": CHILD_PATH, "HOME": self.home.root, "LC_ALL": "C"},
            "secret_env": {}, "cwd": self.home.root, "cols": 80, "rows": 24,
            "scrollback_bytes": 1024 * 1024, "client_backlog_bytes": 4 * 1024 * 1024,
        }
        self.spec.update(spec_fields)
        self.conn.execute(
            "INSERT INTO terminal_sessions (id, profile_alias, state, created_at, cols, rows,"
            " argv, working_dir) VALUES (?, 'test', 'starting', ?, ?, ?, ?, ?)",
            (self.session_id, clock.utc_iso(), self.spec["cols"], self.spec["rows"],
             json.dumps(argv), self.home.root))
        path = self.home.spec(f"term-{self.session_id}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.spec, handle)
        self.socket_path = self.home.socket(f"term-{self.session_id}.sock")
        self.process = None

    def command(self):
        return [sys.executable, "-m", "clown.workers.terminal",
                "--home", self.home.root, "--session", self.session_id]

    def start(self, wait_socket=True):
        self.process = subprocess.Popen(self.command(), cwd=REPO, stderr=subprocess.PIPE)
        if wait_socket:
            self.wait_running()
        return self.process

    def wait_running(self):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.row()["state"] == "running" and os.path.exists(self.socket_path):
                return
            assert self.process is None or self.process.poll() is None, self.stderr()
            time.sleep(0.01)
        raise AssertionError("the worker did not come up")

    def row(self) -> dict:
        return dict(self.conn.execute("SELECT * FROM terminal_sessions WHERE id = ?",
                                      (self.session_id,)).fetchone())

    def wait(self, timeout=TIMEOUT) -> int:
        return self.process.wait(timeout)

    def stderr(self) -> str:
        if self.process is None or self.process.poll() is None:
            return ""
        return self.process.stderr.read().decode(errors="replace")

    def client(self, attach=True) -> "RawClient":
        client = RawClient(self.socket_path)
        client.hello()
        if attach:
            client.attach()
        return client

    def cleanup(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        pid = self.row()["pid"]
        if pid:
            for process in psutil.process_iter():
                try:
                    if os.getsid(process.pid) == pid:
                        process.kill()
                except (OSError, psutil.Error):
                    pass
        self.conn.close()


class RawClient:
    """A blocking protocol client that checks what it receives as it goes."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.decoder = frames.FrameDecoder()
        self.pending = []
        self.output = bytearray()
        self.first_offset = None
        self.next_offset = None
        self.controls = []
        self.eof = False

    def send_control(self, message):
        self.sock.sendall(encode_control(message))

    def send_input(self, data: bytes):
        self.sock.sendall(encode_data(data))

    def frame(self, timeout=TIMEOUT):
        """The next frame, or None at EOF."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the worker")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
                return None
            self.pending.extend(self.decoder.feed(chunk))
        return self.pending.pop(0)

    def control(self, timeout=TIMEOUT) -> dict:
        """The next control message, recording output frames met on the way."""
        deadline = time.monotonic() + timeout
        before = len(self.controls)
        self.pump(lambda: len(self.controls) > before, deadline - time.monotonic())
        return self.controls[before]

    def hello(self):
        self.send_control({"op": "hello", "version": 1})
        message = self.control()
        assert message["op"] == "hello", message
        return message

    def attach(self):
        self.send_control({"op": "attach"})
        snapshot = self.control()
        assert snapshot["op"] == "snapshot", snapshot
        self.first_offset = self.next_offset = snapshot["start"]
        return snapshot

    def pump(self, until, timeout=TIMEOUT):
        """Read frames until ``until()`` is true; output offsets must be contiguous."""
        deadline = time.monotonic() + timeout
        while not until():
            frame = self.frame(max(deadline - time.monotonic(), 0.001))
            if frame is None:
                if until():
                    return
                raise EOFError(f"the worker closed the connection; controls {self.controls}, "
                               f"{len(self.output)} bytes of output")
            self.record(frame)

    def record(self, frame):
        if frame.type == DATA:
            offset, data = frames.decode_output(frame.payload)
            assert offset == self.next_offset, (offset, self.next_offset)
            self.next_offset += len(data)
            self.output += data
        else:
            self.controls.append(json.loads(frame.payload))

    def read_once(self, size):
        """One recv of at most ``size`` bytes; record the frames it completes."""
        while self.pending:
            self.record(self.pending.pop(0))
        chunk = self.sock.recv(size)
        if not chunk:
            self.eof = True
        for frame in self.decoder.feed(chunk):
            self.record(frame)

    def wait_ready(self):
        """Wait for the script's READY; ``since_ready()`` is the output after it."""
        self.wait_output(READY)
        self.ready_at = self.output.index(READY) + len(READY)

    def since_ready(self) -> bytes:
        return bytes(self.output[self.ready_at:])

    def pump_for(self, seconds):
        """Take whatever arrives during ``seconds``."""
        try:
            self.pump(lambda: False, seconds)
        except TimeoutError:
            pass

    def wait_output(self, needle: bytes, timeout=TIMEOUT):
        self.pump(lambda: needle in self.output, timeout)

    def wait_op(self, op, timeout=TIMEOUT) -> dict:
        self.pump(lambda: any(c["op"] == op for c in self.controls), timeout)
        return next(c for c in self.controls if c["op"] == op)

    def read_to_eof(self, timeout=TIMEOUT):
        self.pump(lambda: self.eof, timeout)

    def close(self):
        self.sock.close()


@pytest.fixture
def worker_factory(tmp_path):
    made = []

    def make(argv, **spec_fields):
        worker = WorkerUnderTest(tmp_path / f"home{len(made)}", argv, **spec_fields)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.cleanup()


def sh(script):
    return ["/bin/sh", "-c", script]


def flood_worker(worker_factory, total: int, after: str = "", **spec_fields):
    """A started worker whose session, once a line is typed, writes ``total`` bytes of ``a``
    (then runs ``after``, a shell tail such as "; exit 3")."""
    worker = worker_factory(sh(QUIET + f"read go; head -c {total} /dev/zero | tr '\\0' a{after}"), **spec_fields)
    worker.start()
    return worker


def session_pids(leader_pid):
    """Live (non-zombie) processes of the session ``leader_pid`` leads, and descendants."""
    found = set()
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == leader_pid and process.status() != psutil.STATUS_ZOMBIE:
                found.add(process.pid)
        except (OSError, psutil.Error):
            pass
    return found


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- the ring ---------------------------------------------------------------------------

def test_ring_keeps_the_last_capacity_bytes_with_absolute_offsets():
    ring = ScrollbackRing(10)
    ring.append(b"abcdef")
    assert (ring.start, ring.end, ring.read()) == (0, 6, b"abcdef")
    ring.append(b"ghijkl")
    assert (ring.start, ring.end, ring.read()) == (2, 12, b"cdefghijkl")
    assert ring.read(5, 9) == b"fghi"
    assert ring.read(0, 4) == b"cd"
    ring.append(b"0123456789ABC")
    assert (ring.start, ring.end, ring.read()) == (15, 25, b"3456789ABC")


def test_ring_wraps_byte_exact_over_many_appends():
    ring = ScrollbackRing(1000)
    stream = bytearray()
    for n in range(1, 400):
        chunk = bytes((n + i) % 251 for i in range(n % 37 + 1))
        ring.append(chunk)
        stream += chunk
        assert ring.end == len(stream)
        assert ring.read() == bytes(stream[-1000:])


# --- hello, status, echo ----------------------------------------------------------------

def test_hello_answers_version_kind_and_status(worker_factory):
    worker = worker_factory(["/bin/cat"], cols=100, rows=30)
    worker.start()
    client = RawClient(worker.socket_path)
    hello = client.hello()
    row = worker.row()
    assert hello == {"op": "hello", "version": 1, "kind": "terminal",
                     "session_id": worker.session_id, "state": "running", "pid": row["pid"],
                     "cols": 100, "rows": 30, "client_count": 0, "exit_code": None,
                     "exit_signal": None, "reason": None, "start": 0, "end": 0}
    assert row["worker_pid"] == worker.process.pid
    assert row["pid_started"] == pytest.approx(psutil.Process(row["pid"]).create_time(), abs=0.01)


def test_unsupported_version_is_refused_and_closed(worker_factory):
    worker = worker_factory(["/bin/cat"])
    worker.start()
    client = RawClient(worker.socket_path)
    client.send_control({"op": "hello", "version": 2})
    assert client.control() == {"op": "error", "message": "unsupported protocol version 2"}
    client.read_to_eof()
    assert client.eof


def test_first_frame_other_than_hello_drops_the_connection(worker_factory):
    worker = worker_factory(["/bin/cat"])
    worker.start()
    client = RawClient(worker.socket_path)
    client.send_control({"op": "attach"})
    assert client.frame() is None


def test_keystrokes_echo_round_trip(worker_factory):
    worker = worker_factory(["/bin/cat"])
    worker.start()
    client = worker.client()
    client.send_input(b"hello\n")
    client.wait_output(b"hello\r\nhello\r\n")
    assert bytes(client.output) == b"hello\r\nhello\r\n"
    assert client.first_offset == 0 and client.next_offset == 14


def test_status_counts_attached_clients_and_ring_bounds(worker_factory):
    worker = worker_factory(["/bin/cat"], scrollback_bytes=4096)
    worker.start()
    first = worker.client()
    second = worker.client(attach=False)
    first.send_input(b"x\n")
    first.wait_output(b"x\r\nx\r\n")
    second.send_control({"op": "status"})
    assert second.control() == {"op": "status", "session_id": worker.session_id,
                                "state": "running", "pid": worker.row()["pid"], "cols": 80,
                                "rows": 24, "client_count": 1, "exit_code": None,
                                "exit_signal": None, "reason": None, "start": 0, "end": 6}


# --- output stream ----------------------------------------------------------------------

def test_two_clients_get_identical_contiguous_output(worker_factory):
    worker = worker_factory(sh(QUIET + "read go; seq 1 30000"))
    worker.start()
    first, second = worker.client(), worker.client()
    first.wait_ready()
    first.send_input(b"\n")
    for client in (first, second):
        client.wait_op("state")
        client.read_to_eof()
    expected = READY + "".join(f"{n}\r\n" for n in range(1, 30001)).encode()
    assert bytes(first.output) == expected
    assert bytes(second.output) == expected
    assert first.first_offset == second.first_offset == 0
    assert first.next_offset == second.next_offset == len(expected)


def test_second_attach_gets_scrollback_then_live_with_no_gap_or_duplicate(worker_factory):
    worker = worker_factory(["/bin/cat"], scrollback_bytes=64)
    worker.start()
    first = worker.client()
    for n in range(10):
        first.send_input(b"line%d\n" % n)
        first.wait_output(b"line%d\r\nline%d\r\n" % (n, n))
    seen = len(first.output)
    second = worker.client(attach=False)
    snapshot = second.attach()
    assert snapshot == {"op": "snapshot", "start": seen - 64, "end": seen}
    second.pump(lambda: second.next_offset == seen)
    assert bytes(second.output) == bytes(first.output[-64:])
    first.send_input(b"after\n")
    for client in (first, second):
        client.wait_output(b"after\r\nafter\r\n")
    assert bytes(second.output) == bytes(first.output[seen - 64:])
    assert second.next_offset == first.next_offset == seen + 14


def test_attach_makes_the_agent_redraw_with_sigwinch(worker_factory):
    worker = worker_factory(["/bin/bash", "--norc", "--noprofile", "-c",
                             "trap 'echo winch' WINCH; " + QUIET +
                             "while :; do read -t 0.02 x; done"])
    worker.start()
    client = worker.client()
    client.wait_ready()
    time.sleep(0.3)   # the first attach's SIGWINCH may or may not have found the trap
    client.pump_for(0.2)
    before = client.output.count(b"winch\r\n")
    worker.client()
    client.pump(lambda: client.output.count(b"winch\r\n") == before + 1)


# --- control ops ------------------------------------------------------------------------

def test_resize_is_seen_by_stty_size(worker_factory):
    worker = worker_factory(sh(QUIET + "while read line; do stty size; done"))
    worker.start()
    client = worker.client()
    client.wait_ready()
    client.send_control({"op": "resize", "cols": 132, "rows": 43})
    client.send_input(b"\n")
    client.wait_output(b"43 132\r\n")
    assert client.since_ready() == b"43 132\r\n"
    client.send_control({"op": "status"})
    status = client.wait_op("status")
    assert (status["cols"], status["rows"]) == (132, 43)


def test_latest_resize_from_any_client_wins(worker_factory):
    worker = worker_factory(sh(QUIET + "while read line; do stty size; done"))
    worker.start()
    first, second = worker.client(), worker.client()
    first.wait_ready()
    first.send_control({"op": "resize", "cols": 100, "rows": 30})
    first.send_control({"op": "status"})
    assert first.wait_op("status")["cols"] == 100
    second.send_control({"op": "resize", "cols": 90, "rows": 20})
    second.send_control({"op": "status"})
    second.wait_op("status")
    first.send_input(b"\n")
    first.wait_output(b"90\r\n")
    assert first.since_ready() == b"20 90\r\n"


def test_signal_2_stops_sleep_in_the_foreground(worker_factory):
    worker = worker_factory(sh("trap 'echo got-int' INT; echo sleeping; sleep 100; echo rc=$?"))
    worker.start()
    client = worker.client()
    client.wait_output(b"sleeping\r\n")
    leader = psutil.Process(worker.row()["pid"])
    deadline = time.monotonic() + TIMEOUT
    while [c.name() for c in leader.children()] != ["sleep"] and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    client.send_control({"op": "signal", "signal": 2})
    client.wait_op("state")
    assert time.monotonic() - started < 2
    assert bytes(client.output) == b"sleeping\r\ngot-int\r\nrc=130\r\n"
    assert worker.wait() == 0
    row = worker.row()
    assert (row["state"], row["exit_code"], row["exit_signal"], row["reason"]) == ("terminated", 0, None, None)


def test_signal_2_stops_yes_during_an_output_flood(worker_factory):
    worker = worker_factory(sh("trap 'echo; echo got-int' INT; yes; echo rc=$?"))
    worker.start()
    client = worker.client()
    client.pump(lambda: len(client.output) > 2_000_000)
    started = time.monotonic()
    client.send_control({"op": "signal", "signal": 2})
    state = client.wait_op("state")
    assert time.monotonic() - started < 2
    assert state == {"op": "state", "state": "terminated", "exit_code": 0, "exit_signal": None,
                     "reason": None}
    assert bytes(client.output).endswith(b"\r\ngot-int\r\nrc=130\r\n")
    assert worker.wait() == 0


def test_ctrl_c_keystroke_acts_during_an_output_flood(worker_factory):
    worker = worker_factory(sh("trap 'echo; echo got-int' INT; yes; echo rc=$?"))
    worker.start()
    client = worker.client()
    client.pump(lambda: len(client.output) > 2_000_000)
    client.send_input(b"\x03")
    client.wait_op("state")
    assert bytes(client.output).endswith(b"\r\ngot-int\r\nrc=130\r\n")


def test_bad_control_messages_get_errors_and_the_connection_stays(worker_factory):
    worker = worker_factory(["/bin/cat"])
    worker.start()
    client = worker.client()
    bad = [
        ({"op": "resize", "cols": 0, "rows": 24}, "resize needs cols 1-1000 and rows 1-500"),
        ({"op": "resize", "cols": 80, "rows": 501}, "resize needs cols 1-1000 and rows 1-500"),
        ({"op": "resize", "cols": "80", "rows": 24}, "resize needs cols 1-1000 and rows 1-500"),
        ({"op": "signal", "signal": 7}, "signal must be one of [1, 2, 3, 9, 15, 18, 19, 20]"),
        ({"op": "signal", "signal": True}, "signal must be one of [1, 2, 3, 9, 15, 18, 19, 20]"),
        ({"op": "launch"}, "unknown op 'launch'"),
        ({"op": "hello", "version": 1}, "hello was already exchanged"),
        ({"op": "attach"}, "already attached"),
    ]
    for message, error in bad:
        client.send_control(message)
        assert client.control() == {"op": "error", "message": error}
    client.send_input(b"still\n")
    client.wait_output(b"still\r\nstill\r\n")


@pytest.mark.parametrize("garbage", [
    bytes([9, 0, 0, 0, 1, 0]),                                  # unknown frame type
    bytes([2]) + (4 * 1024 * 1024 + 1).to_bytes(4, "big"),      # over the 4 MiB cap
    bytes([1, 0, 0, 0, 3]) + b"{x}",                            # CONTROL that is not JSON
    bytes([1, 0, 0, 0, 2]) + b"[]",                             # JSON but not an object
    bytes([1, 0, 0, 0, 11]) + b'{"op": 1.5}',                   # no op string
], ids=["unknown-type", "oversize", "not-json", "not-object", "no-op"])
def test_framing_violation_drops_only_that_connection(worker_factory, garbage):
    worker = worker_factory(["/bin/cat"])
    worker.start()
    good = worker.client()
    bad = worker.client()
    bad.sock.sendall(garbage)
    bad.read_to_eof()
    assert bad.eof
    good.send_input(b"ok\n")
    good.wait_output(b"ok\r\nok\r\n")
    good.send_control({"op": "status"})
    assert good.wait_op("status")["client_count"] == 1


# --- flow control -----------------------------------------------------------------------

def test_slow_client_is_closed_with_4008_while_a_fast_one_gets_everything(worker_factory):
    # The fast client (this process) may be descheduled for a while on a busy machine:
    # the limit leaves it 8 MiB of slack; the slow one reads nothing and passes it.
    total = 12_000_000
    worker = flood_worker(worker_factory, total, client_backlog_bytes=8 * 1024 * 1024)
    slow = worker.client()
    fast = worker.client()
    fast.wait_ready()
    fast.send_input(b"\n")
    fast.pump(lambda: len(fast.output) - fast.ready_at >= total, timeout=30)
    state = fast.wait_op("state")
    assert state["exit_code"] == 0
    assert fast.since_ready() == b"a" * total
    slow.read_to_eof()
    assert slow.controls[-1] == {"op": "closing", "code": 4008, "reason": "client too slow"}
    assert len(READY) < len(slow.output) < len(READY) + total
    assert bytes(slow.output) == READY + b"a" * (len(slow.output) - len(READY))


def test_a_lone_client_slower_than_the_agent_throttles_it_and_misses_nothing(worker_factory):
    total = 8_000_000
    worker = flood_worker(worker_factory, total, client_backlog_bytes=1024 * 1024)
    client = worker.client()
    client.wait_ready()
    client.send_input(b"\n")
    started = time.monotonic()
    while not client.eof:   # 64 KiB per 10 ms at most: slower than the PTY
        client.read_once(64 * 1024)
        time.sleep(0.01)
    assert time.monotonic() - started > 1
    assert client.since_ready() == b"a" * total
    assert [c["op"] for c in client.controls] == ["hello", "snapshot", "state"]


def test_worker_memory_stays_flat_under_a_flood_with_a_stalled_client(worker_factory):
    worker = worker_factory(sh(QUIET + "read go; head -c 30000000 /dev/zero | tr '\\0' a; read x"),
                            client_backlog_bytes=8 * 1024 * 1024)
    worker.start()
    stalled = worker.client()
    fast = worker.client()
    fast.wait_ready()
    fast.send_input(b"\n")
    fast.pump(lambda: len(fast.output) - fast.ready_at >= 30_000_000, timeout=30)
    rss = psutil.Process(worker.process.pid).memory_info().rss
    assert rss < 40 * 1024 * 1024, rss
    stalled.close()


def test_a_stalled_client_is_found_out_fast_and_holds_the_agent_back_only_briefly(worker_factory):
    # 6 MB under a 4 MiB limit: the reader is paced, the stalled one falls behind, stops
    # counting after STALL_SECS and is closed with 4008 once past its limit.
    total = 6_000_000
    worker = flood_worker(worker_factory, total, after="; read x")
    stalled = worker.client()
    reader = worker.client()
    reader.wait_ready()
    reader.send_input(b"\n")
    gaps, last = [], time.monotonic()
    while len(reader.output) - reader.ready_at < total:
        reader.record(reader.frame())
        now = time.monotonic()
        gaps.append(now - last)
        last = now
    assert max(gaps) < 1.0, sorted(gaps)[-3:]   # the old rule: a 2 s freeze
    assert reader.since_ready() == b"a" * total
    stalled.read_to_eof()
    assert stalled.controls[-1] == {"op": "closing", "code": 4008, "reason": "client too slow"}


def test_a_session_ending_with_a_stalled_client_does_not_wait_for_it(worker_factory):
    # 3 MB under an 8 MiB limit: the stalled client is kept and still owes most of it when
    # the agent exits. The reader gets everything and the end; the worker leaves at once.
    total = 3_000_000
    worker = flood_worker(worker_factory, total, after="; exit 3", client_backlog_bytes=8 * 1024 * 1024)
    stalled = worker.client()
    reader = worker.client()
    reader.wait_ready()
    reader.send_input(b"\n")
    started = time.monotonic()
    reader.pump(lambda: any(c["op"] == "state" for c in reader.controls), timeout=30)
    assert reader.since_ready() == b"a" * total
    assert reader.controls[-1]["exit_code"] == 3
    assert worker.wait(timeout=15) == 0
    assert time.monotonic() - started < 2.5   # it waited DRAIN_SECS (5 s) for the stalled one
    stalled.close()


def test_sigterm_while_clients_drain_ends_the_wait(worker_factory):
    # A client that reads, slowly, still owes megabytes when the session ends: the worker
    # would wait for it (DRAIN_SECS), but supervisor stopping it (SIGTERM) means leave now.
    total = 12_000_000
    worker = flood_worker(worker_factory, total, after="; exit 0", client_backlog_bytes=32 * 1024 * 1024)
    slow = worker.client()
    slow.wait_ready()
    slow.send_input(b"\n")
    deadline = time.monotonic() + TIMEOUT
    while worker.row()["state"] != "terminated":   # ~3 MB/s: it keeps taking bytes
        assert time.monotonic() < deadline
        slow.read_once(32 * 1024)
        time.sleep(0.01)
    worker.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    while worker.process.poll() is None and time.monotonic() - started < 10:
        slow.read_once(32 * 1024)
        time.sleep(0.01)
    assert worker.wait() == 0
    assert time.monotonic() - started < 1.5
    assert len(slow.output) - len(READY) < total


# --- ending -----------------------------------------------------------------------------

def test_exit_code_is_recorded_and_sent_and_the_ring_dumped(worker_factory):
    worker = worker_factory(sh(QUIET + "read go; echo bye; exit 7"))
    worker.start()
    client = worker.client()
    client.wait_ready()
    client.send_input(b"\n")
    state = client.wait_op("state")
    assert state == {"op": "state", "state": "terminated", "exit_code": 7, "exit_signal": None,
                     "reason": None}
    client.read_to_eof()
    assert worker.wait() == 0
    row = worker.row()
    assert (row["state"], row["exit_code"], row["exit_signal"], row["reason"]) == ("terminated", 7, None, None)
    assert abs(clock.parse_iso(row["ended_at"]) - time.time()) < 5
    dump = os.path.join(worker.home.scrollback, worker.session_id)
    assert stat.S_IMODE(os.stat(dump).st_mode) == 0o600
    assert load_scrollback(dump) == (0, READY + b"bye\r\n")
    assert not os.path.exists(worker.socket_path)


def test_ring_dump_keeps_the_last_scrollback_bytes(worker_factory):
    worker = worker_factory(sh(QUIET + "read go; seq 1 2000"), scrollback_bytes=1000)
    worker.start()
    client = worker.client()
    client.wait_ready()
    client.send_input(b"\n")
    client.wait_op("state")
    assert worker.wait() == 0
    expected = READY + "".join(f"{n}\r\n" for n in range(1, 2001)).encode()
    with open(os.path.join(worker.home.scrollback, worker.session_id), "rb") as handle:
        blob = handle.read()
    assert blob[:8] == (len(expected) - 1000).to_bytes(8, "big")
    assert blob[8:] == expected[-1000:]


def test_terminate_kills_the_shell_and_its_background_jobs(worker_factory):
    worker = worker_factory(["/bin/bash", "--norc", "--noprofile", "-i"])
    worker.start()
    client = worker.client()
    client.send_input(b"sleep 300 & sleep 301 & (trap '' HUP TERM; sleep 302; :) & "
                      b"echo jobs-started\n")
    client.wait_output(b"jobs-started\r\n")
    leader = worker.row()["pid"]

    def sleeps():
        return [child for child in psutil.Process(leader).children(recursive=True)
                if child.name() == "sleep"]

    deadline = time.monotonic() + TIMEOUT
    while len(sleeps()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    tree = {leader} | {child.pid for child in psutil.Process(leader).children(recursive=True)}
    assert len(tree) == 5   # bash, the subshell, three sleeps
    client.send_control({"op": "terminate"})
    state = client.wait_op("state", timeout=15)
    assert client.wait_op("terminated") == {"op": "terminated"}
    assert [c["op"] for c in client.controls[-2:]] == ["state", "terminated"]
    assert state == {"op": "state", "state": "terminated", "exit_code": None, "exit_signal": 1,
                     "reason": "terminated"}
    assert worker.wait() == 0
    assert [pid for pid in tree if alive(pid)] == []
    row = worker.row()
    assert (row["state"], row["exit_code"], row["exit_signal"], row["reason"]) == ("terminated", None, 1, "terminated")


def test_sigterm_to_the_worker_ends_the_session_as_daemon_stopped(worker_factory):
    worker = worker_factory(sh("echo up; sleep 300"))
    worker.start()
    client = worker.client()
    client.wait_output(b"up\r\n")
    leader = worker.row()["pid"]
    worker.process.send_signal(signal.SIGTERM)
    state = client.wait_op("state")
    assert state == {"op": "state", "state": "terminated", "exit_code": None, "exit_signal": 1,
                     "reason": "daemon stopped"}
    assert worker.wait() == 0
    assert session_pids(leader) == set()
    assert worker.row()["reason"] == "daemon stopped"


def test_a_restarted_worker_after_a_crash_kills_the_old_session_and_records_it(worker_factory):
    worker = worker_factory(sh("trap '' HUP TERM; sleep 300 & echo started; wait"))
    worker.start()
    client = worker.client()
    client.wait_output(b"started\r\n")
    leader = worker.row()["pid"]
    survivors = session_pids(leader)
    assert len(survivors) == 2
    worker.process.kill()
    worker.wait()
    time.sleep(0.2)
    assert session_pids(leader) == survivors   # they ignore the hangup
    restarted = subprocess.run(worker.command(), cwd=REPO, capture_output=True, timeout=15)
    assert restarted.returncode == 0
    row = worker.row()
    assert (row["state"], row["reason"], row["exit_code"], row["exit_signal"]) == ("terminated", "worker crashed", None, None)
    assert row["ended_at"] is not None
    assert [pid for pid in survivors if alive(pid)] == []
    assert not os.path.exists(os.path.join(worker.home.scrollback, worker.session_id))


def test_a_worker_for_a_terminated_session_exits_0_and_changes_nothing(worker_factory):
    worker = worker_factory(["/bin/cat"])
    worker.conn.execute("UPDATE terminal_sessions SET state = 'terminated', reason = 'x' "
                        "WHERE id = ?", (worker.session_id,))
    before = worker.row()
    finished = subprocess.run(worker.command(), cwd=REPO, capture_output=True, timeout=15)
    assert finished.returncode == 0
    assert worker.row() == before
    assert not os.path.exists(worker.socket_path)


def test_an_orphaned_worker_ends_its_session(worker_factory):
    worker = worker_factory(sh("echo up; sleep 300"))
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time; p = subprocess.Popen(sys.argv[1:]); "
         "print(p.pid, flush=True); time.sleep(300)", *worker.command()],
        cwd=REPO, stdout=subprocess.PIPE)
    worker_pid = int(parent.stdout.readline())
    worker.wait_running()
    leader = worker.row()["pid"]
    client = worker.client()
    client.wait_output(b"up\r\n")
    parent.kill()
    parent.wait()
    state = client.wait_op("state")
    assert state["reason"] == "daemon stopped"
    deadline = time.monotonic() + TIMEOUT
    while alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(worker_pid)
    assert session_pids(leader) == set()
    row = worker.row()
    assert (row["state"], row["reason"], row["exit_signal"]) == ("terminated", "daemon stopped", 1)


@pytest.mark.parametrize("argv, fields, reason", [
    (["/nonexistent/agent"], {}, "spawn failed: "),
    (["python3", "-V"], {"env": {"PATH": "/nonexistent"}}, "spawn failed: python3 is not on the session's PATH"),
    (["/bin/true"], {"cwd": "/nonexistent/dir"}, "spawn failed: "),
    (["/bin/true"], {"cols": 0}, "bad launch spec: cols must be 1-1000 and rows 1-500"),
    ("/bin/true", {}, "bad launch spec: spec field 'argv' must be list"),
], ids=["no-binary", "not-on-child-path", "no-cwd", "bad-size", "argv-not-list"])
def test_a_session_that_cannot_start_is_recorded_terminated(worker_factory, argv, fields, reason):
    worker = worker_factory(argv, **fields)
    worker.start(wait_socket=False)
    assert worker.wait() == 0
    row = worker.row()
    assert row["state"] == "terminated"
    assert row["reason"].startswith(reason), row["reason"]
    assert row["pid"] is None
    assert row["ended_at"] is not None


# --- environment ------------------------------------------------------------------------

def test_the_child_env_is_exactly_the_spec_env_plus_secrets(worker_factory):
    # and a TERM when env has none: the terminal is xterm.js
    worker = worker_factory(["/usr/bin/env"], env={"PATH": CHILD_PATH, "FOO": "bar"},
                            secret_env={"API_TOKEN": "profile-test.key"})
    SecretStore(worker.home.secrets).write("profile-test.key", "s3cret-value")
    worker.start(wait_socket=False)
    assert worker.wait() == 0
    _start, data = load_scrollback(os.path.join(worker.home.scrollback, worker.session_id))
    assert sorted(data.decode().split("\r\n")) == sorted(
        ["", "PATH=" + CHILD_PATH, "FOO=bar", "API_TOKEN=s3cret-value", "TERM=xterm-256color"])
    assert "s3cret-value" not in worker.stderr()


def test_the_spec_env_term_is_the_child_term(worker_factory):
    worker = worker_factory(["/bin/sh", "-c", "echo \"TERM=$TERM\""], env={"PATH": CHILD_PATH, "TERM": "vt100"})
    worker.start(wait_socket=False)
    assert worker.wait() == 0
    assert load_scrollback(os.path.join(worker.home.scrollback, worker.session_id))[1] == b"TERM=vt100\r\n"


def test_the_child_runs_in_the_spec_cwd(worker_factory, tmp_path):
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    worker = worker_factory(["/bin/pwd"], cwd=str(workdir))
    worker.start(wait_socket=False)
    assert worker.wait() == 0
    _start, data = load_scrollback(os.path.join(worker.home.scrollback, worker.session_id))
    assert data == str(workdir).encode() + b"\r\n"


# --- the front's client -----------------------------------------------------------------

def test_terminal_worker_client_round_trip(worker_factory):
    worker = worker_factory(["/bin/cat"])
    worker.start()

    async def scenario():
        client = await TerminalWorkerClient.connect(worker.socket_path)
        assert client.hello["kind"] == "terminal" and client.hello["state"] == "running"
        await client.attach()
        assert await client.next_event() == {"op": "snapshot", "start": 0, "end": 0}
        await client.send_input(b"hi\n")
        received = b""
        while received != b"hi\r\nhi\r\n":
            event = await asyncio.wait_for(client.next_event(), TIMEOUT)
            assert isinstance(event, Output) and event.offset == len(received)
            received += event.data
        await client.resize(100, 40)
        status = await client.status()
        assert (status["cols"], status["rows"], status["client_count"], status["end"]) == (100, 40, 1, 8)
        ended = await client.terminate()
        assert ended == {"op": "state", "state": "terminated", "exit_code": None,
                         "exit_signal": 1, "reason": "terminated"}
        events = [event async for event in client]
        assert events == [ended]
        assert await client.next_event() is None
        await client.close()

    asyncio.run(scenario())
    assert worker.wait() == 0


def test_terminal_worker_client_paused_too_long_is_closed_with_4008(worker_factory):
    total = 20_000_000
    worker = flood_worker(worker_factory, total, after="; sleep 30", client_backlog_bytes=1024 * 1024)
    watcher = worker.client(attach=False)   # types and asks for status; gets no output

    def ring_end():
        watcher.send_control({"op": "status"})
        watcher.controls.clear()
        return watcher.wait_op("status")["end"]

    deadline = time.monotonic() + TIMEOUT
    while ring_end() < len(READY) and time.monotonic() < deadline:
        time.sleep(0.01)

    async def scenario():
        client = await TerminalWorkerClient.connect(worker.socket_path)
        await client.attach()
        client.pause_reading()
        watcher.send_input(b"\n")
        deadline = time.monotonic() + 30
        while ring_end() < len(READY) + total and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        client.resume_reading()
        events = [event async for event in client]
        assert events[0] == {"op": "snapshot", "start": 0, "end": len(READY)}
        assert events[-1] == {"op": "closing", "code": 4008, "reason": "client too slow"}
        received = b"".join(event.data for event in events if isinstance(event, Output))
        assert received == READY + b"a" * (len(received) - len(READY))
        assert len(received) < total
        assert client.closed
        await client.close()

    asyncio.run(scenario())
    assert ring_end() == len(READY) + total
    assert watcher.controls[-1]["client_count"] == 0
