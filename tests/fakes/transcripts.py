"""Agent transcripts in their real on-disk formats, for import tests and benchmarks.

``write_claude_corpus`` writes ``<root>/projects/<project>/<session>.jsonl`` as Claude Code
does: compact JSON lines, UTC timestamps with milliseconds and ``Z``, user lines without
usage, assistant lines with ``message.usage`` — and, like Claude Code, the same assistant
message written again (one line per content block, same ``message.id`` + ``requestId``),
plus some malformed lines. ``write_codex_corpus`` writes Codex rollouts with cumulative
``token_count`` events.
"""

import datetime as dt
import json
import os
import random
import uuid

MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5-20251001")
FILLER = "lorem ipsum dolor sit amet " * 8


def _ts(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _line(document: dict) -> str:
    return json.dumps(document, separators=(",", ":")) + "\n"


def claude_session_lines(rng: random.Random, session: str, start: dt.datetime, entries: int, cwd: str,
                         padding: int = 0, growing_output: bool = False):
    """The lines of one session; yields ``str`` lines.

    With ``growing_output``, a message written as two lines (one per content block) carries
    fewer output tokens on its first line than on its last, as Claude Code writes a block
    before the answer's final usage is known.
    """
    moment = start
    parent = None
    for index in range(entries):
        moment += dt.timedelta(seconds=rng.randint(1, 90), milliseconds=rng.randint(0, 999))
        user_uuid = str(uuid.UUID(int=rng.getrandbits(128)))
        yield _line({"parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": cwd,
                     "sessionId": session, "version": "2.1.332", "type": "user",
                     "message": {"role": "user", "content": f"question {index} " + FILLER[:padding]},
                     "uuid": user_uuid, "timestamp": _ts(moment)})
        moment += dt.timedelta(seconds=rng.randint(1, 30), milliseconds=rng.randint(0, 999))
        message_id = f"msg_01{rng.getrandbits(64):016x}"
        request_id = f"req_01{rng.getrandbits(64):016x}"
        usage = {"input_tokens": rng.randint(1, 5000), "cache_creation_input_tokens": rng.randint(0, 20000),
                 "cache_read_input_tokens": rng.randint(0, 90000), "output_tokens": rng.randint(1, 3000),
                 "service_tier": "standard"}
        model = rng.choice(MODELS)
        blocks = [{"type": "thinking", "thinking": "hmm " + FILLER[:padding]},
                  {"type": "text", "text": f"answer {index} " + FILLER[:padding]}]
        written = blocks[:rng.randint(1, 2)]
        for number, block in enumerate(written):   # one line per content block, same message and request
            assistant_uuid = str(uuid.UUID(int=rng.getrandbits(128)))
            line_usage = usage
            if growing_output and number < len(written) - 1:
                line_usage = dict(usage, output_tokens=max(1, usage["output_tokens"] // 7))
            yield _line({"parentUuid": user_uuid, "isSidechain": False, "userType": "external", "cwd": cwd,
                         "sessionId": session, "version": "2.1.332", "message": {
                             "id": message_id, "type": "message", "role": "assistant", "model": model,
                             "content": [block], "stop_reason": None, "stop_sequence": None, "usage": line_usage},
                         "requestId": request_id, "type": "assistant", "uuid": assistant_uuid,
                         "timestamp": _ts(moment)})
            parent = assistant_uuid
        if rng.random() < 0.02:
            yield '{"type":"assistant","message":{"usage":{"input_tokens":1\n'      # cut short
        if rng.random() < 0.01:
            yield "not json at all\n"


def write_claude_corpus(root: str, sessions: int = 5, entries: int = 20, start: dt.datetime | None = None,
                        seed: int = 7, days: int = 3, padding: int = 0, target_bytes: int | None = None,
                        growing_output: bool = False) -> dict:
    """Write a corpus under ``root``; returns ``{"files": n, "bytes": n}``.

    With ``target_bytes``, sessions are added until the corpus is at least that big.
    """
    rng = random.Random(seed)
    start = start or dt.datetime(2026, 1, 10, 8, 0, tzinfo=dt.timezone.utc)
    written = files = 0
    index = 0
    while (target_bytes is None and index < sessions) or (target_bytes is not None and written < target_bytes):
        project = os.path.join(root, "projects", f"-home-user-project{index % 4}")
        os.makedirs(project, exist_ok=True)
        session = str(uuid.UUID(int=rng.getrandbits(128)))
        begin = start + dt.timedelta(days=rng.randint(0, days - 1), hours=rng.randint(0, 23))
        path = os.path.join(project, session + ".jsonl")
        with open(path, "w") as handle:
            for line in claude_session_lines(rng, session, begin, entries, f"/home/user/project{index % 4}", padding,
                                             growing_output):
                handle.write(line)
                written += len(line)
        files += 1
        index += 1
    return {"files": files, "bytes": written}


def write_codex_corpus(root: str, sessions: int = 3, turns: int = 5, start: dt.datetime | None = None,
                       seed: int = 11) -> dict:
    """Codex rollouts; returns the expected totals ``{input, cached, output}`` (OpenAI's sense)."""
    rng = random.Random(seed)
    start = start or dt.datetime(2026, 1, 10, 8, 0, tzinfo=dt.timezone.utc)
    expected = {"input": 0, "cached": 0, "output": 0, "events": 0}
    for index in range(sessions):
        session = str(uuid.UUID(int=rng.getrandbits(128)))
        moment = start + dt.timedelta(hours=index)
        directory = os.path.join(root, "sessions", moment.strftime("%Y/%m/%d"))
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"rollout-{moment.strftime('%Y-%m-%dT%H-%M-%S')}-{session}.jsonl")
        total = {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0, "reasoning_output_tokens": 0,
                 "total_tokens": 0}
        with open(path, "w") as handle:
            handle.write(_line({"timestamp": _ts(moment), "type": "session_meta",
                                "payload": {"id": session, "cwd": "/home/user", "cli_version": "0.169.0"}}))
            handle.write(_line({"timestamp": _ts(moment), "type": "turn_context",
                                "payload": {"cwd": "/home/user", "model": "gpt-5"}}))
            for _ in range(turns):
                moment += dt.timedelta(seconds=rng.randint(5, 60))
                last = {"input_tokens": rng.randint(100, 9000), "output_tokens": rng.randint(10, 900),
                        "reasoning_output_tokens": 0}
                last["cached_input_tokens"] = rng.randint(0, last["input_tokens"])
                last["total_tokens"] = last["input_tokens"] + last["output_tokens"]
                for name in total:
                    total[name] += last.get(name, 0)
                expected["input"] += last["input_tokens"]
                expected["cached"] += last["cached_input_tokens"]
                expected["output"] += last["output_tokens"]
                expected["events"] += 1
                event = {"timestamp": _ts(moment), "type": "event_msg", "payload": {
                    "type": "token_count", "info": {"total_token_usage": dict(total), "last_token_usage": last}}}
                handle.write(_line(event))
                handle.write(_line(event))      # Codex repeats token_count (rate-limit updates): no new usage
            handle.write("{broken\n")
    return expected
