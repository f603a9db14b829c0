"""Which target a submission is built for: intake resolves `options.target_hardware` against the
targets the forge's workers build for, names the ones it has when it cannot, and the job's artifact
id, worker target and journaled request follow the resolved target. The GPU side is the offered
target list a GPU host (or a Ray cluster with GPU nodes) produces; this CPU host offers its CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from forge_helpers import blueprint, forge_settings

from tezzeret.artifact.target import cuda_spec, parse_target, target_string
from tezzeret.blueprint import digest
from tezzeret.compile.identity import artifact_id, host_target
from tezzeret.compile.tiers import tier_for
from tezzeret.forge.errors import RequestInvalid
from tezzeret.forge.intake import Intake, buildable_targets
from tezzeret.forge.jobs import Job
from tezzeret.leyline import SCHEMA_VERSION, Strategy, pb

CPU = target_string(host_target())
H100 = "cuda-sm90-cu130"


def _request(target: str) -> pb.CompilationRequest:
    request = pb.CompilationRequest(schema_version=SCHEMA_VERSION, blueprint=blueprint("mlp_512"), strategy=pb.STRATEGY_FAST)
    if target:
        request.options.target_hardware = target
    return request


def _intake(tmp_path: Path, offered: list[str]) -> Intake:
    return Intake(forge_settings(tmp_path / "state"), lambda _digest: None, lambda: offered)


def _prepare(intake: Intake, target: str) -> Job:
    return intake.prepare(_request(target), system_load=0.0, conservative_downgrade=None)


def test_this_cpu_host_offers_its_cpu_and_a_ray_forge_its_configured_targets(tmp_path: Path) -> None:
    assert buildable_targets(forge_settings(tmp_path / "a")) == [CPU]
    ray = forge_settings(tmp_path / "b", sandbox={"backend": "ray"},
                         ray={"targets": {H100: {"gpu_h100": 1}, CPU: {}, "model-a": {"gpu_a": 1}}})
    # A key that names no target (no artifact id can be computed for it) is not offered.
    assert buildable_targets(ray) == sorted([H100, CPU])


def test_a_named_gpu_target_is_resolved_in_full_and_decides_the_artifact_id(tmp_path: Path) -> None:
    intake = _intake(tmp_path, [CPU, H100])
    d = digest(blueprint("mlp_512"))
    for asked in ("cuda", "cuda-sm90", H100):
        job = _prepare(intake, asked)
        assert job.target == H100 and job.request.options.target_hardware == H100, asked
        assert job.artifact_id == artifact_id(d, tier_for(Strategy.FAST), parse_target(H100))
        assert f"-{H100}-fast-" in job.artifact_id
    # The id the worker computes from its device's full spec is the same: the driver and the
    # device's name are recorded, not part of the id.
    worker_side = cuda_spec("9.0", "13.0", driver_version="580.65", device_name="NVIDIA H100 80GB HBM3")
    assert artifact_id(d, tier_for(Strategy.FAST), worker_side) == job.artifact_id
    # Changing tier keeps the target.
    intake.retier(job, Strategy.EMERGENCY, "test")
    assert f"-{H100}-emergency-" in job.artifact_id
    # No target, or this host's CPU by name: the CPU artifact, with the request left as it came.
    plain, named = _prepare(intake, ""), _prepare(intake, CPU)
    assert plain.target == named.target == "" and plain.artifact_id == named.artifact_id
    assert f"-{CPU}-fast-" in plain.artifact_id and not plain.request.HasField("options")


@pytest.mark.parametrize(("asked", "match"), [
    ("cuda", f"builds for {CPU} only"),
    ("cuda-sm80", f"builds for {CPU}, {H100} only"),
    ("cuda-sm90-cu120", "only"),
    ("tpu-v5", "is not a target name"),
    ("cpu-x86_64-avx512", "only"),
])
def test_a_target_the_forge_cannot_build_is_refused_naming_the_ones_it_has(tmp_path: Path, asked: str, match: str) -> None:
    offered = [CPU] if asked == "cuda" else [CPU, H100]
    with pytest.raises(RequestInvalid, match=match) as caught:
        _prepare(_intake(tmp_path, offered), asked)
    assert caught.value.details["field"] == "options.target_hardware"
