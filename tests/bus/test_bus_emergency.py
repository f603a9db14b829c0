"""The Tamiyo emergency path: signed requests acknowledged on the reply stream; everything else
refused with a reason and audited, never reaching the forge's handler."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from bus_helpers import bus_settings, tiny_ir
from settings import KARN_SECRET, TAMIYO_SECRET

from tezzeret.bus import Bus, EmergencyCaller, EmergencyClient, EmergencyListener, make_bus, topics
from tezzeret.config import Settings
from tezzeret.leyline import SCHEMA_VERSION, pb
from tezzeret.metrics import EMERGENCY_ACK_MS

TAMIYO = {"key_id": "tamiyo", "secret": TAMIYO_SECRET.encode()}


class Forge:
    """A stand-in for the forge's emergency intake: a queue, and a worker that 'compiles'."""

    def __init__(self, bus: Bus, *, fail: bool = False) -> None:
        self.bus = bus
        self.fail = fail
        self.queue: asyncio.Queue[pb.EmergencyCompile] = asyncio.Queue()
        self.calls: list[tuple[str, EmergencyCaller]] = []

    async def handle(self, req: pb.EmergencyCompile, caller: EmergencyCaller) -> pb.EmergencyAck:
        self.calls.append((req.request_id, caller))
        if self.fail:
            raise RuntimeError("WAL unwritable")
        await self.queue.put(req)
        return pb.EmergencyAck(accepted=True, queue_position=self.queue.qsize(), estimate_ms=800)

    async def work(self) -> None:
        while True:
            req = await self.queue.get()
            await self.bus.publish(
                topics.EMERGENCY_REPLY,
                pb.CompilationComplete(schema_version=SCHEMA_VERSION, request_id=req.request_id,
                                       blueprint_id=req.blueprint.metadata.blueprint_id,
                                       artifact_id=f"{req.request_id}-art", strategy=pb.STRATEGY_EMERGENCY,
                                       status=pb.OUTCOME_SUCCESS),
                message_id=f"complete-{req.request_id}",
            )


class Rig:
    def __init__(self, settings: Settings, *, fail: bool = False) -> None:
        self.settings = settings
        self.bus = make_bus(settings)
        self.forge = Forge(self.bus, fail=fail)
        self.audit: list[dict[str, Any]] = []
        self.listener = EmergencyListener(self.bus, settings, self.forge.handle, audit=self.audit.append)
        self.client = EmergencyClient(self.bus, settings)
        self._worker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Rig:
        self.listener.start()
        self.client.start()
        await self.bus.start()
        self._worker = asyncio.create_task(self.forge.work())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._worker is not None
        self._worker.cancel()
        await self.bus.close()


async def test_accepted_request_acked_then_completed(backend_settings: Settings) -> None:
    count_before = _hist_count()
    async with Rig(backend_settings) as rig:
        rid, ack = await rig.client.request(tiny_ir("bp-urgent"), **TAMIYO, reason="loss spike", batch_sizes=(8,))
        assert ack.accepted and ack.request_id == rid
        assert ack.queue_position == 1 and ack.estimate_ms == 800 and ack.acked_at_ns > 0
        done = await rig.client.wait_complete(rid, timeout_s=10)
        assert done.artifact_id == f"{rid}-art" and done.strategy == pb.STRATEGY_EMERGENCY
        [(called_rid, caller)] = rig.forge.calls
        assert called_rid == rid and caller.key_id == "tamiyo" and "emergency" in caller.roles
        assert caller.requested_by == "tamiyo" and caller.delivery_count == 1
        [record] = rig.audit
        assert record["outcome"] == "accepted" and record["key_id"] == "tamiyo"
        assert record["request_id"] == rid and record["blueprint_id"] == "bp-urgent"
    assert _hist_count() == count_before + 1


def _hist_count() -> float:
    for metric in EMERGENCY_ACK_MS.collect():
        for s in metric.samples:
            if s.name.endswith("_count"):
                return s.value
    return 0.0


