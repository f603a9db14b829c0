"""Idle-state recompilation (upstream §3.5) at BACKGROUND priority.

Owns: noticing that nothing waits or runs, asking Urza for recompilation candidates in §3.5's order
(high Tamiyo interest → AGGRESSIVE; recently REJECTED by Urabrask → STANDARD; built by an outdated
toolchain → FAST) and submitting the first one that is not already built. New artifacts get new
ids; nothing is overwritten. Disabled when `compilation.idle_recompilation` is off or conservative
mode forbids it. Must never submit while other work waits, and never more than one job at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tezzeret.compile.identity import toolchain_for_tier
from tezzeret.compile.tiers import TIERS
from tezzeret.forge.errors import ForgeError
from tezzeret.forge.polling import Submit
from tezzeret.leyline import SCHEMA_VERSION, pb
from tezzeret.store import Store

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 5.0


def current_toolchains() -> dict[str, str]:
    """Each tier's current toolchain hash, by strategy name: an artifact is outdated when its
    hash differs from the one of its own tier."""
    return {tier.strategy.value: toolchain_for_tier(tier).hash() for tier in TIERS}


class IdleRecompiler:
    def __init__(
        self,
        store: Store,
        submit: Submit,
        *,
        may_run: Callable[[], bool],
        is_finished: Callable[[str], bool],
        interest_threshold: float,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self.store = store
        self.submit = submit
        self.may_run = may_run
        self.is_finished = is_finished
        self.interest_threshold = interest_threshold
        self.check_interval_s = check_interval_s
        self.submitted = 0
        self._current: str | None = None

    def allowed(self) -> bool:
        """Idle recompilation is on, conservative mode allows it, nothing waits or runs, and the
        last job it submitted has ended."""
        if self._current is not None:
            if not self.is_finished(self._current):
                return False
            self._current = None
        return self.may_run()

    async def step(self) -> str | None:
        """Submit one candidate if the forge is idle; returns the job id or None."""
        if not self.allowed():
            return None
        candidates = await asyncio.to_thread(
            self.store.recompilation_candidates,
            current_toolchains(),
            interest_threshold=self.interest_threshold,
        )
        for cand in candidates:
            record = await asyncio.to_thread(self.store.find_blueprint, cand.digest)
            if record is None:
                continue
            request = pb.CompilationRequest(
                schema_version=SCHEMA_VERSION,
                blueprint=record.blueprint,
                strategy=cand.strategy_value,
                priority=pb.PRIORITY_BACKGROUND,
                requested_by=f"idle:{cand.reason}",
            )
            try:
                sub = await self.submit(request, "idle")
            except ForgeError as exc:
                log.info("idle: %s at %s not submitted: %s", cand.digest[:16], cand.strategy, exc)
                continue
            if sub.from_cache:
                continue
            self._current = sub.job_id
            self.submitted += 1
            log.info("idle: recompiling %s at %s (%s) as %s", cand.digest[:16], cand.strategy, cand.reason, sub.job_id)
            return sub.job_id
        return None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - idle work is optional; never let it stop the forge
                log.exception("idle recompilation step failed")
