"""A non-blocking kernel provider for training loops (Kasmina's side).

Owns: handing a training loop a module for a blueprint at once (eager while no artifact is ready),
adopting an artifact in a background thread when one is offered or fetched, and switching the same
module (same parameters, so the loop's optimizer keeps training them) over to the compiled entries.
A refused or failing artifact leaves the module eager and is recorded (an artifact for another GPU,
compute capability or a newer CUDA is refused by the preflight, with its reason, before any byte of
it is deserialised). Must never block the caller
on a fetch, a verification or a load, and never compile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tezzeret.artifact.target import Host
from tezzeret.leyline import pb
from tezzeret.loader.errors import BlueprintMismatch
from tezzeret.loader.load import KernelModule, PublicKeys, Serve, device_for, open_artifact, prewarm

Fetch = Callable[[str], "Path | None"]


@dataclass(frozen=True)
class ProviderState:
    """What the provider serves for one blueprint, and what happened to the last artifact offered.

    `mode` says what calls run: "compiled" (entries of `artifact_id` attached), "eager", "loading"
    (eager while an artifact is fetched or verified), or "refused" (eager, because the only
    artifact offered was refused). A refused offer never hides compiled entries still served:
    then `mode` stays "compiled" and `refused` says what was turned away and why."""

    digest: str
    mode: str
    artifact_id: str | None = None
    reason: str = ""
    refused: str = ""


def _prewarm() -> None:
    try:
        prewarm()
    except Exception:  # noqa: BLE001 - a failed warm-up only means the first load pays the imports
        pass


class KernelProvider:
    """`get(ir)` returns at once; `offer(digest, path)` or `fetch` switches it to compiled entries."""

    def __init__(
        self,
        fetch: Fetch | None = None,
        *,
        public_key: PublicKeys = None,
        trust_unsigned: bool = False,
        kernel_dir: Path | None = None,
        serve: Serve = "auto",
        retry_s: float = 5.0,
        host: Host | None = None,
    ) -> None:
        self._retry_s = retry_s
        self._last_try: dict[str, float] = {}
        self._serve: Serve = serve
        self._fetch = fetch
        self._public_key = public_key
        self._trust_unsigned = trust_unsigned
        self._kernel_dir = kernel_dir
        # What artifacts' preflight compares with; None: this process as it is at each adoption.
        self._host = host
        self._lock = threading.Lock()
        self._modules: dict[str, KernelModule] = {}
        self._states: dict[str, ProviderState] = {}
        self._futures: dict[str, Future[ProviderState]] = {}
        # One background thread: loads are short, and serialising them keeps one training process
        # from dlopening many libraries at once.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tezzeret-provider")
        # Import the loading machinery now, off the loop's thread, so adopting costs milliseconds.
        self._executor.submit(_prewarm)

    def get(self, blueprint: pb.BlueprintIR | str) -> KernelModule | None:
        """The module for a blueprint (an IR, or a digest seen before); never waits.

        With an IR the module is built eagerly on first call and returned at once. With a bare
        digest that is not known yet, returns None and (when a fetch is configured) fetches its
        artifact in the background; a later `get` returns the module built from that artifact.
        """
        from tezzeret.blueprint import build_module, digest

        if isinstance(blueprint, str):
            key = blueprint
            with self._lock:
                module = self._modules.get(key)
            if module is None or not module.entries:
                self._schedule_fetch(key)
            return module
        key = digest(blueprint)
        with self._lock:
            module = self._modules.get(key)
        if module is not None:
            if not module.entries:
                self._schedule_fetch(key)  # still eager: ask again (at most every retry_s)
            return module
        built = KernelModule(build_module(blueprint), fallback="eager")
        with self._lock:
            module = self._modules.setdefault(key, built)
            self._states.setdefault(key, ProviderState(key, "eager"))
        self._schedule_fetch(key)
        return module

    def offer(self, digest: str, artifact_path: str | Path) -> Future[ProviderState]:
        """Adopt the artifact at `artifact_path` for `digest` in the background."""
        with self._lock:
            self._states[digest] = self._loading(digest)
            future = self._executor.submit(self._adopt, digest, Path(artifact_path))
            self._futures[digest] = future
        return future

    def state(self, digest: str) -> ProviderState:
        with self._lock:
            return self._states.get(digest, ProviderState(digest, "eager"))

    def wait(self, digest: str, timeout: float | None = None) -> ProviderState:
        """Block until the pending adoption for `digest` ends (for tests and examples, not loops)."""
        with self._lock:
            future = self._futures.get(digest)
        if future is not None:
            future.result(timeout=timeout)
        return self.state(digest)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> KernelProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _schedule_fetch(self, digest: str) -> None:
        if self._fetch is None:
            return
        now = time.monotonic()
        with self._lock:
            if digest in self._futures:
                return
            # A loop calls get() every step: ask the store again only every `retry_s` seconds.
            if now - self._last_try.get(digest, -self._retry_s) < self._retry_s:
                return
            self._last_try[digest] = now
            self._states[digest] = self._loading(digest)
            self._futures[digest] = self._executor.submit(self._fetch_and_adopt, digest)

    def _fetch_and_adopt(self, digest: str) -> ProviderState:
        assert self._fetch is not None
        try:
            path = self._fetch(digest)
        except Exception as exc:  # noqa: BLE001 - a failing fetch leaves the module eager
            return self._set(ProviderState(digest, "eager", reason=f"fetch failed: {exc}"))
        if path is None:
            with self._lock:
                # Nothing there yet: forget the attempt so a later get() asks again.
                self._futures.pop(digest, None)
            return self._set(ProviderState(digest, "eager", reason="no artifact available yet"))
        return self._adopt(digest, Path(path))

    def _adopt(self, digest: str, path: Path) -> ProviderState:
        from tezzeret.blueprint import build_module

        try:
            verified = open_artifact(
                path, public_key=self._public_key, trust_unsigned=self._trust_unsigned, host=self._host
            )
            if verified.manifest.blueprint_digest != digest:
                raise BlueprintMismatch(
                    f"artifact {path} is for blueprint {verified.manifest.blueprint_digest[:16]}, "
                    f"not {digest[:16]}"
                )
            with self._lock:
                module = self._modules.get(digest)
            if module is None:
                built = KernelModule(build_module(verified.manifest.blueprint).to(device_for(verified)), fallback="eager")
                with self._lock:
                    module = self._modules.setdefault(digest, built)
            module.attach(verified, kernel_dir=self._kernel_dir, serve=self._serve)
        except Exception as exc:  # noqa: BLE001 - any refusal keeps what the module served before
            code = getattr(exc, "code", type(exc).__name__)
            why = f"{code}: {exc}"
            with self._lock:
                module = self._modules.get(digest)
            if module is not None and module.artifact_id is not None:
                return self._set(ProviderState(digest, "compiled", artifact_id=module.artifact_id, refused=why))
            return self._set(ProviderState(digest, "refused", reason=why, refused=why))
        return self._set(ProviderState(digest, "compiled", artifact_id=verified.manifest.artifact_id))

    def _loading(self, digest: str) -> ProviderState:
        """The state while an artifact is fetched or adopted (caller holds the lock): compiled
        entries already attached keep serving, and the state says so."""
        module = self._modules.get(digest)
        if module is not None and module.artifact_id is not None:
            return ProviderState(digest, "compiled", artifact_id=module.artifact_id, reason="adopting a newer artifact")
        return ProviderState(digest, "loading")

    def _set(self, state: ProviderState) -> ProviderState:
        with self._lock:
            self._states[state.digest] = state
        return state
