"""The four compilation tiers: named, versioned settings that go into the toolchain hash.

Owns: what each tier compiles (which backend, which Inductor options, which shapes and grad modes,
static or dynamic-batch entries) and its wall-clock budget (the seed's numbers, hard upper bounds).
Must never run a compile or touch torch: `precompile.py` turns these settings into torch calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Mapping

from tezzeret.leyline import Strategy


# The values Inductor's `options` take that a tier sets (torch.compile also takes callables).
InductorOption = str | int | bool


class BatchPolicy(str, Enum):
    DECLARED = "declared"  # the IR's example batch only
    REPRESENTATIVE = "representative"  # 1, 8, 32 and the declared batch, inside the IR's range
    GRID = "grid"  # every power of two in the range, plus its ends and the declared batch


class BatchMode(str, Enum):
    """Static entries, or one dynamic-batch entry per grad mode covering the IR's whole range."""

    STATIC = "static"  # the batch policy's sizes, one static entry each
    DYNAMIC = "dynamic"  # one dynamic entry; the policy's static sizes only where it fails
    COMPARE = "compare"  # one dynamic entry, plus the policy's static sizes where measured faster


@dataclass(frozen=True)
class Tier:
    name: str
    version: str
    strategy: Strategy
    budget_s: float
    use_inductor: bool
    batch_policy: BatchPolicy
    grad_modes: tuple[bool, ...]  # True = training entry, False = no_grad entry
    inductor_options: Mapping[str, InductorOption] = field(default_factory=lambda: MappingProxyType({}))
    batch_mode: BatchMode = BatchMode.STATIC

    def settings(self, device: str = "cpu") -> dict[str, object]:
        """Everything that changes the produced code for `device`; hashed into the toolchain id.
        A CPU tier's settings carry no device key, so CPU ids stay what they were."""
        settings: dict[str, object] = {
            "name": self.name,
            "version": self.version,
            "use_inductor": self.use_inductor,
            "batch_policy": self.batch_policy.value,
            "grad_modes": list(self.grad_modes),
            "inductor_options": dict(sorted(self.inductor_options.items())),
            "batch_mode": self.batch_mode.value,
        }
        extra = DEVICE_OPTIONS.get(device, {}) if self.use_inductor else {}
        if extra:
            settings["device_options"] = dict(sorted(extra.items()))
        return settings

    def options_for(self, device: str) -> dict[str, InductorOption]:
        """The Inductor options an entry for `device` compiles with."""
        return {**self.inductor_options, **DEVICE_OPTIONS.get(device, {})}


# Options every Inductor tier shares: AOTI packaging is what makes a precompiled entry load with no
# code generation; fallback_random keeps dropout bit-identical to eager so parity can be checked;
# the pinned march keeps the .so runnable on any x86-64-v3 host.
#
# layout_optimization=False works around torch 2.13 compiling wrong conv gradients on the AOT path
# (docs/upstream/torch-aoti-conv-strides.md): with mkldnn, Inductor saves channels-last activations
# for any graph with a convolution, and the AOT branch never reports those strides to AOTAutograd,
# so the AOTI backward reads them as NCHW. Chosen over B, reporting the strides ourselves (a patch
# of CompiledAOTI, `report_forward_strides` in precompile.py), by bench/conv_layout.py on the 2-core
# CPU machine, 1 thread, every entry saved and loaded in a fresh process, over the 5 library conv2d
# blueprints and 5 conv patterns (README has the tables):
# - parity: without either, all 9 conv2d cases fail (89-3800x the tolerance; conv1d is fine); both
#   pass everywhere, A as close or closer to eager in every case (worst 5.4e-4 of the tolerance
#   used, B 8.9e-4);
# - training step, the five library blueprints loaded side by side in one process: A faster in 4
#   of 5 (depthwise_separable_64 139 vs 174 ms), B in 1 (conv_pool_head_32 10.0 vs 11.5 ms); on
#   this CPU eager beats both nearly everywhere (A 0.42-0.95x, B 0.40-1.08x), and the manifest
#   then serves eager;
# - cold compile: no difference above the shared machine's noise (A faster in 7 of 15 pairs, B 7);
# - A is a public option hashed into the toolchain; B patches private torch internals that move.
# Options added on a device class. CUDA: Triton's cubins go inside the AOTI .so. Without it the
# .so loads each cubin from the absolute path it was written to in the producer's Inductor cache,
# which a consumer on another host (or after a cache clean) does not have; re-homing moves the
# .so, not the paths compiled into it.
DEVICE_OPTIONS: Mapping[str, Mapping[str, InductorOption]] = MappingProxyType({
    "cuda": MappingProxyType({"aot_inductor.embed_kernel_binary": True}),
})

