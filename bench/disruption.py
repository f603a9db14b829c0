"""Training disruption while the sandbox compiles: step-time percentiles alone vs. busy.

Owns: one benchmark. A CPU training loop (a small transformer encoder on random data, fixed seed)
runs alone, then while a `SandboxExecutor` with the configured settings compiles the built-in
blueprint library at STANDARD, then alone again (the baseline is both alone phases, so drift over
the long busy phase does not count as disruption). Prints one JSON line: step p50/p99 in both phases, their ratios,
compiles done, the settings used and the machine. It must never assert a speed (it measures).

The defaults that keep the slowdown small (settings keys): `sandbox.sched_idle: true` (workers
only get CPU nobody else wants), `sandbox.training_reserved_cores: 1` (workers never outnumber
the cores training does not need: one worker on a 2-core host, whatever
`compilation.max_concurrent_jobs` says) and `sandbox.contended_cpu_quota: 0.25` (while other
processes keep half a core busy, the workers get a quarter of a core, through a cgroup cap). Further knobs: `sandbox.niceness` (19 is the weakest; moot
under SCHED_IDLE), `sandbox.cpu_affinity` (keep workers off the training cores; needs more than 2
cores to help), `sandbox.worker_threads`/`sandbox.compile_threads` = 1, and training threads that
leave a core. `--no-sched-idle --reserve 0 --quota 0` gives the old defaults (2 workers at nice 10).

Run: `.venv/bin/python bench/disruption.py [--blueprints N] [--no-sched-idle] [--reserve R]
[--quota Q] [--concurrency K]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CPP_MARCH", "x86-64-v3")
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import torch  # noqa: E402

from tezzeret.blueprint.library import library  # noqa: E402
from tezzeret.config import load_settings  # noqa: E402
from tezzeret.leyline import codec, pb  # noqa: E402
from tezzeret.sandbox import SandboxExecutor  # noqa: E402

from machine_info import machine  # noqa: E402  (bench/ is sys.path[0] as a script)


class Trainer:
    """A fixed-seed transformer training loop timing each step."""

    def __init__(self, threads: int) -> None:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, batch_first=True)
        self.model = torch.nn.Sequential(torch.nn.TransformerEncoder(layer, num_layers=2), torch.nn.Linear(128, 128))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.x = torch.randn(8, 32, 128)
        self.y = torch.randn(8, 32, 128)

    def step(self) -> float:
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        return (time.perf_counter() - start) * 1000.0

    def run(self, steps: int | None = None, until: threading.Event | None = None, max_s: float = 600) -> list[float]:
        times: list[float] = []
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            if steps is not None and len(times) >= steps:
                break
            if until is not None and until.is_set():
                break
            times.append(self.step())
        return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blueprints", type=int, default=0, help="compile only the first N library blueprints (0: all)")
    parser.add_argument("--alone-steps", type=int, default=300)
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=None, help="compilation.max_concurrent_jobs (default: config)")
    parser.add_argument("--sched-idle", action=argparse.BooleanOptionalAction, default=None,
                        help="sandbox.sched_idle (default: config)")
    parser.add_argument("--reserve", type=int, default=None,
                        help="sandbox.training_reserved_cores (default: config)")
    parser.add_argument("--quota", type=float, default=None,
                        help="sandbox.contended_cpu_quota, 0 for no cap (default: config)")
    parser.add_argument("--niceness", type=int, default=None)
    parser.add_argument("--max-busy-s", type=float, default=1800)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="tezzeret-disruption-"))
    overrides: dict[str, object] = {"state_dir": str(state), "emergency": {"reserved_worker": False}}
    sandbox: dict[str, object] = {}
    if args.sched_idle is not None:
        sandbox["sched_idle"] = args.sched_idle
    if args.reserve is not None:
        sandbox["training_reserved_cores"] = args.reserve
    if args.quota is not None:
        sandbox["contended_cpu_quota"] = args.quota
    if args.niceness is not None:
        sandbox["niceness"] = args.niceness
    if sandbox:
        overrides["sandbox"] = sandbox
    if args.concurrency:
        overrides["compilation"] = {"max_concurrent_jobs": args.concurrency}
    settings = load_settings(**overrides)

    trainer = Trainer(args.train_threads)
    trainer.run(steps=30)  # warm-up: allocator, caches
    alone = trainer.run(steps=args.alone_steps)

    blueprints = library()
    if args.blueprints:
        blueprints = blueprints[: args.blueprints]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    executor = SandboxExecutor(settings)
    asyncio.run_coroutine_threadsafe(executor.start(), loop).result(600)
    done = threading.Event()
    outcomes: dict[str, int] = {}

    async def compile_all() -> None:
        async def one(i: int, bp) -> None:
            job = pb.WorkerJob(schema_version=1, job_id=f"bench-{i}", task="compile", blueprint=codec.encode(bp.ir),
                               strategy=pb.STRATEGY_STANDARD, output_dir=str(state / "artifacts" / bp.name))
            result = await executor.run(job)
            name = pb.JobOutcome.Name(result.outcome)
            outcomes[name] = outcomes.get(name, 0) + 1

        try:
            await asyncio.gather(*(one(i, bp) for i, bp in enumerate(blueprints)))
        finally:
            done.set()

    busy_started = time.monotonic()
    future = asyncio.run_coroutine_threadsafe(compile_all(), loop)
    busy = trainer.run(until=done, max_s=args.max_busy_s)
    busy_s = time.monotonic() - busy_started
    throttle = executor.status().throttle
    if not done.is_set():
        future.cancel()
    asyncio.run_coroutine_threadsafe(executor.close(0), loop).result(120)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    # Alone again, after the workers are gone: the machine drifts over a long busy phase (other
    # tenants, clock), so the baseline is both alone phases together.
    alone_after = trainer.run(steps=args.alone_steps)
    alone_before = alone
    alone = alone_before + alone_after

    s = settings
    line = {
        "bench": "disruption",
        "step_p50_alone_ms": round(statistics.median(alone), 3),
        "step_p50_busy_ms": round(statistics.median(busy), 3),
        "p50_ratio": round(statistics.median(busy) / statistics.median(alone), 4),
        "step_p99_alone_ms": round(pct(alone, 99), 3),
        "step_p99_busy_ms": round(pct(busy, 99), 3),
        "p99_ratio": round(pct(busy, 99) / pct(alone, 99), 4),
        "step_p50_alone_before_ms": round(statistics.median(alone_before), 3),
        "step_p50_alone_after_ms": round(statistics.median(alone_after), 3),
        "steps_alone": len(alone),
        "steps_busy": len(busy),
        "busy_s": round(busy_s, 1),
        "compiles_done": outcomes.get("OUTCOME_SUCCESS", 0),
        "compiles_total": len(blueprints),
        "outcomes": outcomes,
        "settings": {
            "strategy": "STANDARD",
            "isolation": executor.isolation_level,
            "max_concurrent_jobs": s.compilation.max_concurrent_jobs,
            "training_reserved_cores": s.sandbox.training_reserved_cores,
            "compile_slots": s.compile_slots(),
            "contended_cpu_quota": s.sandbox.contended_cpu_quota,
            "contended_threshold_cores": s.contention_threshold(),
            "throttle_period_ms": s.sandbox.throttle_period_ms,
            "throttle": throttle,
            "niceness": s.sandbox.niceness,
            "sched_idle": s.sandbox.sched_idle,
            "worker_threads": s.sandbox.worker_threads,
            "compile_threads": s.sandbox.compile_threads,
            "cpu_affinity": s.sandbox.cpu_affinity,
            "train_threads": args.train_threads,
            "model": "TransformerEncoder(2 layers, d=128, 4 heads, ff=512), batch 8x32, AdamW",
        },
        "machine": {**machine(), "load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(json.dumps(line, sort_keys=True))
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
