"""The health verdict of `/health/tezzeret`: HEALTHY, DEGRADED, UNHEALTHY or CRITICAL, with evidence.

Owns: `REASONS`, every reason health can give (a stable code, the level it sets, and the runbook
section that says what to do: `docs/runbook.md#<code>`), and the rule that maps component facts
to one status (upstream §8.2): CRITICAL when the WAL cannot be written (accepted work could be
lost); UNHEALTHY when a breaker on the critical path (`compilation_timeout`, `kernel_validation`,
`store`) is OPEN, the sandbox has no workers or the disk is full; DEGRADED for everything that
works at reduced capacity or needs an operator (conservative mode, other breakers, draining, held
dispatch, weak isolation, low disk, WAL losses not acknowledged, corrupt artifacts found, audit
records not written, jobs no compile node can take); else HEALTHY. Must never probe components
itself: the forge gathers the facts and hands them in, so the rule stays testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

CRITICAL_PATH_BREAKERS = ("compilation_timeout", "kernel_validation", "store")
LEVELS = ("HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL")
RUNBOOK = "docs/runbook.md"


@dataclass(frozen=True)
class ReasonKind:
    code: str
    level: str
    title: str


REASONS: dict[str, ReasonKind] = {
    r.code: r
    for r in (
        ReasonKind("wal-not-writable", "CRITICAL", "The WAL cannot be written"),
        ReasonKind("breaker-open", "UNHEALTHY", "A critical-path circuit breaker is OPEN"),
        ReasonKind("breaker-not-closed", "DEGRADED", "A circuit breaker is not CLOSED"),
        ReasonKind("no-workers", "UNHEALTHY", "The sandbox has no live workers"),
        ReasonKind("disk-full", "UNHEALTHY", "The state directory's disk is full"),
        ReasonKind("disk-low", "DEGRADED", "The state directory's disk is nearly full"),
        ReasonKind("conservative-mode", "DEGRADED", "Conservative mode is on"),
        ReasonKind("draining", "DEGRADED", "Intake is closed (draining)"),
        ReasonKind("dispatch-held", "DEGRADED", "Dispatch is held"),
        ReasonKind("weak-isolation", "DEGRADED", "Sandbox isolation is weaker than bubblewrap"),
        ReasonKind("wal-losses", "DEGRADED", "WAL recovery lost transactions (not acknowledged)"),
        ReasonKind("store-corruption", "DEGRADED", "Corrupt artifacts were found in the store"),
        ReasonKind("audit-failing", "DEGRADED", "Audit records cannot be written"),
        ReasonKind("target-unavailable", "DEGRADED", "Jobs wait for a target no compile node offers"),
        ReasonKind("nodes-drained", "DEGRADED", "Compile nodes are drained or lost"),
    )
}


class Reason(BaseModel):
    code: str
    level: str
    message: str
    runbook: str


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
    wal_losses: list[dict[str, Any]] = Field(default_factory=list)
    last_recovery: dict[str, Any] | None = None
    draining: bool = False
    dispatch_held: str | None = None
    bus: dict[str, Any] = Field(default_factory=dict)
    store: dict[str, Any] = Field(default_factory=dict)
    corrupt_artifacts: int = 0
    disk: dict[str, Any] = Field(default_factory=dict)
    audit: dict[str, Any] = Field(default_factory=dict)
    cache: dict[str, Any] = Field(default_factory=dict)
    gpu: dict[str, Any] = Field(default_factory=dict)
    waiting_for_target: list[str] = Field(default_factory=list)
    drained_nodes: list[str] = Field(default_factory=list)
    quarantined_blueprints: int = 0
    uptime_s: float = 0.0
    version: str = ""


class HealthReport(HealthFacts):
    status: str = "HEALTHY"
    # The human messages, in the order found; `details` carries each one's code and runbook link.
    reasons: list[str] = Field(default_factory=list)
    details: list[Reason] = Field(default_factory=list)


def assess(facts: HealthFacts, *, sandbox_started: bool = True) -> HealthReport:
    found: list[Reason] = []

    def add(code: str, message: str, level: str | None = None) -> None:
        kind = REASONS[code]
        found.append(Reason(code=code, level=level or kind.level, message=message, runbook=f"{RUNBOOK}#{code}"))

    if not facts.wal_writable:
        add("wal-not-writable", "the WAL cannot be written: accepted work is not durable")
    for name, state in sorted(facts.breakers.items()):
        if state == "CLOSED":
            continue
        if name in CRITICAL_PATH_BREAKERS and state == "OPEN":
            add("breaker-open", f"breaker {name} is OPEN")
        else:
            add("breaker-not-closed", f"breaker {name} is {state}")
    if not sandbox_started:
        add("no-workers", "the sandbox has no running workers")
    if facts.disk.get("full"):
        add("disk-full", f"the state dir's disk is full ({facts.disk.get('free_bytes', 0)} bytes free)")
    elif facts.disk.get("low"):
        add("disk-low", f"the state dir's disk is low: {facts.disk.get('free_bytes', 0)} bytes free, under "
                        f"{facts.disk.get('threshold_bytes', 0)}")
    if facts.conservative_mode.get("active"):
        add("conservative-mode", "conservative mode is on")
    if facts.draining:
        add("draining", "draining: intake is closed")
    if facts.dispatch_held:
        add("dispatch-held", f"dispatch held: {facts.dispatch_held}")
    if facts.isolation_level not in ("bwrap", "unknown"):
        add("weak-isolation", f"sandbox isolation is {facts.isolation_level}, weaker than bubblewrap")
    if facts.wal_losses:
        lost = sum(int(loss.get("lost", 0)) for loss in facts.wal_losses)
        doubt = sum(int(loss.get("in_doubt", 0)) for loss in facts.wal_losses)
        add("wal-losses", f"WAL recovery lost {lost} committed transaction(s) ({doubt} more in doubt) in "
                          f"{len(facts.wal_losses)} recovery(ies), not yet acknowledged: POST /v1/admin/wal/acknowledge")
    if facts.corrupt_artifacts:
        add("store-corruption", f"{facts.corrupt_artifacts} corrupt artifact(s) quarantined; rebuilds queued")
    if facts.audit.get("failing"):
        add("audit-failing", f"audit records are not being written ({facts.audit.get('last_error')}); "
                             f"{facts.audit.get('spooled', 0)} held in memory")
    if facts.waiting_for_target:
        add("target-unavailable", f"jobs wait for targets no compile node offers: {', '.join(facts.waiting_for_target)}")
    if facts.drained_nodes:
        add("nodes-drained", f"compile nodes drained or lost: {', '.join(facts.drained_nodes)}")
    status = "HEALTHY"
    for reason in found:
        if LEVELS.index(reason.level) > LEVELS.index(status):
            status = reason.level
    return HealthReport(
        **facts.model_dump(), status=status, reasons=[r.message for r in found], details=found
    )
