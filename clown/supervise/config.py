"""Rendering supervisord's config and the per-worker program files of ``run/conf.d``."""

import os
import shlex
import string
import sys
from importlib import resources

from clown.home import Home

TEMPLATE_NAME = "supervisord.conf.in"


def _template_text() -> str:
    """The template shipped in the package (copied there at build), else the checkout's ``etc/``."""
    packaged = resources.files(__package__).joinpath(TEMPLATE_NAME)
    if packaged.is_file():
        return packaged.read_text()
    checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "etc", TEMPLATE_NAME)
    with open(checkout) as handle:
        return handle.read()


def _quote(value: str) -> str:
    """Quote for supervisor's command line (shlex-split) and escape its ``%`` expansion."""
    return shlex.quote(value).replace("%", "%%")


def render(home: Home, python: str | None = None) -> str:
    """The supervisord config of ``home`` as text."""
    python = python or sys.executable
    values = {
        "sock_dir": home.sock_dir.replace("%", "%%"),
        "logs": home.logs.replace("%", "%%"),
        "run": home.run.replace("%", "%%"),
        "python": _quote(python),
        "home_quoted": _quote(home.root),
    }
    return string.Template(_template_text()).substitute(values)


def write_supervisord_conf(home: Home) -> str:
    _write_private(home.supervisord_conf, render(home))
    return home.supervisord_conf


def _write_private(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def worker_conf(home: Home, name: str, module: str, args: list[str], autorestart: str,
                startsecs: int = 0, stopwaitsecs: int = 10, log_bytes: str = "1MB") -> str:
    """The ``[program:<name>]`` section that runs ``python -m <module> --home <home> <args>``."""
    argv = [sys.executable, "-m", module, "--home", home.root, *args]
    command = " ".join(_quote(part) for part in argv)
    log = os.path.join(home.logs, f"{name}.log").replace("%", "%%")
    return (
        f"[program:{name}]\n"
        f"command={command}\n"
        "autostart=true\n"
        f"autorestart={autorestart}\n"
        "exitcodes=0\n"
        f"startsecs={startsecs}\n"
        "startretries=3\n"
        "stopsignal=TERM\n"
        f"stopwaitsecs={stopwaitsecs}\n"
        "priority=500\n"
        "redirect_stderr=true\n"
        f"stdout_logfile={log}\n"
        f"stdout_logfile_maxbytes={log_bytes}\n"
        "stdout_logfile_backups=1\n"
    )


def conf_path(home: Home, name: str) -> str:
    return os.path.join(home.conf_d, name + ".conf")


def write_worker_conf(home: Home, name: str, text: str) -> None:
    _write_private(conf_path(home, name), text)


def remove_worker_conf(home: Home, name: str) -> None:
    try:
        os.unlink(conf_path(home, name))
    except FileNotFoundError:
        pass


def clear_worker_confs(home: Home) -> None:
    """Drop every worker program file (clownd does this at start: workers start on demand)."""
    for entry in os.listdir(home.conf_d):
        if entry.endswith(".conf"):
            os.unlink(os.path.join(home.conf_d, entry))
