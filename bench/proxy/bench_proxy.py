"""Proxy benchmark: what the clown proxy worker adds, against going direct and against nginx.

    python bench/proxy/bench_proxy.py [--requests 500] [--concurrency 8]

Three paths to the same fake upstream (tests/fakes/upstream.py, in its own process):
direct, through a clown proxy worker (the real ``clown.workers.proxy``, usage metering and
SQLite commits included), and through Debian's nginx as a plain reverse proxy
(``proxy_buffering off`` so it streams). Measures sequential latency (p50/p99) of a
non-streamed Messages call, throughput with N keep-alive clients, and the delay of the
first streamed byte of an SSE response. The latency runs take turns between the paths in
rounds (a burst of load from elsewhere on the machine falls on all paths alike). Prints
each number, what clown and nginx add over direct, and the ratios clown/direct and
clown/nginx. ``BENCH_STDERR=1`` shows the clown worker's log.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from clown import store  # noqa: E402
from clown.home import Home  # noqa: E402
from clown.secrets import SecretStore  # noqa: E402

NGINX = "/usr/sbin/nginx"
PLACEHOLDER = "bench-placeholder"
BODY = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64,
                   "messages": [{"role": "user", "content": "hello " * 200}]}).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def start_upstream(port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "tests.fakes.upstream", "--port", str(port)], cwd=REPO,
                               stdout=subprocess.DEVNULL)
    wait_port(port)
    return process


def start_clown(workdir: str, upstream_port: int) -> tuple[subprocess.Popen, int]:
    home = Home(os.path.join(workdir, "clown-home"))
    home.ensure()
    store.open_store(home.db).close()
    secrets = SecretStore(home.secrets)
    secrets.write("profile-bench.key", "sk-bench-real")
    secrets.write("profile-bench.placeholder", PLACEHOLDER)
    port = free_port()
    spec = {"profile": "bench", "port": port, "upstream": f"http://127.0.0.1:{upstream_port}",
            "provider_type": "anthropic", "auth_header": "x-api-key", "key_secret": "profile-bench.key",
            "placeholder_secret": "profile-bench.placeholder", "upstream_timeout_secs": 60,
            "max_body_bytes": 32 << 20, "agent": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5"}
    with open(home.spec("proxy-bench"), "w") as handle:
        json.dump(spec, handle)
    process = subprocess.Popen([sys.executable, "-m", "clown.workers.proxy", "--home", home.root, "--profile", "bench"],
                               cwd=REPO, stderr=None if os.environ.get("BENCH_STDERR") else subprocess.DEVNULL)
    wait_port(port)
    return process, port


def start_nginx(workdir: str, upstream_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    prefix = os.path.join(workdir, "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as handle:
        handle.write(f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  upstream fake {{ server 127.0.0.1:{upstream_port}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 32m;
    location / {{
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering on;
    }}
  }}
}}
""")
    process = subprocess.Popen([NGINX, "-p", prefix, "-c", conf, "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    wait_port(port)
    return process, port


def one_request(connection: http.client.HTTPConnection, stream: bool = False) -> tuple[float, float]:
    """(seconds to the first body byte, seconds to the end) of one Messages call."""
    body = BODY if not stream else json.dumps(dict(json.loads(BODY), stream=True)).encode()
    began = time.perf_counter()
    connection.request("POST", "/v1/messages", body=body, headers={
        "Content-Type": "application/json", "x-api-key": PLACEHOLDER, "anthropic-version": "2023-06-01"})
    response = connection.getresponse()
    first = response.read1(65536)
    first_at = time.perf_counter() - began
    response.read()
    if response.status != 200 or not first:
        raise RuntimeError(f"status {response.status}")
    return first_at, time.perf_counter() - began


ROUNDS = 10


def latency(ports: dict, count: int, stream: bool = False) -> dict:
    """Sequential calls on one keep-alive connection per path, the paths taking turns in rounds of
    count/ROUNDS calls (so load from other processes on the machine falls on all of them alike)."""
    connections = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=30) for name, port in ports.items()}
    for connection in connections.values():
        for _ in range(20):
            one_request(connection, stream)
    firsts = {name: [] for name in ports}
    totals = {name: [] for name in ports}
    names = list(ports)
    for round_index in range(ROUNDS):
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for name in order:
            for _ in range(max(1, count // ROUNDS)):
                first, total = one_request(connections[name], stream)
                firsts[name].append(first)
                totals[name].append(total)
    results = {}
    for name, connection in connections.items():
        connection.close()
        ordered, first_ordered = sorted(totals[name]), sorted(firsts[name])
        results[name] = {"p50_ms": statistics.median(ordered) * 1000,
                         "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
                         "first_byte_p50_ms": statistics.median(first_ordered) * 1000}
    return results


def throughput(port: int, count: int, concurrency: int) -> float:
    done = []

    def client(n):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(n):
            one_request(connection)
        connection.close()
        done.append(n)

    threads = [threading.Thread(target=client, args=(count // concurrency,)) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="clown-bench-proxy-")
    upstream_port = free_port()
    processes = [start_upstream(upstream_port)]
    try:
        clown, clown_port = start_clown(workdir, upstream_port)
        processes.append(clown)
        targets = {"direct": upstream_port, "clown": clown_port}
        if os.path.exists(NGINX):
            nginx, nginx_port = start_nginx(workdir, upstream_port)
            processes.append(nginx)
            targets["nginx"] = nginx_port
        lat = latency(targets, args.requests)
        sse = latency(targets, max(50, args.requests // 5), stream=True)
        results = {}
        for name, port in targets.items():
            rps = throughput(port, args.requests, args.concurrency)
            results[name] = {"p50_ms": lat[name]["p50_ms"], "p99_ms": lat[name]["p99_ms"], "req_per_s": rps,
                             "sse_first_byte_ms": sse[name]["first_byte_p50_ms"]}
            print(f"{name:7s} p50 {lat[name]['p50_ms']:7.2f} ms  p99 {lat[name]['p99_ms']:7.2f} ms  "
                  f"{rps:8.1f} req/s  first SSE byte p50 {sse[name]['first_byte_p50_ms']:6.2f} ms", flush=True)
        direct, clown_result = results["direct"], results["clown"]
        print(f"added latency clown vs direct: p50 {clown_result['p50_ms'] - direct['p50_ms']:+.2f} ms, "
              f"p99 {clown_result['p99_ms'] - direct['p99_ms']:+.2f} ms, "
              f"first SSE byte {clown_result['sse_first_byte_ms'] - direct['sse_first_byte_ms']:+.2f} ms")
        if "nginx" in results:
            nginx = results["nginx"]
            print(f"added latency nginx vs direct: p50 {nginx['p50_ms'] - direct['p50_ms']:+.2f} ms, "
                  f"p99 {nginx['p99_ms'] - direct['p99_ms']:+.2f} ms, "
                  f"first SSE byte {nginx['sse_first_byte_ms'] - direct['sse_first_byte_ms']:+.2f} ms")
        for peer in ("direct", "nginx"):
            if peer in results:
                other = results[peer]
                print(f"ratio clown/{peer}: p50 {clown_result['p50_ms'] / other['p50_ms']:.2f}x, "
                      f"p99 {clown_result['p99_ms'] / other['p99_ms']:.2f}x, "
                      f"req/s {clown_result['req_per_s'] / other['req_per_s']:.2f}x, "
                      f"first SSE byte {clown_result['sse_first_byte_ms'] / other['sse_first_byte_ms']:.2f}x")
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
