"""Agent sessions, piece by piece: names, transcripts, argv of every backend and of the sandbox."""

import json
import os
import subprocess
import sys

import pytest

from clown.sessions import agents, credentials, sandbox, transcript, worktree
from clown.sessions.backends import StartSpec, docker, tmux, zellij
from clown.sessions.backends.base import EXEC_ENV, exec_env_argv, write_env_file


# -- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt,start", [("Fix the login bug!", "fix-the-login-bug-"), ("  ", "session-"),
                                          ("../../etc/passwd ~^:?*[", "etc-passwd-"),
                                          ("Ünïcode ✓ only", "n-code-only-")])
def test_session_names_are_git_ref_safe_slugs_with_a_suffix(prompt, start):
    name = worktree.session_name(prompt)
    assert name.startswith(start)
    assert len(name.rsplit("-", 1)[1]) == 6
    assert subprocess.run(["git", "check-ref-format", f"refs/heads/clown/{name}"]).returncode == 0


def test_session_names_are_short():
    assert len(worktree.session_name("word " * 100)) <= 40 + 7


# -- Claude Code transcripts ------------------------------------------------------------------

CLAUDE_LINES = [
    {"type": "summary", "summary": "x"},
    {"type": "user", "message": {"role": "user", "content": "Read notes"}},
    {"type": "assistant", "message": {"role": "assistant", "stop_reason": None, "content": [
        {"type": "thinking", "thinking": "hmm"},
        {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/w/notes.txt"}}]}},
    {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "pelican"}]}]}},
    {"type": "user", "isMeta": True, "message": {"role": "user", "content": "<meta>"}},
    {"type": "assistant", "isSidechain": True, "message": {"content": [{"type": "text", "text": "sub-agent"}]}},
    {"type": "assistant", "message": {"role": "assistant", "stop_reason": "end_turn",
                                      "content": [{"type": "text", "text": "It says pelican."}]}},
]


def write_lines(path, records, tail=""):
    with open(path, "w") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
        handle.write(tail)


def test_claude_records_become_chat_events_in_order(tmp_path):
    path = tmp_path / "t.jsonl"
    write_lines(path, CLAUDE_LINES[:2] + ["not json at all", "[1,2]"] + CLAUDE_LINES[2:])
    entries = [e for e in map(transcript.history_entry, transcript.read_events(str(path), "claude")) if e]
    assert entries == [
        {"role": "user", "content": "Read notes"},
        {"role": "tool", "type": "tool_call", "content": json.dumps({"file_path": "/w/notes.txt"}),
         "tool": {"name": "Read", "input": {"file_path": "/w/notes.txt"}}},
        {"role": "tool", "type": "tool_result", "content": "pelican", "tool": {"name": "Read", "output": "pelican"}},
        {"role": "assistant", "content": "It says pelican."},
    ]


def test_claude_status_follows_the_turn():
    parser = transcript.ClaudeParser()
    statuses = [e["status"] for line in CLAUDE_LINES for e in parser.parse(line) if e["kind"] == "status"]
    assert statuses == ["running", "running", "running", "idle"]
    asking = {"type": "assistant", "message": {"content": [{"type": "tool_use", "id": "t", "name": "ExitPlanMode",
                                                             "input": {}}]}}
    assert parser.parse(asking)[-1] == {"kind": "status", "status": "waiting"}


def test_tail_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    write_lines(path, CLAUDE_LINES[:2], tail='{"type": "assistant", "mess')
    tail = transcript.Tail(str(path), transcript.ClaudeParser())
    assert [e["kind"] for e in tail.read()] == ["message", "status"]
    assert tail.read() == []
    with open(path, "a") as handle:
        handle.write('age": {"content": [{"type": "text", "text": "done"}]}}\n')
    assert tail.read()[0] == {"kind": "message", "role": "assistant", "content": "done"}


def test_tail_of_a_missing_file_is_empty(tmp_path):
    assert transcript.Tail(str(tmp_path / "none.jsonl"), transcript.ClaudeParser()).read() == []


def test_claude_transcript_path_encodes_the_cwd_like_the_cli():
    assert transcript.claude_transcript_path("/p/.claude", "/tmp/a_b/home.x/wt", "u-1") == \
        "/p/.claude/projects/-tmp-a-b-home-x-wt/u-1.jsonl"


