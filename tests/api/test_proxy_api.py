"""The proxy routes and a proxy worker through a real clownd and a fake upstream."""

import http.client
import json
import os
import signal
import socket
import sqlite3
import threading
import time

import psutil
import pytest

from tests.api.proxy_helpers import (REAL_KEY, add_provider, committed_proxy_rows, create_profile, free_port_run,
                                     open_session_starting_proxy, placeholder, send, start_proxy)
from tests.clownd import free_port, wait_for
from tests.fakes.upstream import FakeUpstream


@pytest.fixture
def upstream():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def setup(daemon_factory, upstream):
    low = free_port()
    daemon = daemon_factory(toml=f"[proxy]\nport_range = [{low}, {low + 20}]\nupstream_timeout_secs = 2\n"
                                 "max_body_bytes = 65536\n")
    add_provider(daemon, "fakeanthropic", upstream.url)
    create_profile(daemon, "team", "fakeanthropic")
    return daemon


def test_start_answers_the_running_status(setup):
    data = start_proxy(setup, "team")
    assert data["profile"] == "team" and data["enabled"] is True and data["status"] == "running"
    assert isinstance(data["port"], int) and isinstance(data["pid"], int)
    assert data["restarts"] == 0


def test_status_of_one_and_all(setup):
    data = start_proxy(setup, "team")
    status, reply = setup.get("/api/proxy/status/team")
    assert status == 200 and reply["success"] is True
    assert {k: reply["data"][k] for k in ("profile", "enabled", "port", "pid", "status")} == \
        {"profile": "team", "enabled": True, "port": data["port"], "pid": data["pid"], "status": "running"}
    status, reply = setup.get("/api/proxy/status")
    assert status == 200
    assert [(p["profile"], p["port"], p["status"]) for p in reply["data"]] == [("team", data["port"], "running")]
    assert set(reply["data"][0]) >= {"profile", "port", "pid", "status", "restarts", "started_at"}


def test_stop_clears_enabled_and_stops(setup):
    start_proxy(setup, "team")
    status, reply = setup.post("/api/proxy/team/stop")
    assert status == 200
    assert reply["data"]["status"] == "stopped" and reply["data"]["enabled"] is False and reply["data"]["pid"] is None


def test_unknown_profile_is_404_in_the_clown_envelope(setup):
    for method, path in (("GET", "/api/proxy/status/nope"), ("POST", "/api/proxy/nope/start"),
                         ("POST", "/api/proxy/nope/stop")):
        status, reply = setup.request(method, path)
        assert status == 404
        assert reply == {"success": False, "error": "Profile 'nope' not found"}


def test_the_upstream_sees_the_real_key_and_never_the_placeholder(setup, upstream):
    port = start_proxy(setup, "team")["port"]
    token = placeholder(setup, "team")
    status, _, data = send(port, "/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 5},
                           {"Authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"})
    assert status == 200 and json.loads(data)["type"] == "message"
    seen = upstream.requests[-1]
    assert seen.headers["x-api-key"] == REAL_KEY
    assert "authorization" not in seen.headers
    assert token not in json.dumps(seen.headers)
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["accept-encoding"] == "identity"


def test_without_the_placeholder_a_local_process_gets_401(setup, upstream):
    port = start_proxy(setup, "team")["port"]
    for headers in ({}, {"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"}):
        status, _, data = send(port, "/v1/messages", {"model": "m"}, headers)
        assert status == 401
        assert json.loads(data)["error"]["type"] == "authentication_error"
    assert upstream.requests == []


