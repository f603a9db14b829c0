"""A consumer process that takes one message and hangs before ACK, so a test can SIGKILL it.

Usage: python bus_crash_consumer.py <redis_url> <state_dir> <marker_file>
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bus_helpers import bus_settings

from tezzeret.bus import Delivery, RedisStreamsBus, topics


async def main(url: str, state_dir: str, marker: str) -> None:
    bus = RedisStreamsBus(bus_settings(Path(state_dir), url))

    async def take_and_hang(d: Delivery) -> None:
        # Written then renamed, so the test never reads a half-written marker.
        tmp = Path(marker + ".tmp")
        tmp.write_text(f"{d.message_id} {d.delivery_count}")
        tmp.rename(marker)
        await asyncio.Event().wait()  # never ACKs

    bus.subscribe(topics.COMPILATION_REQUEST, take_and_hang, group="forge", consumer="doomed")
    await bus.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
