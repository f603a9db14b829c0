"""Strategy selection: which compilation tier a job gets (upstream §3.4), capped by conservative mode.

Owns: the policy only. An explicit request wins; otherwise a blueprint Tamiyo is interested in
(`tamiyo_interest` or `value` above `compilation.tamiyo_interest_threshold`) gets AGGRESSIVE under
low load (< 0.3) and STANDARD otherwise; any other blueprint gets `compilation.default_strategy`
under load < 0.5 and one tier below it above. AGGRESSIVE needs
`compilation.enable_aggressive_pipeline`. Conservative mode then applies its own cap (`downgrade`,
from the resilience controller). EMERGENCY is never chosen here: it comes only from the emergency
path or an explicit request. Must never look at the clock, the queue or torch: callers pass the
load in, so the policy stays a pure function that tests can pin down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tezzeret.config import Settings
from tezzeret.leyline import Strategy, pb


@dataclass(frozen=True)
class StrategyDecision:
    strategy: Strategy
    reason: str
    capped: bool = False

    @property
    def name(self) -> str:
        return self.strategy.value


def select_strategy(
    settings: Settings,
    *,
    requested: Strategy | int | None = None,
    metadata: pb.BlueprintMetadata | None = None,
    system_load: float = 0.0,
    conservative_downgrade: Callable[[Strategy], Strategy] | None = None,
) -> StrategyDecision:
    """Pick the tier for one job; `conservative_downgrade` is None when conservative mode is off.
    `requested` is None (or `pb.STRATEGY_UNSPECIFIED`) when the request leaves it to the policy."""
    if requested is not None and requested != pb.STRATEGY_UNSPECIFIED:
        chosen, reason = Strategy.parse(requested), "requested"
    else:
        interest = 0.0
        if metadata is not None:
            interest = max(metadata.tamiyo_interest, metadata.value)
        threshold = settings.compilation.tamiyo_interest_threshold
        default = settings.compilation.default_strategy
        if interest > threshold:
            if system_load < 0.3:
                chosen, reason = Strategy.AGGRESSIVE, f"interest {interest:.2f} > {threshold}, load {system_load:.2f} < 0.3"
            else:
                chosen, reason = Strategy.STANDARD, f"interest {interest:.2f} > {threshold}, load {system_load:.2f} ≥ 0.3"
        elif system_load < 0.5:
            chosen, reason = default, f"compilation.default_strategy, load {system_load:.2f} < 0.5"
        else:
            chosen = default.down() if default is not Strategy.EMERGENCY else default
            reason = f"one below compilation.default_strategy, load {system_load:.2f} ≥ 0.5"
    capped = False
    if chosen is Strategy.AGGRESSIVE and not settings.compilation.enable_aggressive_pipeline:
        chosen, reason, capped = Strategy.STANDARD, reason + "; aggressive pipeline disabled", True
    if conservative_downgrade is not None:
        lowered = conservative_downgrade(chosen)
        if lowered is not chosen:
            chosen, reason, capped = lowered, reason + "; conservative mode cap", True
    return StrategyDecision(chosen, reason, capped)
