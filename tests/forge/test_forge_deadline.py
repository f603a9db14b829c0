"""A tier's budget is a hard deadline inside real sandbox workers: an entry still compiling when it
ends is cut off (the worker is recycled), and the ladder serves the next tier down, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest
from forge_helpers import forge_settings, request

from tezzeret.forge.jobs import JobStatus
from tezzeret.forge.service import Forge
from tezzeret.leyline import pb

pytestmark = pytest.mark.timeout(400)


async def test_fast_cut_off_at_its_deadline_falls_back_to_emergency(tmp_path: Path) -> None:
    # 3 s is far less than a cold Inductor compile takes here: FAST must be cut off mid-entry.
    settings = forge_settings(tmp_path / "state", timeouts_ms={"fast_compilation": 3000},
                              emergency={"reserved_worker": False})
    forge = await Forge(settings).start()
    try:
        recycled = forge.executor.status().recycled
        sub = await forge.submit(request("mlp_512", strategy=pb.STRATEGY_FAST))
        job = await forge.wait(sub.job_id, timeout=300)
        assert job.status is JobStatus.SUCCEEDED, (job.error_code, job.error)
        assert job.result.strategy_used == pb.STRATEGY_EMERGENCY and job.result.strategy_requested == pb.STRATEGY_FAST
        assert "FAST missed its budget (COMPILE_BUDGET_EXCEEDED)" in job.result.fallback_reason
        # The worker whose torch was interrupted mid-compile does not serve another job.
        assert forge.executor.status().recycled > recycled
    finally:
        await forge.close(grace_s=5)
