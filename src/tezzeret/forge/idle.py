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
from typing import TYPE_CHECKING

from tezzeret.forge.errors import ForgeError
from tezzeret.leyline import SCHEMA_VERSION, pb

if TYPE_CHECKING:
    from tezzeret.forge.service import Forge

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 5.0


class IdleRecompiler:
    def __init__(self, forge: "Forge", check_interval_s: float = CHECK_INTERVAL_S) -> None:
        self.forge = forge
        self.check_interval_s = check_interval_s
        self.submitted = 0
        self._current: str | None = None

    def allowed(self) -> bool:
        f = self.forge
        if not f.settings.compilation.idle_recompilation or f._draining:
            return False
        if not f.conservative.effective().idle_recompilation_allowed:
            return False
        if self._current is not None:
            job = f.registry.get(self._current)
            if job is not None and not job.status.finished:
                return False
            self._current = None
        return f.pipeline.idle

    async def step(self) -> str | None:
        """Submit one candidate if the forge is idle; returns the job id or None."""
        if not self.allowed():
            return None
        f = self.forge
        candidates = await asyncio.to_thread(
            f.store.recompilation_candidates,
            f.toolchain_hash,
            interest_threshold=f.settings.compilation.tamiyo_interest_threshold,
        )
        for cand in candidates:
            record = await asyncio.to_thread(f.store.find_blueprint, cand.digest)
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
                sub = await f.submit(request, source="idle")
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
