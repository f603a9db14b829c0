"""Serving a dynamic-batch entry (slow): every batch in range from one entry, in a fresh process,
and batches outside the declared range refused even with the eager fallback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tz_compile_support import TINY_MLP, clean_env, ir_of

from tezzeret.blueprint import build_module
from tezzeret.loader import BatchOutOfRange, NoMatchingEntry, load

pytestmark = pytest.mark.slow

CONSUMER = Path(__file__).with_name("loader_consumer.py")


def test_fresh_process_trains_every_batch_from_one_entry(dynamic_artifact: Path, tmp_path: Path) -> None:
    cache = tmp_path / "empty-inductor-cache"
    cache.mkdir()
    # Two SGD steps at each size: the range's ends, the example, and 5 and 33, which no tier builds.
    batches = [1, 1, 5, 5, 8, 8, 33, 33, 64, 64]
    proc = subprocess.run(
        [sys.executable, str(CONSUMER), str(dynamic_artifact), ",".join(map(str, batches))],
        capture_output=True, text=True, timeout=300,
        env=clean_env(TORCHINDUCTOR_CACHE_DIR=str(cache), TMPDIR=str(tmp_path)), cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["calls_compiled"] == len(batches) and report["calls_eager"] == 0
    for got, want in zip(report["losses_compiled"], report["losses_eager"], strict=True):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert report["max_param_diff"] < 1e-4
    counters = report["counters"]
    assert counters.get("stats.unique_graphs", 0) == 0, counters
    assert counters.get("aot_autograd.total", 0) == 0, counters
    assert not [k for k in counters if k.startswith("inductor.")], counters
    assert report["cache_dir_entries"] == []


def test_batches_outside_the_declared_range_are_refused_naming_it(dynamic_artifact: Path) -> None:
    module = load(dynamic_artifact, serve="compiled", trust_unsigned=True)
    assert module.batch_range == (1, 64)
    x = torch.randn(17, 32)
    assert torch.allclose(module(x), build_module(ir_of(TINY_MLP))(x), atol=1e-5)
    assert module.calls_compiled == 1
    with pytest.raises(BatchOutOfRange) as err:
        module(torch.randn(65, 32))
    assert "batch 65" in str(err.value) and "[1, 64]" in str(err.value)
    assert err.value.code == "LOADER_BATCH_OUT_OF_RANGE" and isinstance(err.value, NoMatchingEntry)
    # In range but no entry (FAST builds training entries only): named, with the entry's span.
    with torch.no_grad(), pytest.raises(NoMatchingEntry) as missing:
        module(torch.randn(3, 32))
    assert not isinstance(missing.value, BatchOutOfRange)
    assert "[(1..64, 32) float32] train" in str(missing.value)

    eager = load(dynamic_artifact, fallback="eager", serve="compiled", trust_unsigned=True)
    for batch in (65, 0):
        with pytest.raises(BatchOutOfRange, match=r"outside the declared batch range \[1, 64\]"):
            eager(torch.randn(batch, 32))
    with torch.no_grad():
        assert eager(torch.randn(3, 32)).shape == (3, 32)
    assert eager(torch.randn(64, 32)).shape == (64, 32)
    assert (eager.calls_eager, eager.calls_compiled) == (1, 1)
