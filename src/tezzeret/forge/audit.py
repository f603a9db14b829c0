"""The audit log: one JSON line per request (time, requestor, action, blueprint, outcome).

Owns: appending records to `settings.audit_log_path` so an operator can answer "who asked for what,
and what happened". Lines are written with one `write` on an `O_APPEND` descriptor so concurrent
writers never interleave inside a line. A write that fails (a full disk, an I/O error) never fails
the request that caused it: the line is held in a bounded in-memory spool, written first at the
next attempt, counted (`tezzeret_audit_write_failures_total`, `tezzeret_audit_spooled`) and shown
in health; only when the spool itself is full are the oldest lines dropped, and the count of
dropped lines is written as a record of its own once writing works again. Must never hold
secrets: tokens appear only by their configured name, never by value or hash.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tezzeret import metrics


SPOOL_LIMIT = 10_000


@dataclass
class AuditLog:
    path: Path
    spool_limit: int = SPOOL_LIMIT

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock = threading.Lock()
        self._spool: deque[bytes] = deque()
        self._dropped = 0
        self.failures = 0
        self.last_error: str | None = None

    def status(self) -> dict[str, Any]:
        """For health: whether writes fail now, how much waits in memory, what went wrong."""
        return {"failing": bool(self._spool) or self._dropped > 0, "spooled": len(self._spool),
                "dropped": self._dropped, "failures": self.failures, "last_error": self.last_error}

    def _drain(self) -> None:
        """Write the spool, oldest first; on failure keep what is left (caller holds the lock)."""
        try:
            if self._dropped:
                note = {"time": _now(), "requestor": "forge", "action": "audit_records_dropped", "outcome": "lost",
                        "count": self._dropped, "reason": f"the audit spool overflowed ({self.spool_limit} lines)"}
                os.write(self._fd, (json.dumps(note, sort_keys=True) + "\n").encode())
                self._dropped = 0
            while self._spool:
                head = self._spool[0]
                written = os.write(self._fd, head)
                if written < len(head):
                    # A full disk takes part of a line: the rest goes first next time, so the log
                    # never holds a broken line followed by another.
                    self._spool[0] = head[written:]
                    raise OSError(28, "No space left on device (short write)")
                self._spool.popleft()
        except OSError as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc.strerror or exc}"
            metrics.AUDIT_WRITE_FAILURES.inc()
        else:
            self.last_error = None
        metrics.AUDIT_SPOOLED.set(len(self._spool))

    def record(
        self,
        *,
        requestor: str,
        action: str,
        outcome: str,
        blueprint: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "time": _now(),
            "requestor": requestor,
            "action": action,
            "blueprint": blueprint,
            "outcome": outcome,
        }
        entry.update({k: v for k, v in extra.items() if v is not None})
        line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            if self._fd >= 0:
                self._spool.append(line)
                while len(self._spool) > self.spool_limit:
                    self._spool.popleft()
                    self._dropped += 1
                self._drain()
        return entry

    def flush(self) -> None:
        """Try to write what the spool holds (the forge calls this on a timer)."""
        with self._lock:
            if self._fd >= 0 and (self._spool or self._dropped):
                self._drain()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every record, oldest first (for tests and `tezzeret status`)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