def test_streaming_arrives_chunk_by_chunk(setup, upstream):
    port = start_proxy(setup, "team")["port"]
    upstream.mode, upstream.drip_interval = "drip", 0.3
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    began = time.monotonic()
    connection.request("POST", "/v1/messages", body=json.dumps({"model": "claude-sonnet-4-5", "stream": True}),
                       headers={"x-api-key": placeholder(setup, "team"), "Content-Type": "application/json"})
    response = connection.getresponse()
    first = response.read1(65536)
    first_at = time.monotonic() - began
    rest = response.read()
    total = time.monotonic() - began
    assert first.startswith(b"event: message_start")
    wait_for(lambda: upstream.completed == 1, 5, 0.01, "the upstream to count its response")   # its own thread
    assert first_at < 0.25 and total > 1.5      # 8 events dripped 0.3 s apart
    assert rest.rstrip().endswith(b'data: {"type":"message_stop"}')


def test_the_completing_event_is_forwarded_at_once_after_its_commit(setup, upstream):
    # message_delta completes the usage; the upstream then waits a drip interval before
    # message_stop: the agent has all of message_delta (its last byte follows the usage commit)
    # long before that.
    port = start_proxy(setup, "team")["port"]
    upstream.mode, upstream.drip_interval = "drip", 0.4
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    began = time.monotonic()
    connection.request("POST", "/v1/messages", body=json.dumps({"model": "claude-sonnet-4-5", "stream": True}),
                       headers={"x-api-key": placeholder(setup, "team"), "Content-Type": "application/json"})
    response = connection.getresponse()
    received = b""
    while b'"type":"message_delta"' not in received or not received.endswith(b"\n\n"):
        chunk = response.read1(65536)
        assert chunk, received
        received += chunk
    stop_at = time.monotonic() - began
    assert b"message_stop" not in received
    assert committed_proxy_rows(setup.home) == 1
    response.read()
    assert time.monotonic() - began - stop_at > 0.25


def test_usage_of_a_streamed_response_is_recorded(setup, upstream):
    port = start_proxy(setup, "team")["port"]
    status, _, _ = send(port, "/v1/messages", {"model": "claude-sonnet-4-5", "stream": True},
                        {"x-api-key": placeholder(setup, "team"), "x-claude-code-session-id": "sess-1"})
    assert status == 200
    status, reply = setup.get("/api/usage?period=today&profile=team")
    assert reply["data"]["total_tokens"] == {"input_tokens": 100, "output_tokens": 20,
                                             "cache_creation_input_tokens": 10, "cache_read_input_tokens": 50}
    assert reply["data"]["total_sessions"] == 1


def test_a_json_response_arrives_whole_and_its_usage_is_already_committed(setup, upstream):
    # Everything but the body's last byte is forwarded at once; the last byte only after the commit.
    port = start_proxy(setup, "team")["port"]
    key = placeholder(setup, "team")
    for index in range(5):
        status, _, body = send(port, "/v1/messages", {"model": "claude-sonnet-4-5"}, {"x-api-key": key})
        assert status == 200 and json.loads(body)["usage"]["output_tokens"] == 20
        assert committed_proxy_rows(setup.home) == index + 1


def test_an_unreachable_upstream_is_a_502_naming_it(daemon_factory):
    dead = f"http://127.0.0.1:{free_port()}"
    daemon = daemon_factory(toml=f"[proxy]\nport_range = [{free_port()}, 65000]\n")
    add_provider(daemon, "gone", dead)
    create_profile(daemon, "team", "gone")
    port = start_proxy(daemon, "team")["port"]
    status, _, data = send(port, "/v1/messages", {"model": "m"}, {"x-api-key": placeholder(daemon, "team")})
    assert status == 502
    error = json.loads(data)["error"]
    assert error["type"] == "upstream_unreachable" and error["upstream"] == dead and dead in error["message"]


def test_an_upstream_that_hangs_gets_a_504(setup, upstream):
    port = start_proxy(setup, "team")["port"]
    upstream.mode = "hang"
    began = time.monotonic()
    status, _, data = send(port, "/v1/messages", {"model": "m"}, {"x-api-key": placeholder(setup, "team")})
    assert status == 504 and json.loads(data)["error"]["type"] == "upstream_timeout"
    assert time.monotonic() - began < 10


