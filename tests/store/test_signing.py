"""Ed25519 signing keys: creation, permissions, refusal, sign/verify and tampering."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from store_helpers import digest_of, make_manifest

from tezzeret.leyline import codec, pb
from tezzeret.store import (
    KeyFileInvalid,
    KeyPermissionError,
    SigningKey,
    load_public_key,
    sign_artifact_file,
    verify_signature,
)
from tezzeret.store import signing


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_run_creates_a_private_key_only_the_owner_can_read(tmp_path: Path) -> None:
    key_dir = tmp_path / "state" / "keys"
    old = os.umask(0o022)  # an ordinary umask must not loosen what we create
    try:
        key = SigningKey.load_or_create(key_dir)
    finally:
        os.umask(old)
    assert _mode(key_dir) == 0o700
    assert _mode(key_dir / signing.PRIVATE_KEY_FILE) == 0o600
    assert len(key.public_key_bytes) == 32
    assert len(key.key_id) == 16 and int(key.key_id, 16) >= 0
    assert load_public_key(key_dir) == key.public_key_bytes
    assert not [p for p in key_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    again = SigningKey.load_or_create(key_dir)
    assert again.key_id == key.key_id  # loaded, not regenerated
    assert "PRIVATE" not in repr(key)


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o644, 0o666])
def test_refuses_a_key_file_others_can_access(tmp_path: Path, loose: int) -> None:
    SigningKey.load_or_create(tmp_path / "keys")
    private = tmp_path / "keys" / signing.PRIVATE_KEY_FILE
    os.chmod(private, loose)
    with pytest.raises(KeyPermissionError) as info:
        SigningKey.load_or_create(tmp_path / "keys")
    assert info.value.code == "SIGNING_KEY_PERMISSIONS"
    assert "chmod 600" in str(info.value) and str(private) in str(info.value)


def test_refuses_a_key_dir_others_can_access(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    key_dir.mkdir(mode=0o755)
    os.chmod(key_dir, 0o755)
    with pytest.raises(KeyPermissionError, match="chmod 700"):
        SigningKey.load_or_create(key_dir)
    assert not (key_dir / signing.PRIVATE_KEY_FILE).exists()  # refused before creating anything


def test_refuses_a_file_that_is_not_an_ed25519_key(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    key_dir.mkdir(mode=0o700)
    bad = key_dir / signing.PRIVATE_KEY_FILE
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileInvalid):
        SigningKey.load_or_create(key_dir)


def test_a_stale_public_key_file_is_replaced_from_the_private_key(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "keys")
    pub = tmp_path / "keys" / signing.PUBLIC_KEY_FILE
    pub.write_bytes(b"\x00" * 32)
    SigningKey.load_or_create(tmp_path / "keys")
    assert pub.read_bytes() == key.public_key_bytes


def test_sign_and_verify_with_the_public_key_alone(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "keys")
    manifest = make_manifest(digest_of("bp"))
    data = codec.encode(manifest)
    sig = key.sign(data)
    assert sig.algorithm == "ed25519" and sig.key_id == key.key_id and len(sig.signature) == 64
    assert sig.schema_version == 1
    assert codec.decode(pb.ArtifactSignature, codec.encode(sig)) == sig
    public = load_public_key(tmp_path / "keys")
    assert verify_signature(public, data, sig)
    assert key.sign_manifest(manifest) == sig  # Ed25519 is deterministic


def test_tampering_is_detected(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "keys")
    other = SigningKey.load_or_create(tmp_path / "other")
    manifest = make_manifest(digest_of("bp"))
    data = codec.encode(manifest)
    sig = key.sign(data)
    public = key.public_key_bytes
    for i in (0, len(data) // 2, len(data) - 1):  # one flipped bit anywhere
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        assert not verify_signature(public, bytes(tampered), sig)
    changed = pb.CompiledKernelArtifact()
    changed.CopyFrom(manifest)
    changed.payload_sha256 = "0" * 64  # a swapped payload digest
    assert not verify_signature(public, codec.encode(changed), sig)
    bad_sig = pb.ArtifactSignature()
    bad_sig.CopyFrom(sig)
    bad_sig.signature = bytes([sig.signature[0] ^ 1]) + sig.signature[1:]
    assert not verify_signature(public, data, bad_sig)
    assert not verify_signature(other.public_key_bytes, data, sig)  # another key
    forged = other.sign(data)
    forged.key_id = key.key_id  # a forger naming our key id still fails
    assert not verify_signature(public, data, forged)
    wrong_alg = pb.ArtifactSignature()
    wrong_alg.CopyFrom(sig)
    wrong_alg.algorithm = "hmac-sha256"
    assert not verify_signature(public, data, wrong_alg)
    assert not verify_signature(public[:31], data, sig)  # malformed key: False, not an exception


_CREATOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tezzeret.store import SigningKey
    go = Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.0005)
    print(SigningKey.load_or_create(Path(sys.argv[1])).key_id)
    """
)


def test_two_processes_creating_at_once_agree_on_one_key(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _CREATOR, str(key_dir), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    ids = {out.strip() for out, _ in outs}
    assert len(ids) == 1
    assert SigningKey.load_or_create(key_dir).key_id == ids.pop()


def test_sign_artifact_file_signs_the_manifest_in_place(store, blueprint: str, tmp_path: Path) -> None:
    artifact = pytest.importorskip("tezzeret.artifact.file")
    key = SigningKey.load_or_create(tmp_path / "keys")
    path = tmp_path / "a.tzart"
    written = artifact.write_artifact(path, make_manifest(blueprint), {"precompile": b"\x01" * 5000})
    unsigned_sig = artifact.read_manifest(path)[1]
    assert not unsigned_sig.signature
    sig = sign_artifact_file(path, key)
    manifest, on_disk_sig, manifest_bytes = artifact.read_manifest(path)
    assert on_disk_sig == sig and manifest == written
    assert verify_signature(load_public_key(tmp_path / "keys"), manifest_bytes, on_disk_sig)
    assert artifact.read_payloads(path) == {"precompile": b"\x01" * 5000}
    # The signed file goes into the store whole, and the store checks the signature on the way.
    record = store.put_artifact(manifest, path, on_disk_sig, public_key=key.public_key_bytes)
    assert store.artifact_path(record.artifact_id).read_bytes() == path.read_bytes()
    assert artifact.read_manifest(store.artifact_path(record.artifact_id))[1] == sig
