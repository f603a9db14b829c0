"""Stage: forge (see ARCHITECTURE.md)."""
