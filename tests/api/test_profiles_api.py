"""/api/profiles against a real clownd: create, list, get, delete, and every bad input."""

import os

import pytest

KEY = "sk-test-5ecret-key-0123456789abcdef"


def create(daemon, **body):
    payload = {"alias": "work", "agent_id": "claude", "provider_id": "minimax", "api_key": KEY}
    payload.update(body)
    payload = {name: value for name, value in payload.items() if value is not None}
    return daemon.post("/api/profiles", payload)


def test_create_answers_alias_and_message(daemon):
    status, reply = create(daemon)
    assert status == 200
    assert reply == {"success": True, "data": {"alias": "work", "message": "Profile created successfully"}}


def test_get_shows_every_field_with_model_from_provider_default(daemon):
    create(daemon)
    status, reply = daemon.get("/api/profiles/work")
    assert status == 200
    data = reply["data"]
    assert set(data) == {"alias", "agent_id", "provider_id", "endpoint_id", "model", "created_at", "last_used",
                         "profile_home"}
    assert data["alias"] == "work"
    assert data["agent_id"] == "claude"
    assert data["provider_id"] == "minimax"
    assert data["endpoint_id"] == "default"
    assert data["model"] == "MiniMax-M2.1"
    assert data["last_used"] is None
    assert data["created_at"].endswith("Z")
    assert data["profile_home"] == os.path.realpath(os.path.join(daemon.home, "profiles", "work"))
    assert os.path.isabs(data["profile_home"]) and os.path.isdir(data["profile_home"])


def test_model_comes_from_request_then_provider_then_agent(daemon):
    create(daemon, alias="given", model="MiniMax-M2")
    create(daemon, alias="own", provider_id="self", api_key=None)
    assert daemon.get("/api/profiles/given")[1]["data"]["model"] == "MiniMax-M2"
    assert daemon.get("/api/profiles/own")[1]["data"]["model"] == "claude-sonnet-4-5"


def test_list_has_summary_fields_and_filters_by_agent(daemon):
    create(daemon, alias="a1")
    create(daemon, alias="s1", agent_id="shell", provider_id="self", api_key=None)
    status, reply = daemon.get("/api/profiles")
    assert status == 200
    assert [p["alias"] for p in reply["data"]] == ["a1", "s1"]
    assert set(reply["data"][0]) == {"alias", "agent_id", "provider_id", "endpoint_id", "model", "last_used"}
    status, reply = daemon.get("/api/profiles?agent=shell")
    assert status == 200
    assert [p["alias"] for p in reply["data"]] == ["s1"]


def test_named_endpoint_is_kept(daemon):
    create(daemon, endpoint_id="china")
    assert daemon.get("/api/profiles/work")[1]["data"]["endpoint_id"] == "china"


def test_duplicate_alias_is_409(daemon):
    create(daemon)
    status, reply = create(daemon)
    assert status == 409
    assert reply == {"success": False, "error": "Profile 'work' already exists"}


