"""Strategy selection: which compilation tier a job gets (upstream §3.4), capped by conservative mode.

Owns: the policy only. An explicit request wins; otherwise a blueprint Tamiyo is interested in
(`tamiyo_interest` or `value` above `compilation.tamiyo_interest_threshold`) gets AGGRESSIVE under
low load (< 0.3) and STANDARD otherwise; any other blueprint gets STANDARD under load < 0.5 and FAST
above. AGGRESSIVE needs `compilation.enable_aggressive_pipeline`. Conservative mode then applies its
own cap (`downgrade`, from the resilience controller). EMERGENCY is never chosen here: it comes only
from the emergency path or an explicit request. Must never look at the clock, the queue or torch:
callers pass the load in, so the policy stays a pure function that tests can pin down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tezzeret.config import Settings, Strategy
from tezzeret.leyline import pb

ORDER: tuple[int, ...] = (
    pb.STRATEGY_EMERGENCY,
    pb.STRATEGY_FAST,
    pb.STRATEGY_STANDARD,
    pb.STRATEGY_AGGRESSIVE,
)


def to_pb(strategy: Strategy | str | int) -> int:
    """A config `Strategy`, a name ("FAST", "STRATEGY_FAST") or a pb value, as the pb enum value."""
    if isinstance(strategy, int):
        if strategy not in ORDER:
            raise ValueError(f"unknown strategy value {strategy}")
        return strategy
    name = strategy.value if isinstance(strategy, Strategy) else str(strategy).upper()
    if not name.startswith("STRATEGY_"):
        name = "STRATEGY_" + name
    return int(pb.CompilationStrategy.Value(name))


def name_of(strategy: int) -> str:
    """"FAST" for STRATEGY_FAST: the seed's tier names, used in metrics, tables and artifact ids."""
    return pb.CompilationStrategy.Name(strategy).removeprefix("STRATEGY_")


def one_level_down(strategy: int) -> int:
    """The tier below (AGGRESSIVE → STANDARD → FAST → EMERGENCY); EMERGENCY stays."""
    i = ORDER.index(strategy)
    return ORDER[max(0, i - 1)]


@dataclass(frozen=True)
class StrategyDecision:
    strategy: int
    reason: str
    capped: bool = False

    @property
    def name(self) -> str:
        return name_of(self.strategy)


def select_strategy(
    settings: Settings,
    *,
    requested: int = pb.STRATEGY_UNSPECIFIED,
    metadata: pb.BlueprintMetadata | None = None,
    system_load: float = 0.0,
    conservative_downgrade: Callable[[int], int] | None = None,
) -> StrategyDecision:
    """Pick the tier for one job; `conservative_downgrade` is None when conservative mode is off."""
    if requested != pb.STRATEGY_UNSPECIFIED:
        chosen, reason = to_pb(requested), "requested"
    else:
        interest = 0.0
        if metadata is not None:
            interest = max(metadata.tamiyo_interest, metadata.value)
        threshold = settings.compilation.tamiyo_interest_threshold
        if interest > threshold:
            if system_load < 0.3:
                chosen, reason = pb.STRATEGY_AGGRESSIVE, f"interest {interest:.2f} > {threshold}, load {system_load:.2f} < 0.3"
            else:
                chosen, reason = pb.STRATEGY_STANDARD, f"interest {interest:.2f} > {threshold}, load {system_load:.2f} ≥ 0.3"
        elif system_load < 0.5:
            chosen, reason = pb.STRATEGY_STANDARD, f"load {system_load:.2f} < 0.5"
        else:
            chosen, reason = pb.STRATEGY_FAST, f"load {system_load:.2f} ≥ 0.5"
    capped = False
    if chosen == pb.STRATEGY_AGGRESSIVE and not settings.compilation.enable_aggressive_pipeline:
        chosen, reason, capped = pb.STRATEGY_STANDARD, reason + "; aggressive pipeline disabled", True
    if conservative_downgrade is not None:
        lowered = to_pb(conservative_downgrade(chosen))
        if lowered != chosen:
            chosen, reason, capped = lowered, reason + "; conservative mode cap", True
    return StrategyDecision(chosen, reason, capped)
