"""The artifact file format: framing, bounds, digests, signature block, atomic rewrite."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from tezzeret.artifact import file as artifact
from tezzeret.artifact.errors import ArtifactCorrupt
from tezzeret.leyline import codec, pb


def _manifest() -> pb.CompiledKernelArtifact:
    m = pb.CompiledKernelArtifact(schema_version=1, artifact_id="abc-cpu-x86_64-avx2-fast-00000000")
    m.entries.add(key="b8-train", grad_enabled=True, verified=True)
    return m


def _write(tmp_path: Path) -> tuple[Path, pb.CompiledKernelArtifact]:
    path = tmp_path / "a.tzart"
    written = artifact.write_artifact(
        path, _manifest(), {"entry/b8-train": b"A" * 1000, "entry/b4-train": b"B" * 10},
        formats={"entry/b8-train": "fmt1"},
    )
    return path, written


def test_roundtrip_and_payload_table(tmp_path: Path) -> None:
    path, written = _write(tmp_path)
    manifest, sig, manifest_bytes = artifact.read_manifest(path)
    assert manifest == written and manifest_bytes == codec.encode(written)
    assert not sig.signature
    names = [p.name for p in manifest.payloads]
    assert names == ["entry/b4-train", "entry/b8-train"]
    assert manifest.payload_size == 1010
    assert manifest.payload_sha256 == hashlib.sha256(b"B" * 10 + b"A" * 1000).hexdigest()
    assert manifest.payloads[1].format == "fmt1" and manifest.payloads[0].format == "opaque"
    assert artifact.read_payload(path, manifest, "entry/b8-train") == b"A" * 1000
    assert artifact.read_payloads(path) == {"entry/b8-train": b"A" * 1000, "entry/b4-train": b"B" * 10}
    assert not list(tmp_path.glob(".*.tmp"))


def test_read_manifest_reads_no_payload(tmp_path: Path) -> None:
    path, _ = _write(tmp_path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside a payload
    path.write_bytes(bytes(data))
    manifest, _, _ = artifact.read_manifest(path)
    assert manifest.artifact_id.startswith("abc")
    with pytest.raises(ArtifactCorrupt, match="does not match its SHA-256"):
        artifact.read_payloads(path)
    with pytest.raises(ArtifactCorrupt, match="SHA-256"):
        artifact.read_payload(path, manifest, "entry/b8-train")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"XXXXXXXX" + d[8:], "bad magic"),
        (lambda d: d[:8] + struct.pack("<I", 0xFFFFFFF0) + d[12:], "out of bounds"),
        (lambda d: d[:8] + struct.pack("<I", 900_000) + d[12:], "past the end"),
        (lambda d: d[:-1], "describes"),
        (lambda d: d + b"\0", "describes"),
        (lambda d: d[:6], "truncated"),
        (lambda d: b"", "truncated"),
    ],
)
def test_damaged_framing_is_refused(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    path, _ = _write(tmp_path)
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(ArtifactCorrupt, match=message) as err:
        artifact.read_manifest(path)
    assert err.value.code == "ARTIFACT_CORRUPT" and str(path) in str(err.value)


def test_non_canonical_manifest_is_refused(tmp_path: Path) -> None:
    path, written = _write(tmp_path)
    data = path.read_bytes()
    mlen = struct.unpack("<I", data[8:12])[0]
    # Append an unknown field (number 99, varint 1) to the manifest: re-encoding would drop it.
    extra = bytes([0x98, 0x06, 0x01])
    forged = data[:8] + struct.pack("<I", mlen + 3) + data[12 : 12 + mlen] + extra + data[12 + mlen :]
    path.write_bytes(forged)
    with pytest.raises(ArtifactCorrupt, match="not canonical"):
        artifact.read_manifest(path)


def test_payload_table_must_tile_the_payload_area(tmp_path: Path) -> None:
    path, written = _write(tmp_path)
    bad = pb.CompiledKernelArtifact()
    bad.CopyFrom(written)
    bad.payloads[0].offset = 5
    mbytes = codec.encode(bad)
    payload = path.read_bytes()[-bad.payload_size :]
    path.write_bytes(artifact.MAGIC + struct.pack("<I", len(mbytes)) + mbytes + struct.pack("<I", 0) + payload)
    with pytest.raises(ArtifactCorrupt, match="outside the payload area"):
        artifact.read_manifest(path)


def test_attach_signature_keeps_manifest_and_payloads(tmp_path: Path) -> None:
    path, written = _write(tmp_path)
    sig = pb.ArtifactSignature(schema_version=1, key_id="k1", algorithm="ed25519", signature=b"s" * 64)
    artifact.attach_signature(path, sig)
    manifest, got, manifest_bytes = artifact.read_manifest(path)
    assert got == sig and manifest == written and manifest_bytes == codec.encode(written)
    assert artifact.read_payloads(path)["entry/b8-train"] == b"A" * 1000
