"""The service re-verifies what it serves: a damaged blob is never served, is quarantined, counted,
shown in health, and rebuilt from the stored IR; the background scrub and the admin scrub find it
too. Driven through the service on the in-process executor (real EMERGENCY compiles)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import forge_tasks
import pytest
import pytest_asyncio
from forge_helpers import in_process_settings, request

from tezzeret import metrics
from tezzeret.forge.integrity import ArtifactDamaged
from tezzeret.forge.jobs import JobStatus
from tezzeret.forge.service import Forge
from tezzeret.sandbox.inprocess import InProcessExecutor

pytestmark = pytest.mark.timeout(300)


@pytest_asyncio.fixture
async def forge(tmp_path: Path) -> AsyncIterator[Forge]:
    settings = in_process_settings(tmp_path / "state")
    forge_tasks.GATE.set()
    f = await Forge(settings, executor=InProcessExecutor(settings, tasks={"compile": "forge_tasks:gated_compile"})).start()
    try:
        yield f
    finally:
        await f.close(grace_s=10)


def _flip_a_byte(path: Path) -> None:
    os.chmod(path, 0o644)  # blobs are read-only on purpose; the damage comes from outside
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


async def _built(forge: Forge, name: str) -> str:
    sub = await forge.submit(request(name))
    job = await forge.wait(sub.job_id, timeout=120)
    assert job.status is JobStatus.SUCCEEDED, job.error
    return job.result.artifact_id


async def test_a_damaged_blob_is_refused_quarantined_and_rebuilt(forge: Forge) -> None:
    artifact_id = await _built(forge, "mlp_512")
    path = await forge.artifact_file(artifact_id)  # verified once; later serves trust it until its TTL
    old_sha = forge.store.get_artifact(artifact_id).file_sha256
    _flip_a_byte(path)
    forge.integrity._verified.clear()  # a new process, or the TTL ran out: the next serve re-hashes
    before = metrics.REGISTRY.get_sample_value("tezzeret_store_scrub_findings_total", {"found_by": "serve"}) or 0
    with pytest.raises(ArtifactDamaged, match="quarantined and a rebuild"):
        await forge.artifact_file(artifact_id)
    assert metrics.REGISTRY.get_sample_value("tezzeret_store_scrub_findings_total", {"found_by": "serve"}) == before + 1
    record = forge.store.get_artifact(artifact_id)
    assert record.corrupt and record.status == "QUARANTINED"
    assert not path.exists()  # moved to quarantine: never served again
    # Health says so while the rebuild runs (the monitor loop refreshes the store's figures).
    await forge._look_at_disk_and_store()
    report = forge.health()
    assert report.status == "DEGRADED" and any(d.code == "store-corruption" for d in report.details), report.reasons
    # The rebuild (queued from the stored IR) replaces it under the same id.
    for _ in range(600):
        record = forge.store.get_artifact(artifact_id)
        if not record.corrupt:
            break
        await asyncio.sleep(0.1)
    assert not record.corrupt and record.file_sha256 != old_sha and record.status == "PENDING_BENCHMARKING"
    assert (await forge.artifact_file(artifact_id)).exists()
    rebuilds = [j for j in forge.registry.recent(100) if j.source == "rebuild"]
    assert rebuilds and (await forge.wait(rebuilds[0].job_id, timeout=60)).status is JobStatus.SUCCEEDED
    await forge._look_at_disk_and_store()
    assert not any(d.code == "store-corruption" for d in forge.health().details)


async def test_a_from_cache_answer_never_points_at_damaged_bytes(forge: Forge) -> None:
    artifact_id = await _built(forge, "residual_mlp_256")
    _flip_a_byte(forge.store.artifact_path(artifact_id))
    forge.cache.invalidate(artifact_id)
    forge.integrity._verified.clear()
    again = await forge.submit(request("residual_mlp_256"))
    # Not FROM_CACHE: the submission itself became the rebuild.
    assert not again.from_cache and again.status == "QUEUED"
    job = await forge.wait(again.job_id, timeout=120)
    assert job.status is JobStatus.SUCCEEDED and not forge.store.get_artifact(artifact_id).corrupt


async def test_scrub_finds_what_nobody_asked_for(forge: Forge) -> None:
    damaged = await _built(forge, "swiglu_mlp_512")
    intact = await _built(forge, "lora_adapter_1024")
    _flip_a_byte(forge.store.artifact_path(damaged))
    report = await forge.scrub()
    assert report["checked"] == 2 and report["corrupt"] == [damaged]
    assert forge.store.get_artifact(damaged).corrupt and not forge.store.get_artifact(intact).corrupt


async def test_the_scrub_command_finds_it_offline_and_the_next_start_rebuilds(tmp_path: Path) -> None:
    import subprocess
    import sys

    settings = in_process_settings(tmp_path / "state")
    forge_tasks.GATE.set()
    executor = InProcessExecutor(settings, tasks={"compile": "forge_tasks:gated_compile"})
    first = await Forge(settings, executor=executor).start()
    try:
        artifact_id = await _built(first, "mlp_512")
    finally:
        await first.close(grace_s=5)
    from tezzeret.store import Store

    with Store.open(settings.store_dir) as store:
        _flip_a_byte(store.artifact_path(artifact_id))
    scrub = subprocess.run([sys.executable, "-m", "tezzeret.cli", "store", "scrub", "--state-dir", str(settings.state_dir),
                            "--json"], capture_output=True, text=True, timeout=120)
    assert scrub.returncode == 1, scrub.stderr
    assert '"new": true' in scrub.stdout and artifact_id in scrub.stdout
    second = await Forge(settings, executor=InProcessExecutor(settings, tasks={"compile": "forge_tasks:gated_compile"})).start()
    try:
        for _ in range(600):
            if not second.store.get_artifact(artifact_id).corrupt:
                break
            await asyncio.sleep(0.1)
        assert not second.store.get_artifact(artifact_id).corrupt
    finally:
        await second.close(grace_s=5)
