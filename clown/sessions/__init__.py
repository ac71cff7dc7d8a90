"""Agent sessions: an agent CLI running in its own git worktree, with chat history and access modes.

``manager.SessionManager`` owns the life cycle; ``handlers`` and ``ws`` are the REST routes
and the ``/ws`` event socket; ``backends`` run the agent (pty, tmux, zellij, docker);
``transcript`` turns the agent's own transcript into chat events; ``sandbox`` builds the
bubblewrap argv of read-only sessions; ``worktree`` drives git.
"""
