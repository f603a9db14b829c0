"""Everything the loader refuses, and the proof that it refuses before deserialising anything.

The crafted artifacts carry a payload that is a real pickle with a side effect (it writes a marker
file when unpickled): if the loader ever deserialised a payload before its checks passed, the
marker would appear.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from tz_compile_support import TINY_MLP, ir_of

from tezzeret.artifact import file as artifact
from tezzeret.artifact.payload import KNOWN_FORMATS
from tezzeret.compile import compile_blueprint
from tezzeret.leyline import pb
from tezzeret.loader import (
    ArtifactCorrupt,
    BlueprintMismatch,
    IncompatibleArtifact,
    SignatureInvalid,
    UnsignedArtifact,
    load,
    open_artifact,
)
from tezzeret.store.signing import SigningKey


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.path,))


def _hostile(tmp_path: Path, **manifest_changes: object) -> tuple[Path, Path]:
    """An artifact whose one entry payload runs code when unpickled; returns (artifact, marker)."""
    marker = tmp_path / "payload-was-unpickled"
    base = compile_blueprint(ir_of(TINY_MLP), "emergency", tmp_path / "base").manifest
    manifest = pb.CompiledKernelArtifact()
    manifest.CopyFrom(base)
    manifest.entries[0].serve_compiled = True
    for key, value in manifest_changes.items():
        setattr(manifest, key, value)
    path = tmp_path / "hostile.tzart"
    artifact.write_artifact(
        path, manifest, {"entry/b8-train": pickle.dumps(_Marker(str(marker)))},
        formats={"entry/b8-train": KNOWN_FORMATS[0]},
    )
    return path, marker


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "keys")


def _sign(path: Path, key: SigningKey) -> None:
    _, _, manifest_bytes = artifact.read_manifest(path)
    artifact.attach_signature(path, key.sign(manifest_bytes))


def test_the_hostile_payload_really_is_hostile(tmp_path: Path) -> None:
    path, marker = _hostile(tmp_path)
    pickle.loads(artifact.read_payloads(path)["entry/b8-train"])
    assert marker.exists()


def test_tampered_payload_is_refused_unread(tmp_path: Path) -> None:
    path, marker = _hostile(tmp_path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupt, match="SHA-256"):
        load(path, trust_unsigned=True)
    assert not marker.exists()


def test_other_torch_version_is_refused_with_both_versions_named(tmp_path: Path) -> None:
    path, marker = _hostile(tmp_path, torch_version="2.12.0+cpu")
    with pytest.raises(IncompatibleArtifact) as err:
        load(path, trust_unsigned=True)
    assert "torch 2.12.0+cpu" in str(err.value) and "2.13" in str(err.value)
    assert err.value.code == "LOADER_INCOMPATIBLE"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("python_version", "3.10.0", "Python 3.10.0"),
        ("target", "cpu-aarch64-sve", "aarch64"),
        ("target", "cuda-sm90", "CUDA"),
    ],
)
def test_other_python_or_target_is_refused(tmp_path: Path, field: str, value: str, needle: str) -> None:
    path, marker = _hostile(tmp_path, **{field: value})
    with pytest.raises(IncompatibleArtifact, match=needle):
        open_artifact(path, trust_unsigned=True)
    assert not marker.exists()


def test_unknown_payload_format_is_refused(tmp_path: Path) -> None:
    path, marker = _hostile(tmp_path)
    manifest, _, _ = artifact.read_manifest(path)
    payload = artifact.read_payloads(path)
    artifact.write_artifact(path, manifest, payload, formats={"entry/b8-train": "torch-pickle/any"})
    with pytest.raises(IncompatibleArtifact, match="format"):
        load(path, trust_unsigned=True)
    assert not marker.exists()


def test_blueprint_digest_must_match_the_embedded_ir(tmp_path: Path) -> None:
    path, marker = _hostile(tmp_path, blueprint_digest="0" * 64)
    with pytest.raises(BlueprintMismatch):
        load(path, trust_unsigned=True)
    assert not marker.exists()


def test_signature_checks(tmp_path: Path, key: SigningKey) -> None:
    path, marker = _hostile(tmp_path, torch_version="2.12.0+cpu")
    with pytest.raises(UnsignedArtifact):
        load(path, public_key=key.public_key_bytes)
    with pytest.raises(UnsignedArtifact):
        load(path)  # required by default, and nothing to check it with
    _sign(path, key)
    other = SigningKey.load_or_create(tmp_path / "other-keys")
    with pytest.raises(SignatureInvalid) as err:
        load(path, public_key=other.public_key_bytes)
    assert err.value.code == "LOADER_SIGNATURE_INVALID"
    # The right key passes the signature; the (signed) wrong torch version is still refused.
    with pytest.raises(IncompatibleArtifact):
        load(path, public_key=key.public_key_bytes)
    assert not marker.exists()


def test_edited_manifest_breaks_the_signature(tmp_path: Path, key: SigningKey) -> None:
    base = compile_blueprint(ir_of(TINY_MLP), "emergency", tmp_path / "base").path
    _sign(base, key)
    assert load(base, public_key=key.public_key_bytes).entries
    manifest, signature, _ = artifact.read_manifest(base)
    manifest.entries[0].serve_compiled = True  # an attacker's edit, same payloads
    artifact.write_artifact(base, manifest, artifact.read_payloads(base))
    artifact.attach_signature(base, signature)  # the old, now wrong, signature
    with pytest.raises(SignatureInvalid):
        load(base, public_key=key.public_key_bytes)
