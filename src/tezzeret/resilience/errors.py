"""Typed errors of the resilience stage.

Owns: the exceptions breakers, conservative mode and the TTL manager raise on purpose, each with a
stable `code`. It must never define errors for other stages; `check_condition` and the listeners
never raise these at callers (they log instead), only the protected-call path and constructors do.
"""

from __future__ import annotations

from tezzeret.errors import TezzeretError


class ResilienceError(TezzeretError):
    """Base of resilience errors."""

    code = "RESILIENCE_ERROR"


class CircuitOpenError(ResilienceError):
    """A protected call was refused because its breaker is OPEN."""

    code = "CIRCUIT_OPEN"

    def __init__(self, name: str, retry_after_ms: int, *, last_failure: str = "") -> None:
        self.name = name
        self.retry_after_ms = int(retry_after_ms)
        self.last_failure = last_failure
        cause = f" (last failure: {last_failure})" if last_failure else ""
        super().__init__(
            f"circuit breaker '{name}' is open{cause}; calls are refused for another "
            f"{self.retry_after_ms} ms, then one probe is let through. Fix the failing dependency "
            f"or wait; the breaker's thresholds are under circuit_breakers.{name}"
        )


class UnknownBreakerError(ResilienceError):
    """A breaker name that the registry does not hold."""

    code = "BREAKER_UNKNOWN"

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        super().__init__(f"no circuit breaker named '{name}'; the registry holds: {', '.join(known)}")


class UnknownTriggerError(ResilienceError):
    """A conservative-mode trigger reason that is not one of the known reasons."""

    code = "CONSERVATIVE_TRIGGER_UNKNOWN"

    def __init__(self, reason: str, known: tuple[str, ...]) -> None:
        self.reason = reason
        super().__init__(
            f"unknown conservative-mode trigger '{reason}'; use one of: {', '.join(known)}"
        )


class ResilienceConfigError(ResilienceError):
    """A resilience component was built with values that cannot work."""

    code = "RESILIENCE_CONFIG_INVALID"

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        super().__init__(f"{where}: {problem}")
