"""Fixtures for the loader tests: the compile tests' shared artifacts (compiled once per session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compile"))

from tz_compile_support import fast_dynamic_artifact, fast_mlp_artifact  # noqa: E402


@pytest.fixture(scope="session")
def fast_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fast_mlp_artifact(tmp_path_factory)


@pytest.fixture(scope="session")
def dynamic_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fast_dynamic_artifact(tmp_path_factory)
