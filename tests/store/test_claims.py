"""The atomic claim: racing threads and racing processes, one winner per blueprint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest
from store_helpers import digest_of, make_ir

from tezzeret.store import BlueprintNotFound, InvalidInput, Store

N_BLUEPRINTS = 40


def _seed(store: Store, n: int) -> list[str]:
    digests = []
    for i in range(n):
        d = digest_of(f"race-{i}")
        store.put_blueprint(make_ir(f"race-{i}"), d, source="test", state="SUBMITTED" if i % 2 else "GENERATED")
        digests.append(d)
    return digests


def test_one_claim_wins_among_threads(store: Store) -> None:
    digests = _seed(store, N_BLUEPRINTS)
    n_threads = 6
    barrier = threading.Barrier(n_threads)
    wins: dict[str, list[str]] = {f"t{i}": [] for i in range(n_threads)}
    errors: list[BaseException] = []

    def racer(name: str) -> None:
        try:
            barrier.wait()
            # Each thread walks the list in a different rotation so they collide everywhere.
            k = int(name[1:]) * 7
            for d in digests[k % len(digests):] + digests[: k % len(digests)]:
                if store.claim(d, name):
                    wins[name].append(d)
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(n,)) for n in wins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    claimed = Counter(d for ws in wins.values() for d in ws)
    assert set(claimed) == set(digests)
    assert all(count == 1 for count in claimed.values())
    for name, ws in wins.items():
        for d in ws:
            record = store.get_blueprint(d)
            assert record.state == "COMPILING" and record.claimed_by == name


_RACER = textwrap.dedent(
    """
    import json, os, random, sys, time
    from pathlib import Path
    from tezzeret.store import Store
    directory, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    digests = json.loads(sys.argv[4])
    store = Store.open(directory)
    store.has_artifact("warm-up")  # connection open before the start line
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    random.Random(name).shuffle(digests)  # different orders: they meet mid-list, not in lockstep
    won = []
    for d in digests:
        if store.claim(d, name):
            won.append(d)
        time.sleep(0.002)  # "work" between claims leaves the write lock free for the rival
    print(json.dumps(won), flush=True)
    """
)


def test_one_claim_wins_between_processes(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    with Store.open(directory) as store:
        digests = _seed(store, N_BLUEPRINTS)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(directory), str(go), name, json.dumps(digests)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in ("p0", "p1")
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    won = {name: json.loads(out.strip().splitlines()[-1]) for name, (out, _) in zip(("p0", "p1"), outputs)}
    assert won["p0"] and won["p1"], "both processes must have raced for the same blueprints"
    assert not set(won["p0"]) & set(won["p1"])
    assert set(won["p0"]) | set(won["p1"]) == set(digests)
    with Store.open(directory) as store:
        for name, ws in won.items():
            for d in ws:
                assert store.get_blueprint(d).claimed_by == name


def test_claim_refuses_what_is_not_claimable(store: Store) -> None:
    d = digest_of("done")
    store.put_blueprint(make_ir("done"), d, source="test")
    assert store.claim(d, "w")
    store.transition(d, "COMPILED")
    assert not store.claim(d, "w2")
    assert store.get_blueprint(d).state == "COMPILED"
    with pytest.raises(BlueprintNotFound):
        store.claim(digest_of("absent"), "w")
    with pytest.raises(InvalidInput):
        store.claim(d, "")


def test_unclaimed_and_pending_views(store: Store) -> None:
    a, b, c, e = (digest_of(t) for t in "abce")
    for d, t in ((a, "a"), (b, "b"), (c, "c"), (e, "e")):
        store.put_blueprint(make_ir(t), d, source="test")
    assert store.claim(b, "w")
    store.transition(c, "INVALID")
    assert [r.digest for r in store.unclaimed()] == [a, e]  # oldest first
    assert [r.digest for r in store.pending_compilation()] == [a, b, e]
    assert [r.digest for r in store.unclaimed(limit=1)] == [a]
    assert store.blueprint_counts() == {"SUBMITTED": 2, "COMPILING": 1, "INVALID": 1}
