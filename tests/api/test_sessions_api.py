"""The sessions REST API (/api/sessions..., /api/credentials) against a real clownd.

The agent here is ``shell`` (a real bash in the session's tmux pane or PTY); the real
Claude Code runs in tests/e2e/test_agent_sessions.py.
"""

import os
import subprocess
import time

import pytest

from tests.clownd import Daemon, wait_for
from tests.sessions_support import create_profile, make_repo


@pytest.fixture(scope="module")
def clownd(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("sessions-api") / "home", env={"GITHUB_TOKEN": "ghp_not_a_real_token"})
    daemon.start()
    create_profile(daemon, "sh", "shell")
    yield daemon
    try:
        daemon.stop()
    finally:
        daemon.kill_everything()


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def create(clownd, repo, **extra):
    body = {"repo_path": repo, "prompt": "Fix the login bug", "agent": "shell", "backend": "tmux", "profile": "sh",
            **extra}
    body = {name: value for name, value in body.items() if value is not None}
    return clownd.post("/api/sessions", body)


def created(clownd, repo, **extra) -> dict:
    status, reply = create(clownd, repo, **extra)
    assert status == 200, reply
    return reply


def error(reply) -> tuple[str, str]:
    return reply["error"]["code"], reply["error"]["message"]


def test_create_answers_id_name_and_starting(clownd, repo):
    status, reply = create(clownd, repo)
    assert status == 200
    assert set(reply) == {"id", "name", "status"}
    assert reply["status"] == "starting"
    assert reply["name"].startswith("fix-the-login-bug-")
    assert subprocess.run(["git", "check-ref-format", "--branch", reply["name"]], capture_output=True).returncode == 0


def test_create_adds_a_worktree_on_a_new_branch(clownd, repo):
    session = created(clownd, repo)
    _, detail = clownd.get(f"/api/sessions/{session['id']}")
    assert detail["worktree_path"] == os.path.join(os.path.realpath(clownd.home), "worktrees", session["name"])
    assert os.path.isfile(os.path.join(detail["worktree_path"], "README.md"))
    assert detail["branch"] == f"clown/{session['name']}"
    branches = subprocess.run(["git", "-C", repo, "branch", "--list", detail["branch"]], capture_output=True, text=True)
    assert detail["branch"] in branches.stdout


def test_names_are_unique_for_the_same_prompt(clownd, repo):
    names = {created(clownd, repo)["name"] for _ in range(3)}
    assert len(names) == 3


def test_get_session_has_prompt_and_chat_history(clownd, repo):
    session = created(clownd, repo, access_mode="read-only", no_plan_mode=True)
    status, detail = clownd.get(f"/api/sessions/{session['id']}")
    assert status == 200
    assert detail["id"] == session["id"] and detail["name"] == session["name"]
    assert detail["prompt"] == "Fix the login bug"
    assert detail["chat_history"] == [{"role": "user", "content": "Fix the login bug"}]
    assert detail["backend"] == "tmux" and detail["agent"] == "shell" and detail["profile"] == "sh"
    assert detail["access_mode"] == "read-only" and detail["no_plan_mode"] is True
    assert detail["repo_path"] == repo and detail["archived"] is False
    assert detail["created_at"].endswith("Z")


def test_status_goes_from_starting_to_running(clownd, repo):
    session = created(clownd, repo)
    wait_for(lambda: clownd.get(f"/api/sessions/{session['id']}")[1]["status"] == "running", timeout=10)


def test_list_shows_sessions_without_chat_history(clownd, repo):
    session = created(clownd, repo)
    status, reply = clownd.get("/api/sessions")
    assert status == 200
    listed = {s["id"]: s for s in reply["sessions"]}
    assert session["id"] in listed
    assert "chat_history" not in listed[session["id"]]
    assert {"id", "name", "backend", "agent", "access_mode", "status", "repo_path", "worktree_path", "created_at",
            "archived"} <= set(listed[session["id"]])


def test_archive_hides_a_session_until_unarchived(clownd, repo):
    session = created(clownd, repo)
    assert clownd.post(f"/api/sessions/{session['id']}/archive") == (200, {"success": True})
    assert session["id"] not in [s["id"] for s in clownd.get("/api/sessions")[1]["sessions"]]
    assert session["id"] not in [s["id"] for s in clownd.get("/api/sessions?include_archived=false")[1]["sessions"]]
    archived = {s["id"]: s for s in clownd.get("/api/sessions?include_archived=true")[1]["sessions"]}
    assert archived[session["id"]]["archived"] is True
    assert clownd.post(f"/api/sessions/{session['id']}/unarchive") == (200, {"success": True})
    assert session["id"] in [s["id"] for s in clownd.get("/api/sessions")[1]["sessions"]]


def test_include_archived_must_be_a_boolean(clownd):
    status, reply = clownd.get("/api/sessions?include_archived=maybe")
    assert status == 400 and error(reply)[0] == "INVALID_REQUEST"
    assert "include_archived" in error(reply)[1]


