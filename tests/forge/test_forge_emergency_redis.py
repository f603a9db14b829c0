"""Tamiyo's emergency path against a real redis-server: signed requests are acknowledged and then
answered with a `CompilationComplete` on the reply stream; identical requests come from cache; a
key without the emergency role and an unsigned request are refused and audited. Latencies are
printed, not asserted (speed belongs to `bench/`)."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import pytest
from forge_helpers import SMALL, blueprint, forge_settings
from servers import RedisServer
from settings import BUS_KEYS, KARN_SECRET, TAMIYO_SECRET

from tezzeret.bus import EmergencyClient, make_bus, topics
from tezzeret.bus.base import Delivery
from tezzeret.forge.audit import read_audit
from tezzeret.forge.service import Forge
from tezzeret.leyline import SCHEMA_VERSION, pb

pytestmark = [pytest.mark.timeout(300)]


async def test_emergency_over_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = forge_settings(tmp_path / "state", redis_url=redis_server.url, bus={"keys": BUS_KEYS, "claim_idle_ms": 500})
    forge = Forge(settings)
    await forge.start()
    tamiyo_bus = make_bus(settings)
    client = EmergencyClient(tamiyo_bus, settings)
    client.start()
    await tamiyo_bus.start()
    catalog: list[pb.KernelCatalogUpdate] = []

    async def on_catalog(d: Delivery) -> None:
        catalog.append(d.message)  # type: ignore[arg-type]

    tamiyo_bus.subscribe(topics.KERNELS_CATALOG, on_catalog, group="kasmina", consumer="k1")
    try:
        # Keep the normal slot busy so emergency work must use the reserved one.
        busy = await forge.submit(pb.CompilationRequest(
            schema_version=SCHEMA_VERSION, blueprint=blueprint("temporal_conv1d_128"), strategy=pb.STRATEGY_EMERGENCY))

        irs = [blueprint(n) for n in SMALL]
        rids = []
        for i in range(100):
            rids.append(await client.send(irs[i % len(irs)], key_id="tamiyo", secret=TAMIYO_SECRET.encode()))
        acks = [await client.wait_ack(r, timeout_s=30) for r in rids]
        assert all(a.accepted for a in acks), [a.reason for a in acks if not a.accepted][:3]
        ack_ms = sorted((client.acked_at[r] - client.sent_at[r]) * 1000 for r in rids)
        print(f"\nemergency ack over redis: p50 {statistics.median(ack_ms):.1f} ms, p99 {ack_ms[98]:.1f} ms (n=100)")

        completes = [await client.wait_complete(r, timeout_s=240) for r in rids]
        assert all(c.status in (pb.OUTCOME_SUCCESS, pb.OUTCOME_FROM_CACHE) for c in completes), completes[0]
        assert len({c.artifact_id for c in completes}) == len(irs)
        # Each unique emergency artifact compiled once, on the reserved slot.
        jobs = [j for j in forge.registry.recent(1000) if j.source == "emergency" and j.status.value == "SUCCEEDED"]
        assert sorted(j.artifact_id for j in jobs) == sorted({c.artifact_id for c in completes})

        # Wrong role and unsigned: refused, with reasons, and audited.
        rid_karn, ack_karn = await client.request(irs[0], key_id="karn", secret=KARN_SECRET.encode(), timeout_s=30)
        assert not ack_karn.accepted and "emergency" in ack_karn.reason
        rid_unsigned, ack_unsigned = await client.request(irs[0], key_id="tamiyo", secret=None, timeout_s=30)
        assert not ack_unsigned.accepted
        audit = read_audit(settings.audit_log_path)
        refused = {r.get("request_id"): r for r in audit if r["outcome"] == "refused"}
        assert rid_karn in refused and refused[rid_karn]["requestor"] == "karn"
        assert rid_unsigned in refused
        assert sum(1 for r in audit if r["action"] == "emergency_compile(bus)" and r["outcome"] == "accepted") == 100

        busy_job = await forge.wait(busy.job_id, timeout=120)
        assert busy_job.status.value == "SUCCEEDED"
        for _ in range(100):
            if len(catalog) >= len(irs) + 1:
                break
            await asyncio.sleep(0.1)
        assert {u.artifact_id for u in catalog} >= {c.artifact_id for c in completes}
    finally:
        await tamiyo_bus.close()
        await forge.close(grace_s=5)
