"""/api/agents, /api/providers and /api/catalog/errors: built-ins, user overrides, broken manifests."""

import os
import time

AGENT_IDS = ["claude", "codex", "gemini", "opencode", "shell"]
PROVIDER_IDS = ["anthropic", "minimax", "openai", "openrouter", "self", "zai"]


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def test_agents_lists_every_builtin_with_detection(shared_daemon):
    status, reply = shared_daemon.get("/api/agents")
    assert status == 200
    agents = reply["data"]
    assert [agent["id"] for agent in agents] == AGENT_IDS
    for agent in agents:
        assert set(agent) == {"id", "name", "installed", "version", "binary_path", "profile_count"}
    shell = agents[-1]
    assert shell["name"] == "Shell"
    assert shell["installed"] is True
    assert os.path.isabs(shell["binary_path"])
    assert shell["version"]


def test_agent_detail_has_every_spec_field(shared_daemon):
    status, reply = shared_daemon.get("/api/agents/claude")
    assert status == 200
    data = reply["data"]
    assert set(data) == {"id", "name", "installed", "version", "binary", "binary_path", "profile_strategy",
                         "supports_hooks", "default_model", "supported_models"}
    assert data["id"] == "claude"
    assert data["name"] == "Claude Code"
    assert data["binary"] == "claude"
    assert data["profile_strategy"] == "config-dir"
    assert data["supports_hooks"] is True
    assert data["default_model"] == "claude-sonnet-4-5"
    assert "claude-opus-4-5" in data["supported_models"]


def test_unknown_agent_and_provider_are_404(shared_daemon):
    assert shared_daemon.get("/api/agents/nope") == (404, {"success": False, "error": "Agent 'nope' not found"})
    assert shared_daemon.get("/api/providers/nope") == (404, {"success": False, "error": "Provider 'nope' not found"})


def test_providers_list_has_summary_fields(shared_daemon):
    status, reply = shared_daemon.get("/api/providers")
    assert status == 200
    assert [p["id"] for p in reply["data"]] == PROVIDER_IDS
    minimax = next(p for p in reply["data"] if p["id"] == "minimax")
    assert minimax == {"id": "minimax", "name": "MiniMax", "type": "anthropic-compatible", "default_model": "MiniMax-M2.1"}


def test_provider_detail_has_endpoints_and_models(shared_daemon):
    status, reply = shared_daemon.get("/api/providers/minimax")
    assert status == 200
    assert reply["data"] == {
        "id": "minimax", "name": "MiniMax", "type": "anthropic-compatible",
        "endpoints": {"international": "https://api.minimax.io/anthropic", "china": "https://api.minimaxi.com/anthropic"},
        "default_endpoint": "international", "models": ["MiniMax-M2.1", "MiniMax-M2"], "default_model": "MiniMax-M2.1",
    }
    status, reply = shared_daemon.get("/api/providers/self")
    assert reply["data"]["type"] == "self"
    assert reply["data"]["endpoints"] == {}


def test_user_manifest_overrides_builtin_by_id(shared_daemon):
    write(os.path.join(shared_daemon.home, "providers.d", "minimax.toml"), """
id = "minimax"
name = "MiniMax (mine)"
type = "anthropic-compatible"
[endpoints]
local = "http://127.0.0.1:9/anthropic"
[auth]
env_key = "MINIMAX_API_KEY"
[models]
available = ["M-local"]
default = "M-local"
""")
    try:
        status, reply = shared_daemon.get("/api/providers/minimax")
        assert status == 200
        assert reply["data"]["name"] == "MiniMax (mine)"
        assert reply["data"]["endpoints"] == {"local": "http://127.0.0.1:9/anthropic"}
        assert reply["data"]["default_endpoint"] == "local"
    finally:
        os.unlink(os.path.join(shared_daemon.home, "providers.d", "minimax.toml"))
    assert shared_daemon.get("/api/providers/minimax")[1]["data"]["name"] == "MiniMax"


def test_broken_manifest_is_skipped_and_reported_with_file_and_field(shared_daemon):
    path = os.path.join(shared_daemon.home, "agents.d", "broken.toml")
    write(path, 'id = "broken"\nname = "Broken"\nbinary = "x"\nsupports_hooks = "maybe"\n')
    try:
        assert shared_daemon.get("/api/agents/broken")[0] == 404
        status, reply = shared_daemon.get("/api/catalog/errors")
        assert status == 200
        assert reply["data"] == [{"kind": "agent", "layer": "user", "file": path, "field": "supports_hooks",
                                  "error": "Not a valid boolean."}]
        assert [a["id"] for a in shared_daemon.get("/api/agents")[1]["data"]] == AGENT_IDS
    finally:
        os.unlink(path)
    assert shared_daemon.get("/api/catalog/errors") == (200, {"success": True, "data": []})


def test_manifest_that_is_not_toml_is_reported(shared_daemon):
    path = os.path.join(shared_daemon.home, "providers.d", "junk.toml")
    write(path, "id = \n")
    try:
        errors = shared_daemon.get("/api/catalog/errors")[1]["data"]
        assert len(errors) == 1
        assert errors[0]["file"] == path and errors[0]["field"] is None
        assert errors[0]["error"].startswith("not valid TOML")
    finally:
        os.unlink(path)


def test_user_agent_with_hanging_version_command_answers_quickly(shared_daemon, tmp_path):
    script = tmp_path / "hang.sh"
    write(str(script), "#!/bin/sh\nsleep 60\n", 0o755)
    manifest = os.path.join(shared_daemon.home, "agents.d", "hang.toml")
    write(manifest, f'id = "hang"\nname = "Hangs"\nbinary = "{script}"\n')
    try:
        started = time.monotonic()
        status, reply = shared_daemon.get("/api/agents/hang", timeout=15)
        elapsed = time.monotonic() - started
        assert status == 200
        assert elapsed < 6
        assert reply["data"]["installed"] is True
        assert reply["data"]["version"] is None
        assert reply["data"]["binary_path"] == str(script)
        assert reply["data"]["profile_strategy"] == "none"
        # the daemon stays responsive while it ran
        assert shared_daemon.get("/health")[0] == 200
    finally:
        os.unlink(manifest)


def test_user_agent_reports_its_version(shared_daemon, tmp_path):
    script = tmp_path / "fake-agent"
    write(str(script), "#!/bin/sh\necho 'fake-agent 3.14.15 (build)'\n", 0o755)
    manifest = os.path.join(shared_daemon.home, "agents.d", "fake.toml")
    write(manifest, f'id = "fake"\nname = "Fake"\nbinary = "{script}"\n[models]\ndefault = "m1"\nsupported = ["m1"]\n')
    try:
        data = shared_daemon.get("/api/agents/fake")[1]["data"]
        assert data["installed"] is True and data["version"] == "3.14.15"
        assert data["default_model"] == "m1" and data["supported_models"] == ["m1"]
    finally:
        os.unlink(manifest)


def test_agent_not_on_path_is_not_installed(shared_daemon):
    manifest = os.path.join(shared_daemon.home, "agents.d", "ghost.toml")
    write(manifest, 'id = "ghost"\nname = "Ghost"\nbinary = "no-such-binary-anywhere"\n')
    try:
        data = shared_daemon.get("/api/agents/ghost")[1]["data"]
        assert (data["installed"], data["version"], data["binary_path"]) == (False, None, None)
    finally:
        os.unlink(manifest)
