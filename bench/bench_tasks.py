"""Task functions the Ray benchmarks run in sandbox workers (`bench_tasks:noop`, `bench_tasks:blob`).

Owns: jobs that cost the worker almost nothing, so what a benchmark times is the executor's own
cost per job. It must never be in a production task mapping.
"""

from __future__ import annotations

from pathlib import Path

from tezzeret.leyline import pb

TASKS = {"noop": "bench_tasks:noop", "blob": "bench_tasks:blob"}


def noop(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    return pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_SUCCESS)


def blob(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """An artifact of `mib` MiB (param, default 4) in the output dir."""
    mib = float(next((kv.value for kv in job.params if kv.key == "mib"), "4"))
    artifact = Path(job.output_dir) / "blob.bin"
    artifact.write_bytes(b"\x5a" * int(mib * 1024 * 1024))
    return pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_SUCCESS, artifact_path=str(artifact))
