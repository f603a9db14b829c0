"""One sandbox worker process seen from the service: launch, wait for READY, talk, kill.

Owns: the OS process of a worker (asyncio subprocess in its own session), draining its stderr
into a bounded tail, finding the host pid of the interpreter inside the sandbox, and SIGKILL of
everything it started. It must never decide which job runs where, nor read the job directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tezzeret.sandbox.errors import WorkerStartFailed

# Control lines are a status word and a job id; anything longer is a protocol violation.
CONTROL_LINE_LIMIT = 256
READY_LINE = b"READY -\n"
PONG_LINE = b"PONG -\n"


@dataclass
class WorkerProcess:
    """A live worker: its process, its writable directory and what it has done."""

    proc: asyncio.subprocess.Process
    workdir: Path
    pid: int
    memory_mb: int
    jobs: int = 0
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    drain: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        """The interpreter still runs. Asked before every dispatch: `returncode` alone lags (the
        event loop reaps the outer process later, and under bwrap the interpreter is a grandchild
        that can die while its parent lives), so the interpreter's own pid is checked too."""
        if self.proc.returncode is not None:
            return False
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    @classmethod
    async def launch(
        cls,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        preexec: Callable[[], None],
        workdir: Path,
        memory_mb: int,
        ready_timeout_s: float,
        label: str,
    ) -> WorkerProcess:
        """Start the worker and wait for its READY line; WorkerStartFailed (with stderr) otherwise."""
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, preexec_fn=preexec, start_new_session=True, limit=CONTROL_LINE_LIMIT, close_fds=True,
        )
        worker = cls(proc=proc, workdir=workdir, pid=proc.pid, memory_mb=memory_mb)
        worker.drain = asyncio.create_task(worker._drain())
        try:
            line = await worker.read_line(ready_timeout_s)
        except (TimeoutError, asyncio.TimeoutError, ValueError, asyncio.LimitOverrunError):
            line = b""
        if line != READY_LINE:
            await worker.kill()
            tail = " | ".join(list(worker.stderr)[-8:])
            raise WorkerStartFailed(
                f"sandbox worker ({label}) exited with {proc.returncode} before it was ready: {tail or 'no stderr'}. "
                "Check that the interpreter and torch import inside the sandbox (try sandbox.isolation=subprocess to compare)."
            )
        worker.pid = interpreter_pid(proc.pid)
        return worker

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode())
        await self.proc.stdin.drain()

    async def ping(self, timeout_s: float = 5.0) -> bool:
        """Whether the idle worker still answers (a worker killed between jobs does not)."""
        if not self.alive:
            return False
        try:
            await self.send("PING\n")
            return await self.read_line(timeout_s) == PONG_LINE
        except (OSError, ConnectionError, TimeoutError, asyncio.TimeoutError, ValueError):
            return False

    async def read_line(self, timeout_s: float | None) -> bytes:
        """The next control line (b"" at EOF), waiting at most `timeout_s` (None: without limit);
        raises TimeoutError, or ValueError when over-long."""
        assert self.proc.stdout is not None
        return await asyncio.wait_for(self.proc.stdout.readline(), timeout=timeout_s)

    async def _drain(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                # A line longer than the limit: keep what fits, drop the rest.
                chunk = await stream.read(CONTROL_LINE_LIMIT)
                self.stderr.append(chunk.decode("utf-8", errors="replace"))
                continue
            if not line:
                return
            self.stderr.append(line.decode("utf-8", errors="replace").rstrip()[:400])

    async def kill(self) -> None:
        """SIGKILL the whole sandbox: its session, the interpreter and every descendant.

        Under bwrap/unshare the PID namespace dies with its first process, taking forks that
        left our session with it; without one, see `sweep_leftovers`.
        """
        proc = self.proc
        try:
            descendants = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        if proc.returncode is None:
            # Until the event loop reaps it, the pid cannot have been reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.kill()
        # os.kill, not proc.kill(): Popen.send_signal polls first, reaping the child behind the
        # event loop's back, which then reports exit status 255 instead of the real one.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=10)
        if self.drain is not None:
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.drain, 2)
            self.drain.cancel()


def interpreter_pid(outer: int) -> int:
    """The host pid of the worker interpreter (under bwrap/unshare it is a grandchild)."""
    exe = os.path.realpath(sys.executable)
    try:
        root = psutil.Process(outer)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                if os.path.realpath(proc.exe()) == exe:
                    return proc.pid
    except psutil.Error:
        pass
    return outer


def sweep_leftovers(uid: int, marker: str, live: set[int]) -> None:
    """Kill processes of the sandbox uid whose command line names `marker` (forks inherit it) and
    that are not live workers: what escaped a plain subprocess's session. Other executors sharing
    the uid use other workers dirs and are left alone."""
    for proc in psutil.process_iter(["uids", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            uids, cmdline = proc.info["uids"], proc.info["cmdline"] or []
            if uids and uids.real == uid and proc.pid not in live and any(marker in a for a in cmdline):
                proc.kill()
