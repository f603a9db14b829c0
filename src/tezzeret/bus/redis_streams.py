"""Oona on Redis Streams: XADD with approximate MAXLEN, consumer groups, XAUTOCLAIM, dead letters.

Owns: the Redis side of the bus — one shared client for publishing, ACKs and dead letters, and one
dedicated connection per subscription that blocks in XREADGROUP (so an entry is handed over the
moment it is appended, with no polling loop); reclaiming entries idle past `bus.claim_idle_ms`
with XAUTOCLAIM and reading their delivery count with XPENDING; keeping an entry whose handler is
still running from looking idle (a JUSTID XCLAIM heartbeat, and never reclaiming an entry this
process is running), so a slow handler is not taken for a dead one; dead-lettering to
`<stream>.dead` with the reason (XADD + XACK in one MULTI); re-creating consumer groups after
Redis lost them; and routing outgoing events through the `Outbox` so a Redis outage never stops
the forge. Must never block the event loop, never retry a command on its own (the outbox and
breaker decide), and never hand an unverified payload to a `subscribe` handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
from google.protobuf.message import Message
from redis.backoff import NoBackoff
from redis.asyncio.retry import Retry
from redis.typing import StreamRangeResponse, XReadGroupResponse

from tezzeret.bus import topics
from tezzeret.bus.base import BreakerLike, DeadLetter, Handler, RawDelivery, RawHandler
from tezzeret.bus.consumer import LastErrors, dispatch, verified
from tezzeret.bus.envelope import Keyring, seal
from tezzeret.bus.errors import BusClosed, BusError, BusUnavailable
from tezzeret.bus.outbox import Outbox, OutboxItem
from tezzeret.config import Settings
from tezzeret.leyline import encode, pb
from tezzeret.metrics import BUS_EVENTS

log = logging.getLogger(__name__)

# Field names inside a stream entry.
F_ENVELOPE = b"e"
F_REASON = b"reason"
F_TOPIC = b"topic"
F_ORIGIN = b"origin_id"
F_DELIVERIES = b"deliveries"

TRANSIENT: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def _ms_of(stream_id: str) -> int:
    return int(stream_id.split("-", 1)[0])


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _read_entries(resp: XReadGroupResponse | None) -> StreamRangeResponse:
    """The entries of an XREADGROUP reply, over its streams (the bus reads one at a time).

    redis-py types the reply for every protocol and response mode; with its default legacy
    response shapes, which the bus keeps, it is `[[stream, [(id, fields), ...]], ...]`, or None
    when the block timed out.
    """
    if not resp:
        return []
    if isinstance(resp, dict):
        raise BusError("XREADGROUP answered in the RESP3 map shape; the bus needs redis-py's legacy list replies")
    return [entry for _stream, entries in resp for entry in entries]


class RedisStreamsBus:
    """See `tezzeret.bus.base.Bus` for the contract. Needs `settings.redis_url`."""

    def __init__(
        self,
        settings: Settings,
        breaker: BreakerLike | None = None,
        *,
        keyring: Keyring | None = None,
        batch: int = 64,
    ) -> None:
        if not settings.redis_url:
            raise BusError("RedisStreamsBus needs redis_url (e.g. redis://127.0.0.1:6379/0) in the settings")
        self._settings = settings
        self._url = settings.redis_url
        self._breaker = breaker
        self._keyring = keyring or Keyring.from_settings(settings)
        self._signer = self._keyring.get(settings.bus.signing_key_id)
        self._batch = batch
        idle_ms = settings.bus.claim_idle_ms
        # How often each subscription looks for idle entries; also the XREADGROUP block time.
        self._claim_every_ms = max(5, min(idle_ms, 2000) // 2)
        self._client = self._new_client(socket_timeout=2.0)
        self._outbox = Outbox(settings.bus.outbox_limit, self._send, breaker=breaker, transient=TRANSIENT)
        self._errors = LastErrors()
        # (stream, group, entry id) of every handler running in this process: alive by definition,
        # so no sibling subscription reclaims them however long they take.
        self._in_flight: set[tuple[str, str, str]] = set()
        self._subs: list[tuple[str, RawHandler, str, str, str, int]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._dedicated: list[aioredis.Redis] = []
        self._running = False
        self._closed = False
        self._connected = False

    def _new_client(self, *, socket_timeout: float | None) -> aioredis.Redis:
        # One immediate retry: after a Redis restart a pooled connection is stale and fails on first
        # use; retrying once on a fresh connection tells that apart from Redis really being down.
        # Only on a connection error: after a timeout Redis may have run the command, and an XADD
        # run twice is a duplicate entry. Anything longer is the outbox's and the breaker's business.
        return aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=1.0,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(rexc.ConnectionError,)),
            health_check_interval=0,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._closed:
            raise BusClosed("start")
        self._running = True
        try:
            await self._client.ping()
            self._connected = True
        except TRANSIENT as exc:
            # Not fatal: the forge keeps compiling and the outbox holds events until Redis is back.
            log.warning("bus: Redis at %s unreachable at start (%s); buffering", self._url, exc)
        self._tasks.append(asyncio.create_task(self._outbox.run(), name="bus:outbox"))
        for sub in self._subs:
            self._spawn(*sub)

    async def close(self, *, drain_timeout_s: float = 1.0) -> None:
        """Stop consuming; give the outbox `drain_timeout_s` to empty, then drop the connections."""
        if self._closed:
            return
        if self._running and len(self._outbox):
            try:
                await asyncio.wait_for(self._outbox.drained(), drain_timeout_s)
            except TimeoutError:
                log.error("bus: closing with %d events still buffered (Redis unreachable)", len(self._outbox))
        self._running = False
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for client in [*self._dedicated, self._client]:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - a half-dead connection may fail to close; nothing to do
                pass
        self._dedicated.clear()

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the outbox to drain; True when it is empty."""
        try:
            await asyncio.wait_for(self._outbox.drained(), timeout_s)
        except TimeoutError:
            return False
        return True

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": "redis",
            "connected": self._connected,
            "subscriptions": len(self._subs),
            "outbox_depth": len(self._outbox),
            "outbox_limit": self._outbox.limit,
            "outbox_flushed": self._outbox.flushed_total,
        }
        snapshot = getattr(self._breaker, "snapshot", None)
        if callable(snapshot):
            out["breaker"] = snapshot()
        return out

    # -- publishing --------------------------------------------------------------------------
    async def publish(self, topic: str, message: Message, *, message_id: str | None = None) -> str:
        if self._closed:
            raise BusClosed(f"publish to {topic!r}")
        topics.check_type(topic, topics.type_name(message))
        env = seal(message, key_id=self._signer.key_id, secret=self._signer.secret, message_id=message_id)
        await self._outbox.publish(OutboxItem(topic, encode(env)))
        return env.message_id

    async def publish_now(self, topic: str, message: Message, *, message_id: str | None = None) -> str:
        """XADD now, unbuffered; `BusUnavailable` when Redis is away (the caller keeps the event)."""
        topics.check_type(topic, topics.type_name(message))
        env = seal(message, key_id=self._signer.key_id, secret=self._signer.secret, message_id=message_id)
        await self.publish_envelope(topic, env)
        return env.message_id

    async def publish_envelope(self, topic: str, envelope: pb.BusEnvelope) -> str:
        """XADD now, unbuffered (replies and other parties' requests); `BusUnavailable` if down."""
        if self._closed:
            raise BusClosed(f"publish to {topic!r}")
        try:
            return await self._send(OutboxItem(topic, encode(envelope)))
        except TRANSIENT as exc:
            raise BusUnavailable(f"XADD to {topic!r} failed: Redis at {self._url} unreachable ({exc})") from exc

    async def _send(self, item: OutboxItem) -> str:
        try:
            sid = await self._client.xadd(
                topics.stream_name(self._settings, item.topic),
                {F_ENVELOPE: item.data},
                maxlen=self._settings.bus.maxlen,
                approximate=True,
            )
        except TRANSIENT:
            self._connected = False
            raise
        self._connected = True
        BUS_EVENTS.labels(item.topic, "published").inc()
        return _s(sid)

    # -- consuming ---------------------------------------------------------------------------
    def subscribe(self, topic: str, handler: Handler, *, group: str, consumer: str) -> None:
        self.subscribe_envelopes(topic, verified(handler, self._keyring), group=group, consumer=consumer)

    def subscribe_envelopes(
        self, topic: str, handler: RawHandler, *, group: str, consumer: str, start_id: str = "0",
        batch: int | None = None,
    ) -> None:
        if self._closed:
            raise BusClosed(f"subscribe to {topic!r}")
        topics.topic(topic)
        sub = (topic, handler, group, consumer, start_id, batch or self._batch)
        self._subs.append(sub)
        if self._running:
            self._spawn(*sub)

    async def dead_letters(self, topic: str) -> list[DeadLetter]:
        rows = await self._client.xrange(topics.dead_stream_name(self._settings, topic))
        return [
            DeadLetter(
                topic=_s(f.get(F_TOPIC, b"")),
                origin_id=_s(f.get(F_ORIGIN, b"")),
                reason=_s(f.get(F_REASON, b"")),
                deliveries=int(f.get(F_DELIVERIES, b"0")),
                data=_b(f.get(F_ENVELOPE, b"")),
            )
            # XRANGE gives no entry without fields; the types allow one (XCLAIM's deleted entries).
            for _, f in rows or []
            if f is not None
        ]

    def _spawn(self, topic: str, handler: RawHandler, group: str, consumer: str, start_id: str, batch: int) -> None:
        self._tasks.append(
            asyncio.create_task(
                self._consume(topic, handler, group, consumer, start_id, batch), name=f"bus:{topic}:{consumer}"
            )
        )

    async def _consume(
        self, topic: str, handler: RawHandler, group: str, consumer: str, start_id: str, batch: int
    ) -> None:
        stream = topics.stream_name(self._settings, topic)
        block_ms = self._claim_every_ms
        # Its own connection: a blocked XREADGROUP must not hold up publishes and ACKs.
        conn = self._new_client(socket_timeout=block_ms / 1000 + 5.0)
        self._dedicated.append(conn)
        group_ready = False
        # Entries delivered to this consumer but not settled (e.g. an ACK lost to a dropped
        # connection) are re-read first, in order, before anything new.
        own_pending = True
        last_claim = 0.0
        backoff = 0.05
        while self._running:
            try:
                if not group_ready:
                    await self._ensure_group(conn, stream, group, start_id)
                    # After a Redis restart the stream is new: read all of it, whatever start_id was.
                    start_id = "0"
                    group_ready = True
                if own_pending:
                    await self._reread_own(conn, topic, stream, group, consumer, handler)
                    own_pending = False
                now = time.monotonic()
                if (now - last_claim) * 1000 >= self._claim_every_ms:
                    last_claim = now
                    await self._reclaim(conn, topic, stream, group, consumer, handler)
                resp = await conn.xreadgroup(group, consumer, {stream: ">"}, count=batch, block=block_ms)
                self._connected = True
                backoff = 0.05
                for sid, fields in _read_entries(resp):
                    # New entries (">") always carry their fields; the types also cover deleted ones.
                    if sid is not None and fields is not None:
                        await self._run_one(conn, topic, stream, group, consumer, _s(sid), fields, 1, handler)
            except asyncio.CancelledError:
                raise
            except rexc.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    group_ready = False
                    own_pending = True
                    continue
                log.error("bus: %s on %s: %s", consumer, stream, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except TRANSIENT as exc:
                self._connected = False
                own_pending = True
                log.warning("bus: %s on %s: Redis unreachable (%s); retrying", consumer, stream, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _ensure_group(self, conn: aioredis.Redis, stream: str, group: str, start_id: str) -> None:
        try:
            await conn.xgroup_create(stream, group, id=start_id, mkstream=True)
        except rexc.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _delivery_count(self, conn: aioredis.Redis, stream: str, group: str, sid: str) -> int:
        info = await conn.xpending_range(stream, group, min=sid, max=sid, count=1)
        return int(info[0]["times_delivered"]) if info else 1

    async def _reread_own(
        self, conn: aioredis.Redis, topic: str, stream: str, group: str, consumer: str, handler: RawHandler
    ) -> None:
        cursor = "0"
        while True:
            resp = await conn.xreadgroup(group, consumer, {stream: cursor}, count=self._batch)
            entries = _read_entries(resp)
            if not entries:
                return
            for sid, fields in entries:
                if sid is None:
                    continue
                cursor = _s(sid)
                if fields and (stream, group, cursor) not in self._in_flight:
                    count = await self._delivery_count(conn, stream, group, cursor)
                    await self._run_one(conn, topic, stream, group, consumer, cursor, fields, count, handler)

    async def _reclaim(
        self, conn: aioredis.Redis, topic: str, stream: str, group: str, consumer: str, handler: RawHandler
    ) -> None:
        cursor: bytes | str = "0-0"
        while True:
            resp = await conn.xautoclaim(
                stream, group, consumer, min_idle_time=self._settings.bus.claim_idle_ms,
                start_id=cursor, count=self._batch,
            )
            cursor, claimed = resp[0], resp[1]
            for sid, fields in claimed:
                if sid is None or fields is None:
                    continue
                sid_s = _s(sid)
                if (stream, group, sid_s) in self._in_flight:
                    continue
                count = await self._delivery_count(conn, stream, group, sid_s)
                BUS_EVENTS.labels(topic, "reclaimed").inc()
                await self._run_one(conn, topic, stream, group, consumer, sid_s, fields, count, handler)
            if _s(cursor) == "0-0":
                return

    async def _run_one(
        self, conn: aioredis.Redis, topic: str, stream: str, group: str, consumer: str, sid: str,
        fields: Mapping[bytes | str, bytes | str], count: int, handler: RawHandler,
    ) -> None:
        # ACKs and dead letters go over the subscription's own connection, which has just
        # proved alive by reading this entry (a pooled one may be stale after a restart).
        data = _b(fields.get(F_ENVELOPE, b""))
        raw = RawDelivery(topic, sid, data, count, _ms_of(sid))

        async def ack() -> None:
            await conn.xack(stream, group, sid)

        async def dead_letter(reason: str) -> None:
            log.warning("bus: dead-lettered %s %s: %s", stream, sid, reason)
            async with conn.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    stream + topics.DEAD_SUFFIX,
                    {F_ENVELOPE: data, F_REASON: reason.encode(), F_TOPIC: topic.encode(),
                     F_ORIGIN: sid.encode(), F_DELIVERIES: str(count).encode()},
                    maxlen=self._settings.bus.maxlen, approximate=True,
                )
                pipe.xack(stream, group, sid)
                await pipe.execute()

        key = (stream, group, sid)
        self._in_flight.add(key)
        heartbeat = asyncio.create_task(self._keep_claimed(conn, stream, group, consumer, sid))
        try:
            await dispatch(
                raw, handler, max_deliveries=self._settings.bus.max_deliveries,
                errors=self._errors, ack=ack, dead_letter=dead_letter,
            )
        finally:
            heartbeat.cancel()
            self._in_flight.discard(key)

    async def _keep_claimed(self, conn: aioredis.Redis, stream: str, group: str, consumer: str, sid: str) -> None:
        """While a handler runs, re-claim its entry to reset the idle time other processes' XAUTOCLAIM
        judges it by. JUSTID leaves the delivery count alone; once the entry is ACKed it is a no-op."""
        every_s = self._settings.bus.claim_idle_ms / 3000
        while True:
            await asyncio.sleep(every_s)
            try:
                await conn.xclaim(stream, group, consumer, 0, [sid], justid=True)
            except TRANSIENT + (rexc.ResponseError,) as exc:
                # The handler's own ACK will meet the same outage; redelivery is the fallback.
                log.debug("bus: heartbeat for %s %s failed: %s", stream, sid, exc)
