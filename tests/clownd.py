"""Run a real ``clownd`` (supervisord, web, events, workers) for a test, and talk to it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Daemon:
    """One clownd on a free port in ``home``; ``start()`` waits for ``/health``."""

    def __init__(self, home: str, toml: str = "", env: dict | None = None, port: int | None = None):
        self.home = str(home)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("CLOWN_HOME", None)
        # The user the daemon runs for gets a fresh home: agents and shells started in the
        # tests read no rc files of the machine's real user.
        self.user_home = os.path.join(os.path.dirname(os.path.abspath(self.home)),
                                      os.path.basename(self.home) + "-user")
        os.makedirs(self.user_home, exist_ok=True)
        self.env["HOME"] = self.user_home
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
        self.process = None
        self.auth_headers = {}
        os.makedirs(self.home, exist_ok=True)
        if toml:
            with open(os.path.join(self.home, "clown.toml"), "w") as handle:
                handle.write(toml)

    def start(self, timeout: float = 30.0) -> "Daemon":
        self.log = open(os.path.join(self.home, "clownd.out"), "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clown.daemon.clownd", "--home", self.home, "--port", str(self.port)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"clownd exited with {self.process.returncode}: {self.output()}")
            try:
                if self.request("GET", "/health")[0] == 200 and self._programs_running():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"clownd not healthy after {timeout}s: {self.output()}")

    def _programs_running(self) -> bool:
        """web and events past supervisor's startsecs (RUNNING), so tests see a settled daemon."""
        status, reply = self.request("GET", "/api/daemon/status", headers=self.auth_headers)
        if status != 200:
            return status == 401  # token-protected daemons: /health is the readiness signal
        states = {p["name"]: p["state"] for p in reply["data"]["programs"]}
        return states.get("web") == "RUNNING" and states.get("events") == "RUNNING"

    def output(self) -> str:
        with open(os.path.join(self.home, "clownd.out"), "rb") as handle:
            return handle.read().decode(errors="replace")[-4000:]

    def request(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None,
                timeout: float = 30.0):
        """``(status, parsed JSON or text)`` of one request; never raises on 4xx/5xx."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if data is not None and "Content-Type" not in request.headers:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, payload.decode(errors="replace")

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body=body, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def supervisorctl(self, *args) -> str:
        conf = os.path.join(self.home, "run", "supervisord.conf")
        done = subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", conf, *args],
                              capture_output=True, text=True, timeout=30, env=self.env)
        return done.stdout

    def program_pid(self, name: str) -> int:
        _, reply = self.get("/api/daemon/status")
        for program in reply["data"]["programs"]:
            if program["name"] == name:
                return program["pid"]
        raise KeyError(name)

    def all_pids(self) -> set[int]:
        """clownd and every process below it."""
        try:
            root = psutil.Process(self.process.pid)
            return {root.pid} | {child.pid for child in root.children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM clownd and wait; returns its exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.log.close()

    def kill_everything(self) -> None:
        """Last resort for a failed test: kill the whole process group clownd started."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
