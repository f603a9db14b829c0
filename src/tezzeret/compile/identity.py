"""Artifact identity: `{digest[:16]}-{target}-{tier}-{toolchain[:8]}`, computed without compiling.

Owns the target a host builds for (`host_target`: CPU, or a CUDA device), the toolchain (everything
besides the blueprint that changes what a compile produces: torch build, Python version, target,
the tier's settings for the target's device and the compile code's own version, derived from
its sources) and the artifact id built from it, as Inductor's cache keys capture everything that
changes their output. Must stay torch-free to import: the forge deduplicates on the id before any
compile, in a process that never loads torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from tezzeret.artifact import target as targets
from tezzeret.artifact.errors import TargetUnavailable
from tezzeret.artifact.codeversion import compile_code_version
from tezzeret.compile.tiers import Tier, tier_for
from tezzeret.leyline import pb


@dataclass(frozen=True)
class Toolchain:
    torch_build: str
    python_version: str
    target: str
    tier_name: str
    tier_version: str
    tier_settings: str
    compile_code_version: str

    def hash(self) -> str:
        doc = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()


def host_target(device: str = "cpu", gpu_index: int = 0) -> pb.TargetSpec:
    """The target this host builds for on `device`: "cpu" (the pinned ISA level), or "cuda" (GPU
    `gpu_index`: compute capability, torch's CUDA version, driver, device name; raises
    `TargetUnavailable` when there is none). A target string (`cuda-sm90-cu130`) names its device."""
    if device.startswith("cuda"):
        return targets.cuda_host_spec(gpu_index)
    if device == "cpu" or device.startswith("cpu-"):
        return targets.cpu_spec()
    raise TargetUnavailable(f"device {device!r} is not one Tezzeret builds for: use cpu or cuda")


def toolchain_for_tier(tier: Tier, spec: pb.TargetSpec | None = None) -> Toolchain:
    spec = spec or host_target()
    return Toolchain(
        torch_build=spec.torch_build or targets.torch_build(),
        python_version=targets.python_version(),
        target=targets.target_string(spec),
        tier_name=tier.name,
        tier_version=tier.version,
        tier_settings=json.dumps(tier.settings(spec.device or "cpu"), sort_keys=True, separators=(",", ":")),
        compile_code_version=compile_code_version(),
    )


def artifact_id(blueprint_digest: str, tier: Tier, spec: pb.TargetSpec | None = None) -> str:
    toolchain = toolchain_for_tier(tier, spec)
    return f"{blueprint_digest[:16]}-{toolchain.target}-{tier.name}-{toolchain.hash()[:8]}"


def artifact_id_for(ir: pb.BlueprintIR, strategy: int | str) -> str:
    """The id an artifact of `ir` at `strategy` will have on this host; compiles nothing."""
    from tezzeret.blueprint import digest

    return artifact_id(digest(ir), tier_for(strategy))
