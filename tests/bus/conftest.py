"""Fixtures for the bus tests: the same settings on each backend (the `redis_server` fixture is the
suite's, in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bus_helpers import bus_settings
from servers import RedisServer

from tezzeret.config import Settings


@pytest.fixture(params=["inprocess", "redis"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """The same settings on each backend: in-process, and a real redis-server."""
    if request.param == "inprocess":
        yield bus_settings(tmp_path, None)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    yield bus_settings(tmp_path, server.url)
