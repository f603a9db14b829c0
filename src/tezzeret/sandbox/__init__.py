"""Stage: sandbox (see ARCHITECTURE.md)."""
