"""The L3 relay: compile workers reach the shared Inductor cache on Redis without a network.

Owns: a Unix socket the sandbox binds read-only into every worker (their network namespace has
no route to Redis), speaking just enough of Redis's protocol (RESP) for torch's remote caches
(`torch/_inductor/remote_cache.py` uses GET and SET through redis-py, which also sends PING and
CLIENT SETINFO on connect), and forwarding those to the real server with the forge's own client.
Only keys under `pt2:` (torch's prefix) are reachable and values are capped: a worker can neither
read nor touch the bus's streams, nor flush the server, nor fill it with one write. Everything
else is refused with an error reply.

Why our own and not a TCP proxy: a byte-for-byte proxy would hand the worker every Redis command.
Why not give workers the network: their network namespace is part of the sandbox. Must never
forward a command it does not understand, and never hold a worker's connection once it misbehaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

KEY_PREFIX = b"pt2:"
MAX_VALUE_BYTES = 256 * 1024 * 1024
MAX_ARGS = 8
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
    if not 0 < count <= MAX_ARGS:
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


class L3Relay:
    """Serve `socket_path` for workers, forwarding torch's cache traffic to `redis_url`."""

    def __init__(self, redis_url: str, socket_path: Path) -> None:
        self.redis_url = redis_url
        self.socket_path = Path(socket_path)
        self.forwarded = 0
        self.refused = 0
        self._server: asyncio.AbstractServer | None = None
        self._client = None

    @property
    def url(self) -> str:
        """What workers put in `TORCHINDUCTOR_REDIS_URL`."""
        return f"unix://{self.socket_path}"

    async def start(self) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(self.redis_url)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_path.parent, 0o755)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        # Workers may run as another uid (the sandbox drops root): anyone who can reach the path may
        # connect; only the sandbox's bind makes it reachable.
        os.chmod(self.socket_path, 0o777)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (args := await _read_command(reader)) is not None:
                writer.write(await self._answer(args))
                await writer.drain()
        except (RelayProtocolError, ValueError, asyncio.IncompleteReadError) as exc:
            self.refused += 1
            log.warning("L3 relay: dropping a worker connection: %s", exc)
            with contextlib.suppress(ConnectionError):
                writer.write(_error(f"protocol error: {exc}"))
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, args: list[bytes]) -> bytes:
        assert self._client is not None
        command = args[0].upper()
        if command == b"PING":
            return b"+PONG\r\n"
        if command == b"CLIENT":
            return b"+OK\r\n"  # SETINFO: library name and version, nothing to forward
        if command in (b"GET", b"SET") and len(args) >= 2 and args[1].startswith(KEY_PREFIX):
            try:
                if command == b"GET" and len(args) == 2:
                    self.forwarded += 1
                    return _bulk(await self._client.get(args[1]))
                if command == b"SET" and len(args) == 3:
                    self.forwarded += 1
                    await self._client.set(args[1], args[2])
                    return b"+OK\r\n"
            except Exception as exc:  # noqa: BLE001 - Redis away: answered as a miss / a dropped write
                log.debug("L3 relay: redis %s failed: %s", command, exc)
                return _bulk(None) if command == b"GET" else b"+OK\r\n"
        self.refused += 1
        return _error(f"{command.decode(errors='replace')[:20]} is not allowed through the Tezzeret L3 relay")
