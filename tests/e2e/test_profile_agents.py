"""Real agent CLIs run from a profile's Launch against a fake upstream on 127.0.0.1.

Each test builds the profile's Launch with ``build_launch`` (as the terminal worker gets
it), resolves ``secret_env`` from the SecretStore as the worker does, and runs the agent.
The user's HOME is a temp dir, so anything an agent writes outside its profile shows.
"""

import json
import os
import select
import subprocess
import time

import pytest

from clown.catalog.catalog import Catalog
from clown.home import Home
from clown.profiles.launch import build_launch, key_secret_name
from clown.secrets import SecretStore
from tests.fakes.upstream import FakeUpstream

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NPM_BIN = os.path.join(REPO, "tests", "npm", "node_modules", ".bin")
ANSWER = "Hello from the fake upstream"


def prompt_box_visible(lines) -> bool:
    """Claude Code's input box: a ``❯`` line right under a horizontal rule."""
    return any(line.strip().startswith("❯") and "────" in above for above, line in zip(lines, lines[1:]))

FIRST_RUN_TEXTS = ("Choose the text style", "Do you trust the files", "trust this folder",
                   "Detected a custom API key", "Select login method", "Yes, proceed")



class World:
    """A clown home with a custom provider at the fake upstream, and a fake user HOME."""

    def __init__(self, tmp_path, upstream):
        self.home = Home(str(tmp_path / "clown"))
        self.home.ensure()
        self.user_home = str(tmp_path / "user")
        os.makedirs(self.user_home)
        self.secrets = SecretStore(self.home.secrets)
        os.makedirs(self.home.providers_d)
        with open(os.path.join(self.home.providers_d, "fake.toml"), "w") as handle:
            handle.write(f"""
id = "fakeanthropic"
name = "Fake Anthropic-compatible"
type = "anthropic-compatible"
[endpoints]
local = "{upstream.url}"
[auth]
env_key = "FAKE_API_KEY"
[models]
available = ["fake-model-1", "fake-model-2"]
default = "fake-model-1"
""")
        with open(os.path.join(self.home.providers_d, "fakeopenai.toml"), "w") as handle:
            handle.write(f"""
id = "fakeopenai"
name = "Fake OpenAI-compatible"
type = "openai-compatible"
[endpoints]
local = "{upstream.url}/v1"
[auth]
env_key = "FAKE_OPENAI_KEY"
[models]
default = "fake-gpt"
""")
        self.catalog = Catalog(self.home)
        self.environ = {"HOME": self.user_home, "PATH": NPM_BIN + os.pathsep + os.environ["PATH"],
                        "USER": os.environ.get("USER", "user"), "LANG": "C.UTF-8", "TERM": "xterm-256color"}

    def profile(self, alias, agent, provider, key, model=None):
        self.secrets.write(key_secret_name(alias), key)
        return {"alias": alias, "agent_id": agent, "provider_id": provider, "endpoint_id": "default",
                "model": model or self.catalog.provider(provider).default_model, "args": "[]", "env": "{}"}

    def launch(self, row, extra_args, working_dir=None):
        return build_launch(self.home, self.catalog, row, self.secrets, extra_args, working_dir,
                            environ=self.environ)

    def run(self, launch, timeout=120):
        env = dict(launch.env)
        for name, secret in launch.secret_env.items():
            env[name] = self.secrets.read(secret)
        return subprocess.run(launch.argv, env=env, cwd=launch.cwd, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def upstream():
    with FakeUpstream(default_text=ANSWER) as server:
        yield server


@pytest.fixture
def world(tmp_path, upstream):
    return World(tmp_path, upstream)


def files_under(root):
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


def test_claude_print_mode_uses_the_profile_key_model_and_home(world, upstream):
    row = world.profile("work", "claude", "fakeanthropic", "sk-work-key-1")
    launch = world.launch(row, ["-p", "say hi"])
    assert "sk-work-key-1" not in json.dumps(launch.env)
    assert launch.secret_env == {"ANTHROPIC_AUTH_TOKEN": "profile-work.key"}
    assert launch.argv[0] == os.path.join(NPM_BIN, "claude")
    done = world.run(launch)
    assert done.returncode == 0, done.stderr
    assert ANSWER in done.stdout
    requests = upstream.model_requests("/v1/messages")
    assert requests
    assert all(r.headers.get("authorization") == "Bearer sk-work-key-1" for r in requests)
    assert {r.body["model"] for r in requests} == {"fake-model-1"}
    profile_home = world.home.profile_home("work")
    assert os.path.isfile(os.path.join(profile_home, ".claude", ".claude.json"))
    assert files_under(world.user_home) == set()


def test_two_claude_profiles_stay_apart(world, upstream):
    one = world.launch(world.profile("one", "claude", "fakeanthropic", "sk-one"), ["-p", "hi"])
    two = world.launch(world.profile("two", "claude", "fakeanthropic", "sk-two", "fake-model-2"), ["-p", "hi"])
    assert world.run(one).returncode == 0
    first = len(upstream.model_requests("/v1/messages"))
    assert world.run(two).returncode == 0
    later = upstream.model_requests("/v1/messages")[first:]
    assert {r.headers["authorization"] for r in later} == {"Bearer sk-two"}
    assert {r.body["model"] for r in later} == {"fake-model-2"}
    assert one.env["CLAUDE_CONFIG_DIR"] != two.env["CLAUDE_CONFIG_DIR"]
    assert one.env["CLAUDE_CONFIG_DIR"].startswith(world.home.profile_home("one") + os.sep)


def test_codex_exec_uses_the_profile_key_model_and_codex_home(world, upstream):
    row = world.profile("cx", "codex", "fakeopenai", "sk-codex-key")
    workdir = os.path.join(world.user_home, "project")
    os.makedirs(workdir)
    launch = world.launch(row, ["exec", "--skip-git-repo-check", "say hi"], workdir)
    assert launch.secret_env == {"FAKE_OPENAI_KEY": "profile-cx.key"}
    assert launch.cwd == os.path.realpath(workdir)
    done = world.run(launch)
    assert done.returncode == 0, done.stderr
    assert ANSWER in done.stdout
    requests = upstream.model_requests("/responses")
    assert requests
    assert all(r.headers.get("authorization") == "Bearer sk-codex-key" for r in requests)
    assert {r.body["model"] for r in requests} == {"fake-gpt"}
    codex_home = os.path.join(world.home.profile_home("cx"), ".codex")
    assert any("rollout-" in path for path in files_under(os.path.join(codex_home, "sessions")))
    assert files_under(world.user_home) == set()
    config = open(os.path.join(codex_home, "config.toml")).read()
    assert f'[projects."{os.path.realpath(workdir)}"]' in config


def test_claude_interactive_reaches_the_prompt_without_first_run_screens(world, upstream, tmp_path):
    import ptyprocess
    import pyte

    workdir = str(tmp_path / "somewhere")
    os.makedirs(workdir)
    launch = world.launch(world.profile("tty", "claude", "fakeanthropic", "sk-tty"), [], workdir)
    env = dict(launch.env)
    for name, secret in launch.secret_env.items():
        env[name] = world.secrets.read(secret)
    screen = pyte.Screen(120, 40)
    stream = pyte.ByteStream(screen)
    child = ptyprocess.PtyProcess.spawn(launch.argv, env=env, cwd=launch.cwd, dimensions=(40, 120))
    seen = []
    text = ""
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            ready, _, _ = select.select([child.fd], [], [], 0.5)
            if ready:
                try:
                    stream.feed(child.read(65536))
                except EOFError:
                    break
                text = "\n".join(screen.display)
                seen.append(text)
            if prompt_box_visible(screen.display):
                break
        everything = "\n".join(seen)
        assert prompt_box_visible(screen.display), text
        for first_run in FIRST_RUN_TEXTS:
            assert first_run not in everything, text
    finally:
        child.terminate(force=True)


def test_claude_through_the_proxy_keeps_no_trace_of_the_real_key_an_earlier_direct_run_approved(world):
    # Anthropic itself, reached directly: the key goes in ANTHROPIC_API_KEY and its last 20
    # characters are pre-approved in .claude.json. With the proxy on, that approval goes.
    from clown.proxy.manager import ProxyEndpoint, placeholder_secret_name

    key = "sk-ant-api03-direct-then-proxied-0123456789abcdefghij"
    row = world.profile("direct", "claude", "anthropic", key)
    world.launch(row, [])
    state_path = os.path.join(world.home.profile_home("direct"), ".claude", ".claude.json")
    with open(state_path) as handle:
        assert json.load(handle)["customApiKeyResponses"]["approved"] == [key[-20:]]
    world.secrets.write(placeholder_secret_name("direct"), "clown-placeholder-xyz")
    endpoint = ProxyEndpoint(base_url="http://127.0.0.1:9", placeholder_secret=placeholder_secret_name("direct"),
                             port=9)
    launch = build_launch(world.home, world.catalog, row, world.secrets, [], None, endpoint,
                          environ=world.environ)
    assert launch.secret_env == {"ANTHROPIC_AUTH_TOKEN": placeholder_secret_name("direct")}
    with open(state_path) as handle:
        assert json.load(handle)["customApiKeyResponses"]["approved"] == []
    for path in files_under(world.home.profile_home("direct")):
        with open(path, "rb") as handle:
            assert key[-20:].encode() not in handle.read(), path
