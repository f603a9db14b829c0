"""The Tamiyo emergency path under load: XADD → EmergencyAck, and XADD → CompilationComplete.

Starts its own `redis-server` on a free loopback port and two processes, as in production: a
server (`--serve`) and Tamiyo (this process, with `EmergencyClient`). The server is the real forge
(`tezzeret.forge.Forge`, busy compiling STANDARD jobs from the built-in library) when
`--mode forge` (or `auto` and the forge starts), else the bus's `EmergencyListener` with a handler
that enqueues and acknowledges, next to a background process running torch compiles so the CPUs
are as busy as a forge's. Requests are sent at `--rate` per second. Prints one JSON line with
`ack_p50_ms`, `ack_p99_ms`, `artifact_p50_s`, `artifact_p99_s` (null without a forge), `n` and the
machine. Targets (issue 8): ack p99 ≤ 50 ms; emergency artifact p99 ≤ 2 s once a worker is warm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

TAMIYO_KEY, TAMIYO_SECRET = "tamiyo", "bench-tamiyo-secret"

# A STANDARD-tier-like CPU load for listener mode: Inductor compiling again and again.
_BUSY = r"""
import torch, torch._dynamo
torch.set_num_threads(1)
i = 0
while True:
    i += 1
    m = torch.nn.Sequential(torch.nn.Linear(64, 64 + i % 7), torch.nn.GELU(), torch.nn.Linear(64 + i % 7, 8))
    torch._dynamo.reset()
    torch.compile(m)(torch.randn(4, 64)).sum().backward()
