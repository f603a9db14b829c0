"""Stage: compile (see ARCHITECTURE.md)."""
