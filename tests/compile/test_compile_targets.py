"""Build targets on the compile side: where entries compile and verify (CPU or a CUDA device), the
tolerances fit for each dtype and device, and the refusals a host without the target gives.

Everything here runs on a CPU host except the tests marked `gpu`, which compile, load and check
a CUDA artifact for real and skip (saying why) where no CUDA device is present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tz_compile_support import TINY_MLP, ir_of

from tezzeret.artifact.errors import TargetUnavailable
from tezzeret.compile import compile_blueprint, verify
from tezzeret.compile.compile import resolve_target
from tezzeret.compile.identity import artifact_id_for
from tezzeret.compile.task import run_compile_task
from tezzeret.leyline import encode, pb


def test_tolerances_fit_the_dtype_and_device() -> None:
    f32, f16, bf16, f64 = torch.float32, torch.float16, torch.bfloat16, torch.float64
    # The CPU keeps the tolerances it always had.
    assert verify.tolerance_for(f32) == (2e-3, 1e-5)
    assert verify.tolerance_for(f32, "cpu", tf32=True) == (2e-3, 1e-5)
    assert verify.tolerance_for(bf16) == (5e-2, 1e-2)
    # CUDA: TF32 widens float32 only; fp16 and bf16 are wider than on the CPU; fp64 is exact-ish.
    assert verify.tolerance_for(f32, "cuda") == (2e-3, 1e-5)
    assert verify.tolerance_for(f32, "cuda", tf32=True) == (1e-2, 1e-4)
    assert verify.tolerance_for(f16, "cuda", tf32=True) == verify.tolerance_for(f16, "cuda")
    for dtype in (f16, bf16):
        cpu, cuda = verify.tolerance_for(dtype), verify.tolerance_for(dtype, "cuda")
        assert cuda[0] > cpu[0] and cuda[1] >= cpu[1]
    assert verify.tolerance_for(f64, "cuda") == verify.tolerance_for(f64)
    assert verify.tf32_enabled("cpu") is False


def test_cpu_work_needs_no_device_sync() -> None:
    sync = verify.device_sync((torch.zeros(2),))
    assert sync is not torch.cuda.synchronize
    sync()


def test_cpu_targets_resolve_to_the_pinned_cpu_build() -> None:
    for wanted in (None, "cpu", "cpu-x86_64-avx2"):
        spec, device = resolve_target(wanted)
        assert spec.device == "cpu" and device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a host without CUDA")
def test_a_cuda_target_on_a_host_without_one_is_refused_before_compiling(tmp_path: Path) -> None:
    for wanted in ("cuda", "cuda-sm90-cu130"):
        with pytest.raises(TargetUnavailable):
            resolve_target(wanted)
    with pytest.raises(TargetUnavailable, match="CPU build|CUDA device"):
        compile_blueprint(ir_of(TINY_MLP), "emergency", tmp_path, target="cuda")
    assert not list(tmp_path.iterdir())
    # Through the worker's task: a result naming the problem, not a crash.
    job = pb.WorkerJob(job_id="j1", task="compile", blueprint=encode(ir_of(TINY_MLP)), strategy=pb.STRATEGY_EMERGENCY,
                       output_dir=str(tmp_path / "out"), target="cuda-sm90-cu130")
    result = run_compile_task(job, tmp_path)
    assert result.outcome == pb.OUTCOME_INTERNAL_ERROR and result.error_code == "TARGET_UNAVAILABLE"


def test_a_cpu_target_string_builds_what_the_default_builds(tmp_path: Path) -> None:
    ir = ir_of(TINY_MLP)
    outcome = compile_blueprint(ir, "emergency", tmp_path, target="cpu-x86_64-avx2")
    assert outcome.artifact_id == artifact_id_for(ir, "emergency")
    assert outcome.manifest.target_spec.device == "cpu"
    assert "device_options" not in outcome.manifest.tier_settings


@pytest.mark.gpu
def test_a_cuda_compile_loads_and_trains_like_eager_on_the_same_device(tmp_path: Path) -> None:
    """FAST on the CUDA device: entries through precompile + AOTI with Triton kernels embedded,
    verified on the device; then the artifact loaded back and two SGD steps against eager."""
    from tezzeret.blueprint import build_module, example_inputs
    from tezzeret.loader import load

    ir = ir_of(TINY_MLP)
    outcome = compile_blueprint(ir, "fast", tmp_path / "out", cache_dir=tmp_path / "inductor", target="cuda")
    manifest = outcome.manifest
    assert manifest.target.startswith("cuda-sm") and manifest.target_spec.device == "cuda"
    assert manifest.target_spec.compute_capability and manifest.target_spec.torch_build == torch.__version__
    assert all(e.verified for e in manifest.entries)
    module = load(outcome.path, trust_unsigned=True, serve="compiled", kernel_dir=tmp_path / "kernels")
    assert next(module.parameters()).device.type == "cuda"
    torch.manual_seed(0)
    args = tuple(t.cuda() for t in example_inputs(ir))
    parity = verify.check_parity(
        lambda: build_module(ir).cuda(), lambda m, a: module(*a) if m is module.module else m(*a), args,
        grad_enabled=True,
    )
    assert parity.passed, parity.reason
    module(*args).sum().backward()
    assert module.calls_compiled > 0
