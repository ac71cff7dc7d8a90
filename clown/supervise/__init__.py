"""Everything that speaks to supervisord: its config, its XML-RPC client, worker programs, events."""
