"""The L3 relay: sandbox workers reach the shared Inductor cache on Redis without a network.

Owns: for one worker, a Unix socket in a directory only that worker may write, and a byte pipe
from each connection on it to the Redis that `tezzeret.cache.l3_redis_url` names, plus the
`TORCHINDUCTOR_REDIS_URL` that points the worker's Inductor at that socket. Workers keep their
empty network namespace (bubblewrap's `--unshare-net`): the relay is their only way out, and it
leads to one address. It must never parse, filter or change what passes through (a Redis ACL user
limited to the cache's keys is what limits a worker), never listen on TCP, and never hand a worker
credentials other than the ones in the L3 URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


def relayable(url: str) -> bool:
    """Whether the relay can carry this URL (plain `redis://`; TLS and sockets cannot be relayed)."""
    return urlsplit(url).scheme == "redis"


class L3Relay:
    """One worker's relay: `start()` before the worker spawns, `close()` after it is gone."""

    def __init__(self, redis_url: str, *, owner_uid: int | None) -> None:
        parts = urlsplit(redis_url)
        if parts.scheme != "redis":
            raise ValueError(f"the L3 relay carries redis:// URLs only, not {parts.scheme}://")
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 6379
        self._user = parts.username or ""
        self._password = parts.password or ""
        self._db = (parts.path or "/0").lstrip("/") or "0"
        self._owner_uid = owner_uid
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
        """`TORCHINDUCTOR_REDIS_URL` for the worker (redis-py's `unix://` form, credentials kept)."""
        auth = ""
        if self._user or self._password:
            auth = f"{quote(self._user, safe='')}:{quote(self._password, safe='')}@"
        return f"unix://{auth}{self.socket_path}?db={self._db}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._pipes.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(self._host, self._port), 10)
            except (OSError, asyncio.TimeoutError) as exc:
                # Inductor treats a refused connection as "no remote cache" and compiles on.
                log.warning("L3 relay: Redis at %s:%d unreachable: %s", self._host, self._port, exc)
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()
