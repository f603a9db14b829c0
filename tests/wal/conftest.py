"""Fixtures for the WAL tests."""

from __future__ import annotations

from wal_helpers import mode  # noqa: F401  (fixture re-export)
