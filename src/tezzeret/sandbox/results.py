"""Reading what a worker wrote, without trusting it.

Owns: validating `result.pb` (regular file, size cap, canonical Leyline bytes, matching job id, an
outcome, an artifact path inside the job's output dir) and copying the job's output files out of
the worker-writable directory without following links. It must never unpickle, import or execute
anything a worker wrote, and never open a path in the job dir except with O_NOFOLLOW from a
directory descriptor it walked itself.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from tezzeret.leyline import codec, pb

MAX_RESULT_BYTES = 16 * 1024 * 1024
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC


class ResultInvalid(Exception):
    """The worker's answer cannot be trusted; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Exported:
    artifact_path: str
    files: int
    skipped: list[str]


def _read_regular(dir_fd: int, name: str, cap: int) -> bytes:
    try:
        fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ResultInvalid(f"{name} cannot be opened safely ({exc.strerror}); a link or special file?") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ResultInvalid(f"{name} is not a regular file")
        if st.st_size > cap:
            raise ResultInvalid(f"{name} is {st.st_size} bytes, over the {cap}-byte cap")
        chunks = []
        left = st.st_size + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > cap:
            raise ResultInvalid(f"{name} grew past the {cap}-byte cap while read")
        return data
    finally:
        os.close(fd)


def read_result(job_dir: Path, job_id: str) -> pb.WorkerResult:
    """The validated result; raises FileNotFoundError when absent, ResultInvalid when untrustworthy."""
    try:
        dir_fd = os.open(job_dir, _OPEN_DIR)
    except OSError as exc:
        raise ResultInvalid(f"the job dir cannot be opened safely ({exc.strerror}); replaced by a link?") from None
    try:
        data = _read_regular(dir_fd, "result.pb", MAX_RESULT_BYTES)
    finally:
        os.close(dir_fd)
    try:
        result = codec.decode(pb.WorkerResult, data)
    except codec.ContractError as exc:
        raise ResultInvalid(f"result.pb is not canonical leyline.WorkerResult bytes: {exc.reason}") from None
    if result.job_id != job_id:
        raise ResultInvalid(f"result.pb is for job {result.job_id!r}, not {job_id!r}")
    if result.outcome in (pb.OUTCOME_UNSPECIFIED, pb.OUTCOME_FROM_CACHE):
        raise ResultInvalid(f"result.pb has outcome {pb.JobOutcome.Name(result.outcome)}, which a worker may not report")
    if result.artifact_path:
        relative_parts(result.artifact_path, job_dir / "out")
    return result


def relative_parts(path: str, root: Path) -> list[str]:
    """The components of `path` below `root`; ResultInvalid when it points anywhere else."""
    norm = os.path.normpath(path)
    root_s = str(root)
    if not os.path.isabs(path) or not norm.startswith(root_s + os.sep) or norm != path.rstrip("/"):
        raise ResultInvalid(f"artifact path {path!r} is not a plain path inside the job's output dir {root_s}")
    parts = norm[len(root_s) + 1 :].split(os.sep)
    if any(part in ("", ".", "..") for part in parts):
        raise ResultInvalid(f"artifact path {path!r} has empty or relative components")
    return parts


def export_outputs(out_dir: Path, dest: Path, artifact_path: str, *, max_bytes: int) -> Exported:
    """Copy every regular file under `out_dir` to `dest` (links and special files are skipped).

    Walks with directory descriptors and O_NOFOLLOW, so a worker swapping a directory for a link
    mid-copy cannot make the service read outside the job dir.
    """
    wanted = relative_parts(artifact_path, out_dir) if artifact_path else None
    dest.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    copied = 0
    total = 0
    found_artifact = wanted is None
    try:
        root_fd = os.open(out_dir, _OPEN_DIR)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ResultInvalid(f"the output dir cannot be opened safely ({exc.strerror}); replaced by a link?") from None
    pending: deque[tuple[int, list[str]]] = deque([(root_fd, [])])
    try:
        while pending:
            dir_fd, rel = pending.popleft()
            try:
                for entry in sorted(os.listdir(dir_fd)):
                    st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            pending.append((os.open(entry, _OPEN_DIR, dir_fd=dir_fd), [*rel, entry]))
                        except OSError:
                            skipped.append("/".join([*rel, entry]))
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        skipped.append("/".join([*rel, entry]))
                        continue
                    data = _read_regular(dir_fd, entry, max_bytes - total)
                    total += len(data)
                    target = dest.joinpath(*rel, entry)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(f".{entry}.tmp")
                    tmp.write_bytes(data)
                    os.replace(tmp, target)
                    copied += 1
                    if wanted == [*rel, entry]:
                        found_artifact = True
            finally:
                os.close(dir_fd)
    finally:
        while pending:
            os.close(pending.popleft()[0])
    if not found_artifact:
        raise ResultInvalid(f"artifact {artifact_path!r} is missing or not a regular file")
    final = str(dest.joinpath(*wanted)) if wanted else ""
    return Exported(final, copied, skipped)


def tail_lines(path: Path, *, lines: int = 20, max_bytes: int = 8192) -> list[str]:
    """The last lines of a worker-written log, read without following links."""
    try:
        fd = os.open(path, _OPEN_FILE)
    except OSError:
        return []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return []
        os.lseek(fd, max(0, st.st_size - max_bytes), os.SEEK_SET)
        data = os.read(fd, max_bytes)
    finally:
        os.close(fd)
    text = data.decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()][-lines:]
