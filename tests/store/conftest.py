"""Fixtures for the store tests: a real SQLite store on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import StepClock, digest_of, make_ir

from tezzeret.store import Store


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def store(tmp_path: Path, clock: StepClock) -> Iterator[Store]:
    s = Store.open(tmp_path / "store", clock=clock)
    yield s
    s.close()


@pytest.fixture
def blueprint(store: Store) -> str:
    digest = digest_of("bp-main")
    store.put_blueprint(make_ir("bp-main"), digest, name="bp-main", source="test")
    return digest
