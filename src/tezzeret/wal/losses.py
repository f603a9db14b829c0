"""The loss ledger: what recovery had to give up, kept until a person acknowledges it.

Owns `losses.json` in the WAL directory: one entry per recovery that found damage (the committed
transactions it lost, the ones left in doubt, the byte ranges it moved to `quarantine/` and the
problems it saw), written durably (`tezzeret.durable.atomic_write`) before recovery moves any
byte, so a process that dies half-way, or restarts later, still knows. An entry stays
unacknowledged until someone acknowledges it (`acknowledge`), which moves it to the acknowledged
history with who and when, plus one audit line; nothing is ever deleted. Quarantined files that no
entry names (a recovery interrupted before it could record them, or files put there by hand) are
reported too. Must never decide what is damaged (that is `recovery`) nor touch quarantined bytes.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tezzeret.durable import atomic_write
from tezzeret.wal.errors import WalCorruption, WalStateError

LEDGER_NAME = "losses.json"
QUARANTINE_DIR = "quarantine"
_FORMAT = 1
# The outcome of an entry made for quarantined files no recovery recorded.
UNACCOUNTED = "unaccounted_quarantine"


def now_stamp() -> str:
    """A name part that sorts by time and does not repeat within a process: quarantine files and
    loss ids use it."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 1_000_000_000:09d}"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class QuarantinedRange:
    """Bytes `[start, end)` of `segment`, moved by recovery to `file` (relative to the WAL
    directory)."""

    segment: str
    start: int
    end: int
    file: str

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class Loss:
    """One recovery's damage, as recorded in the ledger."""

    loss_id: str
    recorded_at: str  # ISO 8601, UTC
    outcome: str  # the recovery outcome, or `unaccounted_quarantine`
    # Committed transactions whose COMMIT lay in the damaged bytes: possibly acknowledged work.
    lost_transactions: list[str] = field(default_factory=list)
    # Open at the damage, their end unreadable: they may have committed. Rolled back.
    in_doubt_transactions: list[str] = field(default_factory=list)
    quarantined: list[QuarantinedRange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    base_checkpoint: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None

    @property
    def lost_count(self) -> int:
        return len(self.lost_transactions)

    def describe(self) -> str:
        where = ", ".join(f"{q.file} ({q.segment} bytes {q.start}-{q.end})" for q in self.quarantined)
        return (f"{self.loss_id} at {self.recorded_at}: {self.outcome}, "
                f"{self.lost_count} committed transaction(s) lost, "
                f"{len(self.in_doubt_transactions)} in doubt"
                + (f"; quarantined {where}" if where else ""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"lost_count": self.lost_count}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Loss:
        fields = {k: v for k, v in raw.items() if k != "lost_count"}
        fields["quarantined"] = [QuarantinedRange(**q) for q in raw.get("quarantined", [])]
        return cls(**fields)


class LossLedger:
    """`losses.json` of one WAL directory. Writers hold the directory's `LOCK` (the open `Wal`,
    or `tezzeret wal acknowledge`); the lock here only orders threads of one process. With
    `holds_lock`, nobody else can change the file, so it is read once and kept (a health check
    may ask often)."""

    def __init__(self, directory: Path, *, holds_lock: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LEDGER_NAME
        self._lock = threading.Lock()
        self._holds_lock = holds_lock
        self._doc: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._doc is None:
            try:
                raw: bytes | None = self.path.read_bytes()
            except FileNotFoundError:
                raw = None
            doc = self._parse(raw)
            if not self._holds_lock:
                return doc
            self._doc = doc
        return copy.deepcopy(self._doc)  # callers change what they get

    def _parse(self, raw: bytes | None) -> dict[str, Any]:
        if raw is None:
            return {"format": _FORMAT, "unacknowledged": [], "acknowledged": [], "audit": []}
        try:
            doc = json.loads(raw)
            if doc.get("format") != _FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, this build reads {_FORMAT}")
            return doc
        except (ValueError, AttributeError) as exc:
            # Never start as if nothing had been lost: the operator must look.
            raise WalCorruption(
                f"the WAL's loss ledger {self.path} cannot be read ({exc}); it lists transactions "
                "recovery lost. Inspect it, then move it aside to continue",
                segment=LEDGER_NAME,
            ) from None

    def _save(self, doc: dict[str, Any]) -> None:
        atomic_write(self.path, [json.dumps(doc, indent=1).encode() + b"\n"])
        if self._holds_lock:
            self._doc = doc

    def unacknowledged(self) -> list[Loss]:
        with self._lock:
            return [Loss.from_dict(d) for d in self._load()["unacknowledged"]]

    def acknowledged(self) -> list[Loss]:
        with self._lock:
            return [Loss.from_dict(d) for d in self._load()["acknowledged"]]

    def audit(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._load()["audit"])

    def is_new(self, loss: Loss) -> bool:
        """True when `loss` quarantines bytes, or names a transaction or problem no entry names
        yet: damage left in the log (a Merkle mismatch) is found again at every open, and is
        recorded once."""
        if loss.quarantined:
            return True
        with self._lock:
            doc = self._load()
        known: set[str] = set()
        for entry in doc["unacknowledged"] + doc["acknowledged"]:
            known.update(entry["lost_transactions"], entry["in_doubt_transactions"],
                         entry["problems"])
        mentioned = set(loss.lost_transactions) | set(loss.in_doubt_transactions) | set(loss.problems)
        return bool(mentioned - known)

    def record(self, loss: Loss) -> None:
        """Add `loss`, durably, before returning."""
        with self._lock:
            doc = self._load()
            doc["unacknowledged"].append(loss.to_dict())
            self._save(doc)

    def unaccounted_files(self) -> list[str]:
        """Files in `quarantine/` that no entry names, as paths relative to the WAL directory."""
        qdir = self.directory / QUARANTINE_DIR
        if not qdir.is_dir():
            return []
        with self._lock:
            doc = self._load()
        named = {q["file"] for entry in doc["unacknowledged"] + doc["acknowledged"]
                 for q in entry["quarantined"]}
        present = sorted(f"{QUARANTINE_DIR}/{p.name}" for p in qdir.iterdir())
        return [name for name in present if name not in named]

    def record_unaccounted(self) -> Loss | None:
        """Record the quarantined files no entry names as one loss of their own; None if none."""
        files = self.unaccounted_files()
        if not files:
            return None
        qdir = self.directory / QUARANTINE_DIR
        loss = Loss(
            loss_id=f"loss-{now_stamp()}", recorded_at=utc_now(), outcome=UNACCOUNTED,
            quarantined=[QuarantinedRange("", 0, (qdir / Path(f).name).stat().st_size, f)
                         for f in files],
            problems=[f"{f} is in quarantine but no recovery recorded it (a recovery cut short, "
                      "or put there by hand)" for f in files],
        )
        self.record(loss)
        return loss

    def acknowledge(self, by: str, loss_ids: list[str] | None = None) -> list[Loss]:
        """Mark the unacknowledged losses (all, or those in `loss_ids`) as seen by `by`, durably;
        returns them. Each moves to the acknowledged history with who and when, and one audit
        line records the acknowledgement."""
        if not by.strip():
            raise WalStateError("acknowledging losses needs the name of who acknowledges them")
        with self._lock:
            doc = self._load()
            pending = doc["unacknowledged"]
            if loss_ids is not None:
                unknown = set(loss_ids) - {d["loss_id"] for d in pending}
                if unknown:
                    raise WalStateError(
                        f"no unacknowledged loss {', '.join(sorted(unknown))} in {self.path}"
                    )
            chosen = [d for d in pending if loss_ids is None or d["loss_id"] in loss_ids]
            if not chosen:
                return []
            at = utc_now()
            for entry in chosen:
                entry["acknowledged_by"] = by
                entry["acknowledged_at"] = at
            doc["unacknowledged"] = [d for d in pending if d not in chosen]
            doc["acknowledged"].extend(chosen)
            doc["audit"].append({
                "at": at, "by": by, "loss_ids": [d["loss_id"] for d in chosen],
                "lost_transactions": sum(len(d["lost_transactions"]) for d in chosen),
            })
            self._save(doc)
        return [Loss.from_dict(d) for d in chosen]
