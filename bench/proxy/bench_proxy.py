"""Proxy benchmark: what the clown proxy worker adds, against going direct and against nginx.

    python bench/proxy/bench_proxy.py [--requests 500] [--concurrency 8]

Three paths to the same fake upstream (tests/fakes/upstream.py, in its own process):
direct, through a clown proxy worker (the real ``clown.workers.proxy``, usage metering and
SQLite commits included), and through Debian's nginx as a plain reverse proxy
(``proxy_buffering off`` so it streams). Measures sequential latency (p50/p99) of a
non-streamed Messages call, throughput with N keep-alive clients, and the delay of the
first streamed byte of an SSE response. Prints each number and the ratios clown/direct
and clown/nginx.
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


def latency(port: int, count: int, stream: bool = False) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(20):
        one_request(connection, stream)
    firsts, totals = [], []
    for _ in range(count):
        first, total = one_request(connection, stream)
        firsts.append(first)
        totals.append(total)
    connection.close()
    totals.sort()
    firsts.sort()
    return {"p50_ms": statistics.median(totals) * 1000, "p99_ms": totals[int(len(totals) * 0.99) - 1] * 1000,
            "first_byte_p50_ms": statistics.median(firsts) * 1000}


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
        results = {}
        for name, port in targets.items():
            lat = latency(port, args.requests)
            sse = latency(port, max(50, args.requests // 5), stream=True)
            rps = throughput(port, args.requests, args.concurrency)
            results[name] = {"p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"], "req_per_s": rps,
                             "sse_first_byte_ms": sse["first_byte_p50_ms"]}
            print(f"{name:7s} p50 {lat['p50_ms']:7.2f} ms  p99 {lat['p99_ms']:7.2f} ms  "
                  f"{rps:8.1f} req/s  first SSE byte p50 {sse['first_byte_p50_ms']:6.2f} ms", flush=True)
        direct, clown_result = results["direct"], results["clown"]
        print(f"added latency clown vs direct: p50 +{clown_result['p50_ms'] - direct['p50_ms']:.2f} ms, "
              f"p99 +{clown_result['p99_ms'] - direct['p99_ms']:.2f} ms")
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
