"""EMERGENCY tier end to end (no Inductor): compile, task, CLI-free paths, loader on eager."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tz_compile_support import TINY_MLP, ir_of

from tezzeret.blueprint import BlueprintRejected, build_module, example_inputs
from tezzeret.artifact import file as artifact
from tezzeret.compile import compile_blueprint, run_compile_task
from tezzeret.compile.identity import artifact_id_for
from tezzeret.leyline import codec, pb
from tezzeret.loader import NoMatchingEntry, load


def test_emergency_artifact_is_a_verified_eager_build(tmp_path: Path) -> None:
    ir = ir_of(TINY_MLP)
    outcome = compile_blueprint(ir, "emergency", tmp_path)
    assert outcome.path.exists() and outcome.path.parent == tmp_path
    assert outcome.artifact_id == artifact_id_for(ir, "emergency")
    assert outcome.path.name == outcome.artifact_id + ".tzart"
    m = outcome.manifest
    assert m.strategy == pb.STRATEGY_EMERGENCY and m.blueprint == ir
    assert m.torch_version == torch.__version__ and m.python_version
    assert m.target.startswith("cpu-") and m.toolchain_hash and m.created_at_ns > 0
    assert [e.key for e in m.entries] == ["b8-train"]
    entry = m.entries[0]
    assert entry.verified and not entry.serve_compiled and entry.grad_enabled
    assert list(entry.inputs[0].shape) == [8, 32] and entry.inputs[0].dtype == pb.DTYPE_FLOAT32
    assert list(m.payloads) == [] and m.payload_size == 0
    assert m.stats.compile_ms > 0 and m.stats.peak_rss_bytes > 0
    assert json.loads(m.tier_settings)["use_inductor"] is False
    on_disk, _, _ = artifact.read_manifest(outcome.path)
    assert on_disk == m


def test_emergency_artifact_loads_and_serves_eager(tmp_path: Path) -> None:
    ir = ir_of(TINY_MLP)
    path = compile_blueprint(ir, "emergency", tmp_path).path
    module = load(path, trust_unsigned=True)
    (x,) = example_inputs(ir)
    reference = build_module(ir)
    assert torch.equal(module(x), reference(x))
    assert module.calls_eager == 1 and module.calls_compiled == 0 and not module.compiled
    with pytest.raises(NoMatchingEntry) as err:
        module(torch.randn(3, 32))
    assert "[(8, 32) float32] train" in str(err.value) and "(3, 32)" in str(err.value)
    eager_everywhere = load(path, fallback="eager", trust_unsigned=True)
    assert eager_everywhere(torch.randn(3, 32)).shape == (3, 32)


def test_explicit_batch_sizes_and_grad_modes(tmp_path: Path) -> None:
    outcome = compile_blueprint(
        json.dumps(TINY_MLP), "emergency", tmp_path, batch_sizes=[2, 16, 999], grad_modes=(True,)
    )
    assert [e.key for e in outcome.manifest.entries] == ["b2-train", "b16-train"]


def test_task_success_and_rejection(tmp_path: Path) -> None:
    ir = ir_of(TINY_MLP)
    job = pb.WorkerJob(
        schema_version=1, job_id="j1", task="compile", blueprint=codec.encode(ir),
        strategy=pb.STRATEGY_EMERGENCY, output_dir=str(tmp_path / "out"), cpu_only=True,
    )
    result = run_compile_task(job, tmp_path)
    assert result.outcome == pb.OUTCOME_SUCCESS, result.error
    assert Path(result.artifact_path).parent == tmp_path / "out"
    assert result.manifest.artifact_id == artifact_id_for(ir, "emergency")
    assert result.compile_ms > 0 and result.peak_rss_bytes > 0
    assert codec.decode(pb.WorkerResult, codec.encode(result)) == result

    bad = json.loads(json.dumps(TINY_MLP))
    bad["nodes"][1]["op"] = "os_system"
    job.blueprint = json.dumps(bad).encode()
    job.job_id = "j2"
    rejected = run_compile_task(job, tmp_path)
    assert rejected.outcome == pb.OUTCOME_REJECTED
    assert rejected.error_code and "os_system" in rejected.error
    assert not rejected.artifact_path


def test_rejected_blueprint_raises_before_anything_is_written(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(TINY_MLP))
    bad["outputs"] = ["nowhere"]
    with pytest.raises(BlueprintRejected):
        compile_blueprint(json.dumps(bad), "fast", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_spent_budget_with_nothing_verified_is_a_typed_error(tmp_path: Path) -> None:
    from tezzeret.compile import BudgetExceeded

    with pytest.raises(BudgetExceeded) as err:
        compile_blueprint(ir_of(TINY_MLP), "emergency", tmp_path, budget_s=0.0)
    assert err.value.code == "COMPILE_BUDGET_EXCEEDED" and "budget" in str(err.value)
    assert not list(tmp_path.glob("*.tzart"))


def test_budget_drops_later_entries_and_records_why(tmp_path: Path) -> None:
    # A budget this small is spent by the first entry: the rest are dropped, not compiled.
    outcome = compile_blueprint(ir_of(TINY_MLP), "emergency", tmp_path, batch_sizes=[2, 4, 8], budget_s=1e-3)
    kept = [e.key for e in outcome.manifest.entries]
    dropped = {e.key: e.drop_reason for e in outcome.manifest.stats.dropped_entries}
    assert len(kept) >= 1 and len(kept) + len(dropped) == 3
    assert all("budget" in why for why in dropped.values())
