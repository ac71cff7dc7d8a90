"""Real agent CLIs through a profile's proxy to the fake upstream: keys, metering, import dedup."""

import collections
import glob
import os
import subprocess
import time
import urllib.parse

import psutil
import pyte

from tests.api.proxy_helpers import (REAL_KEY, add_provider, create_profile, files_containing,
                                     open_session_starting_proxy, placeholder, start_proxy)
from tests.clownd import REPO, wait_for
from tests.e2e.terminal_client import TerminalClient
from tests.e2e.test_profile_agents import prompt_box_visible
from tests.fakes.upstream import FakeUpstream, text, tool_use
from tests.sessions_support import agent_env as daemon_agent_env

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
        port = start_proxy(daemon, "team")["port"]
        token = placeholder(daemon, "team")
        config_dir = tmp_path / "claude-config"
        done = subprocess.run(
            [os.path.join(BIN, "claude"), "-p", "read note.txt", "--dangerously-skip-permissions",
             "--model", "claude-sonnet-4-5"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
            env=agent_env(tmp_path, CLAUDE_CONFIG_DIR=str(config_dir), IS_SANDBOX="1",
                          ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}",
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
        port = start_proxy(daemon, "oa")["port"]
        codex_home = tmp_path / "codex"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(
            'model = "gpt-5"\nmodel_provider = "clown"\n[model_providers.clown]\nname = "clown"\n'
            f'base_url = "http://127.0.0.1:{port}"\nenv_key = "OPENAI_API_KEY"\n'
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
    # Codex's own rollout of the same turns: found, recognised as metered, not counted again.
    status, answer = daemon.post("/api/usage/import-codex?codex_dir=" + urllib.parse.quote(str(codex_home)),
                                 timeout=60)
    assert status == 200, answer
    assert answer["data"].startswith("Found 2 token_count entries from Codex rollout files (0 new or grown")
    assert answer["data"].endswith("; 2 already metered by the proxy)")
    _, after = daemon.get("/api/usage?period=today")
    assert after["data"]["total_tokens"] == tokens


TOKENS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
E2E_USAGE = {"input_tokens": 1234, "output_tokens": 56, "cache_creation_input_tokens": 78,
             "cache_read_input_tokens": 4321}
E2E_ANSWER = "Proxied answer 7431 from the fake upstream"


class Screen:
    """What a terminal client shows: the session's bytes rendered by a VT emulator."""

    def __init__(self, client: TerminalClient, cols: int, rows: int):
        self.client = client
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.fed = 0

    def lines(self, wait: float = 0.2) -> list[str]:
        self.client.pump(wait)
        while self.client.pump(0):
            pass
        self.stream.feed(bytes(self.client.output[self.fed:]))
        self.fed = len(self.client.output)
        return self.screen.display

    def wait(self, predicate, timeout: float, what: str) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not on the screen after {timeout}s:\n" + "\n".join(lines))


def environ_of(pid: int) -> dict[bytes, bytes]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        return dict(item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item)


def test_claude_code_in_a_terminal_session_of_a_proxy_on_profile(daemon_factory, tmp_path):
    """The issue's end to end: the real Claude Code CLI, interactive in a clown terminal session of
    a profile created with its proxy on, against a fake upstream on 127.0.0.1."""
    daemon = daemon_factory(toml='[usage]\ntimezone = "UTC"\n', env=daemon_agent_env())
    secrets = (REAL_KEY, REAL_KEY[-20:])
    with FakeUpstream(default_text=E2E_ANSWER, usage=E2E_USAGE) as upstream:
        add_provider(daemon, "fakeanthropic", upstream.url)
        create_profile(daemon, "cc", "fakeanthropic", proxy=True)
        session_id, proxy = open_session_starting_proxy(daemon, "cc", cols=120, rows=40)
        token = placeholder(daemon, "cc")

        client = TerminalClient(daemon, session_id)
        screen = Screen(client, 120, 40)
        screen.wait(prompt_box_visible, 60, "Claude Code's prompt")
        session = daemon.get(f"/api/terminal/sessions/{session_id}")[1]["data"]
        assert session["state"] == "running"
        # The agent (and anything it started) holds the placeholder and the proxy's URL, never the key.
        agent = psutil.Process(session["pid"])
        for process in [agent, *agent.children(recursive=True)]:
            with open(f"/proc/{process.pid}/environ", "rb") as handle:
                environ = handle.read()
            with open(f"/proc/{process.pid}/cmdline", "rb") as handle:
                cmdline = handle.read()
            for secret in secrets:
                assert secret.encode() not in environ and secret.encode() not in cmdline, process
        env = environ_of(agent.pid)
        assert env[b"ANTHROPIC_AUTH_TOKEN"] == token.encode()
        assert env[b"ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{proxy['port']}".encode()
        assert b"ANTHROPIC_API_KEY" not in env

        client.type("What does the fake upstream say?")
        time.sleep(0.3)         # Enter as a separate write, or Claude Code takes it as a paste
        client.type("\r")
        screen.wait(lambda lines: any(E2E_ANSWER in line for line in lines), 60, "the upstream's answer")

        profile_home = daemon.get("/api/profiles/cc")[1]["data"]["profile_home"]
        transcripts = os.path.join(profile_home, ".claude", "projects", "*", "*.jsonl")

        def transcript_with_answer():
            return [path for path in glob.glob(transcripts) if E2E_ANSWER.encode() in open(path, "rb").read()]

        transcript = wait_for(transcript_with_answer, 20, 0.2, "the transcript to hold the answer")

        model_calls = upstream.model_requests("/v1/messages")
        assert model_calls
        assert all(call.headers.get("x-api-key") == REAL_KEY for call in model_calls)
        assert all("authorization" not in call.headers and token not in str(call.headers) for call in model_calls)
        expected_by_model = collections.defaultdict(lambda: dict.fromkeys(TOKENS, 0))
        for call in model_calls:
            for name in TOKENS:
                expected_by_model[call.body["model"]][name] += E2E_USAGE[name]
        assert "claude-sonnet-4-5" in expected_by_model
        expected_total = {name: E2E_USAGE[name] * len(model_calls) for name in TOKENS}

        def usage_today():
            status, reply = daemon.get("/api/usage?period=today")
            assert status == 200 and reply["success"] is True, reply
            return reply["data"]

        # Each response's usage is committed before its last byte reaches the agent: no waiting.
        data = usage_today()
        assert data["total_tokens"] == expected_total
        assert list(data["aggregates"]["by_profile"]) == ["cc"]
        assert data["aggregates"]["by_profile"]["cc"]["tokens"] == expected_total
        assert {model: entry["tokens"] for model, entry in data["aggregates"]["by_model"].items()} == \
            dict(expected_by_model)

        # Nothing the agent or clown wrote for it holds the key: not the screen, not a file of the
        # profile home (its transcript included), not the user's home.
        shown = bytes(client.output)
        for secret in secrets:
            assert secret.encode() not in shown
            assert secret not in "\n".join(screen.lines(0))
            for path in transcript:
                with open(path, "rb") as handle:
                    assert secret.encode() not in handle.read(), path
        assert files_containing(profile_home, secrets) == []
        # (the search does find the key where clown keeps it)
        assert files_containing(os.path.join(daemon.home, "secrets"), secrets) == \
            [os.path.join(daemon.home, "secrets", "profile-cc.key")]
        assert files_containing(daemon.user_home, secrets) == []

        assert daemon.delete(f"/api/terminal/sessions/{session_id}") == (200, {"success": True})
        client.close()
        calls = len(upstream.model_requests("/v1/messages"))
    assert calls == len(model_calls)
    assert usage_today()["total_tokens"] == expected_total
