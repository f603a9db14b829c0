"""Test-only worker tasks: well-behaved and hostile payloads driven through the real executor.

Owns: the code the escape and abuse suite runs inside sandbox workers. Each task has the worker
signature `fn(job, job_dir) -> pb.WorkerResult` and reports what it observed in `details`. It must
never be in a production task mapping.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import socket
import stat
import time
from pathlib import Path

from tezzeret.leyline import pb


def _param(job: pb.WorkerJob, key: str, default: str = "") -> str:
    for kv in job.params:
        if kv.key == key:
            return kv.value
    return default


def _ok(job: pb.WorkerJob, **details: object) -> pb.WorkerResult:
    result = pb.WorkerResult(job_id=job.job_id, outcome=pb.OUTCOME_SUCCESS)
    for key, value in details.items():
        result.details.add(key=key, value=str(value))
    return result


def tiny_torch(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """A small real torch job: train a linear layer two steps, save its weights as the artifact."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 8), torch.randn(16, 4)
    for _ in range(2):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    out = Path(job.output_dir)
    artifact = out / "weights.pt"
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, artifact)
    (out / "notes.txt").write_text("extra output\n")
    result = _ok(
        job,
        loss=f"{loss.item():.6f}",
        uid=os.getuid(),
        nice=os.getpriority(os.PRIO_PROCESS, 0),
        threads=torch.get_num_threads(),
        rlimit_as=resource.getrlimit(resource.RLIMIT_AS)[1],
        rlimit_fsize=resource.getrlimit(resource.RLIMIT_FSIZE)[1],
        rlimit_cpu_soft=resource.getrlimit(resource.RLIMIT_CPU)[0],
        cpu_used=int(sum(resource.getrusage(resource.RUSAGE_SELF)[:2])),
        rlimit_nproc=resource.getrlimit(resource.RLIMIT_NPROC)[1],
        cpu_only=job.cpu_only,
        omp=os.environ.get("OMP_NUM_THREADS", ""),
        env_keys=",".join(sorted(os.environ)),
    )
    result.artifact_path = str(artifact)
    return result


