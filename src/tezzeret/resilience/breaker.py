"""Three-state circuit breakers (CLOSED / OPEN / HALF_OPEN) and the registry of Tezzeret's six.

Owns: consecutive-failure counting, the OPEN timeout that lets a HALF_OPEN probe through, the
successes that close a HALF_OPEN breaker, sync and async protected calls, `check_condition` (the
replacement for `assert`), state-change and violation listeners, and the breaker metrics. It must
never decide what a failure means for the service (that is conservative mode, which listens), and
`check_condition` and listener dispatch must never raise at the caller.

Why not pybreaker (1.4.1, read from its wheel): it times the OPEN period with
`datetime.now(UTC)`, the wall clock, so it cannot take an injectable monotonic clock and a clock
step would open or close breakers; its async support is `call_async` built on tornado's `gen`
coroutines, not asyncio; and it holds a lock for the whole protected call. The state machine is
small enough that owning it is cheaper than working around those three.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, ParamSpec, TypeVar

from tezzeret import metrics
from tezzeret.config import Settings
from tezzeret.resilience.clock import Clock
from tezzeret.resilience.errors import CircuitOpenError, ResilienceConfigError, UnknownBreakerError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

BREAKER_NAMES: tuple[str, ...] = (
    "gpu_memory",
    "gpu_utilization",
    "compilation_timeout",
    "kernel_validation",
    "store",
    "bus",
)


class BreakerState(str, Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True)
class StateChange:
    """One transition of one breaker; `reason` says what caused it."""

    name: str
    old: BreakerState
    new: BreakerState
    reason: str
    at: float


@dataclass(frozen=True)
class Violation:
    """A failed `check_condition`; `while_open` is True when the breaker was already OPEN."""

    name: str
    message: str
    value: object
    while_open: bool
    at: float


StateListener = Callable[[StateChange], None]
ViolationListener = Callable[[Violation], None]


class CircuitBreaker:
    """A breaker that opens after `failure_threshold` consecutive failures.

    OPEN refuses calls until `timeout_ms` has passed since the last failure; then it becomes
    HALF_OPEN and lets calls through as probes. `success_threshold` probe successes close it; any
    probe failure reopens it. A disabled breaker counts failures in metrics but never opens.
    HALF_OPEN does not cap how many probes run at once: an opening breaker puts the service in
    conservative mode, which already runs one job at a time.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        timeout_ms: int,
        success_threshold: int,
        clock: Clock,
        enabled: bool = True,
        excluded: tuple[type[BaseException], ...] = (),
    ) -> None:
        if failure_threshold < 1 or success_threshold < 1 or timeout_ms < 1:
            raise ResilienceConfigError(
                f"circuit_breakers.{name}",
                f"failure_threshold, success_threshold and timeout_ms must be >= 1 "
                f"(got {failure_threshold}, {success_threshold}, {timeout_ms})",
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.timeout_ms = timeout_ms
        self.success_threshold = success_threshold
        self.enabled = enabled
        # Exceptions a protected call may raise without it being the dependency's fault
        # (e.g. a rejected blueprint): they pass through uncounted.
        self.excluded = excluded
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._half_open_successes = 0
        self._last_failure_at: float | None = None
        self._last_failure_reason = ""
        self._opened_count = 0
        self._state_listeners: list[StateListener] = []
        self._violation_listeners: list[ViolationListener] = []
        self._failures_metric = metrics.CIRCUIT_BREAKER_FAILURES.labels(circuit_name=name)
        self._violations_metric = metrics.CIRCUIT_BREAKER_VIOLATIONS.labels(circuit_name=name)
        self._export_state(BreakerState.CLOSED)

    # -- listeners -------------------------------------------------------------------------
    def add_listener(self, fn: StateListener) -> None:
        """Call `fn(StateChange)` after every transition (outside the breaker's lock)."""
        self._state_listeners.append(fn)

    def add_violation_listener(self, fn: ViolationListener) -> None:
        """Call `fn(Violation)` after every failed `check_condition`."""
        self._violation_listeners.append(fn)

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """The current state; an OPEN breaker whose timeout has passed reads HALF_OPEN."""
        change = None
        with self._lock:
            change = self._maybe_half_open()
            state = self._state
        self._emit(change)
        return state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after_ms(self) -> int:
        """Milliseconds until an OPEN breaker lets a probe through; 0 when not OPEN."""
        with self._lock:
            return self._retry_after_ms_locked()

    def allow(self) -> bool:
        """Whether a call may go ahead now (CLOSED, HALF_OPEN, or OPEN past its timeout)."""
        if not self.enabled:
            return True
        return self.state is not BreakerState.OPEN

    def record_success(self) -> None:
        changes: list[StateChange | None] = []
        with self._lock:
            # A success reported after the OPEN timeout counts as a probe.
            changes.append(self._maybe_half_open())
            if self._state is BreakerState.CLOSED:
                self._failures = 0
            elif self._state is BreakerState.HALF_OPEN:
                self._failures = 0
                self._half_open_successes += 1
                if self._half_open_successes >= self.success_threshold:
                    changes.append(
                        self._transition(BreakerState.CLOSED, f"{self._half_open_successes} probe successes")
                    )
            # A success that lands while OPEN began before the breaker opened: it proves nothing.
        for change in changes:
            self._emit(change)

    def record_failure(self, reason: str) -> None:
        self._failures_metric.inc()
        change = None
        with self._lock:
            now = self._clock.monotonic()
            half = self._maybe_half_open() if self.enabled else None
            self._failures += 1
            self._last_failure_at = now
            self._last_failure_reason = reason
            if not self.enabled:
                pass
            elif self._state is BreakerState.HALF_OPEN:
                change = self._transition(BreakerState.OPEN, f"probe failed: {reason}")
            elif self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
                change = self._transition(
                    BreakerState.OPEN, f"{self._failures} consecutive failures, last: {reason}"
                )
        if change is None:
            log.info("breaker %s: failure %d/%d: %s", self.name, self._failures, self.failure_threshold, reason)
        self._emit(half)
        self._emit(change)

    def reset(self) -> None:
        """Force CLOSED (an operator action); counts start again."""
        change = None
        with self._lock:
            self._failures = 0
            if self._state is not BreakerState.CLOSED:
                change = self._transition(BreakerState.CLOSED, "reset")
        self._emit(change)

    # -- protection ------------------------------------------------------------------------
    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` under the breaker; raise `CircuitOpenError` without running it when OPEN."""
        self._admit()
        try:
            result = fn(*args, **kwargs)
        except self.excluded:
            raise
        except Exception as exc:
            self.record_failure(_describe(exc))
            raise
        self.record_success()
        return result

    async def call_async(
        self, coro_fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`call` for coroutine functions. Cancellation is not a failure of the dependency."""
        self._admit()
        try:
            result = await coro_fn(*args, **kwargs)
        except self.excluded:
            raise
        except Exception as exc:
            self.record_failure(_describe(exc))
            raise
        self.record_success()
        return result

    def check_condition(self, cond: bool, message: str, value: object = None) -> bool:
        """The replacement for `assert`: False (and a recorded violation) when `cond` is false.

        On a violation it counts `tezzeret_circuit_breaker_violations_total`, then, if the breaker
        is already OPEN, tells violation listeners (conservative mode enters on it); otherwise it
        records a failure. It never raises.
        """
        if cond:
            return True
        try:
            self._violations_metric.inc()
            while_open = self.enabled and self.state is BreakerState.OPEN
            log.warning(
                "breaker %s: condition violated: %s (value=%r)%s",
                self.name, message, value, " while OPEN" if while_open else "",
            )
            if not while_open:
                self.record_failure(f"condition violated: {message} (value={value!r})")
            violation = Violation(self.name, message, value, while_open, self._clock.monotonic())
            for fn in list(self._violation_listeners):
                _safe_call(fn, violation, self.name)
        except Exception:  # never raise: this replaces an assert on the service's hot path
            log.exception("breaker %s: check_condition failed internally", self.name)
        return False

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view for health and the CLI."""
        state = self.state
        with self._lock:
            return {
                "state": state.value,
                "enabled": self.enabled,
                "consecutive_failures": self._failures,
                "failure_threshold": self.failure_threshold,
                "half_open_successes": self._half_open_successes,
                "success_threshold": self.success_threshold,
                "timeout_ms": self.timeout_ms,
                "retry_after_ms": self._retry_after_ms_locked(),
                "last_failure": self._last_failure_reason,
                "times_opened": self._opened_count,
            }

    # -- internals -------------------------------------------------------------------------
    def _admit(self) -> None:
        if self.allow():
            return
        with self._lock:
            retry = self._retry_after_ms_locked()
            last = self._last_failure_reason
        raise CircuitOpenError(self.name, retry, last_failure=last)

    def _retry_after_ms_locked(self) -> int:
        if self._state is not BreakerState.OPEN or self._last_failure_at is None:
            return 0
        left = self._last_failure_at + self.timeout_ms / 1000.0 - self._clock.monotonic()
        return max(0, int(left * 1000.0 + 0.999))

    def _maybe_half_open(self) -> StateChange | None:
        if (
            self._state is BreakerState.OPEN
            and self._last_failure_at is not None
            and self._clock.monotonic() - self._last_failure_at >= self.timeout_ms / 1000.0
        ):
            return self._transition(BreakerState.HALF_OPEN, f"{self.timeout_ms} ms since last failure")
        return None

    def _transition(self, new: BreakerState, reason: str) -> StateChange:
        old = self._state
        self._state = new
        self._half_open_successes = 0
        if new is BreakerState.OPEN:
            self._opened_count += 1
        elif new is BreakerState.CLOSED:
            self._failures = 0
        self._export_state(new)
        return StateChange(self.name, old, new, reason, self._clock.monotonic())

    def _export_state(self, current: BreakerState) -> None:
        for state in BreakerState:
            metrics.CIRCUIT_BREAKER_STATE.labels(circuit_name=self.name, state=state.value).set(
                1.0 if state is current else 0.0
            )

    def _emit(self, change: StateChange | None) -> None:
        if change is None:
            return
        level = logging.WARNING if change.new is BreakerState.OPEN else logging.INFO
        log.log(level, "breaker %s: %s -> %s (%s)", change.name, change.old.value, change.new.value, change.reason)
        for fn in list(self._state_listeners):
            _safe_call(fn, change, self.name)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _safe_call(fn: Callable[[Any], None], event: object, name: str) -> None:
    # A listener's bug must not turn a breaker transition into a crash of the caller.
    try:
        fn(event)
    except Exception:
        log.exception("breaker %s: listener %r raised", name, fn)


class BreakerRegistry:
    """Tezzeret's named breakers, built from `circuit_breakers.*`."""

    def __init__(self, breakers: dict[str, CircuitBreaker]) -> None:
        self._breakers = dict(breakers)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock, names: tuple[str, ...] = BREAKER_NAMES) -> BreakerRegistry:
        out: dict[str, CircuitBreaker] = {}
        for name in names:
            cfg = settings.circuit_breakers.for_breaker(name)
            glob = settings.circuit_breakers
            out[name] = CircuitBreaker(
                name,
                failure_threshold=cfg.failure_threshold or glob.failure_threshold,
                timeout_ms=cfg.timeout_ms or glob.timeout_ms,
                success_threshold=cfg.success_threshold or glob.success_threshold,
                clock=clock,
                enabled=bool(cfg.enabled),
            )
        return cls(out)

    def __getitem__(self, name: str) -> CircuitBreaker:
        try:
            return self._breakers[name]
        except KeyError:
            raise UnknownBreakerError(name, tuple(self._breakers)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(self._breakers.values())

    def __len__(self) -> int:
        return len(self._breakers)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._breakers)

    def add_listener(self, fn: StateListener) -> None:
        for breaker in self:
            breaker.add_listener(fn)

    def add_violation_listener(self, fn: ViolationListener) -> None:
        for breaker in self:
            breaker.add_violation_listener(fn)

    def all_closed(self) -> bool:
        """True when every enabled breaker is CLOSED (HALF_OPEN is not closed yet)."""
        return not self.not_closed()

    def not_closed(self) -> list[str]:
        return [b.name for b in self if b.enabled and b.state is not BreakerState.CLOSED]

    def open_breakers(self) -> list[str]:
        return [b.name for b in self if b.enabled and b.state is BreakerState.OPEN]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {b.name: b.snapshot() for b in self}