"""


def _settings(state_dir: Path, redis_url: str, n: int) -> Any:
    from tezzeret.config import load_settings

    return load_settings(
        state_dir=state_dir,
        redis_url=redis_url,
        bus={"keys": [
            {"key_id": "tezzeret", "secret": "bench-tezzeret-secret", "roles": ["publisher", "emergency", "admin"]},
            {"key_id": TAMIYO_KEY, "secret": TAMIYO_SECRET, "roles": ["emergency"]},
        ]},
        emergency={"max_per_min": max(120, 10 * n)},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# ------------------------------------------------------------------ server side (--serve)

async def _serve_listener(settings: Any, concurrency: int) -> None:
    from tezzeret.bus import EmergencyCaller, EmergencyListener, make_bus
    from tezzeret.leyline import pb

    bus = make_bus(settings)
    queue: asyncio.Queue[pb.EmergencyCompile] = asyncio.Queue()

    async def enqueue(req: pb.EmergencyCompile, caller: EmergencyCaller) -> pb.EmergencyAck:
        await queue.put(req)
        return pb.EmergencyAck(accepted=True, queue_position=queue.qsize(), estimate_ms=1000)

    async def drain() -> None:
        # No compiler here: only the queue is exercised, so no CompilationComplete is posted.
        while True:
            await queue.get()

    EmergencyListener(bus, settings, enqueue, consumer="bench-listener", concurrency=concurrency).start()
    await bus.start()
    task = asyncio.create_task(drain())
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    task.cancel()
    await bus.close()


async def _serve_forge(settings: Any, busy_jobs: int) -> None:
    from tezzeret.blueprint import library
    from tezzeret.forge.service import Forge
    from tezzeret.leyline import SCHEMA_VERSION, pb

    forge = await Forge(settings).start()
    for i, bp in enumerate(library()[:busy_jobs]):
        req = pb.CompilationRequest(schema_version=SCHEMA_VERSION, request_id=f"busy-{i}",
                                    strategy=pb.STRATEGY_STANDARD, priority=pb.PRIORITY_NORMAL,
                                    requested_by="bench")
        req.blueprint.CopyFrom(bp.ir)
        await forge.submit(req, source="bench")
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await forge.close(grace_s=1.0)


# ------------------------------------------------------------------ Tamiyo side

async def _drive(settings: Any, n: int, rate: float, want_complete: bool, complete_timeout_s: float) -> dict[str, Any]:
    from tezzeret.blueprint import library
    from tezzeret.bus import EmergencyClient, make_bus

    bus = make_bus(settings)
    client = EmergencyClient(bus, settings)
    client.start()
    await bus.start()
    irs = [bp.ir for bp in library()]
    try:
        if want_complete:  # one warm-up so the reserved emergency worker is warm
            rid, _ = await client.request(irs[0], key_id=TAMIYO_KEY, secret=TAMIYO_SECRET.encode(), timeout_s=30)
            await client.wait_complete(rid, complete_timeout_s)
            client.sent_at.clear()
            client.acked_at.clear()
            client.completed_at.clear()
        rids: list[str] = []
        t0 = time.monotonic()
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            rids.append(await client.send(irs[i % len(irs)], key_id=TAMIYO_KEY, secret=TAMIYO_SECRET.encode(),
                                          reason="bench"))
        acks = await asyncio.gather(*(client.wait_ack(r, 30) for r in rids), return_exceptions=True)
        completes: list[Any] = []
        if want_complete:
            completes = await asyncio.gather(*(client.wait_complete(r, complete_timeout_s) for r in rids),
                                             return_exceptions=True)
        ack_ms = [(client.acked_at[r] - client.sent_at[r]) * 1000 for r in rids if r in client.acked_at]
        art_s = [client.completed_at[r] - client.sent_at[r] for r in rids if r in client.completed_at]
        return {
            "ack_p50_ms": _pct(ack_ms, 0.50),
            "ack_p99_ms": _pct(ack_ms, 0.99),
            "ack_max_ms": max(ack_ms) if ack_ms else None,
            "artifact_p50_s": _pct(art_s, 0.50),
            "artifact_p99_s": _pct(art_s, 0.99),
            "n": n,
            "acked": len(ack_ms),
            "accepted": sum(1 for a in acks if not isinstance(a, BaseException) and a.accepted),
            "completed": sum(1 for c in completes if not isinstance(c, BaseException)),
            "from_cache": sum(1 for c in completes if not isinstance(c, BaseException) and c.from_cache),
        }
    finally:
        await bus.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second")
    ap.add_argument("--mode", choices=["auto", "forge", "listener"], default="auto")
    ap.add_argument("--busy-jobs", type=int, default=4, help="STANDARD jobs queued on the forge")
    ap.add_argument("--no-busy", action="store_true", help="listener mode: no background compiles")
    ap.add_argument("--concurrency", type=int, default=4, help="listener mode: EmergencyListener consumers")
    ap.add_argument("--complete-timeout-s", type=float, default=120.0)
    ap.add_argument("--serve", choices=["forge", "listener"], help=argparse.SUPPRESS)
    ap.add_argument("--redis-url", help=argparse.SUPPRESS)
    ap.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.serve:
        settings = _settings(Path(args.state_dir), args.redis_url, args.n)
        serve = _serve_forge(settings, args.busy_jobs) if args.serve == "forge" else _serve_listener(settings, args.concurrency)
        asyncio.run(serve)
        return

    if shutil.which("redis-server") is None:
        sys.exit("bench/emergency.py needs redis-server (make system-deps)")
    mode = args.mode
    if mode == "auto":
        try:
            import tezzeret.forge.service  # noqa: F401
            mode = "forge"
        except ImportError:
            mode = "listener"
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="tezzeret-bench-emergency-") as tmp:
        port = _free_port()
        redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        procs: list[subprocess.Popen[Any]] = []
        try:
            import redis

            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis(host="127.0.0.1", port=port).ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            if mode == "listener" and not args.no_busy:
                procs.append(subprocess.Popen([sys.executable, "-c", _BUSY], env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", mode, "--redis-url", url, "--state-dir", str(Path(tmp) / "state"),
                 "--n", str(args.n), "--busy-jobs", str(args.busy_jobs), "--concurrency", str(args.concurrency)],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(server)
            assert server.stdout is not None
            line = server.stdout.readline()
            if "READY" not in line:
                sys.exit(f"the {mode} server did not start (exit {server.poll()})")
            settings = _settings(Path(tmp) / "client", url, args.n)
            result = asyncio.run(_drive(settings, args.n, args.rate, mode == "forge", args.complete_timeout_s))
        finally:
            for p in procs:
                if p.stdin:
                    p.stdin.close()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            redis_proc.kill()
            redis_proc.wait()
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2].removeprefix("v=")
    print(json.dumps({
        "bench": "emergency",
        "mode": mode,
        **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()},
        "rate_per_s": args.rate,
        "background": "forge STANDARD jobs" if mode == "forge" else ("none" if args.no_busy else "torch.compile loop"),
        "machine": {**machine(), "redis": redis_version},
    }))


if __name__ == "__main__":
    main()
