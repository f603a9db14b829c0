"""Task functions the Ray benchmarks run in sandbox workers (`bench_tasks:<name>`, see `TASKS`).

Owns: jobs that cost the worker almost nothing (so what a benchmark times is the executor's own
cost per job), and a plain `torch.compile` of a small block (Inductor's caches without Tezzeret's
precompile path). It must never be in a production task mapping.
"""

from __future__ import annotations

from pathlib import Path

from tezzeret.leyline import pb

TASKS = {"noop": "bench_tasks:noop", "blob": "bench_tasks:blob", "inductor_block": "bench_tasks:inductor_block"}


def noop(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    return pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_SUCCESS)


def blob(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """An artifact of `mib` MiB (param, default 4) in the output dir."""
    mib = float(next((kv.value for kv in job.params if kv.key == "mib"), "4"))
    artifact = Path(job.output_dir) / "blob.bin"
    artifact.write_bytes(b"\x5a" * int(mib * 1024 * 1024))
    return pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_SUCCESS, artifact_path=str(artifact))


def inductor_block(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """`torch.compile` of a small block, forward and backward (the FX-graph and AOTAutograd caches
    both take part), reporting Inductor's cache counters as a compile job does."""
    import time

    import torch
    from torch._dynamo.utils import counters

    from tezzeret.cache import L3_HITS_DETAIL, L3_MISSES_DETAIL, l3_counts

    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.LayerNorm(64), torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
    x = torch.randn(8, 64, requires_grad=True)
    started = time.perf_counter()
    torch.compile(block)(x).sum().backward()
    hits, misses = l3_counts(counters)
    result = pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_SUCCESS, compile_ms=(time.perf_counter() - started) * 1000)
    result.details.add(key=L3_HITS_DETAIL, value=str(hits))
    result.details.add(key=L3_MISSES_DETAIL, value=str(misses))
    return result
