"""The sandbox worker: `python -m tezzeret.sandbox.worker`, one pre-warmed process running jobs.

Owns: dropping to the sandbox uid, warming torch and Inductor, importing the task functions it was
started with, and the job loop: read `RUN <job_id>` on stdin, read `<workdir>/<job_id>/job.pb`, run
the task with the job's stdout/stderr in `<job_dir>/stderr.log`, write `result.pb` (Leyline bytes),
answer `DONE <job_id>` on the control channel. It must never import the forge or the pool, never
pickle anything, never import a task path that was not given on its command line, and never write
anything to the control channel but status words and job ids.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import os
import re
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for annotations; at run time each function imports what it uses
    from tezzeret.leyline import pb

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PR_SET_PDEATHSIG = 1

TaskFn = Callable[..., object]


def _die_with_parent() -> None:
    # Under a plain subprocess nothing else stops a worker outliving a crashed service.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit(f"worker: could not drop to uid {uid}")


def _warm(level: str, threads: int, compile_threads: int) -> None:
    if level == "none":
        return
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if level != "inductor":
        return
    import torch._dynamo  # noqa: F401  (the import is the warm-up)
    import torch._inductor.compile_fx  # noqa: F401
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = compile_threads


def _load_tasks(specs: list[str]) -> tuple[dict[str, TaskFn], dict[str, str]]:
    """Import each `name=module:function`; a broken one is remembered, not fatal."""
    import importlib

    tasks: dict[str, TaskFn] = {}
    broken: dict[str, str] = {}
    for spec in specs:
        name, _, target = spec.partition("=")
        module_name, _, fn_name = target.partition(":")
        try:
            tasks[name] = getattr(importlib.import_module(module_name), fn_name)
        except Exception as exc:  # any import failure makes only that task unusable
            broken[name] = f"{type(exc).__name__}: {exc}"
    return tasks, broken


def gpu_share(fraction: float, memory_gb: float | None, total_bytes: int) -> float:
    """The share of one device's memory a job may take: the fraction it was given, lowered so it
    stays under `memory_gb` (`resources.max_gpu_memory_gb`) on this device."""
    if memory_gb is not None and total_bytes > 0:
        fraction = min(fraction, memory_gb * 2**30 / total_bytes)
    return max(0.0, min(1.0, fraction))


def _prepare_device(job: "pb.WorkerJob", gpu_fraction: float) -> None:
    if job.cpu_only:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return
    import torch

    params = {kv.key: kv.value for kv in job.params}
    # Per job: conservative mode lowers the share while it is on (the environment is per worker).
    fraction = float(params.get("gpu_fraction", gpu_fraction))
    memory_gb = float(params["gpu_memory_gb"]) if "gpu_memory_gb" in params else None
    if os.environ.get("CUDA_VISIBLE_DEVICES") != "" and torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            total = torch.cuda.get_device_properties(index).total_memory
            torch.cuda.set_per_process_memory_fraction(gpu_share(fraction, memory_gb, total), index)
        _yield_streams(torch)


def _yield_streams(torch: Any) -> None:
    """Run this worker's kernels on a stream of the lowest priority CUDA offers, so a training
    process that launches on a higher-priority stream goes first. Priorities order work within one
    CUDA context; across processes they count only under MPS (one shared context), otherwise the
    GPU time-slices between processes whatever the priority."""
    lowest, _highest = torch.cuda.Stream.priority_range()
    torch.cuda.set_stream(torch.cuda.Stream(priority=lowest))


def _run_task(job_dir: Path, job_id: str, tasks: dict[str, TaskFn], broken: dict[str, str], gpu_fraction: float, cpu_factor: float) -> bytes:
    from tezzeret.leyline import codec, pb
    from tezzeret.sandbox.limits import backstop_s, lower_own_limits
    from tezzeret.sandbox.outcome import classify_exception

    started = time.perf_counter()
    job = codec.decode(pb.WorkerJob, (job_dir / "job.pb").read_bytes())
    result: pb.WorkerResult
    if job.job_id != job_id:
        result = pb.WorkerResult(outcome=pb.OUTCOME_INTERNAL_ERROR, error=f"job.pb names job {job.job_id!r}, expected {job_id!r}")
    elif not job.memory_limit_mb or not job.timeout_ms:
        result = pb.WorkerResult(outcome=pb.OUTCOME_INTERNAL_ERROR, error="job.pb lacks the effective memory_limit_mb/timeout_ms the pool must fill in")
    elif job.task not in tasks:
        why = broken.get(job.task, "not in the task mapping this worker was started with")
        result = pb.WorkerResult(outcome=pb.OUTCOME_REJECTED, error=f"task {job.task!r} unavailable: {why}", error_code="SANDBOX_UNKNOWN_TASK")
    else:
        # CPU time may run to the sandbox's backstop, not just the task's own deadline.
        cpu_s = max(1, int(backstop_s(job.timeout_ms / 1000) * cpu_factor + 0.999))
        refused = lower_own_limits(int(job.memory_limit_mb), cpu_s)
        if refused:
            result = pb.WorkerResult(outcome=pb.OUTCOME_INTERNAL_ERROR, error=refused, error_code="SANDBOX_LIMIT_ABOVE_WORKER")
            return _finish(result, job_id, started)
        try:
            _prepare_device(job, gpu_fraction)
            returned = tasks[job.task](job, job_dir)
            if not isinstance(returned, pb.WorkerResult):
                raise TypeError(f"task {job.task!r} returned {type(returned).__name__}, not leyline.WorkerResult")
            result = returned
        except BaseException as exc:  # the task is untrusted: every failure becomes a result
            if isinstance(exc, KeyboardInterrupt):
                raise
            outcome, code = classify_exception(exc)
            if outcome == pb.OUTCOME_OUT_OF_MEMORY:
                # The traceback holds the frames that hold the memory: drop it before reporting.
                exc.__traceback__ = None
                sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
            else:
                sys.stderr.write("".join(traceback.format_exception(exc)))
            result = pb.WorkerResult(outcome=outcome, error=f"{type(exc).__name__}: {exc}"[:2000], error_code=code)
            if isinstance(exc, OSError) and exc.errno is not None:
                result.details.add(key="errno", value=str(exc.errno))
    return _finish(result, job_id, started)


def _finish(result: "pb.WorkerResult", job_id: str, started: float) -> bytes:
    from tezzeret.leyline import codec

    if not result.job_id:
        result.job_id = job_id
    if not result.schema_version:
        result.schema_version = 1
    if not result.HasField("compile_ms"):
        result.compile_ms = (time.perf_counter() - started) * 1000.0
    if not result.HasField("peak_rss_bytes"):
        result.peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return codec.encode(result)


def _with_job_output(job_dir: Path, fn: Callable[[], bytes]) -> bytes:
    """Run `fn` with fds 1 and 2 pointing at the job's stderr.log, restoring them afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    log = os.open(job_dir / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        return fn()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tezzeret.sandbox.worker")
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--task", action="append", default=[], help="name=module:function")
    parser.add_argument("--uid", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile-threads", type=int, default=1)
    parser.add_argument("--sys-path", action="append", default=[])
    parser.add_argument("--cpu-time-factor", type=float, default=1.5)
    parser.add_argument("--warm", choices=("inductor", "torch", "none"), default="inductor")
    args = parser.parse_args(argv)

    _die_with_parent()
    if args.uid is not None:
        _drop_privileges(args.uid)
    os.umask(0o022)
    # The control channel is the original stdout; anything a task prints goes to stderr instead.
    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    faulthandler.enable()
    for entry in reversed(args.sys_path):
        sys.path.insert(0, entry)

    _warm(args.warm, args.threads, args.compile_threads)
    tasks, broken = _load_tasks(args.task)
    for name, why in broken.items():
        print(f"worker: task {name!r} cannot be imported: {why}", file=sys.stderr)
    gpu_fraction = float(os.environ.get("TEZZERET_GPU_FRACTION", "0.25"))
    control.write("READY -\n")

    for line in sys.stdin:
        words = line.split()
        if words == ["QUIT"]:
            return 0
        if words == ["PING"]:  # the pool checks the worker still answers before handing it a job
            control.write("PONG -\n")
            continue
        if len(words) != 2 or words[0] != "RUN" or not _JOB_ID.match(words[1]):
            print(f"worker: bad control line {line[:80]!r}", file=sys.stderr)
            return 3
        job_id = words[1]
        job_dir = args.workdir / job_id
        data = _with_job_output(job_dir, lambda: _run_task(job_dir, job_id, tasks, broken, gpu_fraction, args.cpu_time_factor))
        tmp = job_dir / "result.pb.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, job_dir / "result.pb")
        control.write(f"DONE {job_id}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