@pytest.mark.parametrize(
    "how, reason",
    [
        ("publisher-only-key", "lacks role 'emergency'"),
        ("wrong-secret", "bad signature for key 'tamiyo'"),
        ("unsigned", "unsigned envelope"),
        ("unknown-key", "unknown signing key 'mallory'"),
        ("stale", "stale request"),
    ],
)
async def test_refused_and_audited(backend_settings: Settings, how: str, reason: str) -> None:
    async with Rig(backend_settings) as rig:
        kwargs: dict[str, Any] = dict(TAMIYO)
        if how == "publisher-only-key":
            kwargs = {"key_id": "karn", "secret": KARN_SECRET.encode()}
        elif how == "wrong-secret":
            kwargs["secret"] = b"guessed"
        elif how == "unsigned":
            kwargs["secret"] = None
        elif how == "unknown-key":
            kwargs = {"key_id": "mallory", "secret": b"x"}
        elif how == "stale":
            kwargs["issued_at_ns"] = time.time_ns() - int(10 * 60 * 1e9)
        rid, ack = await rig.client.request(tiny_ir(), request_id=f"r-{how}", **kwargs)
        assert rid == f"r-{how}"
        assert not ack.accepted and reason in ack.reason, ack.reason
        assert ack.request_id == rid
        assert rig.forge.calls == []
        [record] = rig.audit
        assert record["outcome"] == "refused" and reason in record["reason"]
        assert record["request_id"] == rid
        assert rig.listener.refused == 1 and rig.listener.accepted == 0


