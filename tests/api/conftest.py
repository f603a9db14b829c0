"""Fixtures for the HTTP tests: one real `tezzeret serve` process per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProcess, write_config
from servers import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    config = write_config(root / "tezzeret.yaml", root / "state", port)
    proc = ServerProcess(config, port, root / "serve.log").start()
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.terminate()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture
def state_dir(server: ServerProcess) -> Path:
    return server.config.parent / "state"
