"""Conservative mode: the service's degraded-but-running state, and the limits it imposes.

Owns: entering conservative mode on the seed's failure-mode triggers (any breaker opening, a
compile over its tier's limit, GPU utilisation above `gpu_threshold_percent` for
`threshold_duration_minutes`, host or GPU memory above `memory_threshold_percent`, a torch
crash); leaving it only after every breaker is CLOSED and load has stayed calm for
`timeouts_ms.conservative_mode_timeout`, where calm means `exit_hysteresis_percent` points under
each entry threshold so it cannot flap at the threshold; and `effective()`, the one place the forge
reads its concurrency, tier, timeout, cache and GPU limits from. Every entry and exit is logged with
its reasons and exported. It must never run or stop work itself: it only says what is allowed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Literal

from tezzeret import metrics
from tezzeret.config import Settings, Strategy
from tezzeret.resilience.breaker import BreakerRegistry, BreakerState, StateChange, Violation
from tezzeret.resilience.clock import Clock
from tezzeret.resilience.errors import ResilienceConfigError, UnknownTriggerError
from tezzeret.resilience.monitor import LoadSample, LoadWindow

log = logging.getLogger(__name__)


class TriggerReason(str, Enum):
    CIRCUIT_BREAKER_OPEN = "circuit_breaker_open"
    COMPILATION_TIMEOUT = "compilation_timeout"
    GPU_UTILIZATION_SUSTAINED = "gpu_utilization_sustained"
    MEMORY_PRESSURE = "memory_pressure"
    GPU_MEMORY_PRESSURE = "gpu_memory_pressure"
    TORCH_CRASH = "torch_crash"


# `conservative_mode.triggers` uses the seed's YAML names; each turns on these reasons. A reason's
# own name is accepted too.
CONFIG_TRIGGER_NAMES: Mapping[str, frozenset[TriggerReason]] = MappingProxyType({
    "circuit_breaker_open": frozenset({TriggerReason.CIRCUIT_BREAKER_OPEN}),
    "gpu_utilization_above_20_percent_for_5_minutes": frozenset({TriggerReason.GPU_UTILIZATION_SUSTAINED}),
    "memory_usage_above_80_percent": frozenset({TriggerReason.MEMORY_PRESSURE, TriggerReason.GPU_MEMORY_PRESSURE}),
    "compilation_timeout": frozenset({TriggerReason.COMPILATION_TIMEOUT}),
    "torch_crash": frozenset({TriggerReason.TORCH_CRASH}),
    **{r.value: frozenset({r}) for r in TriggerReason},
})

# One tier lower (upstream §2.3): AGGRESSIVE→STANDARD→FAST→EMERGENCY→EMERGENCY.
_ONE_TIER_DOWN: Mapping[Strategy, Strategy] = MappingProxyType({
    Strategy.AGGRESSIVE: Strategy.STANDARD,
    Strategy.STANDARD: Strategy.FAST,
    Strategy.FAST: Strategy.EMERGENCY,
    Strategy.EMERGENCY: Strategy.EMERGENCY,
})


@dataclass(frozen=True)
class EffectiveLimits:
    """What the forge may do right now. Read it per decision; it does not update itself."""

    conservative: bool
    reasons: tuple[str, ...]
    max_concurrent_jobs: int
    aggressive_allowed: bool
    idle_recompilation_allowed: bool
    timeout_multiplier: float
    cache_budget_factor: float
    gpu_utilization_limit: float
    # A torch crash asks for compiles to run CPU-only until conservative mode ends.
    cpu_only_requested: bool
    base_timeouts_ms: Mapping[Strategy, int] = field(default_factory=dict, compare=False, repr=False)

    def downgrade(self, strategy: Strategy | str) -> Strategy:
        """The tier to run instead of `strategy`: one lower in conservative mode, never AGGRESSIVE
        when it is not allowed; EMERGENCY stays EMERGENCY."""
        tier = Strategy(strategy)
        if self.conservative:
            tier = _ONE_TIER_DOWN[tier]
        if tier is Strategy.AGGRESSIVE and not self.aggressive_allowed:
            tier = Strategy.STANDARD
        return tier

    def timeout_ms(self, strategy: Strategy | str) -> int:
        """The wall-clock budget of a compile at `strategy`, stretched in conservative mode."""
        return int(round(self.base_timeouts_ms[Strategy(strategy)] * self.timeout_multiplier))


@dataclass(frozen=True)
class ModeEvent:
    """An accepted trigger, an entry or an exit; `duration_s` is set on exit."""

    kind: Literal["enter", "trigger", "exit"]
    reason: str
    detail: str
    reasons: tuple[str, ...]
    at: float
    duration_s: float | None = None


ModeListener = Callable[[ModeEvent], None]


class ConservativeModeController:
    """Decides when Tezzeret runs conservatively, and what that allows."""

    def __init__(self, settings: Settings, breakers: BreakerRegistry, clock: Clock) -> None:
        cm = settings.conservative_mode
        enabled: set[TriggerReason] = set()
        for name in cm.triggers:
            if name not in CONFIG_TRIGGER_NAMES:
                raise ResilienceConfigError(
                    "conservative_mode.triggers",
                    f"unknown trigger '{name}'; known: {', '.join(sorted(CONFIG_TRIGGER_NAMES))}",
                )
            enabled |= CONFIG_TRIGGER_NAMES[name]
        self._settings = settings
        self._enabled_reasons = frozenset(enabled)
        self._auto = cm.auto_enable
        self._breakers = breakers
        self._clock = clock
        self.quiet_period_s = settings.timeouts_ms.conservative_mode_timeout / 1000.0
        self.gpu_entry_percent = cm.gpu_threshold_percent
        self.gpu_exit_percent = max(0.0, cm.gpu_threshold_percent - cm.exit_hysteresis_percent)
        self.memory_entry_percent = cm.memory_threshold_percent
        self.memory_exit_percent = max(0.0, cm.memory_threshold_percent - cm.exit_hysteresis_percent)
        self.gpu_duration_s = cm.threshold_duration_minutes * 60.0
        self.window = LoadWindow(clock, window_s=max(600.0, self.gpu_duration_s + 120.0))
        self._lock = threading.RLock()
        self._active = False
        self._entered_at: float | None = None
        self._reasons: dict[str, str] = {}
        self._quiet_since: float | None = None
        self._load_calm = True
        self._latched: set[TriggerReason] = set()
        self._cpu_only = False
        self._listeners: list[ModeListener] = []
        self.history: deque[ModeEvent] = deque(maxlen=64)
        metrics.CONSERVATIVE_MODE_ACTIVE.set(0)
        breakers.add_listener(self._on_breaker_change)
        breakers.add_violation_listener(self._on_violation)

    # -- reading ---------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._active

    @property
    def reasons(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._reasons)

    def add_listener(self, fn: ModeListener) -> None:
        """Call `fn(ModeEvent)` on every accepted trigger, entry and exit (outside the lock)."""
        self._listeners.append(fn)

    def effective(self) -> EffectiveLimits:
        comp = self._settings.compilation
        effects = self._settings.conservative_mode.settings
        t = self._settings.timeouts_ms
        base = MappingProxyType({s: t.for_strategy(s) for s in Strategy})
        with self._lock:
            if not self._active:
                return EffectiveLimits(
                    conservative=False,
                    reasons=(),
                    max_concurrent_jobs=self._settings.compile_slots(),
                    aggressive_allowed=comp.enable_aggressive_pipeline,
                    idle_recompilation_allowed=comp.idle_recompilation,
                    timeout_multiplier=1.0,
                    cache_budget_factor=1.0,
                    gpu_utilization_limit=comp.gpu_utilization_limit,
                    cpu_only_requested=False,
                    base_timeouts_ms=base,
                )
            concurrency = min(self._settings.compile_slots(), effects.max_concurrent_jobs)
            if TriggerReason.GPU_MEMORY_PRESSURE.value in self._reasons:
                # The seed's failure-mode table: GPU memory > 80% → one job at a time, whatever
                # the configured conservative concurrency.
                concurrency = 1
            return EffectiveLimits(
                conservative=True,
                reasons=tuple(self._reasons),
                max_concurrent_jobs=concurrency,
                aggressive_allowed=comp.enable_aggressive_pipeline and not effects.disable_aggressive_compilation,
                idle_recompilation_allowed=comp.idle_recompilation and not effects.disable_idle_recompilation,
                timeout_multiplier=effects.timeout_extension_factor,
                cache_budget_factor=effects.cache_budget_factor,
                gpu_utilization_limit=min(comp.gpu_utilization_limit, effects.gpu_utilization_limit),
                cpu_only_requested=self._cpu_only,
                base_timeouts_ms=base,
            )

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view for `/health/tezzeret`."""
        now = self._clock.monotonic()
        with self._lock:
            return {
                "active": self._active,
                "reasons": [{"reason": r, "detail": d} for r, d in self._reasons.items()],
                "active_for_s": None if self._entered_at is None else round(now - self._entered_at, 3),
                "quiet_for_s": None if self._quiet_since is None else round(now - self._quiet_since, 3),
                "quiet_needed_s": self.quiet_period_s,
                "cpu_only_requested": self._cpu_only,
                "load_calm": self._load_calm,
            }

    # -- triggers --------------------------------------------------------------------------
    def trigger(self, reason: TriggerReason | str, detail: str = "") -> bool:
        """Enter (or stay in) conservative mode for `reason`; restarts the quiet period.

        Returns False, and changes nothing, when `auto_enable` is off or the reason is not in
        `conservative_mode.triggers`. Raises `UnknownTriggerError` for a reason it does not know.
        """
        r = _parse_reason(reason)
        if not self._auto or r not in self._enabled_reasons:
            why = "conservative_mode.auto_enable is false" if not self._auto else "not in conservative_mode.triggers"
            log.info("conservative mode: trigger %s ignored (%s): %s", r.value, why, detail)
            return False
        metrics.CONSERVATIVE_MODE_TRIGGERS.labels(trigger_reason=r.value).inc()
        with self._lock:
            now = self._clock.monotonic()
            self._quiet_since = None
            if r is TriggerReason.TORCH_CRASH:
                self._cpu_only = True
            self._reasons.setdefault(r.value, detail)
            entering = not self._active
            if entering:
                self._active = True
                self._entered_at = now
            event = ModeEvent("enter" if entering else "trigger", r.value, detail, tuple(self._reasons), now)
            self.history.append(event)
        if entering:
            metrics.CONSERVATIVE_MODE_ACTIVE.set(1)
            log.warning("conservative mode ON: %s%s", r.value, f" ({detail})" if detail else "")
        else:
            log.info("conservative mode: also %s%s; quiet period restarts", r.value, f" ({detail})" if detail else "")
        self._emit(event)
        return True

    def observe(self, sample: LoadSample) -> None:
        """Feed one load reading: record it, fire load triggers, and evaluate exit."""
        self.window.add(sample)
        fired: list[tuple[TriggerReason, str]] = []
        with self._lock:
            checks: list[tuple[TriggerReason, bool, bool, str]] = [
                (
                    TriggerReason.MEMORY_PRESSURE,
                    sample.memory_percent > self.memory_entry_percent,
                    sample.memory_percent < self.memory_exit_percent,
                    f"memory {sample.memory_percent:.1f}% > {self.memory_entry_percent:g}%",
                ),
                (
                    TriggerReason.GPU_MEMORY_PRESSURE,
                    sample.gpu_memory_percent is not None and sample.gpu_memory_percent > self.memory_entry_percent,
                    sample.gpu_memory_percent is None or sample.gpu_memory_percent < self.memory_exit_percent,
                    f"GPU memory {sample.gpu_memory_percent or 0:.1f}% > {self.memory_entry_percent:g}%",
                ),
                (
                    TriggerReason.GPU_UTILIZATION_SUSTAINED,
                    self.window.above("gpu_utilization_percent", self.gpu_entry_percent, self.gpu_duration_s),
                    sample.gpu_utilization_percent is None or sample.gpu_utilization_percent < self.gpu_exit_percent,
                    f"GPU utilisation above {self.gpu_entry_percent:g}% for {self.gpu_duration_s:g} s",
                ),
            ]
            calm = True
            for reason, entry, below_exit, detail in checks:
                if entry and reason not in self._latched:
                    # Latched until the reading drops under the exit threshold: one trigger per
                    # episode, however many samples stay high.
                    self._latched.add(reason)
                    fired.append((reason, detail))
                elif below_exit:
                    self._latched.discard(reason)
                calm = calm and below_exit
            self._load_calm = calm
            if not calm:
                self._quiet_since = None
        for reason, detail in fired:
            self.trigger(reason, detail)
        self.tick()

    def tick(self) -> bool:
        """Evaluate exit; returns whether conservative mode is still on. Call it periodically."""
        if not self._active:
            return False
        # Read the breakers before taking our lock: reading may move one to HALF_OPEN, whose
        # listener calls back into this controller.
        not_closed = self._breakers.not_closed()
        with self._lock:
            if not self._active:
                return False
            now = self._clock.monotonic()
            if not_closed or not self._load_calm:
                self._quiet_since = None
                return True
            if self._quiet_since is None:
                self._quiet_since = now
                log.info("conservative mode: quiet period starts (%.0f s needed)", self.quiet_period_s)
            if now - self._quiet_since < self.quiet_period_s:
                return True
            duration = now - (self._entered_at if self._entered_at is not None else now)
            reasons = tuple(self._reasons)
            event = ModeEvent("exit", "quiet_period_elapsed", "", reasons, now, duration)
            self.history.append(event)
            self._active = False
            self._entered_at = None
            self._reasons.clear()
            self._quiet_since = None
            self._cpu_only = False
        metrics.CONSERVATIVE_MODE_ACTIVE.set(0)
        log.warning(
            "conservative mode OFF after %.1f s (was on for: %s); breakers closed and load calm for %.0f s",
            duration, ", ".join(reasons), self.quiet_period_s,
        )
        self._emit(event)
        return False

    # -- breaker hooks ---------------------------------------------------------------------
    def _on_breaker_change(self, change: StateChange) -> None:
        if change.new is BreakerState.OPEN:
            self.trigger(TriggerReason.CIRCUIT_BREAKER_OPEN, f"{change.name}: {change.reason}")
        elif change.new is not BreakerState.CLOSED:
            with self._lock:
                self._quiet_since = None

    def _on_violation(self, violation: Violation) -> None:
        if violation.while_open:
            self.trigger(
                TriggerReason.CIRCUIT_BREAKER_OPEN,
                f"{violation.name}: violation while open: {violation.message}",
            )

    def _emit(self, event: ModeEvent) -> None:
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:  # a listener's bug must not stop the mode from changing
                log.exception("conservative mode: listener %r raised", fn)


def _parse_reason(reason: TriggerReason | str) -> TriggerReason:
    try:
        return TriggerReason(reason)
    except ValueError:
        raise UnknownTriggerError(str(reason), tuple(r.value for r in TriggerReason)) from None
