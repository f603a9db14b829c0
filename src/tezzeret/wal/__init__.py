"""Stage: wal (see ARCHITECTURE.md)."""