def test_ws_messages_are_flat():
    assert transcript.ws_message("s", {"kind": "message", "role": "assistant", "content": "hi"}) == \
        {"type": "chat_message", "session_id": "s", "message": {"role": "assistant", "content": "hi"}}
    assert transcript.ws_message("s", {"kind": "tool_call", "name": "Read", "input": {"a": 1}}) == \
        {"type": "tool_call", "session_id": "s", "tool": {"name": "Read", "input": {"a": 1}}}
    assert transcript.ws_message("s", {"kind": "tool_result", "name": "Read", "output": "x"}) == \
        {"type": "tool_result", "session_id": "s", "tool": {"name": "Read", "output": "x"}}
    assert transcript.ws_message("s", {"kind": "status", "status": "idle"}) is None


# -- Codex rollouts ---------------------------------------------------------------------------

CODEX_LINES = [
    {"type": "session_meta", "payload": {"id": "conv-1", "cwd": "/w"}},
    {"type": "response_item", "payload": {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "<environment_context>cwd</environment_context>"}]}},
    {"type": "event_msg", "payload": {"type": "task_started"}},
    {"type": "response_item", "payload": {"type": "message", "role": "user",
                                          "content": [{"type": "input_text", "text": "List files"}]}},
    {"type": "response_item", "payload": {"type": "function_call", "name": "shell", "call_id": "c1",
                                          "arguments": json.dumps({"command": ["ls"]})}},
    {"type": "response_item", "payload": {"type": "function_call_output", "call_id": "c1", "output": "a.txt"}},
    {"type": "response_item", "payload": {"type": "reasoning", "summary": []}},
    {"type": "response_item", "payload": {"type": "message", "role": "assistant",
                                          "content": [{"type": "output_text", "text": "One file."}]}},
    {"type": "event_msg", "payload": {"type": "task_complete"}},
    {"type": "something_new", "payload": {}},
]


def test_codex_rollout_records_become_chat_events(tmp_path):
    path = tmp_path / "rollout.jsonl"
    write_lines(path, CODEX_LINES)
    events = transcript.read_events(str(path), "codex")
    entries = [e for e in map(transcript.history_entry, events) if e]
    assert [(e["role"], e.get("type"), e["content"]) for e in entries] == [
        ("user", None, "List files"), ("tool", "tool_call", json.dumps({"command": ["ls"]})),
        ("tool", "tool_result", "a.txt"), ("assistant", None, "One file.")]
    assert entries[2]["tool"] == {"name": "shell", "output": "a.txt"}
    assert [e["status"] for e in events if e["kind"] == "status"][-1] == "idle"


def test_codex_rollout_is_found_by_its_cwd(tmp_path):
    day = tmp_path / "sessions" / "2026" / "01" / "02"
    day.mkdir(parents=True)
    write_lines(day / "rollout-2026-01-02T10-00-00-conv-1.jsonl", CODEX_LINES)
    path, conversation = transcript.find_codex_rollout(str(tmp_path), "/w", since=0)
    assert conversation == "conv-1" and path.endswith("conv-1.jsonl")
    assert transcript.find_codex_rollout(str(tmp_path), "/elsewhere", since=0) is None


# -- agent arguments --------------------------------------------------------------------------

def test_claude_session_arguments():
    plan = agents.session_args("claude", "u1", "-fix it", no_plan_mode=False, resume=False)
    assert plan == ["--session-id", "u1", "--settings", agents.SKIP_BYPASS_PROMPT, "--permission-mode", "plan",
                    "--allow-dangerously-skip-permissions", "--", "-fix it"]
    assert agents.session_args("claude", "u1", "p", no_plan_mode=True, resume=True) == \
        ["--resume", "u1", "--settings", agents.SKIP_BYPASS_PROMPT, "--dangerously-skip-permissions"]


def test_codex_session_arguments():
    assert agents.session_args("codex", None, "fix", False, resume=False) == ["--", "fix"]
    assert agents.session_args("codex", "c1", "fix", False, resume=True) == ["resume", "c1"]


# -- sandbox ----------------------------------------------------------------------------------

