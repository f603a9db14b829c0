"""WAL damage through the service: what recovery lost keeps health DEGRADED, naming it, until an
operator acknowledges it (durably); the recovery is named for what happened."""

from __future__ import annotations

from pathlib import Path

import forge_tasks
import pytest
from forge_helpers import in_process_settings, request

from tezzeret.forge.jobs import JobStatus
from tezzeret.forge.service import Forge
from tezzeret.sandbox.inprocess import InProcessExecutor
from tezzeret.wal.format import HEADER_SIZE
from tezzeret.wal.reader import list_segments, scan_segment

pytestmark = pytest.mark.timeout(300)


async def _start(settings) -> Forge:  # type: ignore[no-untyped-def]
    return await Forge(settings, executor=InProcessExecutor(settings, tasks={"compile": "forge_tasks:gated_compile"})).start()


async def test_lost_transactions_keep_health_degraded_until_acknowledged(tmp_path: Path) -> None:
    settings = in_process_settings(tmp_path / "state", wal={"checkpoint_interval_compilations": 1000})
    forge_tasks.GATE.set()
    forge = await _start(settings)
    try:
        for name in ("mlp_512", "residual_mlp_256", "swiglu_mlp_512"):
            sub = await forge.submit(request(name))
            assert (await forge.wait(sub.job_id, timeout=120)).status is JobStatus.SUCCEEDED
    finally:
        await forge.close(grace_s=5)
    # Damage a record in the middle of the log: everything after it is quarantined on restart.
    index, segment = list_segments(settings.wal_dir)[-1]
    records = scan_segment(index, segment).records
    victim = records[len(records) // 2]
    data = bytearray(segment.read_bytes())
    data[victim.offset + HEADER_SIZE + 2] ^= 0x01
    segment.write_bytes(bytes(data))

    forge = await _start(settings)
    try:
        assert forge.last_recovery["wal"]["outcome"] == "damage_quarantined"
        report = forge.health()
        [reason] = [d for d in report.details if d.code == "wal-losses"]
        assert report.status == "DEGRADED" and "committed transaction(s)" in reason.message
        assert reason.runbook.endswith("#wal-losses") and report.wal_losses[0]["count"] >= 1
        answer = await forge.acknowledge_wal_losses("operator")
        assert answer["by"] == "operator" and answer["acknowledged"]
        assert not any(d.code == "wal-losses" for d in forge.health().details)
    finally:
        await forge.close(grace_s=5)
    forge = await _start(settings)  # acknowledged durably: a restart does not bring it back
    try:
        assert not forge.health().wal_losses
    finally:
        await forge.close(grace_s=5)
