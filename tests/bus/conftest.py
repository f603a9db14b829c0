"""Fixtures for the bus tests: a real `redis-server` on a free loopback port, and test settings."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from bus_helpers import RedisServer, bus_settings

from tezzeret.config import Settings


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make system-deps)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(params=["inprocess", "redis"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """The same settings on each backend: in-process, and a real redis-server."""
    if request.param == "inprocess":
        yield bus_settings(tmp_path, None)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    yield bus_settings(tmp_path, server.url)
