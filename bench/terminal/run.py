"""Terminal benchmark: clown's /ws/terminal path vs terminado vs the bare PTY, in one run.

    python bench/terminal/run.py [--quick] [--only NAME[,NAME...]]

Starts a real clownd (tests/clownd.py ``Daemon``, temp home, ``[terminal] max_sessions``
raised) and a minimal terminado app (bench/terminal/terminado_server.py) on 127.0.0.1, and
measures the same commands through both, and through nothing (ptyprocess + os.read):

- throughput: ``head -c SIZE /dev/zero | tr '\\0' a | fold -w 100`` to one client
- echo: keystroke-to-echo round trip (``stty raw -echo; exec cat``), p50/p99
- fanout: 20 clients of one session; aggregate rate; every client got the same bytes
- stalled: a client that stops reading during ``yes``; RSS of the server processes
- ctrlc: Ctrl-C (signal op and raw \\x03) during a ``yes`` flood; time until output stops
- create: create-to-first-output-byte with 0 and 50 live sessions
- rss: RSS of one term worker and of web with 100 sessions and 100 clients

Clients are ``websockets`` asyncio clients (max_size=None, no compression), run in child
processes where several run at once, except for the echo round trip, where both servers
get the same blocking raw-socket client (``RawWebSocket``) so that the client's own event
loop is not measured. Nothing here is a test: it prints numbers.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
import websockets
from ptyprocess import PtyProcess

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

from tests.clownd import Daemon, free_port  # noqa: E402

MiB = 1024 * 1024
MARK = b"__BENCH_END__"
PROMPT = b"PR> "


def flood_cmd(size: int) -> str:
    return f"read -r go; head -c {size} /dev/zero | tr '\\0' a | fold -w 100; echo {MARK.decode()}"


ECHO_CMD = "stty raw -echo; printf READY; exec cat"
YES_CMD = "exec yes"
FIRST_CMD = "echo first-byte; exec sleep 100000"
IDLE_CMD = "exec sleep 100000"


def pct(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def rss_mib(pid) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / MiB
    except psutil.NoSuchProcess:
        return float("nan")


# --- the two servers, behind one client interface ----------------------------------------

class Clown:
    name = "clown"

    def __init__(self, daemon: Daemon):
        self.d = daemon
        self.ws_base = daemon.url.replace("http://", "ws://")

    def create(self, command: str | None = None, args=None) -> str:
        args = args if args is not None else ["-c", command]
        status, reply = self.d.post("/api/terminal/sessions", body={"profile_alias": "bench", "args": args})
        if status != 200:
            raise RuntimeError(f"create: {status} {reply}")
        return reply["data"]["session_id"]

    def delete(self, session_id: str) -> None:
        self.d.delete(f"/api/terminal/sessions/{session_id}")

    def url(self, session_id: str) -> str:
        return f"{self.ws_base}/ws/terminal/{session_id}"

    @staticmethod
    def output(message):
        """Output bytes of one message, or None for a control message."""
        return message if isinstance(message, bytes) else None

    @staticmethod
    def stdin(data: bytes):
        return data

    @staticmethod
    def interrupt_signal():
        return json.dumps({"type": "signal", "signal": 2})


class Terminado:
    name = "terminado"

    def __init__(self, port: int):
        self.ws_base = f"ws://127.0.0.1:{port}"

    def url(self, name: str, shared: str | None = None) -> str:
        return f"{self.ws_base}/named/{name}/{shared}" if shared else f"{self.ws_base}/unique/{name}"

    @staticmethod
    def output(message):
        kind, *rest = json.loads(message)
        return rest[0].encode() if kind == "stdout" else None

    @staticmethod
    def stdin(data: bytes):
        return json.dumps(["stdin", data.decode()])

    interrupt_signal = None


async def connect(url):
    return await websockets.connect(url, max_size=None, compression=None, open_timeout=30,
                                    ping_interval=None, max_queue=64)


class Finder:
    """Finds a needle in a stream given in chunks (needle may span chunks)."""

    def __init__(self, needle: bytes):
        self.needle, self.tail = needle, b""

    def feed(self, chunk: bytes) -> bool:
        keep = len(self.needle) - 1
        found = self.needle in chunk or self.needle in self.tail + chunk[:keep]
        self.tail = (self.tail + chunk)[-keep:] if len(chunk) < keep else chunk[-keep:]
        return found


async def read_until(ws, kind, needle: bytes, timeout=120.0, hasher=None):
    """Read output until ``needle``; returns the number of output bytes read."""
    finder, count = Finder(needle), 0
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        data = kind.output(message)
        if data is None:
            continue
        count += len(data)
        if hasher is not None:
            hasher.update(data)
        if finder.feed(data):
            return count


# --- throughput ---------------------------------------------------------------------------

def ceiling_throughput(size: int) -> tuple[float, int]:
    proc = PtyProcess.spawn(["bash", "-c", flood_cmd(size)], env=dict(os.environ, TERM="xterm-256color"),
                            dimensions=(24, 80))
    fd, finder, count = proc.fd, Finder(MARK), 0
    start = time.perf_counter()
    os.write(fd, b"\n")
    try:
        while True:
            chunk = os.read(fd, 65536)
            count += len(chunk)
            if finder.feed(chunk):
                break
    finally:
        elapsed = time.perf_counter() - start
        proc.terminate(force=True)
    return count / MiB / elapsed, count


async def ws_throughput(kind, url) -> tuple[float, int]:
    ws = await connect(url)
    try:
        await asyncio.sleep(0.3)   # the command is waiting on `read`
        start = time.perf_counter()
        await ws.send(kind.stdin(b"\n"))
        count = await read_until(ws, kind, MARK, timeout=600)
        return count / MiB / (time.perf_counter() - start), count
    finally:
        await ws.close()


def bench_throughput(clown, terminado, size, rounds, results):
    print(f"\n== throughput: {size // MiB} MiB through fold -w 100, one client", flush=True)
    best = {"ceiling": 0.0, "clown": 0.0, "terminado": 0.0}
    for round_ in range(rounds):   # interleaved; the best of each is kept (the machine is shared)
        rate, count = ceiling_throughput(size)
        print(f"round {round_ + 1} ceiling   {rate:7.1f} MiB/s  ({count} bytes)", flush=True)
        best["ceiling"] = max(best["ceiling"], rate)
        session = clown.create(flood_cmd(size))
        rate, count = asyncio.run(ws_throughput(clown, clown.url(session)))
        clown.delete(session)
        print(f"round {round_ + 1} clown     {rate:7.1f} MiB/s  ({count} bytes)", flush=True)
        best["clown"] = max(best["clown"], rate)
        rate, count = asyncio.run(ws_throughput(terminado, terminado.url(f"flood{size}")))
        print(f"round {round_ + 1} terminado {rate:7.1f} MiB/s  ({count} bytes)", flush=True)
        best["terminado"] = max(best["terminado"], rate)
    ceiling, c_rate, t_rate = best["ceiling"], best["clown"], best["terminado"]
    print(f"best: ceiling {ceiling:.1f}  clown {c_rate:.1f}  terminado {t_rate:.1f} MiB/s")
    print(f"clown/terminado {c_rate / t_rate:.2f}  clown/ceiling {c_rate / ceiling:.2f}  "
          f"terminado/ceiling {t_rate / ceiling:.2f}")
    results["throughput"] = dict(size_mib=size // MiB, ceiling=ceiling, clown=c_rate, terminado=t_rate)


# --- keystroke echo -----------------------------------------------------------------------

class RawWebSocket:
    """A blocking WebSocket client on a plain socket, for the echo round trip: the
    asyncio ``websockets`` client costs ~0.1–0.2 ms per round trip here (a task per
    ``wait_for``, the loop's wake-ups), which would be measured as server time."""

    def __init__(self, url: str):
        host_port, _, path = url.removeprefix("ws://").partition("/")
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buffer = bytearray()
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"handshake refused: {head[:200]!r}")
        self.buffer = bytearray(rest)

    def send(self, message) -> None:
        """A text (str) or binary (bytes) message of under 126 bytes, masked with zeros."""
        opcode, payload = (1, message.encode()) if isinstance(message, str) else (2, message)
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def recv(self):
        """The next data message: str for text, bytes for binary."""
        buffer = self.buffer
        while True:
            if len(buffer) >= 2:
                size, start = buffer[1] & 0x7F, 2
                if size == 126:
                    size, start = (int.from_bytes(buffer[2:4], "big") if len(buffer) >= 4 else -1), 4
                elif size == 127:
                    size, start = (int.from_bytes(buffer[2:10], "big") if len(buffer) >= 10 else -1), 10
                if size >= 0 and len(buffer) >= start + size:
                    opcode, payload = buffer[0] & 0x0F, bytes(buffer[start:start + size])
                    del buffer[:start + size]
                    if opcode in (1, 2):
                        return payload.decode() if opcode == 1 else payload
                    continue
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            buffer += data

    def close(self) -> None:
        self.sock.close()


