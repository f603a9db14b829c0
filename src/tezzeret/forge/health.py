"""The health verdict of `/health/tezzeret`: HEALTHY, DEGRADED, UNHEALTHY or CRITICAL, with evidence.

Owns: the rule that maps component facts to one status (upstream §8.2): CRITICAL when the WAL cannot
be written (accepted work could be lost); UNHEALTHY when a breaker on the critical path
(`compilation_timeout`, `kernel_validation`, `store`) is OPEN or the sandbox has no workers;
DEGRADED when conservative mode is on, any other breaker is not CLOSED, the service is draining or
isolation is weaker than bubblewrap; else HEALTHY. Must never probe components itself: the forge
gathers the facts and hands them in, so the rule stays testable.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

CRITICAL_PATH_BREAKERS = ("compilation_timeout", "kernel_validation", "store")


class HealthFacts(BaseModel):
    breakers: dict[str, str] = Field(default_factory=dict)
    conservative_mode: dict[str, Any] = Field(default_factory=dict)
    queue_depth: int = 0
    queue_by_priority: dict[str, int] = Field(default_factory=dict)
    running_jobs: int = 0
    max_concurrent_jobs: int = 0
    workers: dict[str, Any] = Field(default_factory=dict)
    isolation_level: str = "unknown"
    wal: dict[str, Any] = Field(default_factory=dict)
    wal_writable: bool = True
    last_recovery: dict[str, Any] | None = None
    draining: bool = False
    dispatch_held: str | None = None
    bus: dict[str, Any] = Field(default_factory=dict)
    store: dict[str, Any] = Field(default_factory=dict)
    uptime_s: float = 0.0
    version: str = ""


class HealthReport(HealthFacts):
    status: str = "HEALTHY"
    reasons: list[str] = Field(default_factory=list)


def assess(facts: HealthFacts, *, sandbox_started: bool = True) -> HealthReport:
    reasons: list[str] = []
    status = "HEALTHY"

    def worse(level: str, why: str) -> None:
        nonlocal status
        order = ["HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL"]
        if order.index(level) > order.index(status):
            status = level
        reasons.append(why)

    if not facts.wal_writable:
        worse("CRITICAL", "the WAL cannot be written: accepted work is not durable")
    for name, state in sorted(facts.breakers.items()):
        if state == "CLOSED":
            continue
        if name in CRITICAL_PATH_BREAKERS and state == "OPEN":
            worse("UNHEALTHY", f"breaker {name} is OPEN")
        else:
            worse("DEGRADED", f"breaker {name} is {state}")
    if not sandbox_started:
        worse("UNHEALTHY", "the sandbox has no running workers")
    if facts.conservative_mode.get("active"):
        worse("DEGRADED", "conservative mode is on")
    if facts.draining:
        worse("DEGRADED", "draining: intake is closed")
    if facts.dispatch_held:
        worse("DEGRADED", f"dispatch held: {facts.dispatch_held}")
    if facts.isolation_level not in ("bwrap", "unknown"):
        worse("DEGRADED", f"sandbox isolation is {facts.isolation_level}, weaker than bubblewrap")
    return HealthReport(**facts.model_dump(), status=status, reasons=reasons)
