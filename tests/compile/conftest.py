"""Fixtures shared by the compile tests (artifacts compiled once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tz_compile_support import fast_dynamic_artifact, fast_mlp_artifact


@pytest.fixture(scope="session")
def fast_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fast_mlp_artifact(tmp_path_factory)


@pytest.fixture(scope="session")
def dynamic_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fast_dynamic_artifact(tmp_path_factory)
