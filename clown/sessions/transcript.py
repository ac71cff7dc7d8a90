"""The agent's own transcript, turned into chat events.

Claude Code appends one JSON record per line to
``$CLAUDE_CONFIG_DIR/projects/<cwd, every char outside [a-zA-Z0-9] as '-'>/<session-id>.jsonl``;
Codex CLI to ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl``. A parser turns
each record into zero or more events:

- ``{"kind": "message", "role": "user"|"assistant", "content": str}``
- ``{"kind": "tool_call", "name": str, "input": object}``
- ``{"kind": "tool_result", "name": str, "output": str}``
- ``{"kind": "status", "status": "running"|"idle"|"waiting"}`` (what the agent is doing now)

A record the parser does not know is skipped, never fatal. ``Tail`` reads only what was
appended since the last call and keeps an unfinished last line for the next one.
"""

import glob
import json
import logging
import os
import re

log = logging.getLogger(__name__)

# Tools with which the agent asks the user something and waits for the answer.
ASKING_TOOLS = {"ExitPlanMode", "AskUserQuestion"}
_MAX_PATH_KEY = 200
_MAX_LINE = 16 << 20
_READ_CHUNK = 4 << 20


def claude_project_key(cwd: str) -> str:
    """Claude Code's directory name for ``cwd`` under ``projects/`` (as its CLI computes it)."""
    return re.sub(r"[^a-zA-Z0-9]", "-", cwd)


def claude_transcript_path(config_dir: str, cwd: str, conversation: str) -> str:
    """Where Claude Code writes the transcript of ``--session-id conversation`` run in ``cwd``.

    Paths longer than 200 chars get a hash suffix the CLI computes itself; for those,
    ``find_claude_transcript`` looks the file up by its name instead.
    """
    return os.path.join(config_dir, "projects", claude_project_key(cwd), f"{conversation}.jsonl")


def find_claude_transcript(config_dir: str, cwd: str, conversation: str) -> str | None:
    expected = claude_transcript_path(config_dir, cwd, conversation)
    if os.path.exists(expected):
        return expected
    found = glob.glob(os.path.join(glob.escape(config_dir), "projects", "*", f"{conversation}.jsonl"))
    return found[0] if found else None


def find_codex_rollout(codex_home: str, cwd: str, since: float) -> tuple[str, str] | None:
    """The newest rollout written after ``since`` by a Codex run in ``cwd``: ``(path, conversation id)``."""
    candidates = []
    for path in glob.glob(os.path.join(glob.escape(codex_home), "sessions", "*", "*", "*", "rollout-*.jsonl")):
        try:
            if os.path.getmtime(path) >= since - 1:
                candidates.append(path)
        except OSError:
            continue
    for path in sorted(candidates, key=os.path.getmtime, reverse=True):
        try:
            with open(path) as handle:
                first = json.loads(handle.readline() or "{}")
        except (OSError, ValueError):
            continue
        meta = first.get("payload") if isinstance(first, dict) else None
        if first.get("type") == "session_meta" and isinstance(meta, dict) and meta.get("cwd") == cwd:
            return path, str(meta.get("id") or "")
    return None


