"""The compile task a sandbox worker runs: `pb.WorkerJob` in, `pb.WorkerResult` out.

Owns: turning a worker job into a `compile_blueprint` call and every outcome (success, rejected
blueprint, failed verification, internal error) into a result message. Must never fork, set
resource limits, or write outside `job.output_dir`: the sandbox owns isolation, limits and timeouts.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from tezzeret.cache import L3_HITS_DETAIL, L3_MISSES_DETAIL, l3_counts
from tezzeret.compile.compile import _peak_rss_bytes, compile_blueprint
from tezzeret.compile.errors import BudgetExceeded, CompileError
from tezzeret.errors import TezzeretError
from tezzeret.leyline import codec, pb


# A result detail asking the pool not to reuse this worker (its torch state is not trusted).
RECYCLE_DETAIL = "recycle_worker"
# Eager forward+backward ms at the example batch (the forge's payback history records it).
EAGER_TRAIN_MS_DETAIL = "eager_train_ms"


def _params(job: pb.WorkerJob) -> dict[str, str]:
    return {kv.key: kv.value for kv in job.params}


def run_compile_task(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Run one compile job; never raises for a compile problem (it is reported in the result)."""
    from tezzeret.blueprint import BlueprintRejected

    started = time.perf_counter()
    result = pb.WorkerResult(schema_version=codec.SCHEMA_VERSION, job_id=job.job_id)
    params = _params(job)
    out_dir = Path(job.output_dir) if job.output_dir else Path(job_dir) / "out"
    l3_before = _l3()
    try:
        outcome = compile_blueprint(
            bytes(job.blueprint),
            job.strategy,
            out_dir,
            batch_sizes=list(job.batch_sizes) or None,
            cache_dir=params.get("inductor_cache_dir") or None,
            threads=int(params["threads"]) if params.get("threads") else None,
            budget_s=job.timeout_ms / 1000.0 if job.timeout_ms else None,
            hard_deadline=True,
            strategy_requested=params.get("strategy_requested") or None,
            fallback_reason=params.get("fallback_reason", ""),
            # Where entries compile and verify: the CPU, or the worker's (pinned) CUDA device.
            target=job.target or None,
        )
    except BlueprintRejected as exc:
        result.outcome = pb.OUTCOME_REJECTED
        result.error = str(exc)
        result.error_code = exc.code
    except BudgetExceeded as exc:
        # The tier's deadline passed before anything verified: a timeout the ladder can answer by
        # trying the next tier down. Torch may have been interrupted mid-compile: recycle.
        result.outcome = pb.OUTCOME_TIMEOUT
        result.error = str(exc)
        result.error_code = exc.code
        result.details.add(key=RECYCLE_DETAIL, value="cut off at the tier's deadline")
    except CompileError as exc:
        # A blueprint that compiles to nothing verifiable is the blueprint's problem, not ours.
        result.outcome = pb.OUTCOME_REJECTED
        result.error = str(exc)
        result.error_code = exc.code
    except TezzeretError as exc:
        result.outcome = pb.OUTCOME_INTERNAL_ERROR
        result.error = str(exc)
        result.error_code = exc.code
    except Exception as exc:  # noqa: BLE001 - the worker reports; it never dies on a compile bug
        result.outcome = pb.OUTCOME_INTERNAL_ERROR
        result.error = f"{type(exc).__name__}: {exc}"
        result.error_code = "COMPILE_INTERNAL"
        result.details.add(key="traceback", value=traceback.format_exc()[-4000:])
    else:
        result.outcome = pb.OUTCOME_SUCCESS
        result.artifact_path = str(outcome.path)
        result.manifest.CopyFrom(outcome.manifest)
        for d in outcome.dropped:
            result.details.add(key=f"dropped:{d.key}", value=d.drop_reason)
        if outcome.cut_off:
            result.details.add(key=RECYCLE_DETAIL, value="an entry was cut off at the tier's deadline")
        if outcome.eager_train_ms:
            result.details.add(key=EAGER_TRAIN_MS_DETAIL, value=f"{outcome.eager_train_ms:.4f}")
    hits, misses = (after - before for after, before in zip(_l3(), l3_before, strict=True))
    result.details.add(key=L3_HITS_DETAIL, value=str(hits))
    result.details.add(key=L3_MISSES_DETAIL, value=str(misses))
    result.compile_ms = (time.perf_counter() - started) * 1000.0
    result.peak_rss_bytes = _peak_rss_bytes()
    return result


def _l3() -> tuple[int, int]:
    """Inductor's persistent-cache (L3) hits and misses so far in this worker process."""
    import sys

    if "torch._dynamo.utils" not in sys.modules:
        return 0, 0
    from torch._dynamo.utils import counters

    return l3_counts(counters)
