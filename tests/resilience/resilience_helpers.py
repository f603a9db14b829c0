"""Helpers shared by the resilience tests (a separate module: two conftest.py files cannot be imported by name)."""

from __future__ import annotations

from tezzeret import metrics


def metric(name: str, **labels: str) -> float:
    """The current value of one sample on Tezzeret's registry (0.0 when never set)."""
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value