def test_set_access_mode_answers_the_new_mode(clownd, repo):
    session = created(clownd, repo)
    status, reply = clownd.request("PUT", f"/api/sessions/{session['id']}/access-mode", body={"access_mode": "read-only"})
    assert (status, reply) == (200, {"success": True, "access_mode": "read-only"})
    detail = clownd.get(f"/api/sessions/{session['id']}")[1]
    assert detail["access_mode"] == "read-only"
    assert detail["status"] == "running"


def test_set_access_mode_rejects_an_unknown_mode(clownd, repo):
    session = created(clownd, repo)
    status, reply = clownd.request("PUT", f"/api/sessions/{session['id']}/access-mode", body={"access_mode": "root"})
    assert status == 400 and error(reply)[0] == "INVALID_REQUEST" and "access_mode" in error(reply)[1]


def test_refresh_restarts_the_agent(clownd, repo):
    session = created(clownd, repo)
    wait_for(lambda: clownd.get(f"/api/sessions/{session['id']}")[1]["status"] == "running", timeout=10)
    assert clownd.post(f"/api/sessions/{session['id']}/refresh") == (200, {"success": True})
    assert clownd.get(f"/api/sessions/{session['id']}")[1]["status"] == "running"


def test_delete_refuses_uncommitted_changes_without_force(clownd, repo):
    session = created(clownd, repo)
    worktree = clownd.get(f"/api/sessions/{session['id']}")[1]["worktree_path"]
    with open(os.path.join(worktree, "new.txt"), "w") as handle:
        handle.write("change\n")
    status, reply = clownd.delete(f"/api/sessions/{session['id']}")
    assert status == 409 and error(reply)[0] == "CONFLICT"
    assert "uncommitted" in error(reply)[1]
    assert os.path.exists(worktree)
    assert clownd.delete(f"/api/sessions/{session['id']}?force=true") == (200, {"success": True})
    assert not os.path.exists(worktree)


def test_delete_removes_worktree_and_row_but_keeps_the_branch(clownd, repo):
    session = created(clownd, repo)
    detail = clownd.get(f"/api/sessions/{session['id']}")[1]
    assert clownd.delete(f"/api/sessions/{session['id']}") == (200, {"success": True})
    assert not os.path.exists(detail["worktree_path"])
    status, reply = clownd.get(f"/api/sessions/{session['id']}")
    assert status == 404
    branches = subprocess.run(["git", "-C", repo, "branch", "--list", detail["branch"]], capture_output=True, text=True)
    assert detail["branch"] in branches.stdout


@pytest.mark.parametrize("method,suffix", [("GET", ""), ("DELETE", ""), ("POST", "/archive"), ("POST", "/unarchive"),
                                           ("PUT", "/access-mode"), ("POST", "/refresh")])
def test_unknown_session_is_404_session_not_found(clownd, method, suffix):
    body = {"access_mode": "read-only"} if method == "PUT" else None
    status, reply = clownd.request(method, f"/api/sessions/xyz{suffix}", body=body)
    assert status == 404
    assert reply == {"error": {"code": "SESSION_NOT_FOUND", "message": "Session with ID 'xyz' not found"}}


