"""Inductor tiers (slow): the shared multi-entry FAST artifact and the Conv→BN parity drop."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tz_compile_support import CONV_BN

from tezzeret.artifact import file as artifact
from tezzeret.compile import VerificationFailed, compile_blueprint
from tezzeret.compile.precompile import PAYLOAD_FORMAT
from tezzeret.leyline import pb

pytestmark = pytest.mark.slow


def test_fast_artifact_holds_verified_entries_per_shape(fast_artifact: Path) -> None:
    manifest, signature, _ = artifact.read_manifest(fast_artifact)
    assert manifest.strategy == pb.STRATEGY_FAST and not signature.signature
    assert sorted(e.key for e in manifest.entries) == ["b4-train", "b8-train"]
    for entry in manifest.entries:
        assert entry.verified and entry.grad_enabled and not entry.drop_reason
        assert entry.max_rel_error < 1e-3
        assert entry.speedup_fwd > 0 and entry.speedup_train > 0
        # The loader's choice follows the measurement, never an assumption.
        assert entry.serve_compiled == (entry.speedup_train >= 1.0)
    assert [(p.name, p.format) for p in manifest.payloads] == [
        ("entry/b4-train", PAYLOAD_FORMAT),
        ("entry/b8-train", PAYLOAD_FORMAT),
    ]
    assert re.fullmatch(r"[0-9a-f]{64}", manifest.guard_digest)
    assert "inductor" in manifest.applied_passes and "aoti-packaging" in manifest.applied_passes
    settings = json.loads(manifest.tier_settings)
    assert settings["name"] == "fast" and settings["inductor_options"]["use_aoti"] is True
    assert manifest.num_threads >= 1
    assert manifest.stats.compile_ms > 0 and manifest.stats.peak_rss_bytes > 0
    assert fast_artifact.stat().st_size > 100_000  # native code is inside


def test_conv_bn_wrong_gradients_are_dropped_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(VerificationFailed) as err:
        compile_blueprint(json.dumps(CONV_BN), "fast", tmp_path / "out", cache_dir=tmp_path / "inductor", budget_s=600)
    assert err.value.code == "COMPILE_VERIFICATION_FAILED"
    assert err.value.reasons and all("parity vs eager failed" in r for r in err.value.reasons)
    assert any(".grad." in r for r in err.value.reasons)
    assert not list((tmp_path / "out").glob("*.tzart"))


def test_an_entry_that_raises_when_run_is_dropped_not_fatal(tmp_path: Path) -> None:
    # torch 2.13's AOTI compiles embedding_bag but the entry then needs a proxy executor it lacks:
    # verification must record that as a failed entry, not crash the compile.
    from tezzeret.blueprint import library_blueprint

    ir = library_blueprint("embedding_bag_pool_256")
    with pytest.raises(VerificationFailed) as err:
        compile_blueprint(ir, "fast", tmp_path / "out", cache_dir=tmp_path / "inductor", budget_s=600)
    assert err.value.code == "COMPILE_VERIFICATION_FAILED"
    assert any("the entry raised" in r for r in err.value.reasons)
    assert not list((tmp_path / "out").glob("*.tzart"))
