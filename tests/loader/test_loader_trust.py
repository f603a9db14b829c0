"""Verify before deserialise, by default: where trusted keys come from, and what is refused.

Each refusal is checked against an artifact whose payload is a pickle with a side effect (it makes
a directory when unpickled): if anything deserialised it before the checks, the marker appears.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest
from tz_compile_support import TINY_MLP, ir_of

from tezzeret.artifact import file as artifact
from tezzeret.artifact.payload import KNOWN_FORMATS
from tezzeret.artifact.trust import keyring_line
from tezzeret.compile import compile_blueprint
from tezzeret.leyline import pb
from tezzeret.loader import KernelProvider, KeyringInvalid, SignatureInvalid, UnsignedArtifact, load, open_artifact
from tezzeret.store.signing import SigningKey


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.path,))


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "keys")


@pytest.fixture
def emergency(tmp_path: Path) -> Path:
    return compile_blueprint(ir_of(TINY_MLP), "emergency", tmp_path / "out").path


def _hostile(tmp_path: Path, base: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-was-unpickled"
    manifest, _, _ = artifact.read_manifest(base)
    manifest.entries[0].serve_compiled = True
    path = tmp_path / "hostile.tzart"
    artifact.write_artifact(path, manifest, {"entry/b8-train": pickle.dumps(_Marker(str(marker)))},
                            formats={"entry/b8-train": KNOWN_FORMATS[0]})
    return path, marker


def _sign(path: Path, key: SigningKey) -> None:
    _, _, manifest_bytes = artifact.read_manifest(path)
    artifact.attach_signature(path, key.sign(manifest_bytes))


def test_unsigned_is_refused_by_default_and_the_message_says_how_to_fix_it(tmp_path: Path, emergency: Path) -> None:
    path, marker = _hostile(tmp_path, emergency)
    with pytest.raises(UnsignedArtifact) as err:
        load(path)
    text = str(err.value)
    assert "hostile.tzart" in text and "public_key=" in text and "TEZZERET_TRUSTED_KEYS" in text
    assert "trust_unsigned=True" in text and "/v1/keys/public" in text
    with KernelProvider() as provider:
        provider.get(ir_of(TINY_MLP))
        manifest, _, _ = artifact.read_manifest(path)
        state = provider.offer(manifest.blueprint_digest, path).result(timeout=60)
        assert state.mode == "refused" and "LOADER_UNSIGNED" in state.reason
    assert not marker.exists()


def test_trusted_keys_from_the_environment(tmp_path: Path, key: SigningKey, emergency: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _sign(emergency, key)
    monkeypatch.setenv("TEZZERET_TRUSTED_KEYS", f"{'ab' * 32}, {key.public_key_bytes.hex()}")
    verified = open_artifact(emergency)
    assert verified.signed_by == key.key_id
    monkeypatch.setenv("TEZZERET_TRUSTED_KEYS", "not-a-key")
    with pytest.raises(KeyringInvalid, match="TEZZERET_TRUSTED_KEYS"):
        open_artifact(emergency)


def test_trusted_keys_from_a_keyring_file(tmp_path: Path, key: SigningKey, emergency: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _sign(emergency, key)
    ring = tmp_path / "ring"
    ring.write_text(f"# the forge\n\n{keyring_line(key.public_key_bytes, 'forge-1')}  # prod\n")
    monkeypatch.setenv("TEZZERET_KEYRING", str(ring))
    assert load(emergency).artifact_id
    ring.write_text("# a typo\nzz\n")
    with pytest.raises(KeyringInvalid, match=rf"{ring}:2"):
        load(emergency)
    # Without $TEZZERET_KEYRING, the documented default place is read.
    monkeypatch.delenv("TEZZERET_KEYRING")
    default = Path(os.environ["XDG_CONFIG_HOME"]) / "tezzeret" / "trusted-keys"
    default.parent.mkdir(parents=True, exist_ok=True)
    default.write_text(keyring_line(key.public_key_bytes) + "\n")
    try:
        assert open_artifact(emergency).signed_by == key.key_id
    finally:
        default.unlink()


def test_with_a_key_configured_stripped_foreign_and_broken_signatures_are_refused(
    tmp_path: Path, key: SigningKey, emergency: Path
) -> None:
    path, marker = _hostile(tmp_path, emergency)
    # Stripped: no signature at all, and trust_unsigned cannot override a configured key.
    with pytest.raises(UnsignedArtifact, match="stripped"):
        load(path, public_key=key.public_key_bytes, trust_unsigned=True)
    # Foreign: a valid signature by a key nobody trusts.
    stranger = SigningKey.load_or_create(tmp_path / "stranger")
    _sign(path, stranger)
    with pytest.raises(SignatureInvalid) as err:
        load(path, public_key=key.public_key_bytes)
    assert stranger.key_id in str(err.value) and key.key_id in str(err.value)
    # Broken: the trusted key's id, a signature that does not verify.
    _sign(path, key)
    manifest, signature, _ = artifact.read_manifest(path)
    broken = pb.ArtifactSignature()
    broken.CopyFrom(signature)
    broken.signature = bytes(64)
    artifact.attach_signature(path, broken)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        load(path, public_key=key.public_key_bytes)
    assert not marker.exists()


def test_trust_unsigned_is_explicit_and_logged(tmp_path: Path, emergency: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tezzeret.loader.load"):
        module = load(emergency, trust_unsigned=True)
    assert module.artifact_id and any("WITHOUT a signature check" in r.message for r in caplog.records)