async def test_replayed_nonce_refused(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with Rig(bus_settings(tmp_path, redis_server.url)) as rig:
        _, first = await rig.client.request(tiny_ir(), **TAMIYO, nonce="once")
        _, again = await rig.client.request(tiny_ir(), **TAMIYO, nonce="once")
        assert first.accepted
        assert not again.accepted and "replayed nonce 'once'" in again.reason
        assert len(rig.forge.calls) == 1
        assert [r["outcome"] for r in rig.audit] == ["accepted", "refused"]


async def test_rate_limited(tmp_path: Path) -> None:
    async with Rig(bus_settings(tmp_path, None, emergency={"max_per_min": 3})) as rig:
        acks = [(await rig.client.request(tiny_ir(), **TAMIYO))[1] for _ in range(4)]
        assert [a.accepted for a in acks] == [True, True, True, False]
        assert "emergency.max_per_min=3" in acks[3].reason
        assert len(rig.forge.calls) == 3


async def test_handler_failure_becomes_refusal(tmp_path: Path) -> None:
    async with Rig(bus_settings(tmp_path, None), fail=True) as rig:
        _, ack = await rig.client.request(tiny_ir(), **TAMIYO)
        assert not ack.accepted and "WAL unwritable" in ack.reason
        assert rig.audit[0]["outcome"] == "refused"


async def test_hundred_requests_all_acknowledged(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with Rig(bus_settings(tmp_path, redis_server.url)) as rig:
        ir = tiny_ir("bp-load")
        rids = await asyncio.gather(*(rig.client.send(ir, **TAMIYO) for _ in range(100)))
        acks = await asyncio.gather(*(rig.client.wait_ack(r, timeout_s=30) for r in rids))
        assert len(set(rids)) == 100
        assert [a.request_id for a in acks] == list(rids)
        assert all(a.accepted for a in acks)
        assert sorted(a.queue_position for a in acks)[0] >= 1
        assert rig.listener.accepted == 100 and len(rig.audit) == 100
        done = await asyncio.gather(*(rig.client.wait_complete(r, timeout_s=30) for r in rids))
        assert {d.request_id for d in done} == set(rids)
        client = redis_server.client()
        assert client.xpending(rig.settings.emergency.stream, rig.settings.emergency.consumer_group)["pending"] == 0
        # One ack and one CompilationComplete per request.
        assert client.xlen(rig.settings.emergency.reply_stream) == 200


async def test_lost_reply_is_resent_identically_without_rerunning_handler(tmp_path: Path) -> None:
    """The reply XADD fails once (Redis hiccup): the entry stays pending, is reclaimed, and the
    listener answers with the same ack instead of calling the forge again or calling it a replay."""
    from tezzeret.bus import BusUnavailable, InProcessBus

    class FlakyReplies(InProcessBus):
        failures = 1

        async def publish_envelope(self, topic: str, envelope: pb.BusEnvelope) -> str:
            if topic == topics.EMERGENCY_REPLY and envelope.message_type.endswith("EmergencyAck") and self.failures:
                self.failures -= 1
                raise BusUnavailable("reply XADD failed (injected)")
            return await super().publish_envelope(topic, envelope)

    settings = bus_settings(tmp_path, None)
    bus = FlakyReplies(settings)
    forge = Forge(bus)
    listener = EmergencyListener(bus, settings, forge.handle)
    client = EmergencyClient(bus, settings)
    listener.start()
    client.start()
    await bus.start()
    try:
        rid, ack = await client.request(tiny_ir(), **TAMIYO)
        assert ack.accepted and ack.request_id == rid
        assert len(forge.calls) == 1 and bus.failures == 0
        assert listener.accepted == 1 and listener.refused == 0
    finally:
        await bus.close()


async def test_a_decision_past_the_ack_deadline_is_answered_ack_timeout_and_still_made(
    backend_settings: Settings,
) -> None:
    """Tamiyo waits `emergency.ack_timeout_ms`: a slower intake is answered ACK_TIMEOUT in time
    (saying a resend learns the answer), and the request it was deciding on is not dropped."""
    deadline_s = backend_settings.emergency.ack_timeout_ms / 1000
    async with Rig(backend_settings) as rig:
        handle = rig.forge.handle

        async def slower_than_the_deadline(req: pb.EmergencyCompile, caller: EmergencyCaller) -> pb.EmergencyAck:
            await asyncio.sleep(2 * deadline_s)
            return await handle(req, caller)

        rig.listener._handler = slower_than_the_deadline
        rid, ack = await rig.client.request(tiny_ir("bp-late"), **TAMIYO, timeout_s=10 * deadline_s)
        assert not ack.accepted and ack.reason.startswith("ACK_TIMEOUT")
        assert "resend with the same request_id" in ack.reason
        done = await rig.client.wait_complete(rid, timeout_s=10)
        assert done.status == pb.OUTCOME_SUCCESS
        assert [r for r, _ in rig.forge.calls] == [rid]


async def test_slow_handler_answered_once(backend_settings: Settings) -> None:
    """The forge's intake taking longer than `bus.claim_idle_ms` (a slow WAL disk) must not make a
    sibling consumer answer the same request again — least of all as a 'replayed nonce' refusal."""
    # Twice the claim window: long past it, yet inside the emergency ack deadline (a handler past
    # that deadline is answered ACK_TIMEOUT, which test_ack_deadline-style tests cover).
    slow_s = 2 * backend_settings.bus.claim_idle_ms / 1000
    assert slow_s < 0.7 * backend_settings.emergency.ack_timeout_ms / 1000
    async with Rig(backend_settings) as rig:
        handle = rig.forge.handle

        async def slow(req: pb.EmergencyCompile, caller: EmergencyCaller) -> pb.EmergencyAck:
            await asyncio.sleep(slow_s)
            return await handle(req, caller)

        rig.listener._handler = slow
        rid, ack = await rig.client.request(tiny_ir("bp-slow"), **TAMIYO)
        assert ack.accepted, ack.reason
        await rig.client.wait_complete(rid, timeout_s=10)
        await asyncio.sleep(4 * backend_settings.bus.claim_idle_ms / 1000)
        assert [rid for rid, _ in rig.forge.calls] == [rid]
        assert [r["outcome"] for r in rig.audit] == ["accepted"]
        assert rig.listener.refused == 0
