"""A process using the WAL is SIGKILLed at random instants; `tezzeret wal verify` and
`tezzeret wal recover` then run as an operator would run them, in their own processes.

A kill keeps the page cache, so nothing acknowledged may be missing: every ACKed commit (or, on
journal seeds, every finished job) is there with its payloads, nothing committed was not
attempted, nothing is there twice, and verify never reports corruption (exit 1), only at worst a
torn tail (exit 2) that recover then cuts off.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tezzeret.wal import JobJournal, Wal
from tezzeret.wal.recovery import analyze

CHILD = Path(__file__).with_name("kill_child.py")
CLI = [sys.executable, "-m", "tezzeret.cli", "wal"]
SEEDS = range(int(os.environ.get("TEZZERET_WAL_KILL_SEEDS", "8")))


def _digest(payloads: list[bytes]) -> str:
    return hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in payloads)).hexdigest()


def _kill_at_random(directory: Path, seed: int) -> list[str]:
    acks = directory.parent / f"{directory.name}.acks"
    child = subprocess.Popen([sys.executable, str(CHILD), str(directory), str(seed), str(acks)],
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (acks.exists() and "\nACK " in acks.read_text()):  # it has acknowledged a commit
        assert child.poll() is None, child.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the child never committed"
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.05, 1.0))
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, child.communicate()[1].decode()[-2000:]
    return acks.read_text().splitlines()


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_at_a_random_instant(tmp_path: Path, seed: int) -> None:
    directory = tmp_path / "wal"
    lines = _kill_at_random(directory, seed)
    assert lines[0].startswith("TORCH False"), "the kill child imported torch"
    journal_seed = "JOURNAL True" in lines[0]
    tried: dict[str, str] = {}
    acked: set[str] = set()
    jobs: set[str] = set()
    for line in lines[1:]:
        kind, *rest = line.split()
        if kind == "TRY" and len(rest) == 2:
            tried[rest[0]] = rest[1]
        elif kind == "ACK" and rest:
            acked.add(rest[0])
        elif kind == "JOB" and rest:
            jobs.add(rest[0])
    assert acked, "killed before anything was acknowledged"

    verify = subprocess.run([*CLI, "verify", str(directory), "--json"], capture_output=True, text=True)
    assert verify.returncode in (0, 2), verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["lost_transactions"] == []
    recover = subprocess.run([*CLI, "recover", str(directory), "--json"], capture_output=True, text=True)
    assert recover.returncode == 0, recover.stdout + recover.stderr
    report = json.loads(recover.stdout)
    assert report["outcome"] in ("clean", "truncated_tail"), report["problems"]
    assert not report["lost_transactions"]

    with Wal.open(directory) as wal:
        assert wal.recovery.outcome == "clean" and wal.recovery.aborted == 0
        committed = [t for t in wal.recovered_transactions()
                     if not t.is_checkpoint and t.context.operation == "COMPILATION_CHECKPOINT"]
        ids = [t.txn_id for t in committed]
        assert len(ids) == len(set(ids)), "a transaction committed twice"
        for txn in committed:
            assert _digest(txn.payloads) == tried[txn.txn_id], "committed payloads differ from the attempt"
        if journal_seed:
            # Checkpoints compacted the plain transactions away; the journal must hold every job.
            state = JobJournal(wal).state()
            assert {f"job-{a.split('-', 1)[1]}" for a in state.completed} >= jobs
        else:
            assert acked <= set(ids), f"acknowledged commits lost: {acked - set(ids)}"
    assert not analyze(directory).problems
