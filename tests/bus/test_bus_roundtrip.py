"""Every topic round-trips on both backends, signed, verified and decoded to the same message."""

from __future__ import annotations

import asyncio

import pytest
from bus_helpers import Collector, sample

from tezzeret.bus import InProcessBus, RedisStreamsBus, UnknownTopic, WrongMessageType, make_bus, topics
from tezzeret.config import Settings
from tezzeret.leyline import encode, pb


@pytest.mark.parametrize("topic", sorted(topics.TOPICS))
async def test_round_trip_every_topic(backend_settings: Settings, topic: str) -> None:
    bus = make_bus(backend_settings)
    assert isinstance(bus, RedisStreamsBus if backend_settings.redis_url else InProcessBus)
    got = Collector()
    # The emergency stream needs a key with the `emergency` role; the forge's key has every role.
    bus.subscribe(topic, got, group="g", consumer="c1")
    await bus.start()
    try:
        sent = [sample(topic, i) for i in range(3)]
        ids = [await bus.publish(topic, m, message_id=f"m-{i}") for i, m in enumerate(sent)]
        assert ids == ["m-0", "m-1", "m-2"]
        deliveries = await got.wait_for(3)
        assert [encode(d.message) for d in deliveries] == [encode(m) for m in sent]
        for i, d in enumerate(deliveries):
            assert d.topic == topic
            assert d.message_id == f"m-{i}"
            assert d.message_type == type(sent[i]).DESCRIPTOR.full_name
            assert d.delivery_count == 1
            assert d.key_id == "tezzeret"
            assert "publisher" in d.roles
            assert d.enqueued_ms > 0 and d.issued_at_ns > 0
        assert await bus.dead_letters(topic) == []
        assert bus.health()["connected"] is True
    finally:
        await bus.close()


async def test_two_groups_each_get_every_message(backend_settings: Settings) -> None:
    bus = make_bus(backend_settings)
    forge, urabrask = Collector(), Collector()
    bus.subscribe(topics.KERNEL_READY, forge, group="forge", consumer="a")
    bus.subscribe(topics.KERNEL_READY, urabrask, group="urabrask", consumer="b")
    await bus.start()
    try:
        for i in range(5):
            await bus.publish(topics.KERNEL_READY, sample(topics.KERNEL_READY, i))
        assert len(await forge.wait_for(5)) == 5
        assert len(await urabrask.wait_for(5)) == 5
    finally:
        await bus.close()


async def test_publish_checks_topic_and_type(backend_settings: Settings) -> None:
    bus = make_bus(backend_settings)
    await bus.start()
    try:
        with pytest.raises(UnknownTopic, match="compilation.nope"):
            await bus.publish("compilation.nope", sample(topics.KERNEL_READY))
        with pytest.raises(WrongMessageType, match="KernelCatalogUpdate"):
            await bus.publish(topics.KERNELS_CATALOG, pb.CompilationComplete(request_id="x"))
    finally:
        await bus.close()


async def test_stream_names_follow_settings(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bus_helpers import bus_settings

    settings = bus_settings(tmp_path, redis_server.url, bus={"stream_prefix": "oona.test."},
                            emergency={"stream": "em.in", "reply_stream": "em.out"})
    bus = make_bus(settings)
    await bus.start()
    try:
        await bus.publish(topics.KERNELS_CATALOG, sample(topics.KERNELS_CATALOG))
        await bus.publish(topics.EMERGENCY_REPLY, sample(topics.EMERGENCY_REPLY))
        keys = {k.decode() for k in redis_server.client().keys("*")}
        assert keys == {"oona.test.kernels.catalog", "em.out"}
    finally:
        await bus.close()


async def test_streams_are_trimmed_to_maxlen(backend_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bus_helpers import bus_settings

    settings = bus_settings(tmp_path / "trim", backend_settings.redis_url, bus={"maxlen": 20})
    bus = make_bus(settings)
    await bus.start()
    try:
        for i in range(400):
            await bus.publish(topics.KERNELS_CATALOG, sample(topics.KERNELS_CATALOG, i))
        got = Collector()
        bus.subscribe(topics.KERNELS_CATALOG, got, group="late", consumer="c")
        await got.wait_for(20)
        await asyncio.sleep(0.2)
        # Exact on the in-process bus; approximate (whole radix-tree nodes) on Redis.
        assert 20 <= len(got.deliveries) < 400
        assert got.deliveries[-1].message.blueprint_id == "bp-399"
    finally:
        await bus.close()