def connect_out(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Try to reach a loopback listener the test opened outside the sandbox."""
    port = int(_param(job, "port"))
    outcome = "connected"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    except OSError as exc:
        outcome = f"{type(exc).__name__}:{errno.errorcode.get(exc.errno or 0, exc.errno)}"
    return _ok(job, connect=outcome)


def write_outside(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Try to create each path in `targets` (comma-separated); report which writes succeeded."""
    report = []
    for target in _param(job, "targets").split(","):
        try:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text("escaped\n")
            report.append(f"{target}=written")
        except OSError as exc:
            report.append(f"{target}={errno.errorcode.get(exc.errno or 0, exc.errno)}")
    inside = Path(job.output_dir) / "inside.txt"
    inside.write_text("fine\n")
    return _ok(job, writes=";".join(report), inside=inside.read_text().strip())


def peek_secrets(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Look for the signing-key and WAL directories' contents."""
    report = []
    for target in _param(job, "targets").split(","):
        path = Path(target)
        try:
            names = sorted(os.listdir(path))
            report.append(f"{target}=listed:{'|'.join(names)}")
        except OSError as exc:
            report.append(f"{target}={errno.errorcode.get(exc.errno or 0, exc.errno)}")
    return _ok(job, seen=";".join(report))


def fork_bomb(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """A real fork bomb: every process forks forever; the parent logs what the kernel refused."""
    made = refused = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            pid = os.fork()
        except OSError:
            refused += 1
            if refused in (1, 10, 100, 1000):
                print(f"fork refused after {made} forks (refused {refused})", flush=True)
            time.sleep(0.005)
            continue
        if pid == 0:
            while True:
                try:
                    os.fork()
                except OSError:
                    time.sleep(0.01)
        made += 1
    return _ok(job, made=made, refused=refused)


def memory_bomb(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Allocate and touch memory until the address-space limit refuses."""
    hoard = []
    while True:
        block = bytearray(64 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])
        hoard.append(block)


def spin(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    while True:
        pass


def segfault(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    print(f"about to dereference NULL (cpu_only={job.cpu_only})", flush=True)
    ctypes.string_at(0)
    raise AssertionError("unreachable")


def huge_file(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Write far more than the file-size limit into the output dir."""
    target = Path(job.output_dir) / "huge.bin"
    chunk = b"\0" * (1024 * 1024)
    with open(target, "wb") as fh:
        for _ in range(int(_param(job, "mb", "256"))):
            fh.write(chunk)
            fh.flush()
    return _ok(job, size=target.stat().st_size)


def _control_fd() -> int:
    """The worker's control channel: the only write-only pipe among its descriptors."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            st = os.fstat(fd)
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            continue
        if fd > 2 and stat.S_ISFIFO(st.st_mode) and flags & os.O_ACCMODE == os.O_WRONLY:
            return fd
    raise RuntimeError("no control pipe found")


def forge_garbage_result(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Act as a compromised worker: write non-Leyline bytes as result.pb and claim DONE."""
    (job_dir / "result.pb").write_bytes(b"\xff\xff\x00garbage-not-a-protobuf")
    os.write(_control_fd(), f"DONE {job.job_id}\n".encode())
    time.sleep(120)
    raise AssertionError("unreachable: the service kills this worker")


def forge_link_result(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Point the service at a file outside the job dir through a symlink in the output dir."""
    link = Path(job.output_dir) / "artifact.bin"
    os.symlink(_param(job, "target", "/etc/passwd"), link)
    result = _ok(job)
    result.artifact_path = str(link)
    return result


def forge_outside_result(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    result = _ok(job)
    result.artifact_path = _param(job, "target", "/etc/passwd")
    return result


def forge_swapped_dir(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Replace the job dir by a link to a decoy, hoping the service follows it."""
    decoy = job_dir.parent / f"{job_dir.name}-decoy"
    os.rename(job_dir, decoy)
    os.symlink(decoy, job_dir)
    return _ok(job)


def forge_wrong_id(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    result = _ok(job)
    result.job_id = "someone-else"
    return result


def reject(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    from tezzeret.errors import TezzeretError

    raise TezzeretError("blueprint node 3 has an unknown op 'frobnicate'; use an op from the registry", code="BLUEPRINT_UNKNOWN_OP")


def noop(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Nothing at all: what a job costs the executor itself."""
    return _ok(job, pid=os.getpid())


def blob(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """An artifact of `mib` MiB (a byte pattern the caller can check), plus a file beside it."""
    size = int(float(_param(job, "mib", "4")) * 1024 * 1024)
    out = Path(job.output_dir)
    artifact = out / "blob.bin"
    artifact.write_bytes(bytes(range(256)) * (size // 256) + b"\0" * (size % 256))
    (out / "sub").mkdir()
    (out / "sub" / "note.txt").write_text(job.job_id)
    result = _ok(job, pid=os.getpid(), host=os.uname().nodename)
    result.artifact_path = str(artifact)
    return result


def sleep(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Sleep `s` seconds, then end like `blob` with a small artifact (a job to kill mid-way)."""
    time.sleep(float(_param(job, "s", "30")))
    job.params.add(key="mib", value="0.01")
    return blob(job, job_dir)


def l3_env(job: pb.WorkerJob, job_dir: Path) -> pb.WorkerResult:
    """Report the L3 cache variables and whether the Redis they name answers PING from here."""
    import redis

    url = os.environ.get("TORCHINDUCTOR_REDIS_URL", "")
    ping = "no url"
    if url:
        try:
            ping = str(redis.Redis.from_url(url, socket_timeout=5).ping())
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            ping = f"{type(exc).__name__}: {exc}"
    return _ok(job, url=url, ping=ping, remote=os.environ.get("TORCHINDUCTOR_FX_GRAPH_REMOTE_CACHE", ""))


TASKS = {name: f"sandbox_payloads:{name}" for name in (
    "noop", "blob", "sleep", "l3_env", "tiny_torch", "connect_out", "write_outside", "peek_secrets", "fork_bomb", "memory_bomb", "spin",
    "segfault", "huge_file", "forge_garbage_result", "forge_link_result", "forge_outside_result",
    "forge_wrong_id", "forge_swapped_dir", "reject",
)}