def test_bwrap_argv_hides_the_home_and_binds_back_what_the_agent_needs(tmp_path):
    profile = tmp_path / "home" / "profiles" / "p"
    profile.mkdir(parents=True)
    argv = sandbox.bwrap_argv(["claude", "x"], worktree="/h/worktrees/s", repo="/r/.git", writable=[str(profile)],
                              clown_home=str(tmp_path / "home"))
    assert argv == ["/usr/bin/bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                    "--tmpfs", str(tmp_path / "home"), "--ro-bind", "/r/.git", "/r/.git",
                    "--bind", str(profile), str(profile), "--ro-bind", "/h/worktrees/s", "/h/worktrees/s",
                    "--chdir", "/h/worktrees/s", "--die-with-parent", "--", "claude", "x"]


def test_the_sandbox_really_refuses_writes_to_the_worktree_and_hides_secrets(tmp_path):
    home = tmp_path / "home"
    work = home / "worktrees" / "s"
    work.mkdir(parents=True)
    (home / "secrets").mkdir()
    (home / "secrets" / "k").write_text("key")
    writable = home / "profiles" / "p"
    writable.mkdir(parents=True)
    script = f"echo no > {work}/f; cat {home}/secrets/k; echo yes > {writable}/ok; echo done"
    argv = sandbox.bwrap_argv(["sh", "-c", script], worktree=str(work), repo=str(work), writable=[str(writable)],
                              clown_home=str(home))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert "Read-only file system" in done.stderr
    assert "key" not in done.stdout and "done" in done.stdout
    assert not (work / "f").exists()
    assert (writable / "ok").read_text() == "yes\n"


# -- backends' argv ---------------------------------------------------------------------------

def test_tmux_argv():
    assert tmux.new_session_argv("/s.sock", "n", "/w", ["a", "b"]) == \
        ["tmux", "-S", "/s.sock", "new-session", "-d", "-s", "n", "-x", "200", "-y", "50", "-c", "/w", "--", "a", "b"]
    assert tmux.send_text_argvs("/s.sock", "n", "-hi") == [
        ["tmux", "-S", "/s.sock", "send-keys", "-t", "=n:", "-l", "--", "-hi"],
        ["tmux", "-S", "/s.sock", "send-keys", "-t", "=n:", "Enter"]]
    assert tmux.kill_session_argv("/s.sock", "n") == ["tmux", "-S", "/s.sock", "kill-session", "-t", "=n"]


@pytest.mark.parametrize("lines,expected", [
    (["0  \n"], [(True, None)]),
    (["1 0 \n"], [(False, 0)]),
    (["1 3 \n"], [(False, 3)]),
    (["1  15\n"], [(False, None)]),                       # killed by a signal: no exit code
    (["1  \n", "1  \n", "1 0 \n"], [(True, None), (True, None), (False, 0)]),   # dead, not yet reaped
])
def test_tmux_poll_state_waits_for_the_exit_status_of_a_dead_pane(monkeypatch, lines, expected):
    import asyncio
    import types

    backend = tmux.TmuxBackend.__new__(tmux.TmuxBackend)
    backend.sock, backend._dead_without_status = "/s.sock", {}
    backend._listening = lambda: True
    replies = iter(lines)
    commands = []

    async def fake_tmux(argv, what):
        commands.append(what)
        return types.SimpleNamespace(ok=True, stdout=next(replies) if what == "list-panes" else "")

    backend._tmux = fake_tmux
    found = [asyncio.run(backend.poll_state("n")) for _ in expected]
    assert [(state.running, state.exit_code) for state in found] == expected
    assert commands.count("kill-session") == (0 if expected[-1][0] else 1)


def test_tmux_a_dead_pane_that_never_shows_a_status_ends_after_a_while(monkeypatch):
    import asyncio
    import types

    backend = tmux.TmuxBackend.__new__(tmux.TmuxBackend)
    backend.sock, backend._dead_without_status = "/s.sock", {}
    backend._listening = lambda: True

    async def fake_tmux(argv, what):
        return types.SimpleNamespace(ok=True, stdout="1  \n")

    backend._tmux = fake_tmux
    now = [1000.0]
    monkeypatch.setattr(tmux.time, "monotonic", lambda: now[0])
    assert asyncio.run(backend.poll_state("n")).running
    now[0] += tmux.DEAD_STATUS_WAIT_SECS + 0.1
    state = asyncio.run(backend.poll_state("n"))
    assert (state.running, state.exit_code) == (False, None)

