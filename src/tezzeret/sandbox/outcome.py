"""Failure classes: turning how a job ended into exactly one `pb.JobOutcome` with evidence.

Owns: the rules that map a worker's exit status, signal, timeout flag and last stderr lines to an
outcome, and the `details` key/value evidence attached to every result. It must never start, kill
or talk to processes; it only reads what the pool observed.
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tezzeret.leyline import pb

# Words that C++ and Python allocators print when an allocation is refused (RLIMIT_AS or the host).
_OOM_MARKERS = ("memoryerror", "bad_alloc", "can't allocate memory", "out of memory", "cannot allocate memory")

# Exit statuses above this, from bubblewrap's or unshare's monitor, mean "the child died of signal
# status - 128": those monitors flatten a signal death into an exit code.
_SIGNAL_EXIT_BASE = 128


@dataclass(frozen=True)
class Ending:
    """What the pool saw when a worker stopped answering for a job."""

    returncode: int | None
    timed_out: bool = False
    stderr_tail: Sequence[str] = ()
    via_monitor: bool = False
    reason: str = ""
    extra: Sequence[tuple[str, str]] = field(default_factory=tuple)


def signal_of(returncode: int | None, *, via_monitor: bool) -> int | None:
    """The signal number that ended the process, or None for a plain exit."""
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    if via_monitor and returncode > _SIGNAL_EXIT_BASE and returncode - _SIGNAL_EXIT_BASE < 65:
        return returncode - _SIGNAL_EXIT_BASE
    return None


def signal_name(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"SIG{signo}"


def looks_like_oom(lines: Iterable[str]) -> bool:
    text = "\n".join(lines).lower()
    return any(marker in text for marker in _OOM_MARKERS)


def classify(ending: Ending) -> tuple[pb.JobOutcome, str, list[tuple[str, str]]]:
    """(outcome, error message, details) for a worker that died or was killed during a job."""
    signo = signal_of(ending.returncode, via_monitor=ending.via_monitor)
    details: list[tuple[str, str]] = [("exit_status", str(ending.returncode))]
    if signo is not None:
        details.append(("signal", signal_name(signo)))
    details.extend(ending.extra)
    if ending.stderr_tail:
        details.append(("stderr_tail", "\n".join(ending.stderr_tail)))
    if ending.timed_out:
        return pb.OUTCOME_TIMEOUT, ending.reason or "wall-clock timeout: the worker was killed with SIGKILL", details
    if signo == signal.SIGXCPU:
        details.append(("limit", "RLIMIT_CPU"))
        return pb.OUTCOME_TIMEOUT, "CPU-time limit reached (SIGXCPU)", details
    if signo == signal.SIGXFSZ:
        details.append(("limit", "RLIMIT_FSIZE"))
        return pb.OUTCOME_SANDBOX_VIOLATION, "file-size limit reached (SIGXFSZ)", details
    if looks_like_oom(ending.stderr_tail) and (signo in (None, signal.SIGABRT, signal.SIGKILL)):
        return pb.OUTCOME_OUT_OF_MEMORY, "the job ran out of memory (allocation refused)", details
    if signo == signal.SIGKILL:
        # Nobody in the sandbox may send SIGKILL to the worker but the kernel's OOM killer.
        return pb.OUTCOME_OUT_OF_MEMORY, "the worker was killed by SIGKILL (kernel OOM killer)", details
    if signo is not None:
        return pb.OUTCOME_CRASH, f"the worker crashed with {signal_name(signo)}", details
    reason = ending.reason or f"the worker exited with status {ending.returncode} during the job"
    return pb.OUTCOME_INTERNAL_ERROR, reason, details


def classify_exception(exc: BaseException) -> tuple[pb.JobOutcome, str]:
    """(outcome, error_code) for an exception a task raised inside a worker."""
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and looks_like_oom([str(exc)])):
        return pb.OUTCOME_OUT_OF_MEMORY, "SANDBOX_OUT_OF_MEMORY"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return pb.OUTCOME_SANDBOX_VIOLATION, "SANDBOX_FILE_SIZE_LIMIT"
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        # A typed Tezzeret error raised by the task is a validation verdict on the job's input.
        return pb.OUTCOME_REJECTED, code
    return pb.OUTCOME_INTERNAL_ERROR, "SANDBOX_TASK_EXCEPTION"


def result_for(job_id: str, outcome: pb.JobOutcome, error: str, details: Iterable[tuple[str, str]], *, error_code: str = "") -> pb.WorkerResult:
    """A service-side result for a job whose worker could not produce a trustworthy one."""
    result = pb.WorkerResult(schema_version=1, job_id=job_id, outcome=outcome, error=error)
    if error_code:
        result.error_code = error_code
    for key, value in details:
        result.details.add(key=key, value=value)
    return result


def detail(result: pb.WorkerResult, key: str) -> str | None:
    """The last value of `key` in a result's details."""
    found = None
    for kv in result.details:
        if kv.key == key:
            found = kv.value
    return found
