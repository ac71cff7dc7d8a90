"""``clownd``: run one clown home in the foreground under supervisord.

It resolves and checks the config, takes the home's lock, clears what a crash left,
renders ``run/supervisord.conf`` and runs ``supervisord -n``. SIGINT or SIGTERM stops
supervisord, which stops every program it runs; clownd exits when supervisord has.
"""

import argparse
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import clown
from clown import __version__, config, store
from clown.daemon.sweep import sweep
from clown.home import Home, default_home
from clown.supervise import config as supervise_config


def _fail(message: str, status: int = 2) -> None:
    print(f"clownd: {message}", file=sys.stderr)
    sys.exit(status)


def _take_lock(home: Home) -> int:
    """Hold the home's lock for the life of clownd and supervisord (the fd is inherited)."""
    fd = os.open(home.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        _fail(f"another clownd is already running on {home.root} (pid {holder})", 1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.set_inheritable(fd, True)
    return fd


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host.strip("[]"), port))
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror}", 1)
    finally:
        probe.close()


def _remove_stale(home: Home) -> None:
    for path in (home.supervisord_pid, home.socket("supervisor.sock")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _announce_when_ready(host: str, port: int, child: subprocess.Popen) -> None:
    url_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    url = f"http://{url_host}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    print(f"clownd: clown {__version__} is up on {url}", file=sys.stderr, flush=True)
                    return
        except OSError:
            time.sleep(0.1)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="clownd", description="Run the clown daemon in the foreground.")
    parser.add_argument("--home", help="clown home (default: $CLOWN_HOME, else ~/.local/share/clown)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8765)")
    parser.add_argument("--version", action="version", version=f"clownd {__version__}")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    home = Home(args.home or default_home())
    home.ensure()
    try:
        resolved = config.load(home.root, flags={("server", "host"): args.host, ("server", "port"): args.port})
    except config.ConfigError as exc:
        _fail(str(exc))
    lock_fd = _take_lock(home)
    server = resolved["server"]
    _check_port_free(server["host"], server["port"])
    _remove_stale(home)
    store.open_store(home.db).close()
    found = sweep(home)
    if any(found.values()):
        print(f"clownd: cleared what an earlier run left: {found}", file=sys.stderr)
    supervise_config.clear_worker_confs(home)
    config.write_resolved(home.resolved_config, resolved)
    conf = supervise_config.write_supervisord_conf(home)

    env = dict(os.environ, CLOWN_HOME=home.root, PYTHONUNBUFFERED="1")
    # Programs run ``python -m clown...``: make a checkout importable as well as an install.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(clown.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    child = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-n", "-c", conf],
                             env=env, pass_fds=(lock_fd,))

    def forward(signum, _frame):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    _announce_when_ready(server["host"], server["port"], child)
    status = child.wait()
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
