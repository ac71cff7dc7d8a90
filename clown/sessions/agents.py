"""What an agent session adds to a profile's launch, per agent adapter.

- ``claude``: ``--session-id <uuid>`` (so the transcript path is known before it exists)
  and the prompt as the initial argument; resuming is ``--resume <uuid>``. Plan mode
  (``no_plan_mode: false``) is ``--permission-mode plan``; otherwise permissions are
  skipped (``--dangerously-skip-permissions``), which Claude Code refuses as root unless
  ``IS_SANDBOX=1`` is set, so it is set when clown runs as root.
- ``codex``: the prompt as the initial argument; resuming is ``codex resume <id>``.
- any other agent: the prompt as the one argument (``shell``: no argument at all).
"""

import json
import os

# Claude Code asks once, on screen, whether bypassing permissions is accepted; a session
# chose it already (no_plan_mode), so the question is answered through --settings.
SKIP_BYPASS_PROMPT = json.dumps({"skipDangerousModePermissionPrompt": True}, separators=(",", ":"))


def session_args(adapter: str, conversation: str | None, prompt: str, no_plan_mode: bool,
                 resume: bool) -> list[str]:
    """Arguments after the profile's own, for a new session (``resume`` False) or a restart."""
    if adapter == "claude":
        mode = ["--settings", SKIP_BYPASS_PROMPT]
        mode += ["--dangerously-skip-permissions"] if no_plan_mode else \
            ["--permission-mode", "plan", "--allow-dangerously-skip-permissions"]
        if resume:
            return ["--resume", conversation, *mode]
        return ["--session-id", conversation, *mode, "--", prompt]
    if adapter == "codex":
        if resume and conversation:
            return ["resume", conversation]
        return ["--", prompt]
    if adapter == "shell":
        return []
    return [prompt]


def session_env(adapter: str) -> dict:
    if adapter == "claude" and os.geteuid() == 0:
        return {"IS_SANDBOX": "1"}
    return {}


def can_resume(adapter: str, conversation: str | None, transcript_exists: bool) -> bool:
    """Whether a restart can continue the conversation (else the session starts over with its prompt)."""
    return adapter in ("claude", "codex") and bool(conversation) and transcript_exists
