"""The audit log: one JSON line per request (time, requestor, action, blueprint, outcome).

Owns: appending records to `settings.audit_log_path` so an operator can answer "who asked for what,
and what happened". Lines are written with one `write` on an `O_APPEND` descriptor so concurrent
writers never interleave inside a line. Must never hold secrets: tokens appear only by their
configured name, never by value or hash.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class AuditLog:
    path: Path

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock = threading.Lock()

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
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
            "requestor": requestor,
            "action": action,
            "blueprint": blueprint,
            "outcome": outcome,
        }
        entry.update({k: v for k, v in extra.items() if v is not None})
        line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, line)
        return entry

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every record, oldest first (for tests and `tezzeret status`)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
