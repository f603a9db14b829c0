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

from tezzeret.compile.errors import UnknownStrategy
from tezzeret.leyline import pb


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
    strategy: int  # pb.CompilationStrategy value
    budget_s: float
    use_inductor: bool
    batch_policy: BatchPolicy
    grad_modes: tuple[bool, ...]  # True = training entry, False = no_grad entry
    inductor_options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    batch_mode: BatchMode = BatchMode.STATIC

    def settings(self) -> dict[str, object]:
        """Everything that changes the produced code; hashed into the toolchain id."""
        return {
            "name": self.name,
            "version": self.version,
            "use_inductor": self.use_inductor,
            "batch_policy": self.batch_policy.value,
            "grad_modes": list(self.grad_modes),
            "inductor_options": dict(sorted(self.inductor_options.items())),
            "batch_mode": self.batch_mode.value,
        }


# Options every Inductor tier shares: AOTI packaging is what makes a precompiled entry load with no
# code generation; fallback_random keeps dropout bit-identical to eager so parity can be checked;
# the pinned march keeps the .so runnable on any x86-64-v3 host.
_COMMON: dict[str, object] = {
    "use_aoti": True,
    "fallback_random": True,
    "cpp.march": "x86-64-v3",
}

EMERGENCY = Tier(
    name="emergency",
    version="1",
    strategy=pb.STRATEGY_EMERGENCY,
    budget_s=10.0,
    use_inductor=False,
    batch_policy=BatchPolicy.DECLARED,
    grad_modes=(True,),
)
FAST = Tier(
    name="fast",
    version="1",
    strategy=pb.STRATEGY_FAST,
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
    version="1",
    strategy=pb.STRATEGY_STANDARD,
    budget_s=250.0,
    use_inductor=True,
    batch_policy=BatchPolicy.REPRESENTATIVE,
    grad_modes=(True, False),
    batch_mode=BatchMode.COMPARE,
    inductor_options=MappingProxyType(dict(_COMMON)),
)
AGGRESSIVE = Tier(
    name="aggressive",
    version="1",
    strategy=pb.STRATEGY_AGGRESSIVE,
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


def tier_for(strategy: int | str) -> Tier:
    """The tier for a `pb.CompilationStrategy` value or a name (`fast`, `STRATEGY_FAST`, `FAST`)."""
    for tier in TIERS:
        if isinstance(strategy, int) and not isinstance(strategy, bool):
            if tier.strategy == strategy:
                return tier
        elif isinstance(strategy, str):
            name = strategy.strip().lower().removeprefix("strategy_")
            if tier.name == name:
                return tier
    names = ", ".join(t.name for t in TIERS)
    raise UnknownStrategy(f"strategy {strategy!r} is not a tier; use one of: {names}")


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
