"""The loader in a fresh process with an empty Inductor cache: trains, compiles nothing (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tz_compile_support import clean_env

pytestmark = pytest.mark.slow

CONSUMER = Path(__file__).with_name("loader_consumer.py")


def test_fresh_process_trains_through_compiled_entries_without_compiling(
    fast_artifact: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "empty-inductor-cache"
    cache.mkdir()
    env = clean_env(TORCHINDUCTOR_CACHE_DIR=str(cache), TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(CONSUMER), str(fast_artifact)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # Every training call ran a compiled entry (batch 8 and 4), and training matched eager.
    assert report["calls_compiled"] == 4 and report["calls_eager"] == 0
    assert report["same_params"]
    for got, want in zip(report["losses_compiled"], report["losses_eager"], strict=True):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert report["max_param_diff"] < 1e-4
    assert report["losses_compiled"][2] < report["losses_compiled"][0]  # it actually trains
    # Nothing was compiled: no Dynamo graph, no AOTAutograd, no Inductor work, empty cache dir.
    counters = report["counters"]
    assert counters.get("stats.unique_graphs", 0) == 0, counters
    assert counters.get("aot_autograd.total", 0) == 0, counters
    assert not [k for k in counters if k.startswith("inductor.")], counters
    assert report["cache_dir_entries"] == []
    assert not list(tmp_path.glob("torchinductor_*")), "Inductor wrote into the consumer's TMPDIR"
