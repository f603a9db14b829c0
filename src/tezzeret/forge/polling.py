"""Urza polling (the seed's PollingEngine): an initial full scan, then one every
`polling.refresh_interval_minutes` (0 turns the refresh off).

Owns: finding blueprints in the embedded Urza that nobody has asked us to compile yet (GENERATED,
or SUBMITTED without a live job, e.g. put there by Karn directly or left by a crash between the
store write and the journal) and submitting them at NORMAL priority with the policy's strategy.
A blueprint that already failed `MAX_ATTEMPTS` times is left alone, so a broken blueprint cannot
make polling loop. Must never compile or claim: it only submits, and the submit path dedupes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tezzeret.config import PollingSettings
from tezzeret.forge.errors import ForgeError
from tezzeret.forge.jobs import Admission
from tezzeret.leyline import SCHEMA_VERSION, pb
from tezzeret.store import Store

Submit = Callable[[pb.CompilationRequest, str], Awaitable[Admission]]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2


class UrzaPoller:
    def __init__(self, store: Store, submit: Submit, active_digests: Callable[[], set[str]], settings: PollingSettings) -> None:
        self.store = store
        self.submit = submit
        self.active_digests = active_digests
        self.settings = settings
        self.scans = 0
        self.submitted = 0

    async def scan_once(self) -> int:
        records = await asyncio.to_thread(self.store.unclaimed)
        inflight_digests = self.active_digests()
        count = 0
        for rec in records:
            if rec.digest in inflight_digests or rec.compilation_attempts >= MAX_ATTEMPTS:
                continue
            if await asyncio.to_thread(self.store.list_artifacts, rec.digest):
                continue  # already has an artifact: improving it is idle work, not polling's
            request = pb.CompilationRequest(
                schema_version=SCHEMA_VERSION,
                blueprint=rec.blueprint,
                priority=pb.PRIORITY_NORMAL,
                requested_by=f"urza:{rec.source}",
            )
            try:
                sub = await self.submit(request, "urza")
            except ForgeError as exc:
                log.info("polling: blueprint %s not submitted: %s", rec.digest, exc)
                continue
            if not sub.from_cache and not sub.joined:
                count += 1
        self.scans += 1
        self.submitted += count
        return count

    async def run(self) -> None:
        polling = self.settings
        if polling.initial_full_scan:
            await self._safe_scan()
        interval = polling.refresh_interval_minutes * 60.0
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            await self._safe_scan()

    async def _safe_scan(self) -> None:
        try:
            n = await self.scan_once()
            if n:
                log.info("polling: submitted %d blueprint(s) from Urza", n)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - polling must outlive a bad scan
            log.exception("polling: scan failed; next scan at the next interval")
