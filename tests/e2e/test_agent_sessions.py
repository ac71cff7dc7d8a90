"""Agent sessions end to end: the real Claude Code CLI against the fake upstream, in a real
clownd, through the pty and tmux backends, watched over a real /ws client."""

import os

import pytest

from tests.clownd import Daemon, wait_for
from tests.fakes.upstream import FakeUpstream, text, tool_use
from tests.sessions_support import WsClient, add_fake_provider, agent_env, create_profile, make_repo

SECRET = "the secret word is pelican\n"


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream(script_only_with_tools=True, default_text="Nothing more to say.") as fake:
        yield fake


@pytest.fixture(scope="module")
def clownd(tmp_path_factory, upstream):
    daemon = Daemon(tmp_path_factory.mktemp("sessions-e2e") / "home", env=agent_env())
    add_fake_provider(daemon, upstream.url)
    daemon.start()
    create_profile(daemon, "cc", "claude", "fake", api_key="sk-fake-0123456789abcdefghijklmnop")
    yield daemon
    try:
        daemon.stop()
    finally:
        daemon.kill_everything()


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", {"notes.txt": SECRET})


def create(clownd, repo, **extra) -> dict:
    body = {"repo_path": repo, "prompt": "What is the secret word in notes.txt?", "agent": "claude",
            "profile": "cc", "no_plan_mode": True, **extra}
    status, reply = clownd.post("/api/sessions", body)
    assert status == 200, reply
    assert reply["status"] == "starting"
    return reply


def session(clownd, session_id) -> dict:
    status, reply = clownd.get(f"/api/sessions/{session_id}")
    assert status == 200, reply
    return reply


def wait_status(clownd, session_id, wanted, timeout=60.0) -> dict:
    return wait_for(lambda: (lambda s: s if s["status"] in wanted else None)(session(clownd, session_id)),
                    timeout=timeout, interval=0.2, message=f"status in {wanted}")


def kind(message) -> str:
    if message["type"] == "chat_message":
        return f"{message['message']['role']}:{message['message']['content']}"
    if message["type"] == "tool_call":
        return f"tool_call:{message['tool']['name']}"
    if message["type"] == "tool_result":
        return f"tool_result:{message['tool']['name']}"
    return message["type"]


def shape(history) -> list[str]:
    out = []
    for entry in history:
        if entry["role"] == "tool":
            out.append(f"{entry['type']}:{entry['tool']['name']}")
        else:
            out.append(f"{entry['role']}:{entry['content']}")
    return out


@pytest.mark.parametrize("backend", ["pty", "tmux"])
def test_chat_history_and_live_messages_follow_the_agent_turn_by_turn(clownd, upstream, repo, backend):
    notes = os.path.join(repo, "notes.txt")
    upstream.turns[:] = [tool_use("Read", {"file_path": notes}), text("The secret word is pelican."),
                         text("Second answer: still pelican.")]
    created = create(clownd, repo, backend=backend)
    with WsClient(clownd) as ws:
        ws.send({"type": "subscribe", "session_id": created["id"]})
        assert ws.recv() == {"type": "subscribed", "session_id": created["id"]}
        assert ws.recv()["type"] == "session_status"
        ws.wait_for(lambda m: m["type"] == "chat_message" and m["message"]["role"] == "assistant", timeout=90)
        live = [kind(m) for m in ws.received if m["type"] in ("chat_message", "tool_call", "tool_result")]
        assert live == ["user:What is the secret word in notes.txt?", "tool_call:Read", "tool_result:Read",
                        "assistant:The secret word is pelican."]
        detail = wait_status(clownd, created["id"], ("idle",))
        assert detail["prompt"] == "What is the secret word in notes.txt?"
        assert shape(detail["chat_history"]) == live
        assert detail["chat_history"][1]["tool"]["input"] == {"file_path": notes}
        assert "pelican" in detail["chat_history"][2]["tool"]["output"]

        ws.send({"type": "send_message", "session_id": created["id"], "content": "And again?"})
        ws.wait_for(lambda m: m["type"] == "chat_message" and m["message"]["content"] == "Second answer: still pelican.",
                    timeout=90)
        live = [kind(m) for m in ws.received if m["type"] in ("chat_message", "tool_call", "tool_result")]
        assert live[-2:] == ["user:And again?", "assistant:Second answer: still pelican."]
    detail = wait_status(clownd, created["id"], ("idle",))
    assert shape(detail["chat_history"])[-2:] == ["user:And again?", "assistant:Second answer: still pelican."]
    if backend == "pty":
        status, terminals = clownd.get("/api/terminal/sessions")
        assert status == 200
        assert any(t.get("state") != "terminated" for t in terminals["data"])
    status, reply = clownd.delete(f"/api/sessions/{created['id']}")
    assert (status, reply) == (200, {"success": True})
    assert not os.path.exists(detail["worktree_path"])


