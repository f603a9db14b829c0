"""Shared test settings: keep torch and Inductor off the developer's real caches and cores."""

from __future__ import annotations

import os

# Pin the CPU ISA so artifacts built in one test process load in another (notes: -march=native trap).
os.environ.setdefault("TORCHINDUCTOR_CPP_MARCH", "x86-64-v3")
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The loader trusts keys from the environment and the user's keyring: tests start from none.
import tempfile  # noqa: E402

os.environ.pop("TEZZERET_TRUSTED_KEYS", None)
os.environ.pop("TEZZERET_KEYRING", None)
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="tezzeret-test-config-")

# Helpers every test folder shares: `from servers import RedisServer, free_port` (real servers, free
# ports) and `from settings import settings_for` (the one settings factory).
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "support"))

import pytest  # noqa: E402


@pytest.fixture
def redis_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real redis-server on a free loopback port for one test (killed after)."""
    from servers import RedisServer, require

    require("redis-server")
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.kill()


# Folders whose tests must not run beside each other under pytest-xdist: the sandbox's pools, CPU
# caps and Ray clusters measure and contend for the host's cores and cgroups.
_SERIAL_FOLDERS = ("tests/sandbox/",)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadfile`, with each folder of `_SERIAL_FOLDERS` one unit like a file (a file's
    module fixtures start once; a serial folder runs on one worker, in order)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileOrFolderScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return next((folder for folder in _SERIAL_FOLDERS if path.startswith(folder)), path)

    return FileOrFolderScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` skip, saying why, on a host with no CUDA device (CI's, ours)."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA device; torch {torch.__version__} sees none here")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
