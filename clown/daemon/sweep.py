"""What a crash can leave behind, cleared before a new ``clownd`` starts its programs.

If supervisord itself was killed -9, its workers notice and exit (parent-death signal,
parent polling); this sweep is the second line: it kills any clown program of this home
that is still running, and any PTY session the store still lists as live, then records
those sessions as terminated.
"""

import logging
import os

import psutil

from clown import clock, store
from clown.home import Home

log = logging.getLogger(__name__)

_OUR_MODULES = ("clown.web.main", "clown.supervise.events", "clown.workers.")


def _is_our_program(proc: psutil.Process, home_root: str) -> bool:
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    if "--home" not in cmdline or "-m" not in cmdline:
        return False
    module = cmdline[cmdline.index("-m") + 1] if cmdline.index("-m") + 1 < len(cmdline) else ""
    home_arg = cmdline[cmdline.index("--home") + 1] if cmdline.index("--home") + 1 < len(cmdline) else ""
    return module.startswith(_OUR_MODULES) and os.path.realpath(home_arg) == home_root


def kill_tree(procs: list[psutil.Process], timeout: float = 3.0) -> None:
    """SIGTERM the processes and their descendants, SIGKILL what is left after ``timeout``."""
    everyone = {}
    for proc in procs:
        try:
            everyone[proc.pid] = proc
            for child in proc.children(recursive=True):
                everyone[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    for proc in everyone.values():
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(everyone.values()), timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)


def _session_processes(leader_pid: int, leader_started: float | None) -> list[psutil.Process]:
    """Every process in the PTY session led by ``leader_pid`` (if the leader is who we think)."""
    try:
        leader = psutil.Process(leader_pid)
        if leader_started is not None and abs(leader.create_time() - leader_started) > 0.01:
            return []
    except psutil.NoSuchProcess:
        leader = None
    found = [leader] if leader else []
    for proc in psutil.process_iter():
        try:
            if proc.pid != leader_pid and os.getsid(proc.pid) == leader_pid:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return found


def sweep(home: Home) -> dict:
    """Kill leftovers of an earlier run of this home; return what was found, for the log."""
    leftovers = [proc for proc in psutil.process_iter() if _is_our_program(proc, home.root)]
    conn = store.open_store(home.db)
    live = conn.execute(
        "SELECT id, pid, pid_started FROM terminal_sessions WHERE state != 'terminated'").fetchall()
    session_procs = []
    for row in live:
        if row["pid"]:
            session_procs.extend(_session_processes(row["pid"], row["pid_started"]))
    if leftovers or session_procs:
        kill_tree(leftovers + session_procs)
    now = clock.utc_iso()
    with store.transaction(conn):
        conn.execute(
            "UPDATE terminal_sessions SET state = 'terminated', ended_at = ?, "
            "reason = COALESCE(reason, 'daemon stopped') WHERE state != 'terminated'", (now,))
        conn.execute("UPDATE proxy_runs SET stopped_at = ?, reason = COALESCE(reason, 'daemon stopped')"
                     " WHERE stopped_at IS NULL", (now,))
    conn.close()
    return {"programs": len(leftovers), "session_processes": len(session_procs), "sessions": len(live)}
