"""Running the forge as a process: the HTTP server, signals, grace period, clean exit.

Owns: `serve(settings)`, which starts the `Forge`, serves the API with uvicorn, and on SIGTERM or
SIGINT stops intake, stops the server, gives running jobs `sandbox.grace_period_s` to finish and
leaves the rest to WAL recovery, then exits 0. A second signal cuts the grace short. Must never
exit while a store or WAL write is half done (those run to completion inside `Forge.close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any, Iterator

import uvicorn

from tezzeret.config import Settings
from tezzeret.forge.service import Forge

log = logging.getLogger(__name__)


class ForgeServer(uvicorn.Server):
    """uvicorn, but our signal handling: uvicorn's re-raises the signal after serving, which would
    kill the process before the forge closes its WAL and store."""

    def __init__(self, config: uvicorn.Config, forge: Forge) -> None:
        super().__init__(config)
        self.forge = forge
        self.signals: list[int] = []
        self.second_signal = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            # Handlers stay installed through the grace period so a second signal can cut it short.
            pass

    def _on_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if len(self.signals) == 1:
            log.warning("%s: stopping intake, then the server; running jobs get the grace period", signal.Signals(sig).name)
            self.forge.drain()
            self.should_exit = True
        else:
            self.force_exit = True
            self.second_signal.set()


async def serve_async(settings: Settings, *, ready: Any = None) -> int:
    from tezzeret.api.app import create_app
    from tezzeret.api.server import close_app, uvicorn_config

    forge = Forge(settings)
    await forge.start()
    app = create_app(forge, settings)
    server = ForgeServer(uvicorn_config(app, settings), forge)
    try:
        await server.serve()
    finally:
        close_app(app)
        grace = settings.sandbox.grace_period_s
        close = asyncio.create_task(forge.close(grace))
        cut = asyncio.create_task(server.second_signal.wait())
        done, _ = await asyncio.wait({close, cut}, return_when=asyncio.FIRST_COMPLETED)
        if cut in done and not close.done():
            log.warning("second signal: cutting the grace period short; unfinished jobs go to WAL recovery")
            await forge.pipeline.close(0.0)
            await close
        cut.cancel()
        left = close.result() if close.done() and not close.cancelled() else []
        if left:
            log.warning("left to WAL recovery: %s", ", ".join(left))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def serve(settings: Settings) -> int:
    return asyncio.run(serve_async(settings))
