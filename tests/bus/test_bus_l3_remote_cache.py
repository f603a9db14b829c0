"""L3 on Redis: two compile processes with `l3_environment` pointed at the same Redis share a
compiled FX graph — the second, with an empty local cache dir, hits Inductor's remote cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bus_helpers import bus_settings

from tezzeret.cache import l3_environment

CHILD = r"""
import json, torch
from torch._dynamo.utils import counters
def block(x, w):
    return torch.nn.functional.gelu(x @ w) * 0.5 + x.sum(dim=-1, keepdim=True)
out = torch.compile(block)(torch.randn(4, 8), torch.randn(8, 8))
print("COUNTERS " + json.dumps(dict(counters["inductor"])))
"""


def _compile_in_child(env_extra: dict[str, str]) -> dict[str, int]:
    env = dict(os.environ, **env_extra)
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("COUNTERS "))
    counts: dict[str, int] = json.loads(line.removeprefix("COUNTERS "))
    return counts


@pytest.mark.slow
def test_two_processes_share_fx_graph_through_redis(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = bus_settings(tmp_path / "forge-a", redis_server.url)
    second = bus_settings(tmp_path / "forge-b", redis_server.url)
    env_a, env_b = l3_environment(first), l3_environment(second)
    assert env_a["TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE"] == "1"
    assert env_a["TORCHINDUCTOR_REDIS_URL"] == redis_server.url
    # Separate local caches: a hit in the second process can only come from Redis.
    assert env_a["TORCHINDUCTOR_CACHE_DIR"] != env_b["TORCHINDUCTOR_CACHE_DIR"]

    a = _compile_in_child(env_a)
    assert a.get("fxgraph_cache_miss", 0) >= 1 and a.get("fxgraph_cache_hit", 0) == 0, a
    keys = [k.decode() for k in redis_server.client().keys("*fx-graph*")]
    assert keys, "the first compile wrote nothing to the remote FX-graph cache"

    b = _compile_in_child(env_b)
    assert b.get("fxgraph_cache_hit", 0) >= 1 and b.get("fxgraph_cache_miss", 0) == 0, b
