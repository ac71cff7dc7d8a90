"""Process-tree helpers: end a PTY's whole session, and die with the parent.

A PTY's child is a session leader (``setsid``); a shell's jobs, an agent's tools and their
children all share its session id or descend from a process that does. ``kill_session``
signals all of them. A process that calls ``setsid`` itself *and* is reparented away
from the session's tree (a daemon that double-forks) escapes: nothing links it to the
session any more.

Never signal a reused pid: the leader is identified by ``(pid, create_time)``; when a
live process holds that pid with another create_time, nothing is signalled. Every other
target must have been created no earlier than the leader, and psutil re-checks each
process's create_time right before signalling it.
"""

import asyncio
import ctypes
import logging
import os
import signal
import sys
import time

import psutil

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
# create_time is rounded by the kernel's clock ticks; allow for that when comparing.
_TIME_SLACK = 0.05


def session_processes(leader_pid: int, leader_create_time: float | None) -> list[psutil.Process]:
    """Every live process of the leader's session, and all their descendants.

    Returns an empty list when ``leader_pid`` is held by a process whose create_time is
    not ``leader_create_time`` (the pid was reused: the session is long gone). The leader
    itself is in the list while it lives. Zombies are left out (there is nothing to
    signal). ``leader_create_time`` None skips the reuse check (only for a leader you
    know is yours, e.g. your own unreaped child).
    """
    try:
        leader = psutil.Process(leader_pid)
        if leader_create_time is not None and abs(leader.create_time() - leader_create_time) > _TIME_SLACK:
            return []
    except psutil.NoSuchProcess:
        pass   # the leader is gone; its session members can outlive it
    earliest = (leader_create_time or 0.0) - _TIME_SLACK
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) != leader_pid:
                continue
            if process.create_time() < earliest:
                continue
            found[process.pid] = process
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    for process in list(found.values()):
        try:
            for child in process.children(recursive=True):
                if child.pid not in found and child.create_time() >= earliest:
                    found[child.pid] = child
        except psutil.Error:
            continue
    alive = []
    for process in found.values():
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            continue
    return alive


def _signal_all(processes: list[psutil.Process], signum: int) -> None:
    for process in processes:
        try:
            process.send_signal(signum)   # psutil checks the pid was not reused
        except psutil.Error:
            pass


def kill_session(leader_pid: int, leader_create_time: float | None, grace: float = 2.0) -> list[int]:
    """End every process of the leader's session and all their descendants. Blocking.

    Sends SIGHUP, SIGTERM and SIGCONT (so stopped jobs act on them), waits up to ``grace``
    seconds for them to exit, then SIGKILLs whatever is left, re-scanning the session
    so processes forked meanwhile are caught too. Returns the pids that were signalled
    (an empty list when there was nothing, or the leader's pid was reused). It reaps
    nobody: a caller whose child the leader is still has to ``waitpid`` it. Returns
    within about ``grace`` + 1 seconds.
    """
    targets = session_processes(leader_pid, leader_create_time)
    if not targets:
        return []
    signalled = {process.pid for process in targets}
    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGCONT):
        _signal_all(targets, signum)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        targets = session_processes(leader_pid, leader_create_time)
        if not targets:
            return sorted(signalled)
        signalled.update(process.pid for process in targets)
        time.sleep(0.02)
    for _ in range(10):
        targets = session_processes(leader_pid, leader_create_time)
        if not targets:
            break
        signalled.update(process.pid for process in targets)
        _signal_all(targets, signal.SIGKILL)
        psutil.wait_procs(targets, timeout=0.1)
    else:
        log.warning("session %d still has processes after SIGKILL", leader_pid)
    return sorted(signalled)


async def kill_session_async(leader_pid: int, leader_create_time: float | None,
                             grace: float = 2.0) -> list[int]:
    """``kill_session`` in the event loop's default executor, so the loop keeps serving."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, kill_session, leader_pid, leader_create_time, grace)


def set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent thread dies.

    Returns True when set, False on systems without ``prctl(PR_SET_PDEATHSIG)``. The
    setting is cleared in children after fork. The parent may already have died before
    this call: compare ``os.getppid()`` with the parent you expect afterwards.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signum), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return True
