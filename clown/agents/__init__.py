"""Agent-specific code: how each agent CLI is set up to run from a profile."""
