"""The HTTP front end under load: cached submissions at 64 in flight, and big bodies beside health.

Starts a real `tezzeret serve` in its own process on a free loopback port with an empty state dir,
compiles a few library blueprints at EMERGENCY, then measures from this process:

1. `cached_submit_*`: `--clients` (64) independent clients (one connection each), each posting one
   of those blueprints again as soon as its previous answer arrived, so 64 submissions are always
   in flight; every answer is `FROM_CACHE` (200). Meanwhile a separate probe process times
   `GET /health/tezzeret` every `--probe-interval-ms` → `health_p99_ms`.
2. `health_p99_big_bodies_ms`: `--big-clients` (4) clients post `--big-mb` (7.5) MB bodies again
   and again while the probe process times health. The body is a blueprint that looks valid
   (up to 1000 nodes whose attributes are long integer lists) so the server must parse all of it
   before validation refuses it (`--big-body junk`: bytes that are not JSON).

The clients are aiohttp when it is installed (it costs the client ~0.3 ms of CPU per request
here, httpx ~2 ms: on two shared cores the client's own CPU would otherwise be most of what is
measured), else httpx; `client` in the output says which. The probe runs in its own process so
the 64 clients' event loop adds nothing to the health numbers. Prints one JSON line with the
machine record. Targets (issue 16) on the 2-core development machine: cached submit p99 <= 100 ms,
health p99 <= 20 ms in both phases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from machine_info import machine  # bench/ is sys.path[0] when a benchmark runs as a script

NAMES = ["mlp_512", "residual_mlp_256", "swiglu_mlp_512", "lora_adapter_1024"]
JSON = {"Content-Type": "application/json"}

try:
    import aiohttp

    CLIENT = "aiohttp"
except ImportError:  # pragma: no cover - depends on the environment
    aiohttp = None  # type: ignore[assignment]
    CLIENT = "httpx"


class Session:
    """One client with one keep-alive connection: aiohttp if installed, else httpx."""

    def __init__(self, url: str, timeout: float = 120) -> None:
        self.url = url
        self.timeout = timeout

    async def __aenter__(self) -> "Session":
        if aiohttp is not None:
            self._s = aiohttp.ClientSession(
                self.url, connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        else:
            import httpx

            self._s = httpx.AsyncClient(base_url=self.url, timeout=self.timeout, limits=httpx.Limits(max_connections=1))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if aiohttp is not None:
            await self._s.close()
        else:
            await self._s.aclose()

    async def request(self, method: str, path: str, body: bytes | None = None, params: dict[str, str] | None = None) -> int:
        if aiohttp is not None:
            async with self._s.request(method, path, data=body, params=params, headers=JSON if body is not None else None) as r:
                await r.read()
                return r.status
        r = await self._s.request(method, path, content=body, params=params, headers=JSON if body is not None else None)
        return r.status_code


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


def _library_bodies() -> list[bytes]:
    from tezzeret.blueprint import library
    from tezzeret.leyline import to_json

    by_name = {lb.name: lb for lb in library()}
    return [json.dumps({"blueprint": json.loads(to_json(by_name[n].ir))}).encode() for n in NAMES]


def big_body(target_bytes: int, kind: str) -> bytes:
    """About `target_bytes` of request body: a blueprint that passes the size, depth and node-count
    pre-checks (so it is parsed in full) and is refused by validation, or junk."""
    if kind == "junk":
        return (b'{"blueprint": ' + b"x" * target_bytes)[:target_bytes]
    values = list(range(100_000, 100_048))
    attrs = [{"key": f"a{k:02d}", "ints": {"values": values}} for k in range(24)]
    node = {"name": "n0000", "op": "linear", "inputs": ["x"], "attrs": attrs}
    per_node = len(json.dumps(node))
    n_nodes = max(1, min(1000, target_bytes // per_node))
    nodes = [{**node, "name": f"n{i:04d}", "inputs": ["x" if i == 0 else f"n{i - 1:04d}"]} for i in range(n_nodes)]
    doc = {
        "blueprint": {
            "inputs": [{"name": "x", "dtype": "DTYPE_FLOAT32", "dims": [{"size": "8"}, {"size": "64"}]}],
            "outputs": [f"n{n_nodes - 1:04d}"],
            "nodes": nodes,
            "metadata": {"name": "big_body_bench"},
        }
    }
    data = json.dumps(doc).encode()
    # Top up with whitespace to the exact size (the parser still reads every byte).
    return data[:-1] + b" " * max(0, target_bytes - len(data)) + b"}"


# ---------------------------------------------------------------------------------- health probe


def _probe(url: str, interval_s: float, ready: Any, stop: Any, out: Any) -> None:
    """Time GET /health/tezzeret every `interval_s` until `stop` is set (its own process)."""

    async def run() -> dict[str, Any]:
        lat: list[float] = []
        errors = 0
        async with Session(url, timeout=60) as s:
            await s.request("GET", "/health/tezzeret")  # connect before timing
            ready.set()
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    await s.request("GET", "/health/tezzeret")
                    lat.append((time.perf_counter() - t0) * 1000)
                except Exception:  # noqa: BLE001 - a failed probe is counted, not fatal
                    errors += 1
                await asyncio.sleep(max(0.0, interval_s - (time.perf_counter() - t0)))
        return {"lat": lat, "errors": errors}

    out.put(asyncio.run(run()))


class Probe:
    """Health timings from a separate process, for as long as the `with` block runs."""

    def __init__(self, url: str, interval_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.queue = ctx.Queue()
        self.ready = ctx.Event()
        self.stop = ctx.Event()
        self.proc = ctx.Process(target=_probe, args=(url, interval_s, self.ready, self.stop, self.queue), daemon=True)
        self.lat: list[float] = []
        self.errors = 0

    def __enter__(self) -> "Probe":
        self.proc.start()
        if not self.ready.wait(60):
            raise RuntimeError("the health probe process did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        try:
            got = self.queue.get(timeout=60)
            self.lat, self.errors = got["lat"], got["errors"]
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)


# ---------------------------------------------------------------------------------- the server


def _start_server(root: Path, port: int) -> subprocess.Popen[bytes]:
    config = {
        "tezzeret": {
            "state_dir": str(root / "state"),
            "compilation": {"idle_recompilation": False},
            "polling": {"initial_full_scan": False, "refresh_interval_minutes": 0},
            # All clients come from 127.0.0.1: one client to the limiter. The limit stays on (its
            # check is part of every submission's cost) but does not refuse the bench's rate.
            "api": {"host": "127.0.0.1", "port": port, "rate_limit_per_min": 10_000_000, "rate_limit_burst": 1_000_000},
        }
    }
    path = root / "tezzeret.yaml"
    path.write_text(yaml.safe_dump(config))
    with open(root / "serve.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tezzeret.cli", "serve", "--config", str(path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # parsing and compile workers go with it
    except ProcessLookupError:
        pass
    proc.wait(10)


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"tezzeret serve exited with {proc.returncode}")
        try:
            async with Session(url, timeout=2) as s:
                if await s.request("GET", "/health/tezzeret") in (200, 503):
                    return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError("tezzeret serve did not answer")


async def _compile_first(url: str, bodies: list[bytes]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        jobs = []
        for body in bodies:
            r = await c.post("/v1/blueprints", content=body, headers=JSON, params={"strategy": "EMERGENCY"})
            r.raise_for_status()
            jobs.append(r.json()["job_id"])
        end = time.monotonic() + 600
        for job_id in jobs:
            while True:
                status = (await c.get(f"/v1/jobs/{job_id}")).json()["status"]
                if status in ("SUCCEEDED", "FROM_CACHE"):
                    break
                if status == "FAILED" or time.monotonic() > end:
                    raise RuntimeError(f"job {job_id} ended {status}")
                await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------- phases


async def _sequential(url: str, n: int, body: bytes | None = None, pause_s: float = 0.0) -> list[float]:
    lat = []
    async with Session(url) as s:
        for _ in range(n):
            t0 = time.perf_counter()
            if body is None:
                await s.request("GET", "/health/tezzeret")
            else:
                await s.request("POST", "/v1/blueprints", body, {"strategy": "EMERGENCY"})
            lat.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(pause_s)
    return lat


async def _cached_phase(url: str, bodies: list[bytes], clients: int, per_client: int) -> dict[str, Any]:
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    start = asyncio.Event()

    async def one_client(k: int) -> None:
        nonlocal errors
        async with Session(url) as s:
            await s.request("GET", "/health/tezzeret")  # connect before timing
            await start.wait()
            for i in range(per_client):
                t0 = time.perf_counter()
                try:
                    status = await s.request("POST", "/v1/blueprints", bodies[(k + i) % len(bodies)], {"strategy": "EMERGENCY"})
                except Exception:  # noqa: BLE001 - counted
                    errors += 1
                    continue
                lat.append((time.perf_counter() - t0) * 1000)
                statuses[status] = statuses.get(status, 0) + 1

    tasks = [asyncio.create_task(one_client(k)) for k in range(clients)]
    await asyncio.sleep(2.0)  # every client connected
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    return {"lat": lat, "statuses": statuses, "rps": round(len(lat) / wall, 1), "errors": errors}


async def _big_phase(url: str, body: bytes, clients: int, duration_s: float) -> dict[str, Any]:
    statuses: dict[int, int] = {}
    lat: list[float] = []
    errors = 0
    end = time.monotonic() + duration_s

    async def one_client() -> None:
        nonlocal errors
        async with Session(url) as s:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                try:
                    status = await s.request("POST", "/v1/blueprints", body)
                except Exception:  # noqa: BLE001 - counted
                    errors += 1
                    continue
                lat.append((time.perf_counter() - t0) * 1000)
                statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return {"statuses": statuses, "lat": lat, "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--per-client", type=int, default=60, help="Cached submissions each client sends.")
    ap.add_argument("--big-clients", type=int, default=4)
    ap.add_argument("--big-mb", type=float, default=7.5)
    ap.add_argument("--big-body", choices=["blueprint", "junk"], default="blueprint")
    ap.add_argument("--big-seconds", type=float, default=30.0)
    ap.add_argument("--probe-interval-ms", type=float, default=50.0)
    ap.add_argument("--keep", action="store_true", help="Keep the state dir and the server log.")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tezzeret-api-load-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(root, port)
    out: dict[str, Any] = {"bench": "api_load", "client": CLIENT, "clients": args.clients,
                           "big_clients": args.big_clients, "big_mb": args.big_mb, "big_body": args.big_body}
    try:
        asyncio.run(_wait_ready(url, proc))
        bodies = _library_bodies()
        asyncio.run(_compile_first(url, bodies))
        asyncio.run(_sequential(url, 20, bodies[0]))  # warm: the first FROM_CACHE answers fill caches
        idle = asyncio.run(_sequential(url, 100, None, 0.02))
        seq = asyncio.run(_sequential(url, 200, bodies[1]))
        out["idle_health_p50_ms"] = _pct(idle, 0.5)
        out["idle_health_p99_ms"] = _pct(idle, 0.99)
        out["sequential_submit_p50_ms"] = _pct(seq, 0.5)

        # Phase 1: 64 cached submissions in flight; health probed from another process.
        with Probe(url, args.probe_interval_ms / 1000) as probe:
            cached = asyncio.run(_cached_phase(url, bodies, args.clients, args.per_client))
        out["cached_submit_p50_ms"] = _pct(cached["lat"], 0.5)
        out["cached_submit_p99_ms"] = _pct(cached["lat"], 0.99)
        out["cached_submit_rps"] = cached["rps"]
        out["cached_submit_statuses"] = {str(k): v for k, v in cached["statuses"].items()}
        out["cached_submit_errors"] = cached["errors"]
        out["health_p50_ms"] = _pct(probe.lat, 0.5)
        out["health_p99_ms"] = _pct(probe.lat, 0.99)
        out["health_samples"] = len(probe.lat)

        # Phase 2: big bodies; health probed from another process.
        body = big_body(int(args.big_mb * 1e6), args.big_body)
        with Probe(url, args.probe_interval_ms / 1000) as probe:
            big = asyncio.run(_big_phase(url, body, args.big_clients, args.big_seconds))
        out["big_body_bytes"] = len(body)
        out["big_body_statuses"] = {str(k): v for k, v in big["statuses"].items()}
        out["big_body_errors"] = big["errors"]
        out["big_body_p50_ms"] = _pct(big["lat"], 0.5)
        out["health_p50_big_bodies_ms"] = _pct(probe.lat, 0.5)
        out["health_p99_big_bodies_ms"] = _pct(probe.lat, 0.99)
        out["health_max_big_bodies_ms"] = round(max(probe.lat), 2) if probe.lat else None
        out["health_samples_big_bodies"] = len(probe.lat)
        out["health_errors"] = probe.errors
    finally:
        _stop_server(proc)
        if args.keep:
            out["state_dir"] = str(root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    out["targets"] = {"cached_submit_p99_ms": 100, "health_p99_ms": 20, "health_p99_big_bodies_ms": 20}
    out["machine"] = machine()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
