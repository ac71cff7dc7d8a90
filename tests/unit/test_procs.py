"""Process-tree helpers: a session and its descendants end; a reused pid is never signalled."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from clown import procs


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def session():
    """A new session: sh (the leader) with a background job, a job in its own process
    group that ignores HUP and TERM, and a grandchild; yields (leader, all pids)."""
    leader = subprocess.Popen(
        ["/bin/sh", "-c",
         "sleep 300 & "
         "(trap '' HUP TERM; sleep 301; :) & "
         "setsid -f sh -c 'sleep 302' ; "   # leaves the session: must survive
         "sh -c 'sleep 303; :' & wait"],
        start_new_session=True)
    _wait_for(lambda: sum(1 for child in psutil.Process(leader.pid).children(recursive=True)
                          if child.name() == "sleep") == 3)
    members = {leader.pid} | {child.pid for child in psutil.Process(leader.pid).children(recursive=True)}
    escaped = [p for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] == ["sleep", "302"]]
    yield leader, members, escaped
    for process in escaped:
        process.kill()
    for pid in members:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    leader.wait()


def test_kill_session_ends_the_leader_its_jobs_and_their_children(session):
    leader, members, _escaped = session
    started = psutil.Process(leader.pid).create_time()
    signalled = procs.kill_session(leader.pid, started, grace=0.5)
    assert set(signalled) >= members
    leader.wait(timeout=5)
    assert [pid for pid in members if _alive(pid)] == []


def test_kill_session_escalates_to_sigkill_after_the_grace(session):
    leader, members, _escaped = session
    stubborn = [p for p in psutil.Process(leader.pid).children(recursive=True)
                if p.cmdline() == ["sleep", "301"]]
    assert len(stubborn) == 1
    started = time.monotonic()
    procs.kill_session(leader.pid, psutil.Process(leader.pid).create_time(), grace=0.5)
    assert 0.5 <= time.monotonic() - started < 2.5
    assert not _alive(stubborn[0].pid)


def test_a_process_that_left_the_session_with_setsid_escapes(session):
    leader, _members, escaped = session
    assert len(escaped) == 1
    procs.kill_session(leader.pid, psutil.Process(leader.pid).create_time(), grace=0.5)
    assert _alive(escaped[0].pid)


def test_kill_session_signals_nothing_when_the_pid_was_reused(session):
    leader, members, _escaped = session
    wrong = psutil.Process(leader.pid).create_time() - 100
    assert procs.kill_session(leader.pid, wrong, grace=0.1) == []
    assert all(_alive(pid) for pid in members)


def test_kill_session_of_a_gone_session_returns_nothing():
    child = subprocess.Popen(["/bin/true"], start_new_session=True)
    started = psutil.Process(child.pid).create_time()
    child.wait()
    assert procs.kill_session(child.pid, started, grace=0.1) == []


def test_session_members_are_found_after_the_leader_died():
    leader = subprocess.Popen(["/bin/sh", "-c", "sleep 300 & echo $!"],
                              start_new_session=True, stdout=subprocess.PIPE)
    orphan = int(leader.stdout.readline())
    started = psutil.Process(leader.pid).create_time()
    leader.wait()
    try:
        assert [p.pid for p in procs.session_processes(leader.pid, started)] == [orphan]
        assert procs.kill_session(leader.pid, started, grace=0.5) == [orphan]
        _wait_for(lambda: not _alive(orphan))
    finally:
        if _alive(orphan):
            os.kill(orphan, signal.SIGKILL)


def test_parent_death_signal_reaches_the_child_when_its_parent_dies(tmp_path):
    marker = tmp_path / "got-term"
    child_code = (
        "import signal, sys, time, pathlib; sys.path.insert(0, sys.argv[2]);"
        "from clown import procs;"
        "signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path(sys.argv[1]).write_text('yes'), sys.exit(0)));"
        "assert procs.set_parent_death_signal(signal.SIGTERM);"
        "print('ready', flush=True); time.sleep(30)")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; c = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE);"
         "print(c.pid, flush=True); c.stdout.readline(); print('ok', flush=True); "
         "import time; time.sleep(30)",
         sys.executable, "-c", child_code, str(marker), repo],
        stdout=subprocess.PIPE)
    child_pid = int(parent.stdout.readline())
    assert parent.stdout.readline() == b"ok\n"
    parent.kill()
    parent.wait()
    _wait_for(lambda: not _alive(child_pid))
    assert marker.read_text() == "yes"