def test_zellij_argv_and_layout():
    assert zellij.start_argv("n", "/l.kdl") == ["zellij", "--layout", "/l.kdl", "attach", "--create-background", "n"]
    assert zellij.send_text_argvs("n", "hi") == [["zellij", "--session", "n", "action", "write-chars", "hi"],
                                                 ["zellij", "--session", "n", "action", "write", "13"]]
    assert zellij.kill_argvs("n") == [["zellij", "kill-session", "n"], ["zellij", "delete-session", "--force", "n"]]
    assert zellij.layout_text("/w", ["py", "x y", '"q"']) == (
        'layout {\n    pane command="py" cwd="/w" close_on_exit=false {\n        args "x y" "\\"q\\""\n    }\n}\n')


def test_docker_run_argv():
    spec = StartSpec(session_id="id1", name="n", profile_alias="p", argv=["/bin/claude", "--x"], env={},
                     secret_env={}, cwd="/w", mounts=[("/w", True), ("/h/profiles/p", False)])
    assert docker.run_argv(spec, "/e.env", uid=1000, gid=1000) == [
        "docker", "run", "--detach", "--interactive", "--tty", "--init", "--name", "clown-n",
        "--label", "clown.session=id1", "--network", "host", "--env-file", "/e.env", "--workdir", "/w",
        "--user", "1000:1000", "--volume", "/w:/w:ro", "--volume", "/h/profiles/p:/h/profiles/p:rw",
        docker.IMAGE, "/bin/claude", "--x"]
    assert docker.inspect_argv("clown-n") == ["docker", "inspect", "--format",
                                              "{{.State.Running}} {{.State.ExitCode}}", "clown-n"]
    assert docker.remove_argv("clown-n") == ["docker", "rm", "--force", "clown-n"]
    assert docker.pull_argv() == ["docker", "pull", docker.IMAGE]
    assert docker.env_file_text({"B": "2", "A": "x=y"}) == "A=x=y\nB=2\n"


def test_exec_env_runs_with_exactly_the_file_env_and_deletes_it(tmp_path):
    path = write_env_file(str(tmp_path), {"ONLY": "this", "PATH": os.defpath})
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    done = subprocess.run(exec_env_argv(path, ["env"]), capture_output=True, text=True, timeout=30)
    assert sorted(done.stdout.split()) == sorted(["ONLY=this", f"PATH={os.defpath}"])
    assert not os.path.exists(path)
    assert exec_env_argv(path, ["x"])[:2] == [sys.executable, EXEC_ENV]


# -- credentials ------------------------------------------------------------------------------

class NoProfiles:
    def execute(self, *_):
        return []


def test_credentials_from_env_files_or_nothing(tmp_path):
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / ".credentials.json").write_text(json.dumps({"claudeAiOauth": {"accessToken": "t"}}))
    (tmp_path / ".config" / "gh").mkdir(parents=True)
    (tmp_path / ".config" / "gh" / "hosts.yml").write_text("github.com:\n    oauth_token: gho_x\n")
    found = credentials.credentials_status(NoProfiles(), environ={"OPENAI_API_KEY": "sk"}, home=str(tmp_path))
    assert found == {"github_token": {"configured": True, "source": "file"},
                     "anthropic_oauth_token": {"configured": True, "source": "file"},
                     "openai_api_key": {"configured": True, "source": "env"}}
    empty = credentials.credentials_status(NoProfiles(), environ={}, home=str(tmp_path / "nobody"))
    assert all(value == {"configured": False, "source": None} for value in empty.values())


def test_bwrap_binds_back_an_agent_installed_under_tmp(tmp_path):
    modules = tmp_path / "npm" / "node_modules"
    package = modules / "agent-cli"
    package.mkdir(parents=True)
    (package / "cli.js").write_text("#!/bin/sh\n")
    bin_dir = modules / ".bin"
    bin_dir.mkdir()
    (bin_dir / "agent").symlink_to(package / "cli.js")
    home = tmp_path / "clown-home"
    home.mkdir()
    argv = sandbox.bwrap_argv([str(bin_dir / "agent")], worktree=str(tmp_path), repo=str(tmp_path), writable=[],
                              clown_home=str(home), path_env=f"{bin_dir}:{home}:/usr/bin")
    binds = [argv[i + 1] for i, part in enumerate(argv) if part == "--ro-bind"]
    assert str(modules) in binds and str(bin_dir) in binds
    assert str(home) not in binds and str(tmp_path) in binds  # the repo, bound on its own
    assert argv.index("--tmpfs") < argv.index(str(modules))
