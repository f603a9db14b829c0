"""Payback through the service: every attempt's features and outcome are recorded, the job view
carries the prediction and its ETA, a tier predicted to cost more than it saves is skipped (and
the skip is recorded), and nothing is skipped on too little history. Real compiles on the
in-process executor; the history other blueprints left is seeded through the store's own API."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest
from forge_helpers import blueprint, forge_settings

from tezzeret import metrics
from tezzeret.artifact.file import read_manifest
from tezzeret.blueprint import digest, load_blueprint
from tezzeret.blueprint.features import features
from tezzeret.forge.jobs import JobStatus
from tezzeret.forge.payback import machine_id
from tezzeret.forge.service import Forge
from tezzeret.leyline import SCHEMA_VERSION, encode, pb
from tezzeret.sandbox.inprocess import InProcessExecutor

pytestmark = pytest.mark.timeout(400)

# Small enough that FAST compiles one dynamic entry in seconds on a quiet 2-core machine.
TINY = {
    "schema_version": 1,
    "inputs": [{"name": "x", "dtype": "DTYPE_FLOAT32", "dims": [{"symbol": "batch", "min": "1", "max": "16", "size": "4"}, {"size": "16"}]}],
    "nodes": [
        {"name": "fc", "op": "linear", "inputs": ["x"], "attrs": [{"key": "out_features", "i": "16"}]},
        {"name": "act", "op": "relu", "inputs": ["fc"]},
    ],
    "outputs": ["act"],
    "metadata": {"name": "payback-tiny", "category": "mlp", "tier": "TIER_SAFE", "init_seed": "3"},
}
# Blueprints whose attempts make up the seeded history (never the one submitted): library ones,
# all far bigger than TINY, and TINY at other widths (alike: the same ops, sizes close by).
OTHERS = tuple(blueprint(n) for n in (
    "residual_mlp_256", "swiglu_mlp_512", "lora_adapter_1024", "rmsnorm_gated_mlp_768", "mlp_512", "mhsa_4h_256"))
MIN_HISTORY = 5


def _tiny(width: int = 16, seed: int = 3) -> pb.BlueprintIR:
    doc = json.loads(json.dumps(TINY))
    doc["nodes"][0]["attrs"][0]["i"] = str(width)
    doc["metadata"]["init_seed"] = str(seed)
    return load_blueprint(json.dumps(doc))


TINY_LIKE = tuple(_tiny(w) for w in (8, 12, 24, 32, 48))


async def _forge(tmp_path: Path, **payback: object) -> Forge:
    settings = forge_settings(tmp_path / "state", payback={"min_history": MIN_HISTORY, **payback})
    return await Forge(settings, executor=InProcessExecutor(settings)).start()


def _seed(
    forge: Forge, strategy: str, irs: tuple[pb.BlueprintIR, ...], *,
    compile_s: float, speedup: float | None, step_ms: float | None,
) -> None:
    """A successful attempt of each of `irs` at `strategy` on this machine."""
    for ir in irs:
        d = digest(ir)
        forge.store.put_blueprint(encode(ir), d, name=ir.metadata.name, source="test", state="SUBMITTED")
        forge.store.record_attempt(
            d, strategy, "SUCCESS", toolchain="seeded", features=features(ir).to_json(), machine=machine_id(),
            compile_s=compile_s, served_speedup=speedup, eager_step_ms=step_ms,
        )


def _submit(ir: pb.BlueprintIR, strategy: int) -> pb.CompilationRequest:
    return pb.CompilationRequest(schema_version=SCHEMA_VERSION, blueprint=ir, strategy=strategy)


def _skips(strategy: str) -> float:
    return metrics.REGISTRY.get_sample_value("tezzeret_payback_tier_skips_total", {"strategy": strategy}) or 0.0


async def test_thin_history_skips_nothing_and_the_attempt_records_features_and_outcome(tmp_path: Path) -> None:
    forge = await _forge(tmp_path)
    try:
        # One attempt short of enough history, and every one of them says FAST never pays back.
        _seed(forge, "FAST", TINY_LIKE[: MIN_HISTORY - 1], compile_s=500.0, speedup=1.0, step_ms=0.1)
        ir = _tiny()
        sub = await forge.submit(_submit(ir, pb.STRATEGY_FAST))
        view = forge.job(sub.job_id)
        assert view["strategy"] == "FAST" and "skipped" not in view["strategy_reason"]
        assert view["prediction"]["basis"] == "prior" and view["prediction"]["history"] == MIN_HISTORY - 1
        job = await forge.wait(sub.job_id, timeout=360)
        assert job.status is JobStatus.SUCCEEDED, (job.error_code, job.error)
        assert job.result.strategy_used == pb.STRATEGY_FAST and not job.result.fallback_reason
        [attempt] = forge.store.attempt_history("FAST", machine=machine_id(), limit=1)
        assert attempt.digest == digest(ir) and attempt.outcome == "SUCCESS"
        assert json.loads(attempt.features) == json.loads(features(ir).to_json())
        assert attempt.features and json.loads(attempt.features)["ops"] == {"linear": 1, "relu": 1}
        # What it cost and bought, as the compiler measured it.
        assert attempt.compile_s is not None and attempt.compile_s > 0
        manifest, _, _ = read_manifest(await forge.artifact_file(job.result.artifact_id))
        train = [e for e in manifest.entries if e.grad_enabled]
        expected = [e.speedup_train if e.serve_compiled else 1.0 for e in train]
        assert attempt.served_speedup == pytest.approx(statistics.median(expected))
        assert attempt.served_speedup >= 1.0
        assert attempt.eager_step_ms is not None and attempt.eager_step_ms > 0
        assert attempt.toolchain == manifest.toolchain_hash
    finally:
        await forge.close(grace_s=10)


async def test_a_tier_predicted_to_cost_more_than_it_saves_is_skipped_and_the_skip_is_recorded(tmp_path: Path) -> None:
    forge = await _forge(tmp_path, expected_steps=100_000)
    try:
        # FAST took a minute on blueprints like it and served eager (1.0x): it never pays back.
        _seed(forge, "FAST", TINY_LIKE, compile_s=60.0, speedup=1.0, step_ms=2.0)
        before = _skips("FAST")
        ir = _tiny()
        sub = await forge.submit(_submit(ir, pb.STRATEGY_FAST))
        assert _skips("FAST") == before + 1
        view = forge.job(sub.job_id)
        assert view["strategy"] == "EMERGENCY"
        assert "FAST skipped: predicted payback -60 s" in view["strategy_reason"]
        assert view["prediction"]["strategy"] == "EMERGENCY"
        job = await forge.wait(sub.job_id, timeout=120)
        assert job.status is JobStatus.SUCCEEDED, (job.error_code, job.error)
        result = job.result
        assert result.strategy_requested == pb.STRATEGY_FAST and result.strategy_used == pb.STRATEGY_EMERGENCY
        assert "FAST skipped: predicted payback" in result.fallback_reason and "100,000 steps" in result.fallback_reason
        view = forge.job(sub.job_id)
        assert (view["strategy_requested"], view["strategy_served"]) == ("FAST", "EMERGENCY")
        manifest, _, _ = read_manifest(await forge.artifact_file(result.artifact_id))
        assert manifest.strategy_requested == pb.STRATEGY_FAST and "payback" in manifest.fallback_reason
        # FAST never ran: the only attempt on this blueprint is the EMERGENCY build.
        record = forge.store.get_blueprint(digest(ir))
        assert record.strategies_tried == ("EMERGENCY",) and record.compilation_attempts == 1

        # EMERGENCY is never skipped, however little it is predicted to save.
        _seed(forge, "EMERGENCY", TINY_LIKE, compile_s=60.0, speedup=1.0, step_ms=2.0)
        other = _tiny(seed=4)
        again = await forge.submit(_submit(other, pb.STRATEGY_EMERGENCY))
        assert forge.job(again.job_id)["strategy"] == "EMERGENCY"
        assert (await forge.wait(again.job_id, timeout=120)).status is JobStatus.SUCCEEDED
    finally:
        await forge.close(grace_s=10)


async def test_the_job_view_carries_the_predicted_compile_time_and_an_eta_once_history_exists(tmp_path: Path) -> None:
    forge = await _forge(tmp_path)
    try:
        _seed(forge, "EMERGENCY", OTHERS[:MIN_HISTORY], compile_s=7.0, speedup=1.0, step_ms=None)
        ir = _tiny()
        t0 = time.time()
        sub = await forge.submit(_submit(ir, pb.STRATEGY_EMERGENCY))
        view = forge.job(sub.job_id)
        prediction = view["prediction"]
        assert prediction["basis"] == "history" and prediction["history"] == MIN_HISTORY
        assert prediction["strategy"] == "EMERGENCY" and prediction["compile_s"] == pytest.approx(7.0)
        assert len(prediction["neighbours"]) == forge.settings.payback.neighbours
        assert {n["name"] for n in prediction["neighbours"]} <= {ir.metadata.name for ir in OTHERS}
        # Unknown step time: no payback claimed, so nothing could be skipped on it.
        assert prediction["payback_s"] is None
        # eta_at is rounded to the millisecond.
        assert t0 + 7.0 - 1e-3 <= view["eta_at"] <= time.time() + 7.0 + 1e-3
        assert view["eta"].endswith("Z")
        job = await forge.wait(sub.job_id, timeout=120)
        assert job.status is JobStatus.SUCCEEDED
        done = forge.job(sub.job_id)
        assert done["prediction"]["compile_s"] == pytest.approx(7.0) and "eta_at" not in done
        # The measured time went into the history the next prediction reads.
        assert forge.store.attempt_history("EMERGENCY", machine=machine_id(), limit=1)[0].digest == digest(ir)
    finally:
        await forge.close(grace_s=10)


def _explored(strategy: str) -> float:
    return metrics.REGISTRY.get_sample_value("tezzeret_payback_tier_explorations_total", {"strategy": strategy}) or 0.0


async def test_unlike_history_skips_nothing_and_every_nth_would_be_skip_is_built(tmp_path: Path) -> None:
    # One expected step: whatever TINY's own FAST build below measured, nothing pays a compile back.
    forge = await _forge(tmp_path, expected_steps=1, explore_every=2)
    try:
        # Only blueprints far unlike TINY say FAST serves eager: what FAST buys TINY is unknown.
        _seed(forge, "FAST", OTHERS, compile_s=60.0, speedup=1.0, step_ms=2.0)
        sub = await forge.submit(_submit(_tiny(), pb.STRATEGY_FAST))
        view = forge.job(sub.job_id)
        assert view["strategy"] == "FAST" and "skipped" not in view["strategy_reason"]
        prediction = view["prediction"]
        assert prediction["basis"] == "history" and prediction["alike"] == 0 and prediction["payback_s"] is None
        assert prediction["compile_s"] == pytest.approx(60.0)  # the ETA still comes from the nearest
        job = await forge.wait(sub.job_id, timeout=360)
        assert job.status is JobStatus.SUCCEEDED and job.result.strategy_used == pb.STRATEGY_FAST, (job.error_code, job.error)

        # Alike ones say it never pays back: the first would-be skip is skipped, the second built.
        _seed(forge, "FAST", TINY_LIKE, compile_s=60.0, speedup=1.0, step_ms=2.0)
        skips, explored = _skips("FAST"), _explored("FAST")
        first = await forge.submit(_submit(_tiny(20), pb.STRATEGY_FAST))
        second = await forge.submit(_submit(_tiny(28), pb.STRATEGY_FAST))
        assert forge.job(first.job_id)["strategy"] == "EMERGENCY"
        view = forge.job(second.job_id)
        assert view["strategy"] == "FAST" and "FAST built although predicted payback -" in view["strategy_reason"]
        assert "payback.explore_every" in view["strategy_reason"]
        assert (_skips("FAST"), _explored("FAST")) == (skips + 1, explored + 1)
        for job_id, served in ((first.job_id, pb.STRATEGY_EMERGENCY), (second.job_id, pb.STRATEGY_FAST)):
            job = await forge.wait(job_id, timeout=360)
            assert job.status is JobStatus.SUCCEEDED and job.result.strategy_used == served, (job.error_code, job.error)
        # The explored build is measured like any other: the history now holds its attempt.
        assert digest(_tiny(28)) in {a.digest for a in forge.store.attempt_history("FAST", machine=machine_id())}
    finally:
        await forge.close(grace_s=10)
