"""`RayExecutor`: compile jobs on the nodes of a Ray cluster, each placed by the artifact's target.

Owns, on the forge's side: the connection to the cluster (`ray.address`), one detached compile
actor (`ray_node.CompileNode`, a node-local bubblewrap pool) per node that offers
`ray.actor_resources` (`ray.actors_per_node` of them), the choice of a node for each job from its
`target` (`ray.targets`: target -> the Ray resources a node must offer), writing the bytes a node
sends back into `job.output_dir` here, and each node's life: warming, ready, drained after
repeated failures, lost. A node or actor lost mid-job ends that job as OUTCOME_NODE_LOST; the
forge's journal resubmits it, and the lost actor takes no job until it answers `ready` again.

Detached, named actors (`compile-<node>-<i>` in `ray.namespace`) outlive a crashed forge, so a
restarted one adopts them warm; `close()` kills them. A job a dead forge left running there
finishes unobserved and only holds its slot until then.

Must never send the signing key, the WAL, the store or the bus anywhere (actors get
`ray_node.node_settings`, each job its own bytes), never block the event loop on Ray (node-table
reads and actor creation run in a thread), and never raise for a job that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tezzeret import metrics
from tezzeret.config import Settings
from tezzeret.leyline import codec, pb
from tezzeret.sandbox import limits, outcome, results
from tezzeret.sandbox.errors import BackendUnavailable, ExecutorNotRunning
from tezzeret.sandbox.pool import _JOB_ID, DEFAULT_TASKS, OnResult
from tezzeret.sandbox.ray_node import CompileNode, Reply, config_digest, node_settings, toolchain
from tezzeret.sandbox.status import SandboxStatus

log = logging.getLogger(__name__)

# A node that has not answered within this many times a job's own limit (plus a minute) is
# treated as lost: the pool inside enforces the limit, so only a silent node gets here. Generous,
# because the pool counts a CPU-capped second as a fraction of one.
_DEADLINE_FACTOR = 10
_DEADLINE_SLACK_S = 60.0
# Ray's resource keys that `.options()` takes as keywords rather than in `resources`.
_KEYWORD_RESOURCES = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory"}


@dataclass
class _Actor:
    name: str
    handle: Any
    # incompatible: its Python/torch/Tezzeret differ from the forge's; it is left alone.
    state: Literal["warming", "ready", "failed", "incompatible", "lost"] = "warming"
    slots: int = 0
    emergency_slot: bool = False
    busy: int = 0
    emergency_busy: bool = False
    # Jobs running in the actor's pool that this forge did not send (a previous forge's).
    orphans: int = 0
    pool: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    pid: int = 0
    warming: asyncio.Task[None] | None = None

    def free(self, emergency: bool) -> bool:
        if self.state != "ready":
            return False
        if emergency and self.emergency_slot:
            return not self.emergency_busy
        return self.busy + self.orphans < self.slots


@dataclass
class _Node:
    node_id: str
    address: str
    resources: dict[str, float]
    targets: list[str]
    actors: list[_Actor] = field(default_factory=list)
    alive: bool = True
    failures: int = 0
    drained_until: float = 0.0
    note: str = ""
    jobs_run: int = 0
    lost_at: float = 0.0

    @property
    def short(self) -> str:
        return self.node_id[:12]

    def offers(self, need: Mapping[str, float]) -> bool:
        return all(self.resources.get(key, 0.0) >= amount for key, amount in need.items())

    def state(self, now: float) -> str:
        if not self.alive:
            return "lost"
        if self.drained_until > now:
            return "drained"
        states = {a.state for a in self.actors}
        if "ready" in states:
            return "ready"
        if states and states <= {"failed", "incompatible"}:
            return "incompatible" if "incompatible" in states else "failed"
        return "warming"

    def in_flight(self) -> int:
        return sum(a.busy + int(a.emergency_busy) for a in self.actors)

    def view(self, now: float) -> dict[str, object]:
        return {
            "node_id": self.node_id,
            "address": self.address,
            "targets": list(self.targets),
            "state": self.state(now),
            "actors": [{"name": a.name, "state": a.state, "pid": a.pid, "note": a.note} for a in self.actors],
            "warm_workers": sum(int(a.pool.get("workers_alive", 0)) for a in self.actors if a.state == "ready"),
            "slots": sum(a.slots for a in self.actors if a.state == "ready"),
            "in_flight": self.in_flight(),
            # Jobs a previous forge left running there: they hold slots until they end.
            "orphaned": sum(a.orphans for a in self.actors),
            "jobs_run": self.jobs_run,
            "failures": self.failures,
            "drained_for_s": round(max(0.0, self.drained_until - now), 1),
            "note": self.note,
            # The node pool's CPU cap (its first actor's): on, and what the others use there.
            "throttle": next((a.pool.get("throttle", {}) for a in self.actors if a.state == "ready"), {}),
        }


@dataclass
class _Wait:
    target: str
    since: float
    reason: str = ""
    # When the job last saw no node at all that offers its target (None: some node does).
    unplaced_since: float | None = None


class RayExecutor:
    """The executor protocol (`executor.Executor`) over a Ray cluster; see the module docstring.

    Same constructor as `SandboxExecutor`: `tasks`, `extra_sys_path` and `warm` are handed to
    every node's pool (task modules and paths must exist on the nodes).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tasks: Mapping[str, str] | None = None,
        on_result: OnResult | None = None,
        extra_sys_path: Sequence[Path] = (),
        warm: Literal["inductor", "torch", "none"] = "inductor",
    ) -> None:
        try:
            import ray  # noqa: F401  (fail here, with advice, not at the first job)
        except ImportError:
            raise BackendUnavailable(
                "sandbox.backend is 'ray' but Ray is not installed here: pip install 'tezzeret[ray]'"
            ) from None
        self.settings = settings
        self.cfg = settings.ray
        self.tasks = dict(DEFAULT_TASKS if tasks is None else tasks)
        self.on_result = on_result
        self.extra_sys_path = [str(Path(p).resolve()) for p in extra_sys_path]
        self.warm = warm
        self._node_config = node_settings(settings)
        self._digest = config_digest(self._node_config, self.tasks, self.extra_sys_path, warm)
        self._toolchain = toolchain()
        self._root = settings.state_dir / "sandbox" / "results"
        self._nodes: dict[str, _Node] = {}
        self._waiting: dict[str, _Wait] = {}
        self._changed = asyncio.Event()
        self._running = False
        self._owns_ray = False
        self._watcher: asyncio.Task[None] | None = None
        self._jobs_run = 0
        self._in_flight = 0
        self._last_error: str | None = None

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect, start (or adopt) an actor on every compile node, wait for them to warm."""
        import ray

        if not ray.is_initialized():
            try:
                await asyncio.to_thread(
                    ray.init, address=self.cfg.address, namespace=self.cfg.namespace,
                    log_to_driver=False, logging_level=logging.WARNING,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BackendUnavailable(f"cannot connect to the Ray cluster at ray.address={self.cfg.address!r}: {exc}") from None
            self._owns_ray = True
        self._root.mkdir(parents=True, exist_ok=True)
        self._running = True
        await self._refresh()
        warming = [a.warming for n in self._nodes.values() for a in n.actors if a.warming is not None]
        if not self._nodes:
            log.warning("the Ray cluster has no node offering ray.actor_resources=%s: jobs wait until one joins",
                        self.cfg.actor_resources)
        if warming:
            await asyncio.wait(warming, timeout=self.cfg.start_timeout_s)
        self._watcher = asyncio.create_task(self._watch(), name="ray-executor-watch")

    async def close(self, grace_s: float | None = None) -> None:
        """Stop taking jobs, give running ones `grace_s`, then kill every actor (and its pool);
        returns once every `run` has returned (those cut short end as SANDBOX_SHUTDOWN)."""
        import ray

        grace = self.settings.sandbox.grace_period_s if grace_s is None else grace_s
        self._running = False
        self._notify()
        deadline = time.monotonic() + grace
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        actors = [a for n in self._nodes.values() for a in n.actors]
        for actor in actors:
            if actor.warming is not None:
                actor.warming.cancel()
        await asyncio.to_thread(_kill_actors, ray, [a.handle for a in actors])
        # Every `run` still waiting hears from Ray that its actor is gone and ends as a shutdown;
        # close returns after them, so no caller is left waiting on a closed executor.
        deadline = time.monotonic() + 30
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._owns_ray:
            await asyncio.to_thread(ray.shutdown)
            self._owns_ray = False

    async def __aenter__(self) -> RayExecutor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(0)

    # ----------------------------------------------------------------------------- status

    def status(self) -> SandboxStatus:
        now = time.monotonic()
        ready = [a for n in self._nodes.values() if n.alive for a in n.actors if a.state == "ready" and a.pool]
        levels = sorted({str(a.pool.get("isolation_level")) for a in ready})
        nodes = [n.view(now) for n in self._nodes.values()]
        ready_nodes = sum(1 for v in nodes if v["state"] == "ready")
        return SandboxStatus(
            isolation_level=levels[0] if len(levels) == 1 else ("mixed: " + ", ".join(levels) if levels else "none"),
            isolation_note=f"{ready_nodes} of {len(nodes)} compile nodes ready"
            + "".join(f"; {a.pool['isolation_note']}" for a in ready[:1] if a.pool.get("isolation_note")),
            skipped_levels=[],
            net_isolated=bool(ready) and all(a.pool.get("net_isolated") for a in ready),
            fs_readonly=bool(ready) and all(a.pool.get("fs_readonly") for a in ready),
            nproc_enforced=bool(ready) and all(a.pool.get("nproc_enforced") for a in ready),
            worker_uid=None,
            workers_alive=sum(int(a.pool.get("workers_alive", 0)) for a in ready),
            workers_busy=self._in_flight,
            slots=sum(a.slots + int(a.emergency_slot) for a in ready),
            emergency_slot=any(a.emergency_slot for a in ready),
            jobs_run=self._jobs_run,
            recycled=sum(int(a.pool.get("recycled", 0)) for a in ready),
            last_spawn_error=self._last_error,
            throttle={"off": "each node's pool runs its own CPU cap; see nodes"},
            backend="ray",
            nodes=nodes,
            waiting=[
                {"job_id": job_id, "target": w.target, "waited_s": round(now - w.since, 1), "reason": w.reason}
                for job_id, w in self._waiting.items()
            ],
        )

    def waiting_reason(self, job_id: str) -> str | None:
        """Why `job_id` has not started yet (no node offers its target, all busy...), or None
        when it is not waiting for a node (running, ended or unknown)."""
        wait = self._waiting.get(job_id)
        return wait.reason if wait is not None else None

    # ----------------------------------------------------------------------------- running jobs

    async def run(self, job: pb.WorkerJob, *, emergency: bool = False) -> pb.WorkerResult:
        """Run one job on a node offering its target; never raises for a job failure."""
        if not self._running:
            raise ExecutorNotRunning("the Ray executor is not running: call `await executor.start()` first")
        if not _JOB_ID.match(job.job_id or ""):
            return self._report(job, outcome.result_for(
                job.job_id, pb.OUTCOME_REJECTED,
                f"job id {job.job_id!r} is not 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit",
                [], error_code="SANDBOX_BAD_JOB_ID",
            ))
        self._in_flight += 1
        metrics.CONCURRENT_COMPILATIONS.inc()
        try:
            placed = await self._place(job, emergency)
            if isinstance(placed, pb.WorkerResult):
                return self._report(job, placed)
            node, actor = placed
            try:
                result = await self._run_on(node, actor, job, emergency)
            finally:
                if emergency and actor.emergency_slot:
                    actor.emergency_busy = False
                else:
                    actor.busy -= 1
                self._notify()
            self._jobs_run += 1
            return self._report(job, result)
        finally:
            self._in_flight -= 1
            metrics.CONCURRENT_COMPILATIONS.dec()

    def _report(self, job: pb.WorkerJob, result: pb.WorkerResult) -> pb.WorkerResult:
        if self.on_result is not None:
            try:
                self.on_result(job, result)
            except Exception:  # a broken callback must not lose the result
                log.exception("on_result callback failed for job %s", job.job_id)
        return result

    async def _place(self, job: pb.WorkerJob, emergency: bool) -> tuple[_Node, _Actor] | pb.WorkerResult:
        """Wait for a free actor on a node offering the job's target; claim its slot."""
        loop = asyncio.get_running_loop()
        wait = _Wait(job.target, since=loop.time())
        try:
            while True:
                if not self._running:
                    return _shutdown_result(job.job_id)
                picked, reason, offered = self._pick(job.target, emergency)
                if picked is not None:
                    node, actor = picked
                    if emergency and actor.emergency_slot:
                        actor.emergency_busy = True
                    else:
                        actor.busy += 1
                    return node, actor
                now = loop.time()
                wait.reason = reason
                self._waiting[job.job_id] = wait
                if offered:
                    wait.unplaced_since = None
                elif wait.unplaced_since is None:
                    wait.unplaced_since = now
                elif now - wait.unplaced_since >= self.cfg.unplaceable_timeout_s:
                    return outcome.result_for(
                        job.job_id, pb.OUTCOME_INTERNAL_ERROR,
                        f"waited {now - wait.since:.0f} s for a compile node: {reason}",
                        [("target", job.target), ("phase", "placement")], error_code="SANDBOX_NO_NODE_FOR_TARGET",
                    )
                changed = self._changed
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.cfg.poll_interval_s)
        finally:
            self._waiting.pop(job.job_id, None)

    def _need(self, target: str) -> dict[str, float] | None:
        if not target:
            return {}
        return self.cfg.targets.get(target)

    def _pick(self, target: str, emergency: bool) -> tuple[tuple[_Node, _Actor] | None, str, bool]:
        """(node and actor, or None; why none; whether some live node offers the target at all)."""
        need = self._need(target)
        if need is None:
            return None, (
                f"target {target!r} has no entry in ray.targets (known: {sorted(self.cfg.targets) or 'none'}); "
                "add the Ray resources a node must offer for it"
            ), False
        label = f"target {target!r}" if target else "any target"
        now = time.monotonic()
        offering = [n for n in self._nodes.values() if n.alive and n.offers(need)]
        if not offering:
            live = ", ".join(f"{n.short} {n.targets}" for n in self._nodes.values() if n.alive) or "none"
            return None, f"no node offers {label} (needs {need}); compile nodes and their targets: {live}", False
        usable = [n for n in offering if n.drained_until <= now]
        if not usable:
            why = "; ".join(f"{n.short}: {n.note}" for n in offering)
            # Drained nodes come back after `ray.drain_s`: the job waits for them without limit.
            return None, f"every node offering {label} is drained after repeated failures ({why})", True
        ready = [(n, a) for n in usable for a in n.actors if a.state == "ready"]
        if not ready:
            lost = "; ".join(f"{n.short}: {n.note}" for n in usable if n.failures)
            why = f" (lost mid-job, waiting for Ray to restart the actor or declare the node dead: {lost})" if lost else ""
            return None, f"{len(usable)} node(s) offering {label} are warming up{why}", True
        free = [(n, a) for n, a in ready if a.free(emergency)]
        if not free:
            lane = "emergency slots" if emergency else "slots"
            return None, f"all {len(ready)} compile actor(s) for {label} have their {lane} busy", True
        return min(free, key=lambda na: (na[1].busy + na[1].orphans) / max(1, na[1].slots)), "", True

    async def _run_on(self, node: _Node, actor: _Actor, job: pb.WorkerJob, emergency: bool) -> pb.WorkerResult:
        import ray

        node_detail = [("node_id", node.node_id), ("node_address", node.address), ("actor", actor.name)]
        timeout_s = limits.limits_for(job, self.settings).timeout_s * _DEADLINE_FACTOR + _DEADLINE_SLACK_S
        ref = actor.handle.run.remote(codec.encode(job), emergency)
        try:
            reply: Reply = await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout_s)
        except ray.exceptions.RayTaskError as exc:
            # The actor's own code raised (not the job: the pool turns job failures into results).
            self._node_failed(node, f"actor error: {type(exc.cause).__name__}: {exc.cause}")
            return outcome.result_for(job.job_id, pb.OUTCOME_INTERNAL_ERROR, f"compile node {node.short} failed: {exc.cause}",
                                      node_detail, error_code="SANDBOX_NODE_ERROR")
        except (ray.exceptions.RayError, asyncio.TimeoutError) as exc:
            if not self._running:
                return _shutdown_result(job.job_id)
            why = f"{type(exc).__name__}" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {str(exc)[:300]}"
            self._actor_lost(node, actor, why)
            return outcome.result_for(
                job.job_id, pb.OUTCOME_NODE_LOST,
                f"compile node {node.short} ({node.address}) was lost mid-job ({why.split(':')[0]}); resubmit the job",
                [*node_detail, ("ray_error", why)], error_code="SANDBOX_NODE_LOST",
            )
        try:
            result = self._accept(job, reply)
        except results.ResultInvalid as exc:
            self._node_failed(node, f"bad reply: {exc.reason}")
            return outcome.result_for(job.job_id, pb.OUTCOME_INTERNAL_ERROR, f"compile node {node.short} sent an unusable reply: {exc.reason}",
                                      node_detail, error_code="SANDBOX_NODE_ERROR")
        for key, value in node_detail:
            result.details.add(key=key, value=value)
        node.jobs_run += 1
        if result.error_code == "SANDBOX_WORKER_START_FAILED":
            self._node_failed(node, result.error[:300])
        else:
            node.failures = 0
        return result

    def _accept(self, job: pb.WorkerJob, reply: Reply) -> pb.WorkerResult:
        """The node's result with its files written under `job.output_dir` on this host."""
        try:
            result = codec.decode(pb.WorkerResult, bytes(reply["result"]))
        except (KeyError, TypeError, codec.ContractError) as exc:
            raise results.ResultInvalid(f"no valid leyline.WorkerResult in the reply ({exc})") from None
        if result.job_id != job.job_id:
            raise results.ResultInvalid(f"the reply is for job {result.job_id!r}, not {job.job_id!r}")
        result.artifact_path = ""
        if result.outcome != pb.OUTCOME_SUCCESS:
            return result
        dest = Path(job.output_dir) if job.output_dir else self._root / job.job_id
        files: dict[str, bytes] = reply.get("files") or {}
        artifact = str(reply.get("artifact") or "")
        if artifact and artifact not in files:
            raise results.ResultInvalid(f"artifact {artifact!r} is not among the files sent back")
        dest.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            target = dest.joinpath(*results.relative_parts(str(dest / rel), dest))
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        if artifact:
            result.artifact_path = str(dest / artifact)
        return result

    # ----------------------------------------------------------------------------- node life

    def _notify(self) -> None:
        """Wake every job waiting for a node (something changed: a slot, a node, an actor)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _node_failed(self, node: _Node, why: str) -> None:
        node.failures += 1
        node.note = why
        self._last_error = f"node {node.short}: {why}"
        if node.failures >= self.cfg.drain_after_failures and node.drained_until <= time.monotonic():
            node.drained_until = time.monotonic() + self.cfg.drain_s
            log.warning("compile node %s (%s) drained for %.0f s after %d failures in a row; last: %s",
                        node.short, node.address, self.cfg.drain_s, node.failures, why)

    def _actor_lost(self, node: _Node, actor: _Actor, why: str) -> None:
        """A job's actor died or went silent: no job goes there until it answers `ready` again."""
        log.warning("compile actor %s on node %s lost mid-job: %s", actor.name, node.short, why)
        self._node_failed(node, f"actor lost: {why}")
        if actor.state == "ready":
            actor.state = "warming"
            actor.warming = asyncio.create_task(self._warm(node, actor))

    async def _warm(self, node: _Node, actor: _Actor) -> None:
        """Wait for the actor's pool to be warm; adopt it, or replace it if it was built otherwise."""
        import ray

        try:
            try:
                info = await asyncio.wait_for(asyncio.wrap_future(actor.handle.ready.remote().future()), self.cfg.start_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever it was, the actor is unusable
                if node.alive:
                    actor.state = "failed"
                    actor.note = f"{type(exc).__name__}: {str(exc)[:300]}"
                    self._node_failed(node, f"actor {actor.name} did not warm up: {actor.note}")
                return
            if info.get("digest") != self._digest:
                log.info("compile actor %s runs another configuration; replacing it", actor.name)
                await asyncio.to_thread(_kill_actors, ray, [actor.handle])
                actor.state = "failed"
                actor.note = "replaced: built with another configuration"
            elif info.get("toolchain") != self._toolchain:
                actor.state = "incompatible"
                actor.note = node.note = f"toolchain {info.get('toolchain')} differs from the forge's {self._toolchain}"
                log.error("compile node %s: %s; it gets no jobs", node.short, actor.note)
            else:
                actor.slots = int(info.get("slots", 1))
                actor.emergency_slot = bool(info.get("emergency_slot"))
                actor.pool = dict(info.get("pool") or {})
                actor.pid = int(info.get("pid", 0))
                actor.note = ""
                actor.state = "ready"
        finally:
            actor.warming = None
            self._notify()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.poll_interval_s)
            try:
                await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed poll must not stop watching
                log.warning("reading the Ray cluster's state failed", exc_info=True)

    async def _refresh(self) -> None:
        """Read the node table: start actors on new compile nodes, mark vanished ones lost,
        replace failed actors, and read every ready actor's pool status."""
        import ray

        if not (self._running and ray.is_initialized()):
            return  # a Ray call without a connection would start a local cluster of its own
        table = await asyncio.to_thread(ray.nodes)
        now = time.monotonic()
        alive = {info["NodeID"]: info for info in table if info.get("Alive")}
        for node in self._nodes.values():
            if node.alive and node.node_id not in alive:
                node.alive, node.lost_at, node.note = False, now, "the cluster lost this node"
                for actor in node.actors:
                    actor.state = "lost"
                log.warning("compile node %s (%s) is gone from the cluster", node.short, node.address)
        for node_id, info in alive.items():
            resources = {k: float(v) for k, v in (info.get("Resources") or {}).items()}
            if not all(resources.get(k, 0.0) >= v for k, v in self.cfg.actor_resources.items()):
                continue
            if node_id not in self._nodes:
                targets = sorted(t for t, need in self.cfg.targets.items() if all(resources.get(k, 0.0) >= v for k, v in need.items()))
                joined = self._nodes[node_id] = _Node(node_id, str(info.get("NodeManagerAddress", "")), resources, targets)
                log.info("compile node %s (%s) joined: targets %s", joined.short, joined.address, targets)
            node = self._nodes[node_id]
            for index in range(self.cfg.actors_per_node):
                if index >= len(node.actors):
                    node.actors.append(await self._create(node, index))
                elif node.actors[index].state == "failed" and node.drained_until <= now and node.actors[index].warming is None:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(_kill_actors, ray, [node.actors[index].handle])
                    node.actors[index] = await self._create(node, index)
        for node_id in [n.node_id for n in self._nodes.values() if not n.alive and now - n.lost_at > max(60.0, self.cfg.drain_s)]:
            del self._nodes[node_id]
        await self._poll_pools()
        self._export_metrics(now)
        self._notify()

    async def _create(self, node: _Node, index: int) -> _Actor:
        """Start (or adopt, if a previous forge left it) the compile actor `index` of `node`."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        name = f"compile-{node.node_id[:16]}-{index}"
        options: dict[str, Any] = {"resources": {}}
        for key, amount in self.cfg.actor_resources.items():
            if key in _KEYWORD_RESOURCES:
                options[_KEYWORD_RESOURCES[key]] = amount
            else:
                options["resources"][key] = amount
        options.setdefault("num_cpus", 0)
        state_dir = str(self.cfg.node_state_dir / name)
        cores = int(node.resources.get("CPU", 0)) or None

        def create() -> Any:
            remote = ray.remote(CompileNode).options(
                name=name, namespace=self.cfg.namespace, lifetime="detached", get_if_exists=True,
                max_restarts=self.cfg.max_restarts, max_task_retries=0, max_concurrency=32,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False), **options,
            )
            return remote.remote(self._node_config, state_dir, self.tasks, self.extra_sys_path, self.warm, cores)

        actor = _Actor(name, await asyncio.to_thread(create))
        actor.warming = asyncio.create_task(self._warm(node, actor))
        return actor

    async def _poll_pools(self) -> None:
        ready = [a for n in self._nodes.values() if n.alive for a in n.actors if a.state == "ready"]
        if not ready:
            return
        refs = [asyncio.wrap_future(a.handle.status.remote().future()) for a in ready]
        answers = await asyncio.gather(*(asyncio.wait_for(r, 10) for r in refs), return_exceptions=True)
        for actor, answer in zip(ready, answers):
            if isinstance(answer, dict):
                actor.pool = answer
                busy = int(answer.get("workers_busy", 0))
                actor.orphans = max(0, busy - actor.busy - int(actor.emergency_busy))

    def _export_metrics(self, now: float) -> None:
        counts: dict[str, int] = {"ready": 0, "warming": 0, "drained": 0, "lost": 0, "failed": 0, "incompatible": 0}
        for node in self._nodes.values():
            counts[node.state(now)] = counts.get(node.state(now), 0) + 1
            metrics.NODE_JOBS_IN_FLIGHT.labels(node=node.short).set(node.in_flight())
            metrics.NODE_WARM_WORKERS.labels(node=node.short).set(
                sum(int(a.pool.get("workers_alive", 0)) for a in node.actors if a.state == "ready"))
        for state, count in counts.items():
            metrics.COMPILE_NODES.labels(state=state).set(count)


def _shutdown_result(job_id: str) -> pb.WorkerResult:
    return outcome.result_for(job_id, pb.OUTCOME_INTERNAL_ERROR,
                              "the Ray executor was closed before the job ended; resubmit it",
                              [("phase", "shutdown")], error_code="SANDBOX_SHUTDOWN")


def _kill_actors(ray: Any, handles: list[Any]) -> None:
    """Close each actor's pool (its workers die with it anyway), then kill it for good."""
    closing = []
    for handle in handles:
        with contextlib.suppress(Exception):
            closing.append(handle.close.remote())
    with contextlib.suppress(Exception):
        ray.wait(closing, num_returns=len(closing), timeout=15)
    for handle in handles:
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
