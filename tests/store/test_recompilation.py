"""Idle-recompilation candidates in the order of upstream §3.5."""

from __future__ import annotations

from pathlib import Path

from store_helpers import StepClock, digest_of, make_ir, make_manifest

from tezzeret.leyline import pb
from tezzeret.store import Store

CURRENT = "tc-current"
OLD = "tc-old"


def _sig() -> pb.ArtifactSignature:
    return pb.ArtifactSignature(schema_version=1, key_id="0" * 16, algorithm="ed25519", signature=b"s" * 64)


def _compiled(store: Store, tag: str, *, interest: float = 0.0) -> str:
    d = digest_of(tag)
    store.put_blueprint(make_ir(tag, interest=interest), d, source="t")
    assert store.claim(d, "w")
    store.transition(d, "COMPILED")
    return d


def _artifact(store: Store, tmp_path: Path, d: str, strategy: int, toolchain: str) -> str:
    m = make_manifest(d, strategy=strategy, toolchain=toolchain)
    f = tmp_path / m.artifact_id
    f.write_bytes(m.artifact_id.encode())
    return store.put_artifact(m, f, _sig()).artifact_id


def test_order_interest_then_failures_then_outdated_toolchain(store: Store, clock: StepClock, tmp_path: Path) -> None:
    outdated = _compiled(store, "outdated")
    _artifact(store, tmp_path, outdated, pb.STRATEGY_FAST, OLD)
    fresh = _compiled(store, "fresh")
    _artifact(store, tmp_path, fresh, pb.STRATEGY_FAST, CURRENT)
    failed_old = _compiled(store, "failed-long-ago")
    a = _artifact(store, tmp_path, failed_old, pb.STRATEGY_FAST, CURRENT)
    store.set_kernel_status(a, "REJECTED", "urabrask: parity failure")
    clock.advance_s(2 * 24 * 3600)  # outside the failure window
    failed = _compiled(store, "failed-recently")
    b = _artifact(store, tmp_path, failed, pb.STRATEGY_FAST, CURRENT)
    store.set_kernel_status(b, "REJECTED", "urabrask: too slow")
    keen = _compiled(store, "keen", interest=0.8)
    keener = _compiled(store, "keener", interest=0.95)
    _artifact(store, tmp_path, keener, pb.STRATEGY_FAST, OLD)  # also outdated: interest wins
    lukewarm = _compiled(store, "lukewarm", interest=0.7)  # not above the threshold
    _artifact(store, tmp_path, lukewarm, pb.STRATEGY_FAST, CURRENT)
    not_compiled = digest_of("waiting")
    store.put_blueprint(make_ir("waiting", interest=0.99), not_compiled, source="t")

    got = [(c.digest, c.strategy) for c in store.recompilation_candidates(CURRENT)]
    assert got == [
        (keener, "AGGRESSIVE"),
        (keen, "AGGRESSIVE"),
        (failed, "STANDARD"),
        (outdated, "FAST"),
    ]
    candidates = store.recompilation_candidates(CURRENT, limit=2)
    assert [c.strategy_value for c in candidates] == [pb.STRATEGY_AGGRESSIVE] * 2
    assert candidates[0].reason == "high tamiyo_interest"


def test_done_or_failed_work_is_not_offered_again(store: Store, tmp_path: Path) -> None:
    keen = _compiled(store, "keen", interest=0.9)
    assert [c.strategy for c in store.recompilation_candidates(CURRENT)] == ["AGGRESSIVE"]
    # An AGGRESSIVE artifact under the current toolchain exists: its id would be the same.
    _artifact(store, tmp_path, keen, pb.STRATEGY_AGGRESSIVE, CURRENT)
    assert store.recompilation_candidates(CURRENT) == []
    # A new toolchain makes it a candidate again.
    assert [c.strategy for c in store.recompilation_candidates("tc-next")] == ["AGGRESSIVE"]
    # An attempt that failed under this toolchain is not retried in a loop.
    store.record_attempt(keen, "AGGRESSIVE", pb.OUTCOME_TIMEOUT, toolchain="tc-next")
    # ... but its artifacts are all from an older toolchain now: the cheap rebuild is next.
    assert [c.strategy for c in store.recompilation_candidates("tc-next")] == ["FAST"]
    store.record_attempt(keen, "FAST", pb.OUTCOME_CRASH, toolchain="tc-next")
    assert store.recompilation_candidates("tc-next") == []
    # Blueprints out of service are never offered.
    old = _compiled(store, "retiring")
    _artifact(store, tmp_path, old, pb.STRATEGY_FAST, OLD)
    assert [c.digest for c in store.recompilation_candidates(CURRENT)] == [old]
    store.transition(old, "INVALID")
    assert store.recompilation_candidates(CURRENT) == []