@pytest.mark.parametrize("body, message", [
    ({"alias": "../etc"}, "body field 'alias': must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
    ({"alias": "x" * 65}, "body field 'alias': must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
    ({"alias": 5}, "body field 'alias': Not a valid string."),
    ({"agent_id": "nope"}, "body field 'agent_id': unknown agent 'nope'"),
    ({"provider_id": "nope"}, "body field 'provider_id': unknown provider 'nope'"),
    ({"endpoint_id": "mars"}, "body field 'endpoint_id': provider 'minimax' has no endpoint 'mars' "
                              "(known: china, international, or 'default')"),
    ({"api_key": None}, "body field 'api_key': required by provider 'minimax'"),
    ({"provider_id": "self"}, "body field 'api_key': provider 'self' uses the agent's own login and takes no key"),
    ({"proxy": "yes"}, "body field 'proxy': Not a valid boolean."),
    ({"model": "a" * 201}, "body field 'model': Length must be between 1 and 200."),
    ({"api_key": "k" * 5000}, "body field 'api_key': Length must be between 1 and 4096."),
    ({"colour": "red"}, "body field 'colour': Unknown field."),
    ({"args": "--x"}, "body field 'args': Not a valid list."),
    ({"env": {"lower": "x"}}, "body field 'env.lower.key': must match ^[A-Z_][A-Z0-9_]*$"),
    ({"env": {"ANTHROPIC_AUTH_TOKEN": "x"}},
     "body field 'env': may not set ANTHROPIC_AUTH_TOKEN: clown sets it from the profile"),
    ({"env": {"MINIMAX_API_KEY": "x"}}, "body field 'env': may not set MINIMAX_API_KEY: clown sets it from the profile"),
])
def test_bad_create_body_is_400_naming_the_field(shared_daemon, body, message):
    status, reply = create(shared_daemon, alias="bad", **body) if "alias" not in body else create(shared_daemon, **body)
    assert status == 400
    assert reply == {"success": False, "error": message}
    assert shared_daemon.get("/api/profiles/bad")[0] == 404


def test_missing_required_field_is_400(shared_daemon):
    status, reply = shared_daemon.post("/api/profiles", {"alias": "x", "agent_id": "claude"})
    assert status == 400
    assert reply == {"success": False, "error": "body field 'provider_id': Missing data for required field."}


def test_body_must_be_an_object(shared_daemon):
    status, reply = shared_daemon.post("/api/profiles", ["work"])
    assert status == 400
    assert reply == {"success": False, "error": "request body must be a JSON object"}


@pytest.mark.parametrize("path", ["/api/profiles/..%2F..", "/api/profiles/..%2F..%2Fsecrets", "/api/profiles/.hidden"])
def test_alias_in_path_that_could_climb_is_400(shared_daemon, path):
    for method in ("GET", "DELETE"):
        status, reply = shared_daemon.request(method, path)
        assert status == 400
        assert reply == {"success": False, "error": "path field 'alias': must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}


def test_unknown_profile_is_404(shared_daemon):
    assert shared_daemon.get("/api/profiles/ghost") == (404, {"success": False, "error": "Profile 'ghost' not found"})
    assert shared_daemon.delete("/api/profiles/ghost") == (404, {"success": False, "error": "Profile 'ghost' not found"})


def test_delete_removes_row_key_and_home(daemon):
    create(daemon)
    home = os.path.join(daemon.home, "profiles", "work")
    secret = os.path.join(daemon.home, "secrets", "profile-work.key")
    assert os.path.isdir(home) and os.path.exists(secret)
    status, reply = daemon.delete("/api/profiles/work")
    assert (status, reply) == (200, {"success": True, "data": {"message": "Profile deleted"}})
    assert daemon.get("/api/profiles/work")[0] == 404
    assert not os.path.exists(home) and not os.path.exists(secret)


def test_delete_with_a_running_terminal_session_is_409_unless_forced(daemon):
    import sqlite3

    create(daemon)
    db = sqlite3.connect(os.path.join(daemon.home, "clown.db"))
    db.execute("INSERT INTO terminal_sessions (id, profile_alias, state, created_at, cols, rows, argv, working_dir)"
               " VALUES ('t1', 'work', 'running', '2026-01-01T00:00:00Z', 80, 24, '[]', '/tmp')")
    db.commit()
    db.close()
    status, reply = daemon.delete("/api/profiles/work")
    assert status == 409
    assert reply == {"success": False, "error": "Profile 'work' has 1 running terminal session(s): "
                                                "terminate them first or delete with ?force=true"}
    assert daemon.get("/api/profiles/work")[0] == 200
    status, reply = daemon.delete("/api/profiles/work?force=true")
    assert (status, reply) == (200, {"success": True, "data": {"message": "Profile deleted"}})


def test_key_never_in_answers_db_or_logs(daemon):
    status, reply = create(daemon)
    assert status == 200
    answers = [reply, daemon.get("/api/profiles")[1], daemon.get("/api/profiles/work")[1]]
    assert all(KEY not in str(answer) for answer in answers)
    secret = os.path.join(daemon.home, "secrets", "profile-work.key")
    assert open(secret).read() == KEY
    assert os.stat(secret).st_mode & 0o777 == 0o600
    for name in os.listdir(daemon.home):
        if name.startswith("clown.db"):
            assert KEY.encode() not in open(os.path.join(daemon.home, name), "rb").read()
    for root, _, files in os.walk(os.path.join(daemon.home, "logs")):
        for name in files:
            assert KEY.encode() not in open(os.path.join(root, name), "rb").read()


def test_profile_count_of_agent_follows_profiles(daemon):
    create(daemon, alias="p1")
    create(daemon, alias="p2")
    agents = {agent["id"]: agent for agent in daemon.get("/api/agents")[1]["data"]}
    assert agents["claude"]["profile_count"] == 2
    assert agents["codex"]["profile_count"] == 0
    assert daemon.get("/api/daemon/status")[1]["data"]["profiles_count"] == 2


def test_deleting_a_profile_stops_its_proxy_and_leaves_nothing_of_it(daemon):
    import socket
    import sqlite3

    from tests.api.proxy_helpers import add_provider, create_profile, start_proxy
    from tests.fakes.upstream import FakeUpstream

    with FakeUpstream() as upstream:
        add_provider(daemon, "fakeanthropic", upstream.url)
        create_profile(daemon, "team", "fakeanthropic")
        port = start_proxy(daemon, "team")["port"]
        spec = os.path.join(daemon.home, "run", "specs", "proxy-team.json")
        placeholder = os.path.join(daemon.home, "secrets", "profile-team.placeholder")
        assert os.path.exists(spec) and os.path.exists(placeholder)
        db = sqlite3.connect(os.path.join(daemon.home, "clown.db"))
        try:
            db.execute("INSERT INTO program_restarts (program, restarts, last_restart) VALUES ('proxy-team', 3, 'x')")
            db.commit()
        finally:
            db.close()
        assert daemon.delete("/api/profiles/team") == (200, {"success": True, "data": {"message": "Profile deleted"}})
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert not os.path.exists(spec) and not os.path.exists(placeholder)
        db = sqlite3.connect(os.path.join(daemon.home, "clown.db"))
        try:
            assert db.execute("SELECT COUNT(*) FROM program_restarts WHERE program = 'proxy-team'").fetchone()[0] == 0
        finally:
            db.close()
        status, reply = daemon.get("/api/proxy/status/team")
        assert status == 404 and reply["success"] is False
