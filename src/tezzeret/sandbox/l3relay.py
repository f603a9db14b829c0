"""The L3 relay: sandbox workers reach the shared Inductor cache on Redis without a network.

Owns: for one worker, a Unix socket in a directory only that worker may write, speaking just
enough of Redis's protocol (RESP) for torch's remote caches (`torch/_inductor/remote_cache.py`
uses GET and SET through redis-py, which also sends HELLO, PING and CLIENT SETINFO on connect), and
forwarding those to the Redis that `cache.l3_redis_url` names with the forge's own client; plus
the `TORCHINDUCTOR_REDIS_URL` that points the worker's Inductor at that socket. Workers keep their
empty network namespace (bubblewrap's `--unshare-net`): the relay is their only way out. Only keys
under torch's `pt2:` prefix are reachable and values are capped, so a worker can neither read nor
touch the bus's streams, nor flush the server; every other command gets an error reply. The
worker never holds Redis credentials. A Redis ACL user limited to the cache's keys (set in
`cache.l3_redis_url`) is a second line, not the first.

Why our own protocol code: a byte pipe would hand the worker every Redis command. Must never
forward a command it does not understand, and never listen on TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


def relayable(url: str) -> bool:
    """Whether the relay can carry this URL (plain `redis://`; TLS and sockets cannot be relayed)."""
    return urlsplit(url).scheme == "redis"


class L3Relay:
    """One worker's relay: `start()` before the worker spawns, `close()` after it is gone."""

    def __init__(self, redis_url: str, *, owner_uid: int | None) -> None:
        parts = urlsplit(redis_url)
        if parts.scheme != "redis":
            raise ValueError(f"the L3 relay carries redis:// URLs only, not {parts.scheme}://")
        self._url = redis_url
        self._client: Any = None
        self._owner_uid = owner_uid
        self.forwarded = 0
        self.refused = 0
        # Short and outside the state dir: a Unix socket path must fit in 107 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="tz-l3-"))
        self.socket_path = self.directory / "redis.sock"
        self._server: asyncio.AbstractServer | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        if self._owner_uid is not None:
            os.chown(self.directory, self._owner_uid, self._owner_uid)
            os.chown(self.socket_path, self._owner_uid, self._owner_uid)
        os.chmod(self.socket_path, 0o600)

    def worker_url(self) -> str:
        """`TORCHINDUCTOR_REDIS_URL` for the worker (redis-py's `unix://` form; the credentials and
        the database stay with the relay's own client)."""
        return f"unix://{self.socket_path}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None
        shutil.rmtree(self.directory, ignore_errors=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._pipes.add(task)
        try:
            while (args := await _read_command(reader)) is not None:
                writer.write(await self._answer(args))
                await writer.drain()
        except (RelayProtocolError, ValueError, asyncio.IncompleteReadError) as exc:
            self.refused += 1
            log.warning("L3 relay: dropping a worker connection: %s", exc)
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(_error(f"protocol error: {exc}"))
        except ConnectionError:
            pass
        finally:
            writer.close()
            if task is not None:
                self._pipes.discard(task)

    async def _answer(self, args: list[bytes]) -> bytes:
        command = args[0].upper()
        if command == b"PING":
            return b"+PONG\r\n"
        if command == b"CLIENT":
            return b"+OK\r\n"  # SETINFO: library name and version, nothing to forward
        if command == b"HELLO":
            return b"-NOPROTO this relay speaks RESP2\r\n"  # redis-py then falls back to RESP2
        if command in (b"GET", b"SET") and len(args) >= 2 and args[1].startswith(KEY_PREFIX):
            try:
                if command == b"GET" and len(args) == 2:
                    self.forwarded += 1
                    return _bulk(await self._redis().get(args[1]))
                if command == b"SET" and len(args) == 3:
                    self.forwarded += 1
                    await self._redis().set(args[1], args[2])
                    return b"+OK\r\n"
            except Exception as exc:  # noqa: BLE001 - Redis away: answered as a miss, a write dropped
                log.debug("L3 relay: redis %s failed: %s", command, exc)
                return _bulk(None) if command == b"GET" else b"+OK\r\n"
        self.refused += 1
        return _error(f"{command.decode(errors='replace')[:20]} is not allowed through the Tezzeret L3 relay")

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as redis

            self._client = redis.Redis.from_url(self._url)
        return self._client


KEY_PREFIX = b"pt2:"
MAX_VALUE_BYTES = 256 * 1024 * 1024
_MAX_ARGS = 8
_MAX_LINE = 64


class RelayProtocolError(Exception):
    pass


async def _read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    """One RESP array of bulk strings (what redis-py sends), or None at end of stream."""
    line = await reader.readline()
    if not line:
        return None
    if not line.startswith(b"*") or not line.endswith(b"\r\n") or len(line) > _MAX_LINE:
        raise RelayProtocolError("expected a RESP array")
    count = int(line[1:-2])
    if not 0 < count <= _MAX_ARGS:
        raise RelayProtocolError(f"{count} arguments")
    args: list[bytes] = []
    for _ in range(count):
        head = await reader.readline()
        if not head.startswith(b"$") or len(head) > _MAX_LINE:
            raise RelayProtocolError("expected a bulk string")
        size = int(head[1:-2])
        if not 0 <= size <= MAX_VALUE_BYTES:
            raise RelayProtocolError(f"a {size}-byte argument")
        data = await reader.readexactly(size + 2)
        args.append(data[:-2])
    return args


def _bulk(value: bytes | None) -> bytes:
    return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)


def _error(text: str) -> bytes:
    return b"-ERR " + text.encode() + b"\r\n"
