"""`SandboxStatus`: what health and operators see of an executor, whatever its backend.

Owns the one status type every executor returns. Must never probe anything itself: executors
fill it from what they already know.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SandboxStatus:
    """What health and operators see of the sandbox."""

    isolation_level: str
    isolation_note: str
    skipped_levels: list[str]
    net_isolated: bool
    fs_readonly: bool
    nproc_enforced: bool
    worker_uid: int | None
    workers_alive: int
    workers_busy: int
    slots: int
    emergency_slot: bool
    jobs_run: int
    recycled: int
    last_spawn_error: str | None
    # The CPU cap under contention: its state, or why there is none.
    throttle: dict[str, object]
    # Which executor runs the jobs: "local" (the bubblewrap pool), "inprocess" or "ray".
    backend: str = "local"
    # Per compile node (remote backends): id, targets offered, warm workers, jobs in flight, state.
    nodes: list[dict[str, object]] = field(default_factory=list)
    # Jobs waiting for a node (remote backends): job id, target, seconds waited and why, e.g.
    # "no node offers target 'cuda-sm90' (needs {'GPU': 1})".
    waiting: list[dict[str, object]] = field(default_factory=list)
