"""Session backends: where an agent session's process runs.

Each backend turns a ``StartSpec`` (the ready argv and environment of the agent) into a
running agent and answers for it by a ``ref`` (terminal session id, tmux session name,
zellij session name, container name):

- ``start(spec) -> ref`` starts it; ``stop(ref)`` ends it (no error when already gone);
- ``send_text(ref, text)`` types ``text`` into the agent, then Enter as a separate write;
- ``state(ref) -> ProcessState`` says whether it still runs and how it ended;
- ``check_available()`` raises BackendUnavailable when the backend's tool is not installed.
"""

from clown.sessions.backends.base import (BackendError, BackendUnavailable, ProcessState,  # noqa: F401
                                          StartSpec)
