"""Stage: loader (see ARCHITECTURE.md)."""
