"""Stage: blueprint (see ARCHITECTURE.md)."""
