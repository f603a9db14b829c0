"""CPU bandwidth for the compile workers while something else keeps the host busy (training).

Owns: one cgroup holding the general compile workers (v1 `cpu` + `cpuacct`, or v2 where the `cpu`
controller is delegated), and the control loop that caps it at `sandbox.contended_cpu_quota` cores
while processes outside it keep at least `Settings.contention_threshold()` cores busy, and lifts
the cap when they stop. Must never move a process it did not start, nor throttle the emergency
worker.

Why a cap and not just priority: on the 2-core development machine any work on the second core
slowed a one-thread training loop's step p50 by 13-39% (a Python spin loop) and 31-33% (a
memory-bound loop), with the worker under SCHED_IDLE and on the other core
(`bench/core_interference.py`).
Priority decides who runs on a core, not what sharing the chip costs; only limiting how long
workers run does. A quarter of a core in 100 ms periods leaves most training steps untouched, so
the p50 barely moves (`bench/disruption.py`: x0.97-1.03 with the library compiling); the steps
that do meet a burst show in the p99.

The kernel's CFS bandwidth control does the capping; writing it ourselves (stopping and continuing
workers) would race with the pool's own signals. Where no cgroup can be made (not root, cgroup
file system read-only), the pool runs without a cap and says so in health and at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class WorkerCgroup:
    """The cgroup directories of one pool: `quota_dir` takes the cap, `usage_dir` counts CPU."""

    version: int
    quota_dir: Path
    usage_dir: Path
    period_us: int

    @classmethod
    def create(cls, name: str, period_us: int) -> tuple[WorkerCgroup | None, str]:
        """Make the group; returns (group, "") or (None, why not)."""
        why: list[str] = []
        v1_cpu, v1_acct = _CGROUP_ROOT / "cpu", _CGROUP_ROOT / "cpuacct"
        if (v1_cpu / "cpu.cfs_quota_us").exists() and (v1_acct / "cpuacct.usage").exists():
            try:
                quota_dir, usage_dir = v1_cpu / name, v1_acct / name
                quota_dir.mkdir(exist_ok=True)
                usage_dir.mkdir(exist_ok=True)
                (quota_dir / "cpu.cfs_period_us").write_text(str(period_us))
                return cls(1, quota_dir, usage_dir, period_us), ""
            except OSError as exc:
                why.append(f"cgroup v1 cpu: {exc.strerror or exc}")
        v2 = _CGROUP_ROOT
        if (v2 / "cgroup.subtree_control").exists() and "cpu" in (v2 / "cgroup.subtree_control").read_text().split():
            try:
                group = v2 / name
                group.mkdir(exist_ok=True)
                (group / "cpu.max").write_text(f"max {period_us}")
                return cls(2, group, group, period_us), ""
            except OSError as exc:
                why.append(f"cgroup v2 cpu: {exc.strerror or exc}")
        if not why:
            why.append("no writable cgroup cpu controller")
        return None, "; ".join(why)

    def procs_files(self) -> list[Path]:
        """Where a child writes "0" to join (both hierarchies under v1)."""
        if self.version == 1:
            return [self.quota_dir / "cgroup.procs", self.usage_dir / "cgroup.procs"]
        return [self.quota_dir / "cgroup.procs"]

    def usage_s(self) -> float:
        """CPU seconds used by everything ever in the group (exited children included)."""
        if self.version == 1:
            return int((self.usage_dir / "cpuacct.usage").read_text()) / 1e9
        for line in (self.usage_dir / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return 0.0

    def set_quota(self, cores: float | None) -> None:
        """Cap the group at `cores` (None: no cap)."""
        quota = -1 if cores is None else max(1000, int(cores * self.period_us))
        if self.version == 1:
            (self.quota_dir / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (self.quota_dir / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {self.period_us}")

    def remove(self) -> None:
        """Move anything left to the parent and delete the group (workers are dead by now)."""
        for directory in dict.fromkeys((self.quota_dir, self.usage_dir)):
            with contextlib.suppress(OSError):
                pids = (directory / "cgroup.procs").read_text().split()
                for pid in pids:
                    with contextlib.suppress(OSError):
                        (directory.parent / "cgroup.procs").write_text(pid)
                directory.rmdir()


def host_busy_s() -> float:
    """CPU seconds every process on the host has used since boot (idle and iowait excluded)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def join(procs_files: list[Path]) -> None:
    """Run in a forked child before exec: move this process (and so all it starts) into the group."""
    for path in procs_files:
        with open(path, "w") as fh:
            fh.write("0")


class ContentionThrottle:
    """Samples host CPU once a period; caps the workers while others are busy, lifts it after."""

    def __init__(self, group: WorkerCgroup, *, quota_cores: float, threshold_cores: float,
                 interval_s: float = 1.0) -> None:
        self.group = group
        self.quota_cores = quota_cores
        self.threshold_cores = threshold_cores
        self.interval_s = interval_s
        self.capped = False
        self.others_cores = 0.0
        self.capped_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def rate(self, running: int) -> float:
        """The share of a core each of `running` jobs gets now (1.0 when not capped)."""
        if not self.capped:
            return 1.0
        return min(1.0, self.quota_cores / max(1, running))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sandbox-throttle")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.group.set_quota(None)
        self.group.remove()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_t, last_busy, last_ours = loop.time(), host_busy_s(), self.group.usage_s()
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                now, busy, ours = loop.time(), host_busy_s(), self.group.usage_s()
                dt = max(1e-3, now - last_t)
                self.others_cores = max(0.0, (busy - last_busy) - (ours - last_ours)) / dt
                if self.capped:
                    self.capped_s += dt
                last_t, last_busy, last_ours = now, busy, ours
                # Hysteresis: lift the cap only once the others are well below the threshold, so a
                # training loop's pauses (evaluation, checkpoints) do not flip it every second.
                want = self.others_cores >= (self.threshold_cores * (0.5 if self.capped else 1.0))
                if want != self.capped:
                    self.group.set_quota(self.quota_cores if want else None)
                    self.capped = want
                    log.info("sandbox CPU cap %s: other processes use %.2f cores",
                             f"on ({self.quota_cores:g} cores)" if want else "off", self.others_cores)
            except OSError as exc:
                # Lift the cap on the way out: left on with `capped` False, jobs would be slowed
                # while their timeouts counted full wall time.
                log.warning("sandbox CPU throttle stopped: %s", exc)
                with contextlib.suppress(OSError):
                    self.group.set_quota(None)
                self.capped = False
                return

    def snapshot(self) -> dict[str, object]:
        return {
            "cgroup": f"v{self.group.version} {self.group.quota_dir}",
            "capped": self.capped,
            "quota_cores": self.quota_cores,
            "threshold_cores": self.threshold_cores,
            "others_cores": round(self.others_cores, 2),
            "capped_s": round(self.capped_s, 1),
        }