class WsEcho:
    """Keystrokes through one server's WebSocket into ``cat``, one at a time."""

    def __init__(self, kind, url):
        self.kind, self.ws = kind, RawWebSocket(url)
        seen = b""
        while b"READY" not in seen:
            seen += kind.output(self.ws.recv()) or b""
        self.keys = 0

    def one(self) -> float:
        key = bytes([ord("a") + self.keys % 26])
        self.keys += 1
        start = time.perf_counter()
        self.ws.send(self.kind.stdin(key))
        while True:
            data = self.kind.output(self.ws.recv())
            if data:
                break
        elapsed = (time.perf_counter() - start) * 1000
        assert data == key, (data, key)
        return elapsed

    def close(self) -> None:
        self.ws.close()


class PtyEcho:
    """The ceiling: the same keystrokes written straight to a PTY running ``cat``."""

    def __init__(self):
        self.proc = PtyProcess.spawn(["bash", "-c", ECHO_CMD], env=dict(os.environ, TERM="xterm-256color"))
        got = b""
        while b"READY" not in got:
            got += os.read(self.proc.fd, 1024)

    def one(self) -> float:
        start = time.perf_counter()
        os.write(self.proc.fd, b"k")
        os.read(self.proc.fd, 1024)
        return (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self.proc.terminate(force=True)


ECHO_ROUNDS = 10
ECHO_WARMUP = 20


def bench_echo(clown, terminado, count, results):
    """The three paths take turns, ``count / ECHO_ROUNDS`` keystrokes each per round, so that a
    burst of load from elsewhere on the machine falls on all of them alike."""
    print(f"\n== keystroke-to-echo round trip, {count} keystrokes into `stty raw -echo; cat` (ms),"
          f" {ECHO_ROUNDS} interleaved rounds", flush=True)
    session = clown.create(ECHO_CMD)
    paths = {"ceiling": PtyEcho(), "clown": WsEcho(clown, clown.url(session)),
             "terminado": WsEcho(terminado, terminado.url("echo"))}
    times = {name: [] for name in paths}
    try:
        for path in paths.values():
            for _ in range(ECHO_WARMUP):
                path.one()
        per_round = max(1, count // ECHO_ROUNDS)
        for _ in range(ECHO_ROUNDS):
            for name, path in paths.items():
                times[name].extend(path.one() for _ in range(per_round))
    finally:
        for path in paths.values():
            path.close()
        clown.delete(session)
    row = {}
    for name, measured in times.items():
        row[name] = (pct(measured, 50), pct(measured, 99))
        print(f"{name:9s} p50 {row[name][0]:.3f}  p99 {row[name][1]:.3f}  max {max(measured):.3f}")
    print(f"ratio clown/terminado: p50 {row['clown'][0] / row['terminado'][0]:.2f}x,"
          f" p99 {row['clown'][1] / row['terminado'][1]:.2f}x")
    results["echo"] = row


# --- fan-out ------------------------------------------------------------------------------

def _fanout_child(kind_name, url, n_clients, go, queue, barrier):
    kind = Clown if kind_name == "clown" else Terminado

    async def one(ws, index):
        hasher = hashlib.sha256()
        try:
            if go and index == 0:
                await ws.send(kind.stdin(b"\n"))
            count = await read_until(ws, kind, MARK, timeout=600, hasher=hasher)
            return count, hasher.hexdigest(), time.time(), None
        except websockets.ConnectionClosed as closed:
            return -1, None, time.time(), f"closed {closed.rcvd.code if closed.rcvd else '?'}"
        finally:
            await ws.close()

    async def all_clients():
        sockets = [await connect(url) for _ in range(n_clients)]
        await asyncio.sleep(0.5)
        barrier.wait(timeout=120)   # every client of every process is connected
        return await asyncio.gather(*(one(ws, i) for i, ws in enumerate(sockets)))

    queue.put(asyncio.run(all_clients()))


def fanout(kind, url, clients, procs=4):
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    barrier = multiprocessing.Barrier(procs + 1)
    queue = multiprocessing.Queue()
    children = [multiprocessing.Process(target=_fanout_child, args=(kind.name, url, n, i == 0, queue, barrier))
                for i, n in enumerate(per)]
    for child in children:
        child.start()
    barrier.wait(timeout=120)
    start = time.time()
    outcomes = []
    for _ in children:
        outcomes.extend(queue.get(timeout=900))
    for child in children:
        child.join()
    end = max(o[2] for o in outcomes)
    return outcomes, end - start


def bench_fanout(clown, terminado, size, clients, results):
    print(f"\n== fan-out: {clients} clients on one session, {size // MiB} MiB each", flush=True)
    row = {}
    # A second clownd whose client_backlog_bytes (default 4 MiB) holds a whole run: shows the
    # relay's own rate when no client is dropped as too slow.
    big = Daemon(os.path.join(clown.d.home + "-big"), toml=f"[terminal]\nclient_backlog_bytes = {2 * size}\n",
                 env={"SHELL": "/bin/bash"})
    big.start()
    big.post("/api/profiles", body={"agent_id": "shell", "alias": "bench", "provider_id": "self"})
    clown_big = Clown(big)
    runs = []
    for label, target in (("clown", clown), (f"clown backlog {2 * size // MiB} MiB", clown_big),
                          ("terminado", terminado)):
        # ws connects happen in the children; the session waits on `read` meanwhile
        if target is terminado:
            runs.append((label, target, terminado.url(f"flood{size}", "shared"), None))
        else:
            session = target.create(flood_cmd(size))
            runs.append((label, target, target.url(session), session))
    for label, kind, url, session in runs:
        outcomes, elapsed = fanout(kind, url, clients)
        if session:
            kind.delete(session)
        counts = [o[0] for o in outcomes]
        hashes = {o[1] for o in outcomes if o[1]}
        dropped = [o[3] for o in outcomes if o[3]]
        total = sum(c for c in counts if c > 0)
        identical = len(hashes) == 1 and not dropped and len(set(counts)) == 1
        row[label] = dict(aggregate=total / MiB / elapsed, per_client=max(counts) / MiB / elapsed,
                              identical=identical, dropped=len(dropped))
        print(f"{label:22s} aggregate {total / MiB / elapsed:7.1f} MiB/s  per client "
              f"{max(counts) / MiB / elapsed:6.1f} MiB/s  all identical: {identical} "
              f"(distinct counts {sorted(set(counts))}, hashes {len(hashes)}, dropped {dropped})", flush=True)
    try:
        big.stop()
    except Exception:
        big.kill_everything()
    results["fanout"] = row


# --- a client that stops reading ----------------------------------------------------------

def stalled_client(url_path: str, port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"GET {url_path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return sock


def sample_rss(pids: dict, seconds: float, cap_mib: float = 3000) -> dict:
    series = {name: [] for name in pids}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, pid in pids.items():
            series[name].append(rss_mib(pid))
        if any(values[-1] > cap_mib for values in series.values()):
            break
        time.sleep(0.5)
    return {name: (v[0], max(v), v[-1]) for name, v in series.items()}


def bench_stalled(clown, terminado, terminado_pid, seconds, results):
    print(f"\n== a client that stops reading during `yes`: RSS (MiB) start/max/end over {seconds:.0f} s", flush=True)
    row = {}
    session = clown.create(YES_CMD)
    sock = stalled_client(f"/ws/terminal/{session}", clown.d.port)
    time.sleep(0.5)
    agent = clown.d.get(f"/api/terminal/sessions/{session}")[1]["data"]["pid"]
    pids = {"web": clown.d.program_pid("web"), "term worker": psutil.Process(agent).ppid(),
            "supervisord": psutil.Process(clown.d.program_pid("web")).ppid()}
    row["clown"] = sample_rss(pids, seconds)
    sock.close()
    clown.delete(session)
    for name, (a, b, c) in row["clown"].items():
        print(f"clown {name:12s} {a:7.1f} {b:7.1f} {c:7.1f}")
    sock = stalled_client("/unique/yes", int(terminado.ws_base.rsplit(":", 1)[1]))
    row["terminado"] = sample_rss({"server": terminado_pid}, seconds)
    sock.close()
    a, b, c = row["terminado"]["server"]
    print(f"terminado server   {a:7.1f} {b:7.1f} {c:7.1f}")
    results["stalled"] = row


# --- Ctrl-C during a flood ----------------------------------------------------------------

async def ws_ctrlc(kind, url, trials, how) -> list[float]:
    ws = await connect(url)
    try:
        await asyncio.sleep(0.3)
        await ws.send(kind.stdin(b"PS1='P''R> '\n"))
        await read_until(ws, kind, PROMPT, timeout=30)
        times = []
        for i in range(trials):
            await ws.send(kind.stdin(b"yes\n"))
            got = 0
            while got < 256 * 1024:
                data = kind.output(await asyncio.wait_for(ws.recv(), 10))
                got += len(data or b"")
            mode = how if how != "alternate" else ("signal" if i % 2 == 0 else "raw")
            start = time.perf_counter()
            await ws.send(kind.interrupt_signal() if mode == "signal" else kind.stdin(b"\x03"))
            try:
                await read_until(ws, kind, PROMPT, timeout=30)
            except asyncio.TimeoutError:   # the flood never stopped, as far as the client saw
                print(f"{kind.name} {how}: no prompt 30 s after Ctrl-C (trial {i + 1}); counted as inf")
                times.append(float("inf"))
                break
            times.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.05)
        return times
    finally:
        await ws.close()


def bench_ctrlc(clown, terminado, trials, results):
    print(f"\n== Ctrl-C during `yes`: ms until the output stops (the next prompt arrives), {trials} trials",
          flush=True)
    row = {}
    for how in ("signal", "raw"):
        session = clown.create(args=["--norc", "--noprofile"])
        times = asyncio.run(ws_ctrlc(clown, clown.url(session), trials, how))
        clown.delete(session)
        row[f"clown {how}"] = times
    row["terminado raw"] = asyncio.run(ws_ctrlc(terminado, terminado.url("bash"), trials, "raw"))
    for name, times in row.items():
        print(f"{name:14s} p50 {pct(times, 50):7.1f}  p99 {pct(times, 99):7.1f}  max {max(times):7.1f}")
    results["ctrlc"] = {k: (pct(v, 50), pct(v, 99)) for k, v in row.items()}


# --- create to first byte, and RSS at 100 sessions ----------------------------------------

async def first_byte(kind, url_or_create, delete=None) -> float:
    start = time.perf_counter()
    if isinstance(kind, Clown):
        session = await asyncio.to_thread(kind.create, FIRST_CMD)
        url = kind.url(session)
    else:
        session, url = None, url_or_create
    ws = await connect(url)
    try:
        while not kind.output(await asyncio.wait_for(ws.recv(), 30)):
            pass
        return (time.perf_counter() - start) * 1000
    finally:
        await ws.close()
        if session:
            await asyncio.to_thread(kind.delete, session)


def wait_running(clown, sessions, timeout=120):
    deadline = time.monotonic() + timeout
    pending = set(sessions)
    while pending and time.monotonic() < deadline:
        for session in list(pending):
            if clown.d.get(f"/api/terminal/sessions/{session}")[1]["data"]["state"] == "running":
                pending.discard(session)
        time.sleep(0.1)
    if pending:
        raise RuntimeError(f"{len(pending)} sessions not running")


def bench_create_and_rss(clown, terminado, trials, results):
    print(f"\n== create-to-first-output-byte (ms), {trials} trials; then RSS at 100 sessions", flush=True)
    row = {}
    row["clown, 0 live"] = [asyncio.run(first_byte(clown, None)) for _ in range(trials)]
    row["terminado, 0 live"] = [asyncio.run(first_byte(terminado, terminado.url("first")))
                                for _ in range(trials)]
    live = []
    for _ in range(50):
        live.append(clown.create(IDLE_CMD))
    wait_running(clown, live)
    time.sleep(1)
    row["clown, 50 live"] = [asyncio.run(first_byte(clown, None)) for _ in range(trials)]
    # Back to back, creates outrun the spare workers (one start each ~0.2-0.3 s); paced as a
    # person opens sessions, each finds a spare ready (docs/terminals.md "Spare workers").
    paced = []
    for _ in range(trials):
        time.sleep(1)
        paced.append(asyncio.run(first_byte(clown, None)))
    row["clown, 50 live, 1 s apart"] = paced
    for name, times in row.items():
        print(f"{name:26s} p50 {pct(times, 50):7.1f}  p99 {pct(times, 99):7.1f}  max {max(times):7.1f}")
    results["create"] = {k: (pct(v, 50), pct(v, 99)) for k, v in row.items()}

    web = clown.d.program_pid("web")
    supervisord = psutil.Process(web).ppid()
    rss = {"web, 50 sessions 0 clients": rss_mib(web)}
    for _ in range(50):
        live.append(clown.create(IDLE_CMD))
    wait_running(clown, live)

    async def hold_clients():
        sockets = [await connect(clown.url(s)) for s in live]
        await asyncio.sleep(2)
        workers = []
        for s in live:
            agent = (await asyncio.to_thread(clown.d.get, f"/api/terminal/sessions/{s}"))[1]["data"]["pid"]
            workers.append(rss_mib(psutil.Process(agent).ppid()))
        measured = {"web, 100 sessions 100 clients": rss_mib(web),
                    "term worker median": statistics.median(workers), "term worker max": max(workers),
                    "supervisord, 100 sessions": rss_mib(supervisord)}
        for ws in sockets:
            await ws.close()
        return measured

    rss.update(asyncio.run(hold_clients()))
    for name, value in rss.items():
        print(f"RSS {name:32s} {value:6.1f} MiB")
    results["rss"] = rss
    for session in live:
        clown.delete(session)


# --- main ---------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and few trials")
    parser.add_argument("--only", default="throughput,echo,fanout,stalled,ctrlc,create")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    only = set(args.only.split(","))
    size = (32 if args.quick else 256) * MiB
    fan_size = (8 if args.quick else 32) * MiB
    keystrokes = 100 if args.quick else 2000
    trials = 6 if args.quick else 20
    stall_secs = 6 if args.quick else 20
    create_trials = 5 if args.quick else 15

    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"websockets {websockets.__version__}")
    tmp = tempfile.mkdtemp(prefix="clown-bench-term-")
    user_home = os.path.join(tmp, "user")
    os.makedirs(user_home)
    commands = {f"flood{s}": ["bash", "-c", flood_cmd(s)] for s in {size, fan_size}}
    commands.update(echo=["bash", "-c", ECHO_CMD], yes=["bash", "-c", YES_CMD],
                    bash=["bash", "--norc", "--noprofile"], first=["bash", "-c", FIRST_CMD])
    port = free_port()
    terminado_proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "terminado_server.py"), str(port), json.dumps(commands)],
        stdout=subprocess.PIPE, env=dict(os.environ, HOME=user_home, SHELL="/bin/bash"))
    assert terminado_proc.stdout.readline().strip() == b"READY"
    daemon = Daemon(os.path.join(tmp, "home"), toml="[terminal]\nmax_sessions = 256\n",
                    env={"SHELL": "/bin/bash"})
    results = {}
    try:
        daemon.start()
        status, reply = daemon.post("/api/profiles", body={"agent_id": "shell", "alias": "bench",
                                                           "provider_id": "self"})
        assert status == 200, reply
        clown, terminado = Clown(daemon), Terminado(port)
        if "throughput" in only:
            bench_throughput(clown, terminado, size, 1 if args.quick else 2, results)
        if "echo" in only:
            bench_echo(clown, terminado, keystrokes, results)
        if "fanout" in only:
            bench_fanout(clown, terminado, fan_size, 20, results)
        if "create" in only:
            bench_create_and_rss(clown, terminado, create_trials, results)
        if "stalled" in only:
            bench_stalled(clown, terminado, terminado_proc.pid, stall_secs, results)
        if "ctrlc" in only:   # last: a peer's flood that Ctrl-C did not stop loads what follows
            bench_ctrlc(clown, terminado, trials, results)
    finally:
        terminado_proc.kill()
        terminado_proc.wait()
        try:
            daemon.stop()
        except Exception:
            daemon.kill_everything()
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(results, handle, indent=1, default=str)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