def _text_of(content) -> str:
    """Text of a content value: a string, or the text blocks of a list, joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(parts)
    if content is None:
        return ""
    return json.dumps(content)


class ClaudeParser:
    """Claude Code transcript records → events. Keeps tool_use ids to name the results."""

    def __init__(self):
        self.tools: dict[str, str] = {}

    def parse(self, record) -> list[dict]:
        if not isinstance(record, dict) or record.get("isSidechain") or record.get("isMeta"):
            return []
        message = record.get("message")
        if not isinstance(message, dict):
            return []
        kind = record.get("type")
        if kind == "user":
            return self._user(message.get("content"))
        if kind == "assistant":
            return self._assistant(message)
        return []

    def _user(self, content) -> list[dict]:
        events = []
        if isinstance(content, str):
            if not content.startswith(("<command-", "<local-command-")):
                events.append({"kind": "message", "role": "user", "content": content})
        elif isinstance(content, list):
            texts = []
            for block in content:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "text" and isinstance(block.get("text"), str):
                    texts.append(block["text"])
                elif block.get("type") == "tool_result":
                    tool_id = str(block.get("tool_use_id") or "")
                    events.append({"kind": "tool_result", "name": self.tools.get(tool_id, "tool"),
                                   "output": _text_of(block.get("content")), "id": tool_id})
            if texts:
                events.insert(0, {"kind": "message", "role": "user", "content": "\n".join(texts)})
        if events:
            events.append({"kind": "status", "status": "running"})
        return events

    def _assistant(self, message: dict) -> list[dict]:
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            return []
        events, asking, calls = [], False, False
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"].strip():
                events.append({"kind": "message", "role": "assistant", "content": block["text"]})
            elif block.get("type") == "tool_use":
                name = str(block.get("name") or "tool")
                self.tools[str(block.get("id") or "")] = name
                events.append({"kind": "tool_call", "name": name, "input": block.get("input", {}),
                               "id": str(block.get("id") or "")})
                calls = True
                asking = asking or name in ASKING_TOOLS
        if not events:
            return []
        if asking:
            status = "waiting"
        elif calls or message.get("stop_reason") == "tool_use":
            status = "running"
        else:
            status = "idle"
        events.append({"kind": "status", "status": status})
        return events


# Text Codex puts in user messages itself (context, instructions), not typed by the user.
_CODEX_INJECTED = ("<environment_context>", "<user_instructions>", "# AGENTS.md", "<user_shell_command>")


class CodexParser:
    """Codex CLI rollout records → events."""

    def __init__(self):
        self.tools: dict[str, str] = {}
        self.conversation: str | None = None

    def parse(self, record) -> list[dict]:
        if not isinstance(record, dict) or not isinstance(record.get("payload"), dict):
            return []
        payload, kind = record["payload"], record.get("type")
        if kind == "session_meta":
            self.conversation = str(payload.get("id") or "") or None
            return []
        if kind == "event_msg":
            event = payload.get("type")
            if event == "task_started":
                return [{"kind": "status", "status": "running"}]
            if event == "task_complete":
                return [{"kind": "status", "status": "idle"}]
            return []
        if kind != "response_item":
            return []
        item = payload.get("type")
        if item == "message":
            role = payload.get("role")
            text = _text_of(payload.get("content"))
            if role not in ("user", "assistant") or not text.strip():
                return []
            if role == "user" and text.lstrip().startswith(_CODEX_INJECTED):
                return []
            return [{"kind": "message", "role": role, "content": text}]
        if item in ("function_call", "custom_tool_call", "local_shell_call"):
            name = str(payload.get("name") or ("shell" if item == "local_shell_call" else "tool"))
            if item == "function_call":
                try:
                    arguments = json.loads(payload.get("arguments") or "{}")
                except (TypeError, ValueError):
                    arguments = payload.get("arguments")
            elif item == "custom_tool_call":
                arguments = payload.get("input")
            else:
                arguments = payload.get("action", {})
            call_id = str(payload.get("call_id") or payload.get("id") or "")
            self.tools[call_id] = name
            return [{"kind": "tool_call", "name": name, "input": arguments, "id": call_id},
                    {"kind": "status", "status": "running"}]
        if item in ("function_call_output", "custom_tool_call_output"):
            call_id = str(payload.get("call_id") or "")
            output = payload.get("output")
            if isinstance(output, dict):
                output = output.get("content", output)
            return [{"kind": "tool_result", "name": self.tools.get(call_id, "tool"),
                     "output": _text_of(output), "id": call_id}]
        return []


def parser_for(agent: str):
    """The record parser of ``agent`` (``claude`` or ``codex``), or None for agents without one."""
    return {"claude": ClaudeParser, "codex": CodexParser}.get(agent, lambda: None)()


class Tail:
    """Reads the lines appended to a file since the last ``read()``, through a parser."""

    def __init__(self, path: str, parser):
        self.path = path
        self.parser = parser
        self.offset = 0
        self._partial = b""

    def read(self) -> list[dict]:
        """Events of the complete lines appended since the last call (a missing file: none).

        A file that shrank was rewritten: reading starts over (its events are not repeated,
        see ``prime``). A line over 16 MiB is dropped.
        """
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:
                    log.info("transcript %s shrank; reading it again from the start", self.path)
                    self.offset, self._partial = 0, b""
                    self.parser = type(self.parser)()
                    self.prime()
                    return []
                handle.seek(self.offset)
                chunk = handle.read(_READ_CHUNK)
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot read transcript %s: %s", self.path, exc)
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > _MAX_LINE:
            log.warning("transcript %s: dropping a line over %d bytes", self.path, _MAX_LINE)
            self._partial = b""
        events = []
        for line in lines:
            events.extend(self._parse_line(line))
        return events

    def prime(self) -> None:
        """Read everything there is now without returning it (parser state only)."""
        while True:
            before = self.offset
            self.read()
            if self.offset == before:
                return

    def _parse_line(self, line: bytes) -> list[dict]:
        line = line.strip()
        if not line:
            return []
        try:
            return self.parser.parse(json.loads(line))
        except ValueError:
            return []
        except Exception:
            log.exception("transcript %s: skipping a record the parser choked on", self.path)
            return []


def read_events(path: str | None, agent: str) -> list[dict]:
    """Every event of a whole transcript (for ``chat_history``)."""
    parser = parser_for(agent)
    if not path or parser is None:
        return []
    tail, events = Tail(path, parser), []
    while True:
        before = tail.offset
        events.extend(tail.read())
        if tail.offset == before:
            return events


def history_entry(event: dict) -> dict | None:
    """The ``chat_history`` entry of an event (status events have none).

    Messages are ``{role, content}``. Tool calls and results are ``role: "tool"`` entries
    with ``type`` (``tool_call``/``tool_result``), ``content`` (the call's input as JSON,
    or the result's text) and ``tool`` (``{name, input}`` / ``{name, output}``, as on /ws).
    """
    kind = event["kind"]
    if kind == "message":
        return {"role": event["role"], "content": event["content"]}
    if kind == "tool_call":
        return {"role": "tool", "type": "tool_call", "content": json.dumps(event["input"]),
                "tool": {"name": event["name"], "input": event["input"]}}
    if kind == "tool_result":
        return {"role": "tool", "type": "tool_result", "content": event["output"],
                "tool": {"name": event["name"], "output": event["output"]}}
    return None


def ws_message(session_id: str, event: dict) -> dict | None:
    """The flat ``/ws`` message of an event (status events have none: see ``session_status``)."""
    kind = event["kind"]
    if kind == "message":
        return {"type": "chat_message", "session_id": session_id,
                "message": {"role": event["role"], "content": event["content"]}}
    if kind == "tool_call":
        return {"type": "tool_call", "session_id": session_id, "tool": {"name": event["name"], "input": event["input"]}}
    if kind == "tool_result":
        return {"type": "tool_result", "session_id": session_id,
                "tool": {"name": event["name"], "output": event["output"]}}
    return None
