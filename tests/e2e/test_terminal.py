"""Terminal sessions through the real stack: clownd, supervisord, a term worker, a PTY, a WebSocket."""

import concurrent.futures
import configparser
import json
import os
import signal
import sqlite3
import time

import psutil
import pytest

from clown.home import Home
from tests.clownd import Daemon, wait_for
from tests.e2e.terminal_client import TerminalClient

PROMPT_ENV = "PS1='$ '"


def make_profile(daemon, alias="term"):
    status, reply = daemon.post("/api/profiles", body={"agent_id": "shell", "alias": alias, "provider_id": "self"})
    assert status == 200, reply
    return alias


def create_session(daemon, alias, **fields):
    status, reply = daemon.post("/api/terminal/sessions", body={"profile_alias": alias, **fields})
    assert status == 200, reply
    assert reply["data"]["ws_url"] == f"/ws/terminal/{reply['data']['session_id']}"
    return reply["data"]["session_id"]


def session(daemon, session_id):
    status, reply = daemon.get(f"/api/terminal/sessions/{session_id}")
    assert status == 200, reply
    return reply["data"]


def wait_state(daemon, session_id, state, timeout=15):
    return wait_for(lambda: (s := session(daemon, session_id))["state"] == state and s, timeout=timeout,
                    message=f"session {session_id} {state}")


def open_shell(daemon, session_id):
    client = TerminalClient(daemon, session_id)
    client.wait_prompt()
    return client


@pytest.fixture
def shell(daemon):
    make_profile(daemon)
    return daemon


def test_create_get_and_list(shell):
    session_id = create_session(shell, "term", cols=100, rows=30)
    data = wait_state(shell, session_id, "running")
    assert data["profile_alias"] == "term" and data["cols"] == 100 and data["rows"] == 30
    assert psutil.pid_exists(data["pid"])
    assert data["created_at"].endswith("Z") and data["client_count"] == 0
    status, reply = shell.get("/api/terminal/sessions")
    assert status == 200 and [s["id"] for s in reply["data"]] == [session_id]
    assert set(reply["data"][0]) >= {"id", "profile_alias", "state", "created_at", "pid", "cols", "rows",
                                      "client_count"}