_COMMON: dict[str, InductorOption] = {
    "use_aoti": True,
    "fallback_random": True,
    "cpp.march": "x86-64-v3",
    "layout_optimization": False,
}

EMERGENCY = Tier(
    name="emergency",
    version="1",
    strategy=Strategy.EMERGENCY,
    budget_s=10.0,
    use_inductor=False,
    batch_policy=BatchPolicy.DECLARED,
    grad_modes=(True,),
)
# Version 2 of the Inductor tiers: layout_optimization off (version 1 entries of conv blueprints
# had wrong gradients; verification dropped them, but the ids must not be reused).
FAST = Tier(
    name="fast",
    version="2",
    strategy=Strategy.FAST,
    budget_s=65.0,
    use_inductor=True,
    batch_policy=BatchPolicy.DECLARED,
    grad_modes=(True,),
    batch_mode=BatchMode.DYNAMIC,
    inductor_options=MappingProxyType(
        {**_COMMON, "max_autotune": False, "coordinate_descent_tuning": False, "compile_threads": 1}
    ),
)
STANDARD = Tier(
    name="standard",
    version="2",
    strategy=Strategy.STANDARD,
    budget_s=250.0,
    use_inductor=True,
    batch_policy=BatchPolicy.REPRESENTATIVE,
    grad_modes=(True, False),
    batch_mode=BatchMode.COMPARE,
    inductor_options=MappingProxyType(dict(_COMMON)),
)
AGGRESSIVE = Tier(
    name="aggressive",
    version="2",
    strategy=Strategy.AGGRESSIVE,
    budget_s=960.0,
    use_inductor=True,
    batch_policy=BatchPolicy.GRID,
    grad_modes=(True, False),
    batch_mode=BatchMode.COMPARE,
    inductor_options=MappingProxyType(
        {**_COMMON, "max_autotune": True, "coordinate_descent_tuning": True}
    ),
)

TIERS: tuple[Tier, ...] = (EMERGENCY, FAST, STANDARD, AGGRESSIVE)


_BY_STRATEGY: Mapping[Strategy, Tier] = MappingProxyType({t.strategy: t for t in TIERS})


def tier_for(strategy: Strategy | int | str | Tier) -> Tier:
    """The tier of a strategy (anything `Strategy.parse` takes); raises `UnknownStrategy`. A
    `Tier` is returned as it is (a variant built with `dataclasses.replace`)."""
    if isinstance(strategy, Tier):
        return strategy
    return _BY_STRATEGY[Strategy.parse(strategy)]


def batch_sizes_for(tier: Tier, declared: int, lo: int, hi: int) -> list[int]:
    """The batch sizes a tier builds entries for, inside the IR's inclusive range [lo, hi]."""
    lo, hi = max(1, lo), max(max(1, lo), hi)
    declared = min(max(declared, lo), hi)
    if tier.batch_policy is BatchPolicy.DECLARED:
        sizes = {declared}
    elif tier.batch_policy is BatchPolicy.REPRESENTATIVE:
        sizes = {declared} | {b for b in (1, 8, 32) if lo <= b <= hi}
    else:
        sizes = {declared, lo, hi}
        power = 1
        while power <= hi:
            if power >= lo:
                sizes.add(power)
            power *= 2
    return sorted(sizes)
