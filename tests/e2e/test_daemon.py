"""clownd as a whole: supervisord, web, events, restarts, shutdown, the request gate."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import websockets.sync.client
from openapi_spec_validator import validate

from tests.clownd import Daemon, wait_for

TOKEN = "a-test-token-of-enough-length"


def test_health_answers_the_sessions_shape(daemon):
    assert daemon.get("/health") == (200, {"status": "healthy", "version": "0.1.0"})


def test_supervisorctl_shows_web_and_events_running(daemon):
    status = daemon.supervisorctl("status")
    lines = {line.split()[0]: line.split()[1] for line in status.splitlines() if line.strip()}
    assert lines == {"events": "RUNNING", "web": "RUNNING"}


def test_daemon_status_reports_supervisord_pid_and_programs(daemon):
    status, reply = daemon.get("/api/daemon/status")
    assert status == 200 and reply["success"] is True
    data = reply["data"]
    supervisord = psutil.Process(daemon.process.pid).children()[0]
    assert data["pid"] == supervisord.pid
    assert data["status"] == "running" and data["version"] == "0.1.0"
    assert data["profiles_count"] == 0 and data["active_proxies"] == 0
    assert 0 <= data["uptime_secs"] < 60
    assert {p["name"]: p["state"] for p in data["programs"]} == {"events": "RUNNING", "web": "RUNNING"}


def test_web_killed_comes_back_with_the_restart_recorded(daemon):
    old_pid = daemon.program_pid("web")
    os.kill(old_pid, signal.SIGKILL)

    def restarted():
        try:
            return daemon.program_pid("web") not in (old_pid, None)
        except OSError:
            return False

    wait_for(restarted, timeout=20, message="web to come back")

    def web_program():
        _, reply = daemon.get("/api/daemon/status")
        web = next(p for p in reply["data"]["programs"] if p["name"] == "web")
        return web if web["state"] == "RUNNING" else None

    web = wait_for(web_program, timeout=10, message="web RUNNING")
    assert web["restarts"] == 1


def test_sigterm_stops_every_process(daemon):
    pids = daemon.all_pids()
    assert len(pids) >= 4  # clownd, supervisord, web, events
    assert daemon.stop() == 0
    time.sleep(0.2)
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_second_clownd_on_the_same_home_refuses(daemon):
    second = subprocess.run([sys.executable, "-m", "clown.daemon.clownd", "--home", daemon.home, "--port", "0"],
                            capture_output=True, text=True, timeout=30, env=daemon.env)
    assert second.returncode != 0
    assert "another clownd is already running" in second.stderr


def test_restart_after_a_crash_is_not_blocked_by_stale_files(daemon_factory, tmp_path):
    first = daemon_factory(home=tmp_path / "crashy")
    first.kill_everything()
    first.process.wait(10)
    assert os.path.exists(os.path.join(first.home, "run", "supervisord.pid"))
    second = Daemon(first.home)
    try:
        second.start()
        assert second.get("/health")[0] == 200
    finally:
        second.stop()
        second.kill_everything()


def test_foreign_host_is_refused(daemon):
    status, body = daemon.get("/api/daemon/status", headers={"Host": "evil.example:8765"})
    assert status == 403
    assert body == {"success": False, "error": "Host header is not one this daemon answers to"}
    status, body = daemon.get("/health", headers={"Host": "rebind.attacker.test"})
    assert status == 403
    assert body["error"]["code"] == "FORBIDDEN"


def test_foreign_origin_cannot_change_state(daemon):
    status, body = daemon.post("/api/auth/logout", headers={"Origin": "http://evil.example"})
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"
    status, body = daemon.post("/api/registry/sync", headers={"Origin": "https://evil.example"})
    assert status == 403 and body["success"] is False


def test_foreign_origin_websocket_upgrade_is_refused(daemon):
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        websockets.sync.client.connect(daemon.url.replace("http", "ws") + "/ws/terminal/some-id",
                                       origin="http://evil.example", open_timeout=5)
    assert refused.value.response.status_code == 403


def test_local_origins_get_cors_headers_and_foreign_ones_none(daemon):
    import urllib.request
    request = urllib.request.Request(daemon.url + "/api/daemon/status", method="OPTIONS",
                                     headers={"Origin": "http://localhost:3000",
                                              "Access-Control-Request-Method": "POST"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Origin" in response.headers["Vary"]
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
        assert response.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    request = urllib.request.Request(daemon.url + "/health", headers={"Origin": "http://evil.example"})
    with urllib.request.urlopen(request) as response:
        assert response.headers.get("Access-Control-Allow-Origin") is None


@pytest.mark.parametrize("path, expected", [
    ("/api/nowhere", {"success": False, "error": "No route for /api/nowhere"}),
    ("/api/sessions/x/y/z", {"error": {"code": "NOT_FOUND", "message": "No route for /api/sessions/x/y/z"}}),
])
def test_unknown_path_is_404_in_its_family_envelope(daemon, path, expected):
    assert daemon.get(path) == (404, expected)


def test_wrong_method_is_405_in_both_envelopes(daemon):
    assert daemon.request("PATCH", "/api/daemon/status") == (
        405, {"success": False, "error": "Method PATCH is not allowed on /api/daemon/status"})
    assert daemon.request("DELETE", "/api/config") == (
        405, {"error": {"code": "METHOD_NOT_ALLOWED", "message": "Method DELETE is not allowed on /api/config"}})


def test_invalid_json_and_wrong_field_are_400_naming_the_problem(daemon):
    status, body = daemon.request("POST", "/api/auth/login", raw=b"{not json")
    assert status == 400 and body["error"]["code"] == "INVALID_REQUEST"
    assert body["error"]["message"].startswith("request body is not valid JSON")
    status, body = daemon.post("/api/auth/login", body={"token": 7})
    assert (status, body) == (400, {"error": {"code": "INVALID_REQUEST",
                                              "message": "body field 'token': Not a valid string."}})
    status, body = daemon.post("/api/auth/login", body={"token": "x", "extra": 1})
    assert (status, body) == (400, {"error": {"code": "INVALID_REQUEST",
                                              "message": "body field 'extra': Unknown field."}})


def test_body_over_the_cap_is_413_in_both_envelopes(daemon):
    huge = b'{"token": "' + b"a" * (2 << 20) + b'"}'
    status, body = daemon.request("POST", "/api/auth/login", raw=huge)
    assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    status, body = daemon.request("POST", "/api/registry/sync", raw=huge)
    assert status == 413 and body["success"] is False and "cap" in body["error"]


def test_openapi_document_is_valid_and_covers_the_routes(daemon):
    status, document = daemon.get("/api/openapi.json")
    assert status == 200
    validate(document)
    for path in ("/health", "/api/config", "/api/daemon/status", "/api/logs", "/api/logs/{program}"):
        assert path in document["paths"]


def test_config_reports_defaults(daemon):
    status, body = daemon.get("/api/config")
    assert status == 200
    assert body["default_backend"] == "pty" and body["default_agent"] == "claude"
    assert body["features"] == {"webauthn_auth": False, "ai_metadata": False}
    assert body["backends"]["pty"] is True


def test_token_is_required_when_set_and_health_stays_open(daemon_factory):
    daemon = daemon_factory(toml=f'[server]\ntoken = "{TOKEN}"\n')
    assert daemon.get("/health")[0] == 200
    assert daemon.get("/api/daemon/status") == (401, {
        "success": False,
        "error": "Authentication required: send Authorization: Bearer <token> or sign in for the clown_session cookie"})
    assert daemon.get("/api/config")[1]["error"]["code"] == "UNAUTHORIZED"
    assert daemon.get("/api/daemon/status", headers={"Authorization": "Bearer wrong-token-wrong-token"})[0] == 401
    assert daemon.get("/api/daemon/status", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert daemon.get("/api/daemon/status", headers={"Cookie": f"clown_session={TOKEN}"})[0] == 200


def test_login_trades_the_token_for_a_cookie(daemon_factory):
    import http.client
    daemon = daemon_factory(toml=f'[server]\ntoken = "{TOKEN}"\n')
    assert daemon.post("/api/auth/login", body={"token": "nope"})[0] == 401
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    connection.request("POST", "/api/auth/login", body=f'{{"token": "{TOKEN}"}}',
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    cookie = response.getheader("Set-Cookie")
    assert cookie.startswith(f"clown_session={TOKEN}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie


@pytest.mark.parametrize("toml, message", [
    ("[terminal]\nscrollbak_bytes = 5\n", "unknown config key [terminal] scrollbak_bytes"),
    ("[terminal]\nmax_sessions = \"many\"\n", "[terminal] max_sessions: Not a valid integer."),
    ("[bogus]\nx = 1\n", "unknown config section [bogus]"),
    ("[features]\nai_metadata = true\n", "[features] ai_metadata: this version of clown does not have this feature"),
    ("[server]\nhost = \"0.0.0.0\"\n", "is not a loopback address: set [server] token"),
])
def test_bad_config_stops_clownd_naming_the_key(tmp_path, toml, message):
    home = tmp_path / "home"
    home.mkdir()
    (home / "clown.toml").write_text(toml)
    done = subprocess.run([sys.executable, "-m", "clown.daemon.clownd", "--home", str(home)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert message in done.stderr


def test_env_overrides_file_and_flags_override_env(tmp_path):
    from clown import config
    (tmp_path / "clown.toml").write_text("[server]\nport = 1111\n[terminal]\nmax_sessions = 3\n")
    resolved = config.load(str(tmp_path), environ={"CLOWN_SERVER_PORT": "2222", "CLOWN_TERMINAL_MAX_SESSIONS": "4"},
                           flags={("server", "port"): 3333})
    assert resolved["server"]["port"] == 3333
    assert resolved["terminal"]["max_sessions"] == 4


def test_events_listener_records_transitions(daemon):
    import sqlite3
    conn = sqlite3.connect(os.path.join(daemon.home, "clown.db"))

    def web_rows():
        rows = conn.execute("SELECT program, from_state, to_state FROM program_events WHERE program = 'web'"
                            " ORDER BY id").fetchall()
        return rows if len(rows) >= 2 else None

    # supervisor delivers events to the listener asynchronously: wait for both to land.
    assert wait_for(web_rows, timeout=10, message="web's events") == [
        ("web", "STOPPED", "STARTING"), ("web", "STARTING", "RUNNING")]


def test_logs_are_listed_and_tailed_with_secrets_redacted(daemon):
    log_path = os.path.join(daemon.home, "logs", "probe.log")
    with open(log_path, "a") as handle:
        handle.write("upstream said Authorization: Bearer sk-ant-secretvalue123456\n")
    status, reply = daemon.get("/api/logs")
    assert status == 200 and {"web", "events", "probe"} <= {entry["program"] for entry in reply["data"]}
    status, reply = daemon.get("/api/logs/probe?lines=1")
    assert status == 200
    assert reply["data"]["program"] == "probe"
    assert reply["data"]["lines"] == ["upstream said Authorization: [redacted]"]
    assert daemon.get("/api/logs/nope")[0] == 404
    assert daemon.get("/api/logs/web?lines=0")[0] == 400