def test_upstream_errors_pass_through(setup, upstream):
    port = start_proxy(setup, "team")["port"]
    upstream.mode = "error500"
    status, response, data = send(port, "/v1/messages", {"model": "m"}, {"x-api-key": placeholder(setup, "team")})
    assert status == 500
    assert json.loads(data)["error"]["type"] == "api_error"
    assert response.getheader("request-id").startswith("req_")


def test_garbage_passes_through_and_the_next_request_is_metered(setup, upstream):
    port = start_proxy(setup, "team")["port"]
    upstream.mode = "garbage"
    status, _, data = send(port, "/v1/messages", {"model": "m", "stream": True},
                           {"x-api-key": placeholder(setup, "team")})
    assert status == 200 and data.startswith(b"\x00\xffnot json")
    upstream.mode = None
    status, _, _ = send(port, "/v1/messages", {"model": "claude-sonnet-4-5"}, {"x-api-key": placeholder(setup, "team")})
    assert status == 200
    _, reply = setup.get("/api/usage?period=today")
    assert reply["data"]["total_tokens"]["input_tokens"] == 100


def test_a_body_over_the_cap_is_413(setup):
    port = start_proxy(setup, "team")["port"]
    status, _, data = send(port, "/v1/messages", {"model": "m", "pad": "x" * 70000},
                           {"x-api-key": placeholder(setup, "team")})
    assert status == 413 and json.loads(data)["error"]["type"] == "request_too_large"


def test_chat_completions_streams_ask_for_the_usage_chunk(daemon_factory, upstream):
    daemon = daemon_factory(toml=f"[proxy]\nport_range = [{free_port()}, 65000]\n")
    add_provider(daemon, "fakeopenai", upstream.url + "/v1", kind="openai")
    create_profile(daemon, "oa", "fakeopenai", agent_id="codex", model="gpt-5")
    port = start_proxy(daemon, "oa")["port"]
    status, _, data = send(port, "/chat/completions", {"model": "gpt-5", "stream": True},
                           {"Authorization": f"Bearer {placeholder(daemon, 'oa')}"})
    assert status == 200 and b'"usage"' in data
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {REAL_KEY}"
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    _, reply = daemon.get("/api/usage?period=today")
    assert reply["data"]["total_tokens"]["cache_read_input_tokens"] == 50
    assert reply["data"]["total_tokens"]["input_tokens"] == 100


def test_kill_9_mid_request_restarts_on_the_same_port_and_loses_nothing(setup, upstream):
    data = start_proxy(setup, "team")
    port, pid = data["port"], data["pid"]
    token = placeholder(setup, "team")
    assert send(port, "/v1/messages", {"model": "claude-sonnet-4-5"}, {"x-api-key": token})[0] == 200
    upstream.mode, upstream.drip_interval = "drip", 0.5
    outcome = {}

    def in_flight():
        try:
            outcome["result"] = send(port, "/v1/messages", {"model": "claude-sonnet-4-5", "stream": True},
                                     {"x-api-key": token})
        except (OSError, http.client.HTTPException) as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=in_flight)
    thread.start()
    wait_for(lambda: len(upstream.requests) >= 2, message="the in-flight request to reach the upstream")
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    thread.join(10)
    assert "error" in outcome or outcome["result"][2].count(b"message_stop") == 0

    def restarted():
        _, reply = setup.get("/api/proxy/status/team")
        return reply["data"] if reply["data"]["status"] == "running" and reply["data"]["pid"] != pid else None

    after = wait_for(restarted, timeout=20, message="the proxy to be restarted")
    assert after["port"] == port and after["restarts"] == 1
    upstream.mode = None
    assert send(port, "/v1/messages", {"model": "claude-sonnet-4-5"}, {"x-api-key": token})[0] == 200
    _, reply = setup.get("/api/usage?period=today")
    # Exactly the two completed responses (100/20/10/50 each): none lost, none counted twice,
    # and nothing for the response the crash cut off.
    assert reply["data"]["total_tokens"] == {"input_tokens": 200, "output_tokens": 40,
                                             "cache_creation_input_tokens": 20, "cache_read_input_tokens": 100}
    db = sqlite3.connect(os.path.join(setup.home, "clown.db"))
    reasons = [row[0] for row in db.execute("SELECT reason FROM proxy_runs ORDER BY id")]
    assert reasons[0] == "crashed"


