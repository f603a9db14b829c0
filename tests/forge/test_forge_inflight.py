"""The forge's one in-flight registry, driven through the service on the in-process executor:
duplicates join one compile, a failure reaches every joiner and is not cached, and an admission
that dies half-way never leaves joiners waiting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import forge_tasks
import pytest
import pytest_asyncio
from forge_helpers import in_process_settings, request

from tezzeret.forge.errors import ForgeError
from tezzeret.forge.jobs import JobStatus
from tezzeret.forge.service import Forge
from tezzeret.sandbox.inprocess import InProcessExecutor

pytestmark = pytest.mark.timeout(300)


async def _forge(tmp_path: Path, task: str) -> Forge:
    settings = in_process_settings(tmp_path / "state")
    forge_tasks.GATE.clear()
    forge_tasks.CALLS.clear()
    return await Forge(settings, executor=InProcessExecutor(settings, tasks={"compile": f"forge_tasks:{task}"})).start()


@pytest_asyncio.fixture
async def gated(tmp_path: Path) -> AsyncIterator[Forge]:
    forge = await _forge(tmp_path, "gated_compile")
    try:
        yield forge
    finally:
        forge_tasks.GATE.set()
        await forge.close(grace_s=10)


async def test_200_duplicates_compile_once(gated: Forge) -> None:
    subs = await asyncio.gather(*(gated.submit(request("mlp_512")) for _ in range(200)))
    assert len({s.job_id for s in subs}) == 1
    assert sum(s.joined for s in subs) == 199 and not any(s.from_cache for s in subs)
    forge_tasks.GATE.set()
    job = await gated.wait(subs[0].job_id, timeout=120)
    assert job.status is JobStatus.SUCCEEDED, (job.error_code, job.error)
    assert forge_tasks.CALLS == [job.job_id] and gated.executor.status().jobs_run == 1
    # Afterwards: answered from L1 (the result the job ended with), nothing compiled again.
    again = await gated.submit(request("mlp_512"))
    assert again.from_cache and again.status == "FROM_CACHE" and again.artifact_id == job.artifact_id
    stats = gated.cache.stats()
    assert stats.l1.joined == 199 and stats.l1.hits == 1
    assert gated.executor.status().jobs_run == 1 and not gated.registry.unfinished()


async def test_a_failure_reaches_every_joiner_and_is_not_cached(tmp_path: Path) -> None:
    forge = await _forge(tmp_path, "crashing_compile")
    try:
        subs = await asyncio.gather(*(forge.submit(request("residual_mlp_256")) for _ in range(5)))
        assert len({s.job_id for s in subs}) == 1
        forge_tasks.GATE.set()
        job = await forge.wait(subs[0].job_id, timeout=60)
        assert job.status is JobStatus.FAILED and "SIGKILL" in (job.error or "")
        for s in subs:  # every joiner sees the one job's failure
            assert forge.job(s.job_id)["status"] == "FAILED"
        retry = await forge.submit(request("residual_mlp_256"))
        assert retry.job_id != job.job_id and not retry.from_cache and not retry.joined
    finally:
        forge_tasks.GATE.set()
        await forge.close(grace_s=10)


async def test_an_admission_cancelled_during_the_store_probe_releases_its_joiners(gated: Forge) -> None:
    probing, release = threading.Event(), threading.Event()
    real = gated.cache._l2
    assert real is not None

    def slow_l2(artifact_id: str) -> object:
        probing.set()
        release.wait(30)
        return real(artifact_id)

    gated.cache._l2 = slow_l2
    owner = asyncio.create_task(gated.submit(request("swiglu_mlp_512")))
    await asyncio.to_thread(probing.wait, 30)
    joiner = asyncio.create_task(gated.submit(request("swiglu_mlp_512")))
    await asyncio.sleep(0.05)
    owner.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await owner
    with pytest.raises(ForgeError, match="cancelled before it was journaled"):
        await asyncio.wait_for(joiner, 10)
    assert not gated.registry.unfinished() and len(gated.queue) == 0
    gated.cache._l2 = real
    # Nothing half-admitted is left behind: the next submission starts afresh and compiles.
    fresh = await gated.submit(request("swiglu_mlp_512"))
    forge_tasks.GATE.set()
    assert (await gated.wait(fresh.job_id, timeout=120)).status is JobStatus.SUCCEEDED
