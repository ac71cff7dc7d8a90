"""Worker programs that supervisord runs next to the web front.

- ``terminal``: one per terminal session; owns a PTY, its process session and the
  scrollback ring, and serves the front over a Unix socket (docs/worker-protocol.md).
"""