def program_names(daemon) -> set[str]:
    status, reply = daemon.get("/api/daemon/status")
    assert status == 200, reply
    return {program["name"] for program in reply["data"]["programs"]}


def test_deleting_a_profile_stops_its_running_proxy(setup):
    data = start_proxy(setup, "team")
    port, pid = data["port"], data["pid"]
    assert "proxy-team" in program_names(setup)
    status, reply = setup.delete("/api/profiles/team")
    assert (status, reply) == (200, {"success": True, "data": {"message": "Profile deleted"}})
    assert "proxy-team" not in program_names(setup)
    assert "proxy-team" not in setup.supervisorctl("status")
    assert not psutil.pid_exists(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    status, reply = setup.get("/api/proxy/status/team")
    assert (status, reply) == (404, {"success": False, "error": "Profile 'team' not found"})
    status, reply = setup.get("/api/proxy/status")
    assert (status, reply) == (200, {"success": True, "data": []})


def test_a_terminal_session_of_a_proxy_on_profile_starts_the_proxy_first(setup, upstream):
    create_profile(setup, "auto", "fakeanthropic", agent_id="shell", proxy=True)
    session_id, proxy = open_session_starting_proxy(setup, "auto")
    _, listing = setup.get("/api/proxy/status")
    assert [(p["profile"], p["port"], p["status"]) for p in listing["data"]] == [("auto", proxy["port"], "running")]
    token = placeholder(setup, "auto")
    status, _, body = send(proxy["port"], "/v1/messages", {"model": "claude-sonnet-4-5"}, {"x-api-key": token})
    assert status == 200 and json.loads(body)["type"] == "message"
    assert upstream.requests[-1].headers["x-api-key"] == REAL_KEY
    # The shell holds the placeholder, never the real key.
    session = wait_for(lambda: (s := setup.get(f"/api/terminal/sessions/{session_id}")[1]["data"])["pid"] and s,
                       message="the session's pid")
    with open(f"/proc/{session['pid']}/environ", "rb") as handle:
        environ = handle.read()
    assert REAL_KEY.encode() not in environ and REAL_KEY[-20:].encode() not in environ
    assert b"ANTHROPIC_API_KEY=" + token.encode() + b"\0" in environ
    assert setup.delete(f"/api/terminal/sessions/{session_id}") == (200, {"success": True})


def test_a_port_of_the_range_taken_by_another_listener_is_skipped(daemon_factory, upstream):
    low = free_port_run(4)
    taken_loopback = socket.socket()
    taken_any = socket.socket()
    try:
        taken_loopback.bind(("127.0.0.1", low))
        taken_loopback.listen()
        taken_any.bind(("0.0.0.0", low + 1))
        taken_any.listen()
        daemon = daemon_factory(toml=f"[proxy]\nport_range = [{low}, {low + 3}]\n")
        add_provider(daemon, "fakeanthropic", upstream.url)
        create_profile(daemon, "team", "fakeanthropic")
        data = start_proxy(daemon, "team")
        assert data["port"] == low + 2
        status, _, _ = send(low + 2, "/v1/messages", {"model": "claude-sonnet-4-5"},
                            {"x-api-key": placeholder(daemon, "team")})
        assert status == 200
        assert taken_loopback.getsockname() == ("127.0.0.1", low)      # the other listeners keep their ports
        assert taken_any.getsockname() == ("0.0.0.0", low + 1)
    finally:
        taken_loopback.close()
        taken_any.close()
