"""Stage: store (see ARCHITECTURE.md)."""