def test_repo_path_must_be_a_git_work_tree(clownd, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    status, reply = create(clownd, str(plain))
    assert status == 400 and error(reply)[0] == "INVALID_REQUEST"
    assert "not a git work tree" in error(reply)[1]


def test_repo_path_outside_allowed_roots_is_refused(clownd):
    status, reply = create(clownd, "/etc")
    assert status == 400 and error(reply)[0] == "INVALID_REQUEST"
    assert "repo_path" in error(reply)[1] and "allowed root" in error(reply)[1]


def test_repo_path_must_be_absolute_and_exist(clownd, tmp_path):
    assert "repo_path" in error(create(clownd, "relative/repo")[1])[1]
    status, reply = create(clownd, str(tmp_path / "missing"))
    assert status == 400 and "does not exist" in error(reply)[1]


def test_unknown_backend_is_invalid_request(clownd, repo):
    status, reply = create(clownd, repo, backend="kubernetes")
    assert status == 400 and error(reply)[0] == "INVALID_REQUEST" and "backend" in error(reply)[1]


def test_unknown_agent_is_invalid_request(clownd, repo):
    status, reply = create(clownd, repo, agent="nope")
    assert status == 400 and error(reply) == ("INVALID_REQUEST", "unknown agent 'nope'")


def test_agent_without_a_profile_is_invalid_request(clownd, repo):
    status, reply = create(clownd, repo, agent="codex", profile=None)
    assert status == 400
    assert error(reply) == ("INVALID_REQUEST", "no profile runs agent 'codex': create one, or name one in 'profile'")


def test_without_profile_the_agents_most_recently_used_profile_runs(clownd, repo):
    create_profile(clownd, "fresh-a", "shell")
    create_profile(clownd, "fresh-b", "shell")
    time.sleep(1.1)     # last_used is kept to the second
    assert detail_of(clownd, created(clownd, repo, profile="fresh-b"))["profile"] == "fresh-b"
    assert detail_of(clownd, created(clownd, repo, profile=None))["profile"] == "fresh-b"
    time.sleep(1.1)
    assert detail_of(clownd, created(clownd, repo, profile="fresh-a"))["profile"] == "fresh-a"
    assert detail_of(clownd, created(clownd, repo, profile=None))["profile"] == "fresh-a"


def test_without_profile_an_agent_whose_profiles_never_ran_is_invalid_request(clownd, repo):
    status, reply = clownd.post("/api/profiles", {"alias": "never-ran", "agent_id": "codex",
                                                  "provider_id": "openai", "api_key": "sk-not-a-real-key"})
    assert status == 200, reply
    try:
        status, reply = create(clownd, repo, agent="codex", profile=None)
        assert status == 400
        assert error(reply) == ("INVALID_REQUEST",
                                "no profile of agent 'codex' has been used yet: name one in 'profile'")
    finally:
        assert clownd.delete("/api/profiles/never-ran")[0] == 200


def detail_of(clownd, session: dict) -> dict:
    status, detail = clownd.get(f"/api/sessions/{session['id']}")
    assert status == 200, detail
    return detail


def test_profile_of_another_agent_is_invalid_request(clownd, repo):
    status, reply = create(clownd, repo, agent="claude", profile="sh")
    assert status == 400 and "runs agent 'shell'" in error(reply)[1]
    status, reply = create(clownd, repo, profile="ghost")
    assert status == 400 and "'ghost' does not exist" in error(reply)[1]


def test_a_backend_whose_tool_is_missing_is_invalid_request(clownd, repo):
    status, reply = create(clownd, repo, backend="zellij")
    assert status == 400 and error(reply)[0] == "INVALID_REQUEST"
    assert "zellij" in error(reply)[1] and "not installed" in error(reply)[1]


def test_a_backend_that_fails_is_backend_error_and_leaves_nothing(clownd, repo):
    before = set(os.listdir(os.path.join(clownd.home, "worktrees")))
    status, reply = create(clownd, repo, backend="docker")   # the CLI is here, no engine
    assert status == 500 and error(reply)[0] == "BACKEND_ERROR"
    assert "docker" in error(reply)[1]
    assert set(os.listdir(os.path.join(clownd.home, "worktrees"))) == before


def test_huge_prompt_is_invalid_request(clownd, repo):
    status, reply = create(clownd, repo, prompt="x" * 200_000)
    assert status == 400 and error(reply)[0] == "INVALID_REQUEST" and "prompt" in error(reply)[1]


def test_body_over_the_cap_is_413(clownd, repo):
    status, reply = create(clownd, repo, prompt="x" * (2 << 20))
    assert status == 413 and error(reply)[0] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("body,field", [({"prompt": "x"}, "repo_path"), ({"repo_path": "/tmp"}, "prompt"),
                                        ({"repo_path": "/tmp", "prompt": ""}, "prompt"),
                                        ({"repo_path": "/tmp", "prompt": "x", "access_mode": "rw"}, "access_mode"),
                                        ({"repo_path": "/tmp", "prompt": "x", "no_plan_mode": "yes please"},
                                         "no_plan_mode"),
                                        ({"repo_path": "/tmp", "prompt": "x", "colour": "red"}, "colour")])
def test_bad_bodies_name_the_field(clownd, body, field):
    status, reply = clownd.post("/api/sessions", body)
    assert status == 400 and error(reply)[0] == "INVALID_REQUEST"
    assert field in error(reply)[1]


def test_not_json_is_invalid_request(clownd):
    status, reply = clownd.request("POST", "/api/sessions", raw=b"{nope")
    assert status == 400 and error(reply)[0] == "INVALID_REQUEST"


def test_a_method_the_route_lacks_is_405_in_the_sessions_envelope(clownd):
    status, reply = clownd.request("PATCH", "/api/sessions")
    assert status == 405 and error(reply)[0] == "METHOD_NOT_ALLOWED"


def test_credentials_say_where_from_and_never_the_value(clownd):
    create_profile(clownd, "keyed", "claude", "anthropic", api_key="sk-ant-never-shown-0123456789")
    status, reply = clownd.get("/api/credentials")
    assert status == 200
    credentials = reply["credentials"]
    assert credentials["github_token"] == {"configured": True, "source": "env"}
    for name in ("anthropic_oauth_token", "openai_api_key"):
        assert set(credentials[name]) == {"configured", "source"}
        assert credentials[name]["source"] in ("env", "file", "keyring", None)
    assert credentials["profile:keyed"] == {"configured": True, "source": "file"}
    assert "sk-ant-never-shown" not in str(reply) and "ghp_not_a_real_token" not in str(reply)


def test_openapi_describes_the_sessions_routes(clownd):
    _, document = clownd.get("/api/openapi.json")
    for path in ("/api/sessions", "/api/sessions/{session_id}", "/api/sessions/{session_id}/access-mode",
                 "/api/sessions/{session_id}/archive", "/api/sessions/{session_id}/unarchive",
                 "/api/sessions/{session_id}/refresh", "/api/credentials"):
        assert path in document["paths"], path
    assert "requestBody" in document["paths"]["/api/sessions"]["post"]
