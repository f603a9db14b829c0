"""At-least-once delivery on both backends: redelivery, idempotency, poison and forged messages."""

from __future__ import annotations

import asyncio
import time

import pytest
from bus_helpers import Collector, sample
from settings import KARN_SECRET

from tezzeret.bus import Delivery, SeenSet, idempotent, make_bus, seal, topics
from tezzeret.bus.envelope import signature_of
from tezzeret.config import Settings
from tezzeret.leyline import encode, pb


async def test_handler_failure_is_redelivered_and_processed_once(backend_settings: Settings) -> None:
    bus = make_bus(backend_settings)
    attempts: list[int] = []
    done = Collector()

    async def flaky(d: Delivery) -> None:
        attempts.append(d.delivery_count)
        if len(attempts) == 1:
            raise RuntimeError("worker pool busy")
        await done(d)

    bus.subscribe(topics.COMPILATION_REQUEST, flaky, group="forge", consumer="c1")
    await bus.start()
    try:
        await bus.publish(topics.COMPILATION_REQUEST, sample(topics.COMPILATION_REQUEST), message_id="r-1")
        [d] = await done.wait_for(1)
        assert d.message_id == "r-1" and d.delivery_count == 2
        assert attempts == [1, 2]
        # Acknowledged: nothing comes back after another claim period.
        await asyncio.sleep(3 * backend_settings.bus.claim_idle_ms / 1000)
        assert attempts == [1, 2]
        assert await bus.dead_letters(topics.COMPILATION_REQUEST) == []
    finally:
        await bus.close()


async def test_duplicates_run_once_with_idempotent(backend_settings: Settings) -> None:
    bus = make_bus(backend_settings)
    got = Collector()
    bus.subscribe(topics.BLUEPRINT_SUBMITTED, idempotent(got, SeenSet(ttl_s=60)), group="forge", consumer="c")
    await bus.start()
    try:
        msg = sample(topics.BLUEPRINT_SUBMITTED)
        for _ in range(3):  # Karn re-publishing the same submission
            await bus.publish(topics.BLUEPRINT_SUBMITTED, msg, message_id="bp-0")
        await bus.publish(topics.BLUEPRINT_SUBMITTED, msg, message_id="bp-0-again")
        await got.wait_for(2)
        await asyncio.sleep(0.3)
        assert [d.message_id for d in got.deliveries] == ["bp-0", "bp-0-again"]
    finally:
        await bus.close()


async def test_poison_message_dead_lettered_after_max_deliveries(backend_settings: Settings) -> None:
    bus = make_bus(backend_settings)
    attempts: list[int] = []
    good = Collector()

    async def handler(d: Delivery) -> None:
        if d.message_id == "poison":
            attempts.append(d.delivery_count)
            raise ValueError("node 'relu' has no shape rule")
        await good(d)

    bus.subscribe(topics.COMPILATION_REQUEST, handler, group="forge", consumer="c")
    await bus.start()
    try:
        await bus.publish(topics.COMPILATION_REQUEST, sample(topics.COMPILATION_REQUEST, 1), message_id="poison")
        await bus.publish(topics.COMPILATION_REQUEST, sample(topics.COMPILATION_REQUEST, 2), message_id="fine")
        await good.wait_for(1)
        deadline = time.monotonic() + 10
        while not await bus.dead_letters(topics.COMPILATION_REQUEST):
            assert time.monotonic() < deadline, "poison message never dead-lettered"
            await asyncio.sleep(0.05)
        max_d = backend_settings.bus.max_deliveries
        assert attempts == list(range(1, max_d + 1))
        [dl] = await bus.dead_letters(topics.COMPILATION_REQUEST)
        assert dl.topic == topics.COMPILATION_REQUEST and dl.deliveries == max_d
        assert f"bus.max_deliveries={max_d}" in dl.reason and "no shape rule" in dl.reason
        assert pb.BusEnvelope.FromString(dl.data).message_id == "poison"
        await asyncio.sleep(3 * backend_settings.bus.claim_idle_ms / 1000)
        assert len(attempts) == max_d
    finally:
        await bus.close()


def _forged(settings: Settings, topic: str, how: str) -> pb.BusEnvelope:
    msg = sample(topic)
    env = seal(msg, key_id="karn", secret=KARN_SECRET.encode(), message_id=how)
    if how == "tampered":
        env.payload = encode(sample(topic, 99))  # signature no longer matches
    elif how == "wrong-secret":
        env.signature = signature_of(env, b"not-karns-secret")
    elif how == "unknown-key":
        env.key_id = "mallory"
        env.signature = signature_of(env, b"whatever")
    elif how == "unsigned":
        env.ClearField("signature")
    elif how == "garbage-payload":
        env.payload = b"\xff\xff\xff"
        env.signature = signature_of(env, KARN_SECRET.encode())
    elif how == "wrong-type":
        env.message_type = "leyline.EmergencyAck"
        env.signature = signature_of(env, KARN_SECRET.encode())
    return env


