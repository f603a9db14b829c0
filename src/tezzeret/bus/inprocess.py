"""The default, in-process bus (no `redis_url`): asyncio, the same interface and rules as Redis.

Owns: streams as bounded in-memory logs with consumer groups, a pending list per group, reclaim of
entries idle past `bus.claim_idle_ms` (never one whose handler is still running), and dead-letter
lists — the Redis Streams semantics, so code and tests written against one backend hold on the
other. Must never be used across processes (it shares nothing outside its event loop) and never
persist anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from tezzeret.bus import topics
from tezzeret.bus.base import DeadLetter, Handler, RawDelivery, RawHandler
from tezzeret.bus.consumer import LastErrors, dispatch, verified
from tezzeret.bus.envelope import Keyring, seal
from tezzeret.bus.errors import BusClosed
from tezzeret.config import Settings
from tezzeret.leyline import encode, pb
from tezzeret.metrics import BUS_EVENTS

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    stream_id: str
    data: bytes
    enqueued_ms: int


@dataclass
class _Pending:
    entry: _Entry
    consumer: str
    deliveries: int
    delivered_at: float
    # A handler is running on it: alive however long it takes, so not reclaimable (as on Redis).
    running: bool = False


@dataclass
class _Group:
    next_seq: int
    pending: dict[str, _Pending] = field(default_factory=dict)


@dataclass
class _Stream:
    entries: list[_Entry] = field(default_factory=list)
    first_seq: int = 0
    groups: dict[str, _Group] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    last_ms: int = 0
    last_n: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def end_seq(self) -> int:
        return self.first_seq + len(self.entries)


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, n = stream_id.partition("-")
    return int(ms), int(n or 0)


def _start_seq(stream: _Stream, start_id: str) -> int:
    """Where a new group starts: "$" after the end, "0" at the start, else after `start_id`."""
    if start_id == "$":
        return stream.end_seq
    after = _id_key(start_id)
    for i, entry in enumerate(stream.entries):
        if _id_key(entry.stream_id) > after:
            return stream.first_seq + i
    return stream.end_seq


class InProcessBus:
    """Oona inside one event loop. See `tezzeret.bus.base.Bus` for the contract."""

    def __init__(self, settings: Settings, keyring: Keyring | None = None) -> None:
        self._settings = settings
        self._keyring = keyring or Keyring.from_settings(settings)
        self._signer = self._keyring.get(settings.bus.signing_key_id)
        self._streams: dict[str, _Stream] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[tuple[str, RawHandler, str, str, str]] = []
        self._errors = LastErrors()
        self._running = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._closed:
            raise BusClosed("start")
        self._running = True
        for sub in self._subs:
            self._spawn(*sub)

    async def close(self) -> None:
        self._running = False
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def health(self) -> dict[str, Any]:
        return {
            "backend": "inprocess",
            "connected": self._running,
            "subscriptions": len(self._subs),
            "outbox_depth": 0,
            "dead_letters": sum(len(s.dead) for s in self._streams.values()),
        }

    # -- publishing --------------------------------------------------------------------------
    async def publish(self, topic: str, message: Message, *, message_id: str | None = None) -> str:
        topics.check_type(topic, topics.type_name(message))
        env = seal(message, key_id=self._signer.key_id, secret=self._signer.secret, message_id=message_id)
        await self.publish_envelope(topic, env)
        return env.message_id

    async def publish_now(self, topic: str, message: Message, *, message_id: str | None = None) -> str:
        return await self.publish(topic, message, message_id=message_id)

    async def publish_envelope(self, topic: str, envelope: pb.BusEnvelope) -> str:
        return self._append(topic, encode(envelope))

    def _append(self, topic: str, data: bytes) -> str:
        if self._closed:
            raise BusClosed(f"publish to {topic!r}")
        stream = self._stream(topic)
        now = int(time.time() * 1000)
        if now > stream.last_ms:
            stream.last_ms, stream.last_n = now, 0
        else:
            stream.last_n += 1
        entry = _Entry(f"{stream.last_ms}-{stream.last_n}", data, stream.last_ms)
        stream.entries.append(entry)
        overflow = len(stream.entries) - self._settings.bus.maxlen
        if overflow > 0:
            del stream.entries[:overflow]
            stream.first_seq += overflow
            for group in stream.groups.values():
                group.next_seq = max(group.next_seq, stream.first_seq)
        stream.changed.set()
        BUS_EVENTS.labels(topic, "published").inc()
        return entry.stream_id

    # -- consuming ---------------------------------------------------------------------------
    def subscribe(self, topic: str, handler: Handler, *, group: str, consumer: str) -> None:
        self.subscribe_envelopes(topic, verified(handler, self._keyring), group=group, consumer=consumer)

    def subscribe_envelopes(
        self, topic: str, handler: RawHandler, *, group: str, consumer: str, start_id: str = "0",
        batch: int | None = None,
    ) -> None:
        # Entries are taken one at a time here, so `batch` has nothing to limit.
        if self._closed:
            raise BusClosed(f"subscribe to {topic!r}")
        stream = self._stream(topic)
        if group not in stream.groups:
            stream.groups[group] = _Group(_start_seq(stream, start_id))
        sub = (topic, handler, group, consumer, start_id)
        self._subs.append(sub)
        if self._running:
            self._spawn(*sub)

    async def dead_letters(self, topic: str) -> list[DeadLetter]:
        return list(self._stream(topic).dead)

    def _stream(self, topic: str) -> _Stream:
        name = topics.stream_name(self._settings, topic)
        if name not in self._streams:
            self._streams[name] = _Stream()
        return self._streams[name]

    def _spawn(self, topic: str, handler: RawHandler, group: str, consumer: str, _start: str) -> None:
        self._tasks.append(
            asyncio.create_task(self._consume(topic, handler, group, consumer), name=f"bus:{topic}:{consumer}")
        )

    async def _consume(self, topic: str, handler: RawHandler, group_name: str, consumer: str) -> None:
        stream = self._stream(topic)
        group = stream.groups[group_name]
        idle_s = self._settings.bus.claim_idle_ms / 1000
        wake_s = min(idle_s, 1.0) / 2
        while self._running:
            work = self._claim(stream, group, consumer, idle_s) or self._next(stream, group, consumer)
            if work is None:
                stream.changed.clear()
                try:
                    await asyncio.wait_for(stream.changed.wait(), wake_s)
                except TimeoutError:
                    pass
                continue
            await self._run_one(topic, stream, group, work, handler)

    def _claim(self, stream: _Stream, group: _Group, consumer: str, idle_s: float) -> _Pending | None:
        now = time.monotonic()
        for pending in group.pending.values():
            if not pending.running and now - pending.delivered_at >= idle_s:
                pending.consumer, pending.deliveries, pending.delivered_at = consumer, pending.deliveries + 1, now
                return pending
        return None

    def _next(self, stream: _Stream, group: _Group, consumer: str) -> _Pending | None:
        if group.next_seq >= stream.end_seq:
            return None
        entry = stream.entries[group.next_seq - stream.first_seq]
        group.next_seq += 1
        pending = _Pending(entry, consumer, 1, time.monotonic())
        group.pending[entry.stream_id] = pending
        return pending

    async def _run_one(
        self, topic: str, stream: _Stream, group: _Group, pending: _Pending, handler: RawHandler
    ) -> None:
        entry = pending.entry
        raw = RawDelivery(topic, entry.stream_id, entry.data, pending.deliveries, entry.enqueued_ms)

        async def ack() -> None:
            group.pending.pop(entry.stream_id, None)

        async def dead_letter(reason: str) -> None:
            group.pending.pop(entry.stream_id, None)
            stream.dead.append(DeadLetter(topic, entry.stream_id, reason, pending.deliveries, entry.data))
            log.warning("bus: dead-lettered %s %s: %s", topic, entry.stream_id, reason)

        pending.running = True
        try:
            await dispatch(
                raw, handler, max_deliveries=self._settings.bus.max_deliveries,
                errors=self._errors, ack=ack, dead_letter=dead_letter,
            )
        finally:
            pending.running = False
            pending.delivered_at = time.monotonic()