def test_echo_round_trip(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("echo hi-$((40+2))\n")
    client.read_until(b"hi-42")
    assert session(shell, session_id)["client_count"] == 1


def test_scrollback_on_reconnect_has_no_gap_and_no_duplicate(shell):
    session_id = create_session(shell, "term")
    first = open_shell(shell, session_id)
    first.type("for i in 1 2 3; do echo line-$i; done; echo done-marker\n")
    first.read_until(b"done-marker\r\n")
    time.sleep(0.3)
    while first.pump(0.2):
        pass
    first.close()
    second = open_shell(shell, session_id)
    second.read_until(b"done-marker\r\n")
    time.sleep(0.3)
    while second.pump(0.2):
        pass
    assert bytes(second.output) == bytes(first.output)
    assert bytes(second.output).count(b"line-2\r\n") == 1


def test_two_clients_receive_the_identical_stream(shell):
    session_id = create_session(shell, "term")
    one, two = open_shell(shell, session_id), open_shell(shell, session_id)
    assert session(shell, session_id)["client_count"] == 2
    one.type("seq 1 2000; echo end-$((7*6))\n")
    one.read_until(b"end-42")
    two.read_until(b"end-42")
    time.sleep(0.2)
    for client in (one, two):
        while client.pump(0.1):
            pass
    assert bytes(one.output) == bytes(two.output)


def test_resize_reaches_the_pty(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.control({"type": "resize", "cols": 120, "rows": 40})
    time.sleep(0.2)
    client.type("stty size\n")
    client.read_until(b"40 120")
    data = session(shell, session_id)
    assert (data["cols"], data["rows"]) == (120, 40)


def children_named(daemon, session_id: str, name: str) -> list:
    """The session's agent's children called ``name``."""
    return [p for p in psutil.Process(session(daemon, session_id)["pid"]).children() if p.name() == name]


def test_signal_interrupts_the_foreground_process(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("sleep 300; echo after-$((1+1))\n")
    sleeper = wait_for(lambda: children_named(shell, session_id, "sleep"), message="sleep to start")[0]
    client.control({"type": "signal", "signal": 2})
    wait_for(lambda: not sleeper.is_running() or sleeper.status() == psutil.STATUS_ZOMBIE, message="sleep to die")
    client.type("echo still-$((2+3))\n")
    client.read_until(b"still-5")
    assert b"after-2" not in client.output


@pytest.mark.parametrize("how", ["signal", "keystroke"])
def test_ctrl_c_stops_a_flood(shell, how):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("yes flood\n")
    client.read_until(b"flood\r\nflood\r\n" * 50)
    if how == "signal":
        client.control({"type": "signal", "signal": 2})
    else:
        client.ws.send(b"\x03")   # binary: a keystroke, through the PTY's line discipline
    wait_for(lambda: not children_named(shell, session_id, "yes"), timeout=10, message="yes to stop")
    client.type("echo calm-$((3*3))\n")
    client.read_until(b"calm-9", timeout=20)


def test_signal_is_a_real_signal_even_with_isig_off(shell):
    # With isig off the line discipline turns no character into SIGINT: only a signal sent
    # to the foreground process group stops sleep.
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("stty -isig; stty -a | grep -o -- '-isig' | sed s/^/no-/; sleep 300; echo after-$((1+1))\n")
    client.read_until(b"no--isig\r\n")
    sleeper = wait_for(lambda: children_named(shell, session_id, "sleep"), message="sleep to start")[0]
    client.ws.send(b"\x03")   # a Ctrl-C keystroke does nothing now
    time.sleep(0.3)
    assert sleeper.is_running() and sleeper.status() != psutil.STATUS_ZOMBIE
    client.control({"type": "signal", "signal": 2})
    wait_for(lambda: not sleeper.is_running() or sleeper.status() == psutil.STATUS_ZOMBIE, message="sleep to die")
    client.type("stty isig; echo still-$((2+3))\n")
    client.read_until(b"still-5")
    assert b"after-2" not in client.output


def programs(daemon) -> set[str]:
    return {program["name"] for program in daemon.get("/api/daemon/status")[1]["data"]["programs"]}


def test_each_session_is_a_supervisor_program_removed_with_it(shell):
    conf_d = Home(shell.home).conf_d
    session_id = create_session(shell, "term")
    wait_state(shell, session_id, "running")
    conf = configparser.ConfigParser(interpolation=None)
    assert conf.read(os.path.join(conf_d, f"term-{session_id}.conf"))
    section = conf[f"program:term-{session_id}"]
    assert (section["startsecs"], section["autorestart"]) == ("0", "unexpected")
    assert f"term-{session_id}" in programs(shell)
    assert shell.delete(f"/api/terminal/sessions/{session_id}") == (200, {"success": True})
    assert f"term-{session_id}" not in programs(shell)
    assert not os.path.exists(os.path.join(conf_d, f"term-{session_id}.conf"))
    ended = create_session(shell, "term", args=["-c", "exit 0"])
    wait_state(shell, ended, "terminated")
    assert shell.post("/api/terminal/cleanup") == (200, {"success": True})
    assert f"term-{ended}" not in programs(shell)
    assert not os.path.exists(os.path.join(conf_d, f"term-{ended}.conf"))
    assert [name for name in os.listdir(conf_d) if name.startswith("term-") and session_id in name] == []


def test_terminate_kills_the_whole_session_background_jobs_included(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("sleep 1000 & sleep 1001 & echo started-$((1+1))\n")
    client.read_until(b"started-2")
    leader = psutil.Process(session(shell, session_id)["pid"])
    victims = [leader] + leader.children(recursive=True)
    assert len(victims) >= 3
    assert shell.delete(f"/api/terminal/sessions/{session_id}") == (200, {"success": True})
    gone, alive = psutil.wait_procs(victims, timeout=10)
    assert alive == []
    state = client.control_until("state_changed")
    assert state["state"] == "terminated"
    assert session(shell, session_id)["state"] == "terminated"


def test_exit_code_is_reported_and_kept(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("exit 3\n")
    state = client.control_until("state_changed")
    assert (state["state"], state["exit_code"]) == ("terminated", 3)
    data = wait_state(shell, session_id, "terminated")
    assert data["exit_code"] == 3 and data["client_count"] == 0


def test_an_ended_session_replays_its_scrollback_then_its_end(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("echo last-words; exit 5\n")
    client.control_until("state_changed")
    wait_state(shell, session_id, "terminated")
    late = TerminalClient(shell, session_id)
    late.read_until(b"last-words")
    assert late.control_until("state_changed")["exit_code"] == 5
    assert late.wait_closed().code == 1000


def test_cleanup_drops_terminated_sessions(shell):
    ended = create_session(shell, "term", args=["-c", "exit 0"])
    live = create_session(shell, "term")
    wait_state(shell, ended, "terminated")
    assert shell.post("/api/terminal/cleanup") == (200, {"success": True})
    ids = [s["id"] for s in shell.get("/api/terminal/sessions")[1]["data"]]
    assert ids == [live]
    assert shell.get(f"/api/terminal/sessions/{ended}")[0] == 404


def test_unknown_session_gets_the_spec_error_then_a_close(shell):
    client = TerminalClient(shell, "no-such-session", expect_connected=False)
    assert json.loads(client.ws.recv(timeout=5)) == {"type": "error", "message": "Session not found"}
    assert client.wait_closed().code == 4004
    assert shell.get("/api/terminal/sessions/nope") == (404, {"success": False,
                                                             "error": "Terminal session 'nope' not found"})
    assert shell.delete("/api/terminal/sessions/nope")[0] == 404


def test_bad_control_messages_get_errors_and_the_connection_stays(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    for bad, message in [
        ("{not json", "control message is not valid JSON"),
        ("[1, 2]", "control message must be a JSON object"),
        ('{"type": "explode"}', "control message type must be one of: resize, signal"),
        ('{"type": "resize", "cols": 0, "rows": 10}', "resize field 'cols': Must be greater than or equal to 1"),
        ('{"type": "resize", "cols": 10, "rows": 501}', "resize field 'rows': Must be greater than or equal to 1"),
        ('{"type": "signal", "signal": 11}', "signal field 'signal': must be one of 1, 2, 3, 9, 15, 18, 19, 20"),
        ('{"type": "signal", "signal": "2"}', "signal field 'signal': Not a valid integer."),
    ]:
        client.controls.clear()
        client.ws.send(bad)
        error = client.control_until("error")
        assert error["message"].startswith(message.split(" Must")[0]), (bad, error)
    client.type("echo alive-$((5+5))\n")
    client.read_until(b"alive-10")


def test_message_over_the_cap_closes_the_socket(daemon_factory):
    daemon = daemon_factory(toml="[terminal]\nmax_message_bytes = 4096\n")
    make_profile(daemon)
    session_id = create_session(daemon, "term")
    client = open_shell(daemon, session_id)
    client.ws.send(b"x" * 10000)
    assert client.wait_closed().code == 1009


def test_bad_create_bodies(shell):
    cases = [
        ({}, "body field 'profile_alias': Missing data for required field."),
        ({"profile_alias": "../etc"}, "body field 'profile_alias': must be a profile alias"),
        ({"profile_alias": "term", "cols": 0}, "body field 'cols': Must be greater than or equal to 1"),
        ({"profile_alias": "term", "rows": 501}, "body field 'rows': Must be greater than or equal to 1"),
        ({"profile_alias": "term", "cols": 80.5}, "body field 'cols': Not a valid integer."),
        ({"profile_alias": "term", "cols": 80.0}, "body field 'cols': Not a valid integer."),
        ({"profile_alias": "term", "rows": "24"}, "body field 'rows': Not a valid integer."),
        ({"profile_alias": "term", "cols": True}, "body field 'cols': Not a valid integer."),
        ({"profile_alias": "term", "args": "ls"}, "body field 'args': Not a valid list."),
        ({"profile_alias": "term", "working_dir": "relative"}, "working_dir: must be an absolute path"),
        ({"profile_alias": "term", "working_dir": "/nonexistent-dir-xyz"}, "working_dir: /nonexistent-dir-xyz does not exist"),
        ({"profile_alias": "term", "working_dir": "/etc/hostname"}, "working_dir: /etc/hostname is not a directory"),
        ({"profile_alias": "term", "bogus": 1}, "body field 'bogus': Unknown field."),
    ]
    for body, message in cases:
        status, reply = shell.post("/api/terminal/sessions", body=body)
        assert status == 400 and reply["success"] is False, (body, reply)
        assert reply["error"].startswith(message), (body, reply)
    assert shell.post("/api/terminal/sessions", body={"profile_alias": "ghost"}) == (
        404, {"success": False, "error": "Profile 'ghost' not found"})
    assert shell.get("/api/terminal/sessions") == (200, {"success": True, "data": []})


def test_working_dir_is_used(shell, tmp_path):
    session_id = create_session(shell, "term", working_dir=str(tmp_path))
    client = open_shell(shell, session_id)
    client.type("pwd\n")
    client.read_until(str(tmp_path).encode() + b"\r\n")


def test_max_sessions_gives_429(daemon_factory):
    daemon = daemon_factory(toml="[terminal]\nmax_sessions = 2\n")
    make_profile(daemon)
    create_session(daemon, "term")
    create_session(daemon, "term")
    assert daemon.post("/api/terminal/sessions", body={"profile_alias": "term"}) == (
        429, {"success": False, "error": "max_sessions reached: 2 terminal sessions are live"})


def test_max_sessions_holds_for_concurrent_creates(daemon_factory):
    daemon = daemon_factory(toml="[terminal]\nmax_sessions = 2\n")
    make_profile(daemon)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: daemon.post("/api/terminal/sessions", body={"profile_alias": "term"}),
                                range(10)))
    assert sorted(status for status, _ in replies) == [200] * 2 + [429] * 8
    assert [reply for status, reply in replies if status == 429] == [
        {"success": False, "error": "max_sessions reached: 2 terminal sessions are live"}] * 8
    listed = daemon.get("/api/terminal/sessions")[1]["data"]
    assert sorted(s["id"] for s in listed) == sorted(r["data"]["session_id"] for status, r in replies
                                                     if status == 200)
    # A slot is given back when its session ends, and not taken by a create that fails.
    assert daemon.post("/api/terminal/sessions", body={"profile_alias": "term", "working_dir": "/nonexistent-x"}
                       )[0] == 400
    assert daemon.delete(f"/api/terminal/sessions/{listed[0]['id']}") == (200, {"success": True})
    create_session(daemon, "term")
    assert daemon.post("/api/terminal/sessions", body={"profile_alias": "term"})[0] == 429


def test_defaults_term_size_and_working_dir(daemon_factory):
    daemon = daemon_factory(env={"TERM": "dumb"})   # the daemon's own TERM is not the terminal's
    make_profile(daemon)
    home = daemon.get("/api/profiles/term")[1]["data"]["profile_home"]
    session_id = create_session(daemon, "term")
    client = open_shell(daemon, session_id)
    # $((1)): the answers, not the echo of the command line, have "t1=" etc. in them
    client.type("echo \"t$((1))=$TERM\"; echo \"s$((1))=$(stty size)\"; echo \"c$((1))=$(pwd)\"\n")
    output = client.read_until(b"c1=" + home.encode() + b"\r\n")
    assert b"t1=xterm-256color\r\n" in output and b"s1=24 80\r\n" in output, output[-300:]
    data = session(daemon, session_id)
    assert (data["cols"], data["rows"], data["working_dir"]) == (80, 24, home)


def test_a_profile_that_sets_term_keeps_it(daemon_factory):
    daemon = daemon_factory(env={"TERM": "dumb"})
    status, reply = daemon.post("/api/profiles", body={"agent_id": "shell", "alias": "vt", "provider_id": "self",
                                                       "env": {"TERM": "vt100"}})
    assert status == 200, reply
    client = open_shell(daemon, create_session(daemon, "vt"))
    client.type("echo \"t$((1))=$TERM\"\n")
    client.read_until(b"t1=vt100\r\n")


def test_killing_web_loses_no_session_and_no_byte(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("for i in $(seq 1 300); do echo before-$i; done\n")
    client.read_until(b"before-300\r\n")
    time.sleep(0.2)
    while client.pump(0.1):
        pass
    seen = bytes(client.output)
    os.kill(shell.program_pid("web"), signal.SIGKILL)
    client.wait_closed()
    shell.wait_healthy()
    again = open_shell(shell, session_id)
    again.type("echo after-$((6*7))\n")
    stream = again.read_until(b"after-42\r\n")
    assert stream.startswith(seen)
    assert stream.count(b"before-150\r\n") == 1
    assert session(shell, session_id)["state"] == "running"


def test_killed_worker_is_restarted_recorded_and_the_session_ends_with_a_reason(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("echo up\n")
    client.read_until(b"up")
    leader = psutil.Process(session(shell, session_id)["pid"])
    program = f"term-{session_id}"
    os.kill(shell.program_pid(program), signal.SIGKILL)
    state = client.control_until("state_changed")
    assert state["state"] == "terminated" and state["reason"] == "worker crashed"
    psutil.wait_procs([leader], timeout=10)
    assert not leader.is_running() or leader.status() == psutil.STATUS_ZOMBIE
    conn = sqlite3.connect(os.path.join(shell.home, "clown.db"))
    wait_for(lambda: conn.execute("SELECT restarts FROM program_restarts WHERE program = ?",
                                  (program,)).fetchone() == (1,), message="restart recorded")
    assert session(shell, session_id)["reason"] == "worker crashed"


def test_slow_client_is_closed_and_others_keep_up(shell):
    session_id = create_session(shell, "term")
    slow = TerminalClient(shell, session_id, ping_interval=None)
    fast = open_shell(shell, session_id)
    fast.type("head -c 60000000 /dev/zero | tr '\\0' a | fold -w 100; echo flood-$((2*4))-over\n")
    web = psutil.Process(shell.program_pid("web"))
    worker = psutil.Process(shell.program_pid(f"term-{session_id}"))
    rss_before = web.memory_info().rss + worker.memory_info().rss
    fast.read_until(b"flood-8-over", timeout=120)
    rss_after = web.memory_info().rss + worker.memory_info().rss
    assert rss_after - rss_before < 40 << 20
    closed = slow.wait_closed(timeout=30)
    assert (closed.code, closed.reason) == (4008, "client too slow")
    assert len(fast.output) > 60_000_000


def test_sessions_survive_a_daemon_restart_as_terminated_records(daemon_factory, tmp_path):
    home = tmp_path / "persist"
    daemon = daemon_factory(home=home)
    make_profile(daemon)
    ended = create_session(daemon, "term", args=["-c", "exit 7"])
    wait_state(daemon, ended, "terminated")
    live = create_session(daemon, "term")
    wait_state(daemon, live, "running")
    leader = session(daemon, live)["pid"]
    assert daemon.stop() == 0
    assert not psutil.pid_exists(leader) or psutil.Process(leader).status() == psutil.STATUS_ZOMBIE
    again = Daemon(home).start()
    try:
        sessions = {s["id"]: s for s in again.get("/api/terminal/sessions")[1]["data"]}
        assert sessions[ended]["state"] == "terminated" and sessions[ended]["exit_code"] == 7
        assert sessions[live]["state"] == "terminated"
        assert sessions[live]["reason"] == "daemon stopped"
    finally:
        again.stop()
        again.kill_everything()


def test_supervisord_killed_leaves_no_orphan(shell):
    session_id = create_session(shell, "term")
    client = open_shell(shell, session_id)
    client.type("sleep 500 & echo bg\n")
    client.read_until(b"bg")
    everyone = [psutil.Process(pid) for pid in shell.all_pids() if pid != shell.process.pid]
    supervisord = psutil.Process(shell.process.pid).children()[0]
    supervisord.kill()
    gone, alive = psutil.wait_procs(everyone, timeout=15)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
