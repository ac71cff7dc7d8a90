"""/api/registry and /api/registry/sync against a registry served over HTTP from a temp dir."""

import functools
import http.server
import os
import threading

import pytest

from clown.catalog.registry import write_index

NEW_AGENT = 'id = "newagent"\nname = "New Agent"\nbinary = "newagent"\n'
PRICING = '[models."new-model"]\ninput = 1.0\noutput = 2.0\ncache_write = 1.25\ncache_read = 0.1\n'


@pytest.fixture
def registry_server(tmp_path):
    root = tmp_path / "registry"
    (root / "agents").mkdir(parents=True)
    (root / "agents" / "newagent.toml").write_text(NEW_AGENT)
    (root / "pricing.toml").write_text(PRICING)
    write_index(str(root), "stable", "c0ffee1")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_status_before_any_sync_is_the_builtin_registry(shared_daemon):
    status, reply = shared_daemon.get("/api/registry")
    assert status == 200
    assert set(reply["data"]) == {"channel", "commit", "last_sync", "cached"}
    assert reply["data"]["channel"] == "builtin"
    assert reply["data"]["cached"] is False
    assert reply["data"]["last_sync"] is None


def test_sync_without_url_is_400(shared_daemon):
    assert shared_daemon.post("/api/registry/sync") == (
        400, {"success": False, "error": "No registry to sync: set [registry] url in clown.toml"})


def test_sync_brings_a_new_agent_and_answers_the_status(daemon_factory, registry_server):
    root, url = registry_server
    daemon = daemon_factory(toml=f'[registry]\nurl = "{url}/registry.json"\n')
    assert daemon.get("/api/agents/newagent")[0] == 404
    status, reply = daemon.post("/api/registry/sync")
    assert status == 200
    assert reply["data"]["channel"] == "stable"
    assert reply["data"]["commit"] == "c0ffee1"
    assert reply["data"]["cached"] is True
    assert reply["data"]["last_sync"].endswith("Z")
    assert daemon.get("/api/registry")[1]["data"] == reply["data"]
    assert daemon.get("/api/agents/newagent")[1]["data"]["name"] == "New Agent"
    assert os.path.isfile(os.path.join(daemon.home, "registry", "c0ffee1", "agents", "newagent.toml"))
    # built-ins are still there under the registry layer
    assert daemon.get("/api/agents/claude")[0] == 200


def test_tampered_file_is_refused_and_the_last_good_registry_stays(daemon_factory, registry_server):
    root, url = registry_server
    daemon = daemon_factory(toml=f'[registry]\nurl = "{url}"\n')
    assert daemon.post("/api/registry/sync")[0] == 200
    (root / "agents" / "newagent.toml").write_text(NEW_AGENT.replace("New Agent", "Renamed"))
    write_index(str(root), "stable", "bad0001")
    (root / "agents" / "newagent.toml").write_text(NEW_AGENT.replace("New Agent", "Evil"))
    status, reply = daemon.post("/api/registry/sync?force=true")
    assert status == 502
    assert reply["success"] is False
    assert reply["error"].startswith("Registry sync failed, the last good registry stays in force: "
                                     "registry file agents/newagent.toml: sha256 mismatch")
    assert daemon.get("/api/registry")[1]["data"]["commit"] == "c0ffee1"
    assert daemon.get("/api/agents/newagent")[1]["data"]["name"] == "New Agent"


def test_unreachable_registry_is_502(daemon_factory):
    from tests.clownd import free_port

    daemon = daemon_factory(toml=f'[registry]\nurl = "http://127.0.0.1:{free_port()}/"\n')
    status, reply = daemon.post("/api/registry/sync")
    assert status == 502
    assert reply["error"].startswith("Registry sync failed, the last good registry stays in force: "
                                     "registry unreachable: http://127.0.0.1:")
    assert daemon.get("/api/registry")[1]["data"]["cached"] is False


def test_bad_force_value_is_400(shared_daemon):
    status, reply = shared_daemon.post("/api/registry/sync?force=perhaps")
    assert (status, reply) == (400, {"success": False, "error": "query field 'force': Not a valid boolean."})
