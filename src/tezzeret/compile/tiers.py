"""The four compilation tiers: named, versioned settings that go into the toolchain hash.

Owns: what each tier compiles (which backend, which Inductor options, which shapes and grad modes)
and its wall-clock budget (the seed's numbers, hard upper bounds). Must never run a compile or touch
torch: `precompile.py` turns these settings into torch calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Mapping

from tezzeret.leyline import Strategy


class BatchPolicy(str, Enum):
    DECLARED = "declared"  # the IR's example batch only
    REPRESENTATIVE = "representative"  # 1, 8, 32 and the declared batch, inside the IR's range
    GRID = "grid"  # every power of two in the range, plus its ends and the declared batch


@dataclass(frozen=True)
class Tier:
    name: str
    version: str
    strategy: Strategy
    budget_s: float
    use_inductor: bool
    batch_policy: BatchPolicy
    grad_modes: tuple[bool, ...]  # True = training entry, False = no_grad entry
    inductor_options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    def settings(self) -> dict[str, object]:
        """Everything that changes the produced code; hashed into the toolchain id."""
        return {
            "name": self.name,
            "version": self.version,
            "use_inductor": self.use_inductor,
            "batch_policy": self.batch_policy.value,
            "grad_modes": list(self.grad_modes),
            "inductor_options": dict(sorted(self.inductor_options.items())),
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
    strategy=Strategy.EMERGENCY,
    budget_s=10.0,
    use_inductor=False,
    batch_policy=BatchPolicy.DECLARED,
    grad_modes=(True,),
)
FAST = Tier(
    name="fast",
    version="1",
    strategy=Strategy.FAST,
    budget_s=65.0,
    use_inductor=True,
    batch_policy=BatchPolicy.DECLARED,
    grad_modes=(True,),
    inductor_options=MappingProxyType(
        {**_COMMON, "max_autotune": False, "coordinate_descent_tuning": False, "compile_threads": 1}
    ),
)
STANDARD = Tier(
    name="standard",
    version="1",
    strategy=Strategy.STANDARD,
    budget_s=250.0,
    use_inductor=True,
    batch_policy=BatchPolicy.REPRESENTATIVE,
    grad_modes=(True, False),
    inductor_options=MappingProxyType(dict(_COMMON)),
)
AGGRESSIVE = Tier(
    name="aggressive",
    version="1",
    strategy=Strategy.AGGRESSIVE,
    budget_s=960.0,
    use_inductor=True,
    batch_policy=BatchPolicy.GRID,
    grad_modes=(True, False),
    inductor_options=MappingProxyType(
        {**_COMMON, "max_autotune": True, "coordinate_descent_tuning": True}
    ),
)

TIERS: tuple[Tier, ...] = (EMERGENCY, FAST, STANDARD, AGGRESSIVE)


_BY_STRATEGY: Mapping[Strategy, Tier] = MappingProxyType({t.strategy: t for t in TIERS})


def tier_for(strategy: Strategy | int | str) -> Tier:
    """The tier of a strategy (anything `Strategy.parse` takes); raises `UnknownStrategy`."""
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
