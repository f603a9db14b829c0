"""Blueprint and kernel lifecycles through a real store: every allowed move, forbidden samples."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import pytest

from tezzeret.leyline import pb
from tezzeret.store import InvalidInput, InvalidTransition, Store
from tezzeret.store import lifecycle as lc

from store_helpers import digest_of, make_ir, make_manifest

# The spec's moves written out independently of the module's table (upstream §7.2, §7.3, brief).
SPEC_BLUEPRINT_MOVES = {
    ("GENERATED", "SUBMITTED"), ("SUBMITTED", "COMPILING"), ("COMPILING", "COMPILED"),
    ("COMPILED", "VALIDATING"), ("VALIDATING", "VALIDATED"), ("VALIDATED", "ACTIVE"),
    ("ACTIVE", "DEPRECATED"), ("DEPRECATED", "ARCHIVED"), ("COMPILING", "SUBMITTED"),
    ("GENERATED", "COMPILING"),
} | {(s, "INVALID") for s in ("GENERATED", "SUBMITTED", "COMPILING", "COMPILED", "VALIDATING", "VALIDATED")}

SPEC_KERNEL_MAIN_PATH = {
    ("PENDING_BENCHMARKING", "BENCHMARKING"), ("BENCHMARKING", "VALIDATED"), ("BENCHMARKING", "REJECTED"),
    ("VALIDATED", "ACTIVE"), ("VALIDATED", "QUARANTINED"), ("VALIDATED", "RETIRED"),
}


def _path(table: Mapping[str, frozenset[str]], start: str, goal: str) -> list[str]:
    seen = {start}
    queue: deque[list[str]] = deque([[start]])
    while queue:
        route = queue.popleft()
        if route[-1] == goal:
            return route[1:]
        for nxt in sorted(table[route[-1]]):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(route + [nxt])
    raise AssertionError(f"{goal} unreachable from {start}")


def test_table_matches_the_spec() -> None:
    table = {(a, b) for a, targets in lc.BLUEPRINT_TRANSITIONS.items() for b in targets}
    assert table == SPEC_BLUEPRINT_MOVES
    kernel = {(a, b) for a, targets in lc.KERNEL_TRANSITIONS.items() for b in targets}
    assert SPEC_KERNEL_MAIN_PATH <= kernel
    assert lc.KERNEL_TRANSITIONS["RETIRED"] == frozenset()
    assert not any("PENDING_BENCHMARKING" == b for a, b in kernel if a in ("VALIDATED", "ACTIVE", "RETIRED"))


def _new(store: Store, tag: str, state: str = "GENERATED") -> str:
    digest = digest_of(tag)
    store.put_blueprint(make_ir(tag), digest, source="test", state=state)
    return digest


@pytest.mark.parametrize("move", sorted(SPEC_BLUEPRINT_MOVES))
def test_every_allowed_blueprint_move(store: Store, move: tuple[str, str]) -> None:
    src, dst = move
    digest = _new(store, f"{src}->{dst}")
    for step in _path(lc.BLUEPRINT_TRANSITIONS, "GENERATED", src):
        store.transition(digest, step, actor="test")
    assert store.get_blueprint(digest).state == src
    record = store.transition(digest, getattr(pb, f"BLUEPRINT_{dst}"), expect_from=src, actor="test")
    assert record.state == dst
    assert record.state_value == getattr(pb, f"BLUEPRINT_{dst}")
    assert store.get_blueprint(digest).state == dst  # persisted, not just returned


FORBIDDEN_BLUEPRINT = [
    ("GENERATED", "COMPILED"), ("SUBMITTED", "ACTIVE"), ("COMPILING", "VALIDATED"),
    ("COMPILED", "SUBMITTED"), ("ACTIVE", "INVALID"), ("ACTIVE", "COMPILING"),
    ("DEPRECATED", "ACTIVE"), ("ARCHIVED", "GENERATED"), ("INVALID", "SUBMITTED"),
    ("VALIDATED", "COMPILING"), ("SUBMITTED", "GENERATED"),
]


@pytest.mark.parametrize("move", FORBIDDEN_BLUEPRINT)
def test_forbidden_blueprint_moves_name_from_and_to(store: Store, move: tuple[str, str]) -> None:
    src, dst = move
    digest = _new(store, f"no {src}->{dst}")
    for step in _path(lc.BLUEPRINT_TRANSITIONS, "GENERATED", src):
        store.transition(digest, step, actor="test")
    with pytest.raises(InvalidTransition) as info:
        store.transition(digest, dst, actor="test")
    assert info.value.from_state == src and info.value.to_state == dst
    assert src in str(info.value) and dst in str(info.value)
    assert info.value.code == "STORE_INVALID_TRANSITION"
    assert store.get_blueprint(digest).state == src  # nothing changed


def test_stale_expect_from_is_refused(store: Store) -> None:
    digest = _new(store, "stale", "SUBMITTED")
    store.transition(digest, "COMPILING", actor="test")
    with pytest.raises(InvalidTransition, match="expected it in SUBMITTED"):
        store.transition(digest, "COMPILED", expect_from="SUBMITTED")
    assert store.get_blueprint(digest).state == "COMPILING"


def test_repeating_a_move_is_a_no_op(store: Store) -> None:
    digest = _new(store, "repeat", "SUBMITTED")
    first = store.transition(digest, "INVALID")
    again = store.transition(digest, "INVALID")
    assert first == again


def test_leaving_compiling_clears_the_claim(store: Store) -> None:
    digest = _new(store, "claimed", "SUBMITTED")
    assert store.claim(digest, "worker-1")
    assert store.get_blueprint(digest).claimed_by == "worker-1"
    back = store.transition(digest, "SUBMITTED", expect_from="COMPILING")
    assert back.claimed_by is None and back.claimed_at_ns is None
    assert store.claim(digest, "worker-2")  # claimable again after the retry hand-back


def test_release_claims_after_a_crash(store: Store) -> None:
    a, b, c = (_new(store, t, "SUBMITTED") for t in ("r1", "r2", "r3"))
    assert store.claim(a, "w1") and store.claim(b, "w2") and store.claim(c, "w1")
    assert store.release_claims(worker_id="w1") == [a, c]
    assert store.get_blueprint(b).state == "COMPILING"
    assert store.release_claims() == [b]
    assert {r.digest for r in store.unclaimed()} == {a, b, c}


@pytest.mark.parametrize("move", sorted((a, b) for a, t in lc.KERNEL_TRANSITIONS.items() for b in t))
def test_every_allowed_kernel_move(store: Store, blueprint: str, tmp_path, move: tuple[str, str]) -> None:
    src, dst = move
    f = tmp_path / "a.bin"
    f.write_bytes(b"artifact bytes")
    manifest = make_manifest(blueprint)
    sig = pb.ArtifactSignature(schema_version=1, key_id="k" * 16, algorithm="ed25519", signature=b"s" * 64)
    store.put_artifact(manifest, f, sig)
    aid = manifest.artifact_id
    for step in _path(lc.KERNEL_TRANSITIONS, "PENDING_BENCHMARKING", src):
        store.set_kernel_status(aid, step, f"to {step}")
    record = store.set_kernel_status(aid, getattr(pb, f"KERNEL_{dst}"), "under test")
    assert record.status == dst and record.status_reason == "under test"
    assert store.get_artifact(aid).status_value == getattr(pb, f"KERNEL_{dst}")


@pytest.mark.parametrize(
    "move",
    [("PENDING_BENCHMARKING", "ACTIVE"), ("REJECTED", "ACTIVE"), ("RETIRED", "ACTIVE"),
     ("ACTIVE", "PENDING_BENCHMARKING"), ("VALIDATED", "REJECTED"), ("RETIRED", "QUARANTINED")],
)
def test_forbidden_kernel_moves(store: Store, blueprint: str, tmp_path, move: tuple[str, str]) -> None:
    src, dst = move
    f = tmp_path / "a.bin"
    f.write_bytes(b"artifact bytes")
    manifest = make_manifest(blueprint)
    sig = pb.ArtifactSignature(schema_version=1, key_id="k" * 16, algorithm="ed25519", signature=b"s" * 64)
    store.put_artifact(manifest, f, sig)
    for step in _path(lc.KERNEL_TRANSITIONS, "PENDING_BENCHMARKING", src):
        store.set_kernel_status(manifest.artifact_id, step, "setup")
    with pytest.raises(InvalidTransition) as info:
        store.set_kernel_status(manifest.artifact_id, dst, "should fail")
    assert (info.value.from_state, info.value.to_state) == (src, dst)
    assert store.get_artifact(manifest.artifact_id).status == src


def test_state_names_accept_enum_prefixed_and_plain(store: Store) -> None:
    assert lc.blueprint_state_name(pb.BLUEPRINT_ACTIVE) == "ACTIVE"
    assert lc.blueprint_state_name("BLUEPRINT_ACTIVE") == "ACTIVE"
    assert lc.blueprint_state_name("active") == "ACTIVE"
    with pytest.raises(ValueError):
        lc.blueprint_state_name(pb.BLUEPRINT_UNSPECIFIED)
    with pytest.raises(ValueError):
        lc.kernel_status_name("BOGUS")


def test_moving_to_compiling_needs_a_claimant(store: Store) -> None:
    digest = _new(store, "anonymous", "SUBMITTED")
    with pytest.raises(InvalidInput, match="claim"):
        store.transition(digest, "COMPILING")
    assert store.get_blueprint(digest).state == "SUBMITTED"
    assert store.transition(digest, "COMPILING", actor="w9").claimed_by == "w9"
