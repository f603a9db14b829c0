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


# Files whose tests must not run beside each other under pytest-xdist: the sandbox's pools, CPU
# caps and Ray clusters measure and contend for the host's cores and cgroups.
_SERIAL_GROUPS = {"tests/sandbox/": "sandbox"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` a test file is one unit (its module fixtures start once), and the
    folders in `_SERIAL_GROUPS` are one unit each. Tests marked `gpu` skip, saying why, on a host
    with no CUDA device (CI's, ours)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            path = item.nodeid.split("::", 1)[0]
            group = next((g for prefix, g in _SERIAL_GROUPS.items() if path.startswith(prefix)), path)
            item.add_marker(pytest.mark.xdist_group(group))
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA device; torch {torch.__version__} sees none here")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
