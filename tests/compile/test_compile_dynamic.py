"""A dynamic-batch entry (slow): FAST's default plan builds one training entry for the whole range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tezzeret.artifact import file as artifact
from tezzeret.compile.precompile import DYNAMIC_PAYLOAD_FORMAT
from tezzeret.leyline import pb

pytestmark = pytest.mark.slow


def test_fast_builds_one_dynamic_entry_verified_across_the_range(dynamic_artifact: Path) -> None:
    manifest, _, _ = artifact.read_manifest(dynamic_artifact)
    assert manifest.strategy == pb.STRATEGY_FAST
    assert [e.key for e in manifest.entries] == ["b1-64-train"]
    entry = manifest.entries[0]
    assert entry.verified and entry.grad_enabled and not entry.drop_reason
    assert entry.dynamic_batch and (entry.batch_min, entry.batch_max) == (1, 64)
    # Parity with eager (two SGD steps) at the ends, the example batch and a size no tier builds.
    assert list(entry.verified_batches) == [1, 8, 33, 64]
    assert entry.max_rel_error < 1e-3
    assert list(entry.inputs[0].shape) == [8, 32] and list(entry.inputs[0].batch_dims) == [0]
    assert entry.serve_compiled == (entry.speedup_train >= 1.0)
    assert [(p.name, p.format) for p in manifest.payloads] == [("entry/b1-64-train", DYNAMIC_PAYLOAD_FORMAT)]
    # The static fallback is built only when the dynamic entry fails: it was not.
    assert not manifest.stats.dropped_entries
    assert json.loads(manifest.tier_settings)["batch_mode"] == "dynamic"
