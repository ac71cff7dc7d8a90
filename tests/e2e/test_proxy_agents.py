"""Real agent CLIs through a profile's proxy to the fake upstream: keys, metering, import dedup."""

import os
import subprocess
import urllib.parse


from tests.api.proxy_helpers import REAL_KEY, add_provider, create_profile, placeholder
from tests.clownd import REPO
from tests.fakes.upstream import FakeUpstream, text, tool_use

BIN = os.path.join(REPO, "tests", "npm", "node_modules", ".bin")


def agent_env(tmp_path, **extra):
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **extra}


def test_claude_code_turn_through_the_proxy_is_metered_once_even_after_import(daemon_factory, tmp_path):
    daemon = daemon_factory(toml='[usage]\ntimezone = "UTC"\n')
    note = tmp_path / "note.txt"
    note.write_text("hello-file\n")
    with FakeUpstream(turns=[tool_use("Read", {"file_path": str(note)}), text("It says hello-file")],
                      script_only_with_tools=True) as upstream:
        add_provider(daemon, "fakeanthropic", upstream.url)
        create_profile(daemon, "team", "fakeanthropic")
        status, reply = daemon.post("/api/proxy/team/start")
        assert status == 200, reply
        token = placeholder(daemon, "team")
        config_dir = tmp_path / "claude-config"
        done = subprocess.run(
            [os.path.join(BIN, "claude"), "-p", "read note.txt", "--dangerously-skip-permissions",
             "--model", "claude-sonnet-4-5"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
            env=agent_env(tmp_path, CLAUDE_CONFIG_DIR=str(config_dir), IS_SANDBOX="1",
                          ANTHROPIC_BASE_URL=f"http://127.0.0.1:{reply['data']['port']}",
                          ANTHROPIC_AUTH_TOKEN=token, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                          DISABLE_AUTOUPDATER="1"))
        assert done.returncode == 0, done.stderr
        assert "hello-file" in done.stdout
        model_calls = upstream.model_requests("/v1/messages")
        assert len(model_calls) >= 2
        assert all(call.headers.get("x-api-key") == REAL_KEY for call in model_calls)
        assert all(token not in str(call.headers) for call in model_calls)
    _, metered = daemon.get("/api/usage?period=all")
    assert metered["data"]["total_tokens"]["output_tokens"] == 20 * len(model_calls)
    assert metered["data"]["total_sessions"] == 1
    transcripts = "".join(path.read_text() for path in (config_dir / "projects").rglob("*.jsonl"))
    assert REAL_KEY not in transcripts and token not in transcripts
    status, _ = daemon.post("/api/usage/import-claude?claude_dir=" + urllib.parse.quote(str(config_dir)), timeout=60)
    assert status == 200
    _, after = daemon.get("/api/usage?period=all")
    assert after["data"]["total_tokens"] == metered["data"]["total_tokens"]


def test_codex_turn_through_the_proxy_is_metered(daemon_factory, tmp_path):
    daemon = daemon_factory()
    with FakeUpstream(turns=[tool_use("exec_command", {"cmd": "echo hi"}), text("done")],
                      script_only_with_tools=True) as upstream:
        add_provider(daemon, "fakeopenai", upstream.url + "/v1", kind="openai")
        create_profile(daemon, "oa", "fakeopenai", agent_id="codex", model="gpt-5")
        status, reply = daemon.post("/api/proxy/oa/start")
        assert status == 200, reply
        codex_home = tmp_path / "codex"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(
            'model = "gpt-5"\nmodel_provider = "clown"\n[model_providers.clown]\nname = "clown"\n'
            f'base_url = "http://127.0.0.1:{reply["data"]["port"]}"\nenv_key = "OPENAI_API_KEY"\n'
            'wire_api = "responses"\n')
        done = subprocess.run(
            [os.path.join(BIN, "codex"), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
             "say hi"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
            env=agent_env(tmp_path, CODEX_HOME=str(codex_home), OPENAI_API_KEY=placeholder(daemon, "oa")))
        assert done.returncode == 0, done.stderr
        calls = upstream.model_requests("/v1/responses")
        assert len(calls) == 2
        assert all(call.headers["authorization"] == f"Bearer {REAL_KEY}" for call in calls)
    _, reply = daemon.get("/api/usage?period=today")
    tokens = reply["data"]["total_tokens"]
    assert (tokens["input_tokens"], tokens["cache_read_input_tokens"], tokens["output_tokens"]) == (200, 100, 40)
