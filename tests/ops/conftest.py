"""Fixtures for the operability tests: one real `tezzeret serve` for the session (each test compiles
its own blueprints on it), and a real Prometheus scraping it with the forge's alert rules loaded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ops_helpers import OPS, Prometheus
from serverproc import ServerProcess, serving


@pytest.fixture(scope="session")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("ops-serve")) as proc:
        yield proc


@pytest.fixture(scope="session")
def prometheus(forge: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = Prometheus(
        tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{forge.port}"], [OPS / "prometheus" / "alerts.yml"]
    ).start()
    try:
        yield prom
    finally:
        prom.stop()
