"""Stage: bus (see ARCHITECTURE.md)."""
