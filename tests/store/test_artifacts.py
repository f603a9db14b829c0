"""Artifacts: immutable by id, files as content-addressed blobs that prove their integrity."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest
from store_helpers import digest_of, make_ir, make_manifest

from tezzeret.leyline import codec, pb
from tezzeret.store import (
    ArtifactConflict,
    ArtifactNotFound,
    BlobIntegrityError,
    BlueprintNotFound,
    InvalidInput,
    SigningKey,
    Store,
)


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _sig(tag: bytes = b"s") -> pb.ArtifactSignature:
    return pb.ArtifactSignature(schema_version=1, key_id="0123456789abcdef", algorithm="ed25519", signature=tag * 64)


def test_put_and_get(store: Store, blueprint: str, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    manifest = make_manifest(blueprint)
    record = store.put_artifact(manifest, _file(tmp_path, "a.tza", data), _sig())
    assert record.artifact_id == manifest.artifact_id
    assert record.status == "PENDING_BENCHMARKING" and record.status_value == pb.KERNEL_PENDING_BENCHMARKING
    assert record.file_sha256 == hashlib.sha256(data).hexdigest() and record.file_size == len(data)
    assert record.manifest == manifest and record.signature == _sig()
    assert record.strategy == "FAST" and record.strategy_value == pb.STRATEGY_FAST
    assert store.has_artifact(manifest.artifact_id)
    assert not store.has_artifact("nope")
    assert store.get_artifact(manifest.artifact_id) == record
    path = store.artifact_path(manifest.artifact_id)
    assert path.read_bytes() == data
    # blobs/sha256/ab/cdef…: addressed by content, read-only
    sha = record.file_sha256
    assert path == store.directory / "blobs" / "sha256" / sha[:2] / sha[2:]
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0
    with pytest.raises(ArtifactNotFound):
        store.get_artifact("missing-id")


def test_second_identical_put_is_a_no_op(store: Store, blueprint: str, tmp_path: Path) -> None:
    manifest = make_manifest(blueprint)
    first = store.put_artifact(manifest, _file(tmp_path, "a", b"payload"), _sig())
    again = store.put_artifact(manifest, _file(tmp_path, "b", b"payload"), _sig())
    assert again == first
    assert len(store.list_artifacts()) == 1


@pytest.mark.parametrize("change", ["manifest", "signature", "file"])
def test_different_content_under_the_same_id_conflicts(
    store: Store, blueprint: str, tmp_path: Path, change: str
) -> None:
    manifest = make_manifest(blueprint)
    original = store.put_artifact(manifest, _file(tmp_path, "a", b"payload"), _sig())
    other_manifest = make_manifest(blueprint, note="different tier settings") if change == "manifest" else manifest
    assert other_manifest.artifact_id == manifest.artifact_id
    other_sig = _sig(b"t") if change == "signature" else _sig()
    other_file = _file(tmp_path, "b", b"other payload" if change == "file" else b"payload")
    with pytest.raises(ArtifactConflict) as info:
        store.put_artifact(other_manifest, other_file, other_sig)
    assert info.value.code == "STORE_ARTIFACT_CONFLICT" and change in str(info.value)
    assert store.get_artifact(manifest.artifact_id) == original
    assert store.artifact_path(manifest.artifact_id).read_bytes() == b"payload"


def test_identical_files_share_one_blob(store: Store, blueprint: str, tmp_path: Path) -> None:
    a = store.put_artifact(make_manifest(blueprint, toolchain="tc-aaaa"), _file(tmp_path, "a", b"same"), _sig())
    b = store.put_artifact(make_manifest(blueprint, toolchain="tc-bbbb"), _file(tmp_path, "b", b"same"), _sig())
    assert a.artifact_id != b.artifact_id
    assert store.artifact_path(a.artifact_id) == store.artifact_path(b.artifact_id)
    blobs = [p for p in (store.directory / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1  # and no temporary files left behind


def test_damaged_blob_is_detected_and_an_identical_put_restores_it(
    store: Store, blueprint: str, tmp_path: Path
) -> None:
    data = os.urandom(4096)
    manifest = make_manifest(blueprint)
    store.put_artifact(manifest, _file(tmp_path, "a", data), _sig())
    assert store.verify_artifact(manifest.artifact_id).size == len(data)
    blob = store.artifact_path(manifest.artifact_id)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as fh:  # flip one byte in place, as disk rot would
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BlobIntegrityError) as info:
        store.verify_artifact(manifest.artifact_id)
    assert info.value.code == "STORE_BLOB_CORRUPT"
    store.put_artifact(manifest, _file(tmp_path, "again", data), _sig())
    assert store.verify_artifact(manifest.artifact_id).size == len(data)
    assert blob.read_bytes() == data


def test_truncated_or_missing_blob_fails_verification(store: Store, blueprint: str, tmp_path: Path) -> None:
    manifest = make_manifest(blueprint)
    store.put_artifact(manifest, _file(tmp_path, "a", b"x" * 1000), _sig())
    blob = store.artifact_path(manifest.artifact_id)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"x" * 10)
    assert not store.blobs.is_intact(store.get_artifact(manifest.artifact_id).file_sha256)
    blob.unlink()
    with pytest.raises(BlobIntegrityError, match="missing"):
        store.verify_artifact(manifest.artifact_id)


def test_artifact_needs_its_blueprint_and_a_complete_manifest(store: Store, tmp_path: Path) -> None:
    f = _file(tmp_path, "a", b"payload")
    with pytest.raises(BlueprintNotFound):
        store.put_artifact(make_manifest(digest_of("never stored")), f, _sig())
    assert store.list_artifacts() == []
    d = digest_of("bp")
    store.put_blueprint(make_ir("bp"), d, source="test")
    no_id = make_manifest(d)
    no_id.ClearField("artifact_id")
    with pytest.raises(InvalidInput, match="artifact_id"):
        store.put_artifact(no_id, f, _sig())
    with pytest.raises(InvalidInput, match="unsigned"):
        store.put_artifact(make_manifest(d), f, pb.ArtifactSignature())


def test_put_checks_the_signature_when_given_the_public_key(store: Store, blueprint: str, tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "keys")
    other = SigningKey.load_or_create(tmp_path / "other-keys")
    manifest = make_manifest(blueprint)
    f = _file(tmp_path, "a", b"payload")
    with pytest.raises(InvalidInput, match="does not verify"):
        store.put_artifact(manifest, f, other.sign(codec.encode(manifest)), public_key=key.public_key_bytes)
    assert not store.has_artifact(manifest.artifact_id)
    ok = store.put_artifact(manifest, f, key.sign_manifest(manifest), public_key=key.public_key_bytes)
    assert ok.key_id == key.key_id


def test_oversize_files_are_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", max_blob_bytes=1000) as store:
        d = digest_of("bp")
        store.put_blueprint(make_ir("bp"), d, source="test")
        with pytest.raises(InvalidInput, match="larger than"):
            store.put_artifact(make_manifest(d), _file(tmp_path, "big", b"z" * 1001), _sig())
        assert not any(p.is_file() for p in (store.directory / "blobs").rglob("*"))


def test_listing_status_history_and_persistence(tmp_path: Path) -> None:
    directory = tmp_path / "s"
    with Store.open(directory) as store:
        d1, d2 = digest_of("one"), digest_of("two")
        store.put_blueprint(make_ir("one"), d1, source="test")
        store.put_blueprint(make_ir("two"), d2, source="test")
        a = store.put_artifact(make_manifest(d1), _file(tmp_path, "a", b"1"), _sig())
        b = store.put_artifact(make_manifest(d1, strategy=pb.STRATEGY_STANDARD), _file(tmp_path, "b", b"2"), _sig())
        c = store.put_artifact(make_manifest(d2), _file(tmp_path, "c", b"3"), _sig())
        store.set_kernel_status(b.artifact_id, "VALIDATED", "parity verified by the forge")
        with pytest.raises(InvalidInput, match="reason"):
            store.set_kernel_status(a.artifact_id, "BENCHMARKING", "")
    with Store.open(directory) as store:  # a fresh open sees everything
        assert [r.artifact_id for r in store.list_artifacts(d1)] == [a.artifact_id, b.artifact_id]
        assert [r.artifact_id for r in store.list_artifacts(status=pb.KERNEL_PENDING_BENCHMARKING)] == [
            a.artifact_id, c.artifact_id]
        assert store.get_artifact(b.artifact_id).status_reason == "parity verified by the forge"
        assert store.artifact_counts() == {"PENDING_BENCHMARKING": 2, "VALIDATED": 1}
        conn = store._db.connection()
        history = conn.execute(
            "SELECT from_status, to_status FROM artifact_status_history WHERE artifact_id = ? ORDER BY id",
            (b.artifact_id,),
        ).fetchall()
        assert [tuple(r) for r in history] == [(None, "PENDING_BENCHMARKING"), ("PENDING_BENCHMARKING", "VALIDATED")]


def test_racing_identical_puts_store_one_artifact(store: Store, blueprint: str, tmp_path: Path) -> None:
    manifest = make_manifest(blueprint)
    data = os.urandom(300_000)
    files = [_file(tmp_path, f"copy-{i}", data) for i in range(4)]
    barrier = threading.Barrier(len(files))
    records: list[object] = []
    errors: list[BaseException] = []

    def put(f: Path) -> None:
        try:
            barrier.wait()
            records.append(store.put_artifact(manifest, f, _sig()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(records) == 4 and all(r == records[0] for r in records)
    assert len(store.list_artifacts()) == 1
    assert store.verify_artifact(manifest.artifact_id).size == len(data)
    assert [p.name for p in (store.directory / "blobs" / "sha256").rglob(".incoming-*")] == []
