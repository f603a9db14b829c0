"""Stage: resilience (see ARCHITECTURE.md)."""
