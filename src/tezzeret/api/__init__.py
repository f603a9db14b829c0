"""Stage: api (see ARCHITECTURE.md)."""