@pytest.mark.parametrize(
    "how, reason",
    [
        ("tampered", "bad signature"),
        ("wrong-secret", "bad signature"),
        ("unknown-key", "unknown signing key 'mallory'"),
        ("unsigned", "unsigned envelope"),
        ("garbage-payload", "undecodable leyline.BlueprintSubmitted payload"),
        ("wrong-type", "carries leyline.BlueprintSubmitted"),
    ],
)
async def test_forged_or_undecodable_dead_lettered_without_reaching_handler(
    backend_settings: Settings, how: str, reason: str
) -> None:
    bus = make_bus(backend_settings)
    got = Collector()
    bus.subscribe(topics.BLUEPRINT_SUBMITTED, got, group="forge", consumer="c")
    await bus.start()
    try:
        await bus.publish_envelope(topics.BLUEPRINT_SUBMITTED, _forged(backend_settings, topics.BLUEPRINT_SUBMITTED, how))
        # A genuine Karn message after it still gets through, so the bad one was settled first.
        await bus.publish_envelope(
            topics.BLUEPRINT_SUBMITTED,
            seal(sample(topics.BLUEPRINT_SUBMITTED, 5), key_id="karn", secret=KARN_SECRET.encode(), message_id="ok"),
        )
        [d] = await got.wait_for(1)
        assert d.message_id == "ok" and d.key_id == "karn"
        [dl] = await bus.dead_letters(topics.BLUEPRINT_SUBMITTED)
        assert reason in dl.reason, dl.reason
        assert dl.deliveries == 1
        await asyncio.sleep(2 * backend_settings.bus.claim_idle_ms / 1000)
        assert len(got.deliveries) == 1
    finally:
        await bus.close()


async def test_undecodable_envelope_bytes_dead_lettered(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bus_helpers import bus_settings

    settings = bus_settings(tmp_path, redis_server.url)
    bus = make_bus(settings)
    got = Collector()
    bus.subscribe(topics.KERNEL_CHARACTERIZED, got, group="forge", consumer="c")
    await bus.start()
    try:
        stream = topics.stream_name(settings, topics.KERNEL_CHARACTERIZED)
        redis_server.client().xadd(stream, {b"e": b"\x0a\xff not protobuf"})
        redis_server.client().xadd(stream, {b"something": b"else"})
        deadline = time.monotonic() + 10
        while len(await bus.dead_letters(topics.KERNEL_CHARACTERIZED)) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert all("undecodable envelope" in d.reason for d in await bus.dead_letters(topics.KERNEL_CHARACTERIZED))
        assert got.deliveries == []
    finally:
        await bus.close()


async def test_publisher_role_required(backend_settings: Settings) -> None:
    """Tamiyo's key may only send emergency requests; on an ordinary topic it is refused."""
    from settings import TAMIYO_SECRET

    bus = make_bus(backend_settings)
    got = Collector()
    bus.subscribe(topics.COMPILATION_REQUEST, got, group="forge", consumer="c")
    await bus.start()
    try:
        env = seal(sample(topics.COMPILATION_REQUEST), key_id="tamiyo", secret=TAMIYO_SECRET.encode())
        await bus.publish_envelope(topics.COMPILATION_REQUEST, env)
        deadline = time.monotonic() + 10
        while not await bus.dead_letters(topics.COMPILATION_REQUEST):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        [dl] = await bus.dead_letters(topics.COMPILATION_REQUEST)
        assert "lacks role 'publisher'" in dl.reason
        assert got.deliveries == []
    finally:
        await bus.close()


async def test_slow_handler_is_not_reclaimed_by_a_sibling_consumer(backend_settings: Settings) -> None:
    """A handler that runs past `bus.claim_idle_ms` is alive, not dead: neither a second consumer
    in the same group nor its own next reclaim may hand the entry to another handler meanwhile."""
    bus = make_bus(backend_settings)
    idle_s = backend_settings.bus.claim_idle_ms / 1000
    calls: list[tuple[str, str]] = []
    done = Collector()

    def slow(name: str):  # type: ignore[no-untyped-def]
        async def handle(d: Delivery) -> None:
            calls.append((name, d.message_id))
            await asyncio.sleep(4 * idle_s)
            await done(d)
        return handle

    bus.subscribe(topics.COMPILATION_REQUEST, slow("a"), group="forge", consumer="a")
    bus.subscribe(topics.COMPILATION_REQUEST, slow("b"), group="forge", consumer="b")
    await bus.start()
    try:
        await bus.publish(topics.COMPILATION_REQUEST, sample(topics.COMPILATION_REQUEST), message_id="r-slow")
        [d] = await done.wait_for(1)
        assert d.delivery_count == 1
        await asyncio.sleep(4 * idle_s)
        assert [rid for _, rid in calls] == ["r-slow"], calls
    finally:
        await bus.close()


async def test_slow_handler_in_another_process_keeps_its_entry(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two buses on one Redis are two processes as far as Redis can tell: only the running
    handler's heartbeat keeps the other's XAUTOCLAIM from taking the entry over."""
    from bus_helpers import bus_settings

    settings = bus_settings(tmp_path, redis_server.url)
    idle_s = settings.bus.claim_idle_ms / 1000
    calls: list[str] = []
    done = Collector()

    async def slow(d: Delivery) -> None:
        calls.append(d.message_id)
        await asyncio.sleep(5 * idle_s)
        await done(d)

    first, second = make_bus(settings), make_bus(settings)
    first.subscribe(topics.COMPILATION_REQUEST, slow, group="forge", consumer="first")
    await first.start()
    try:
        await first.publish(topics.COMPILATION_REQUEST, sample(topics.COMPILATION_REQUEST), message_id="r-long")
        deadline = time.monotonic() + 10
        while not calls:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        second.subscribe(topics.COMPILATION_REQUEST, slow, group="forge", consumer="second")
        await second.start()
        [d] = await done.wait_for(1)
        assert d.delivery_count == 1
        await asyncio.sleep(2 * idle_s)
        assert calls == ["r-long"]
        stream = topics.stream_name(settings, topics.COMPILATION_REQUEST)
        assert redis_server.client().xpending(stream, "forge")["pending"] == 0
    finally:
        await second.close()
        await first.close()
