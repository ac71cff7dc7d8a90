"""The /ws event socket with a real WebSocket client against a real clownd."""

import json
import os

import pytest

from tests.clownd import Daemon, wait_for
from tests.sessions_support import WsClient, create_profile, make_repo

MAX_MESSAGE = 4096


@pytest.fixture(scope="module")
def clownd(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("sessions-ws") / "home",
                    toml=f"[terminal]\nmax_message_bytes = {MAX_MESSAGE}\n")
    daemon.start()
    create_profile(daemon, "sh", "shell")
    yield daemon
    try:
        daemon.stop()
    finally:
        daemon.kill_everything()


@pytest.fixture
def ws(clownd):
    with WsClient(clownd) as client:
        yield client


@pytest.fixture
def session(clownd, tmp_path):
    repo = make_repo(tmp_path / "repo")
    status, reply = clownd.post("/api/sessions", {"repo_path": repo, "prompt": "Hello", "agent": "shell",
                                                  "profile": "sh", "backend": "tmux"})
    assert status == 200, reply
    wait_for(lambda: clownd.get(f"/api/sessions/{reply['id']}")[1]["status"] == "running", timeout=10)
    return reply


def invalid(message) -> bool:
    return message["type"] == "error" and message["error"]["code"] == "INVALID_REQUEST"


def still_open(ws) -> None:
    ws.send({"type": "ping"})
    assert ws.recv() == {"type": "pong"}


def test_ping_answers_pong(ws):
    ws.send({"type": "ping"})
    assert ws.recv() == {"type": "pong"}


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", "42", json.dumps({"type": "dance"}), json.dumps({}),
                                 json.dumps({"type": "subscribe"}),
                                 json.dumps({"type": "subscribe", "session_id": 7}),
                                 json.dumps({"type": "send_message", "session_id": "x"}),
                                 json.dumps({"type": "subscribe", "topics": "profiles"})])
def test_a_bad_message_gets_invalid_request_and_the_socket_stays_open(ws, raw):
    ws.send(raw)
    reply = ws.recv()
    assert invalid(reply), reply
    assert set(reply) == {"type", "error"} and reply["error"]["message"]
    still_open(ws)


def test_a_binary_message_gets_invalid_request(ws):
    ws.socket.send(b"\x00\x01")
    assert invalid(ws.recv())
    still_open(ws)


def test_a_message_over_max_message_bytes_gets_invalid_request(ws):
    ws.send({"type": "ping", "padding": "x" * (MAX_MESSAGE * 2)})
    reply = ws.recv()
    assert invalid(reply) and str(MAX_MESSAGE) in reply["error"]["message"]
    still_open(ws)


def test_subscribe_to_an_unknown_session_is_session_not_found(ws):
    ws.send({"type": "subscribe", "session_id": "nope"})
    assert ws.recv() == {"type": "error", "error": {"code": "SESSION_NOT_FOUND",
                                                    "message": "Session with ID 'nope' not found"}}
    still_open(ws)


def test_subscribe_acknowledges_then_sends_the_current_status(ws, session):
    ws.send({"type": "subscribe", "session_id": session["id"]})
    assert ws.recv() == {"type": "subscribed", "session_id": session["id"]}
    assert ws.recv() == {"type": "session_status", "session_id": session["id"], "status": "running"}


def test_every_subscriber_sees_status_changes(clownd, session):
    with WsClient(clownd) as first, WsClient(clownd) as second:
        for client in (first, second):
            client.send({"type": "subscribe", "session_id": session["id"]})
            client.recv(), client.recv()
        assert clownd.post(f"/api/sessions/{session['id']}/refresh") == (200, {"success": True})
        for client in (first, second):
            client.wait_for(lambda m: m == {"type": "session_status", "session_id": session["id"], "status": "starting"})
            client.wait_for(lambda m: m == {"type": "session_status", "session_id": session["id"], "status": "running"})


def test_unsubscribe_stops_the_session_messages(clownd, ws, session):
    ws.send({"type": "subscribe", "session_id": session["id"]})
    ws.recv(), ws.recv()
    ws.send({"type": "unsubscribe", "session_id": session["id"]})
    still_open(ws)  # the unsubscribe is processed before the ping
    clownd.post(f"/api/sessions/{session['id']}/refresh")
    still_open(ws)  # nothing about the session came in between


def test_send_message_types_into_the_agent(clownd, ws, session):
    worktree = clownd.get(f"/api/sessions/{session['id']}")[1]["worktree_path"]
    ws.send({"type": "send_message", "session_id": session["id"], "content": "echo typed > typed.txt"})
    wait_for(lambda: os.path.exists(os.path.join(worktree, "typed.txt")), timeout=20)
    with open(os.path.join(worktree, "typed.txt")) as handle:
        assert handle.read() == "typed\n"


def test_send_message_to_an_unknown_session_is_session_not_found(ws):
    ws.send({"type": "send_message", "session_id": "nope", "content": "hi"})
    assert ws.recv()["error"]["code"] == "SESSION_NOT_FOUND"


def test_send_message_to_an_ended_session_is_invalid_request(clownd, ws, session):
    ws.send({"type": "subscribe", "session_id": session["id"]})
    ws.recv(), ws.recv()
    ws.send({"type": "send_message", "session_id": session["id"], "content": "exit 3"})
    ws.wait_for(lambda m: m.get("type") == "session_status" and m["status"] == "failed", timeout=20)
    ws.send({"type": "send_message", "session_id": session["id"], "content": "hello?"})
    reply = ws.wait_for(lambda m: m["type"] == "error")
    assert invalid(reply) and "not running" in reply["error"]["message"]


def test_an_agent_that_exits_0_is_completed(clownd, ws, session):
    ws.send({"type": "subscribe", "session_id": session["id"]})
    ws.recv(), ws.recv()
    ws.send({"type": "send_message", "session_id": session["id"], "content": "exit 0"})
    ws.wait_for(lambda m: m == {"type": "session_status", "session_id": session["id"], "status": "completed"},
                timeout=20)


def test_daemon_event_topics(clownd, ws, session):
    ws.send({"type": "subscribe", "topics": ["sessions", "profiles"]})
    assert ws.recv() == {"type": "subscribed", "topics": ["sessions", "profiles"]}
    clownd.post(f"/api/sessions/{session['id']}/archive")
    event = ws.wait_for(lambda m: m["type"] == "event" and m["event"] == "session_archived")
    assert event == {"type": "event", "topic": "sessions", "event": "session_archived",
                     "data": {"session_id": session["id"]}}


def test_an_unknown_topic_is_invalid_request(ws):
    ws.send({"type": "subscribe", "topics": ["weather"]})
    reply = ws.recv()
    assert invalid(reply) and "weather" in reply["error"]["message"]
    still_open(ws)
