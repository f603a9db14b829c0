"""Helpers shared by the WAL tests: a small committed workload, payload digests, the mode fixture."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from threading import Lock

import pytest

from tezzeret.leyline import pb
from tezzeret.wal import Wal, WalOptions


def ctx(i: int) -> pb.ExecutionContext:
    return pb.ExecutionContext(model_hash=f"m{i}", toolchain_version="t", training_run_id="run",
                               hardware_profile="cpu", operation="COMPILATION_CHECKPOINT")


def digest(payloads: list[bytes]) -> str:
    h = hashlib.sha256()
    for p in payloads:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def records_bytes(segment: Path) -> bytes:
    """A segment's bytes up to the end of its records, without the zero-filled space the writer
    preallocates after them: the file as an append-only log would have left it."""
    from tezzeret.wal.reader import scan_segment

    data = segment.read_bytes()
    return data[: scan_segment(1, segment).stop]


def commit_series(
    wal: Wal, tag: str, n: int, committed: dict[str, list[bytes]], lock: Lock,
    on_commit: Callable[[str], None] | None = None,
) -> None:
    """`n` thread-API commits of one payload each (`tag`-i), recorded in `committed` under `lock`;
    `on_commit(txn_id)` runs there too, the moment each commit returns."""
    for i in range(n):
        txn = wal.begin(ctx(i))
        payload = f"{tag}-{i}".encode()
        txn.data(payload)
        txn.commit()
        with lock:
            committed[txn.txn_id] = [payload]
            if on_commit is not None:
                on_commit(txn.txn_id)


def write_txns(directory: Path, n: int, *, mode: str = "O_DSYNC", **opts: object) -> dict[str, list[bytes]]:
    """Commit `n` transactions; returns txn id -> payloads."""
    out = {}
    with Wal.open(directory, WalOptions(durability_mode=mode, **opts)) as wal:  # type: ignore[arg-type]
        for i in range(n):
            txn = wal.begin(ctx(i))
            payloads = [f"artifact-{i}".encode() * (i + 1), f"meta-{i}".encode()]
            txn.data(payloads[0], kind="artifact")
            txn.data(payloads[1])
            txn.commit()
            out[txn.txn_id] = payloads
    return out


@pytest.fixture(params=["O_DSYNC", "fsync"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)