def write_turns(upstream, name):
    upstream.turns[:] = [tool_use("Bash", {"command": f"echo written > {name}; ls -l {name}",
                                           "description": "write a file"}),
                         text("Tried to write.")]


def test_a_read_write_session_writes_into_its_worktree(clownd, upstream, repo):
    write_turns(upstream, "rw.txt")
    created = create(clownd, repo, backend="tmux", access_mode="read-write")
    detail = wait_status(clownd, created["id"], ("idle",), timeout=90)
    with open(os.path.join(detail["worktree_path"], "rw.txt")) as handle:
        assert handle.read() == "written\n"
    status, reply = clownd.delete(f"/api/sessions/{created['id']}")
    assert status == 409 and reply["error"]["code"] == "CONFLICT"
    status, reply = clownd.delete(f"/api/sessions/{created['id']}?force=true")
    assert (status, reply) == (200, {"success": True})


def test_a_read_only_session_cannot_write_into_its_worktree(clownd, upstream, repo):
    write_turns(upstream, "ro.txt")
    created = create(clownd, repo, backend="tmux", access_mode="read-only")
    detail = wait_status(clownd, created["id"], ("idle",), timeout=90)
    assert not os.path.exists(os.path.join(detail["worktree_path"], "ro.txt"))
    result = [e for e in detail["chat_history"] if e.get("type") == "tool_result"][0]
    assert "Read-only file system" in result["content"]
    assert clownd.delete(f"/api/sessions/{created['id']}")[0] == 200


def test_changing_the_access_mode_restarts_the_agent_resuming_the_conversation(clownd, upstream, repo):
    upstream.turns[:] = [text("First answer.")]
    created = create(clownd, repo, backend="pty", access_mode="read-write")
    wait_status(clownd, created["id"], ("idle",), timeout=90)
    with WsClient(clownd) as ws:
        ws.send({"type": "subscribe", "session_id": created["id"]})
        ws.wait_for(lambda m: m["type"] == "session_status")
        status, reply = clownd.request("PUT", f"/api/sessions/{created['id']}/access-mode",
                                       body={"access_mode": "read-only"})
        assert (status, reply) == (200, {"success": True, "access_mode": "read-only"})
        ws.wait_for(lambda m: m["type"] == "chat_message" and m["message"]["role"] == "system"
                    and "read-only" in m["message"]["content"])
        statuses = [m["status"] for m in ws.received if m["type"] == "session_status"]
        assert statuses[-2:] == ["starting", "running"]
        write_turns(upstream, "after.txt")
        ws.send({"type": "send_message", "session_id": created["id"], "content": "Write a file now."})
        ws.wait_for(lambda m: m["type"] == "chat_message" and m["message"]["content"] == "Tried to write.", timeout=90)
    detail = wait_status(clownd, created["id"], ("idle",))
    assert detail["access_mode"] == "read-only"
    assert not os.path.exists(os.path.join(detail["worktree_path"], "after.txt"))
    # The same conversation went on: the first answer is still in the history.
    assert shape(detail["chat_history"])[:2] == ["user:What is the secret word in notes.txt?", "assistant:First answer."]
    assert "user:Write a file now." in shape(detail["chat_history"])
    assert clownd.delete(f"/api/sessions/{created['id']}?force=true")[0] == 200
