"""Which keys an artifact consumer trusts, and the check of an artifact's signature against them.

Owns: Ed25519 signature verification over a manifest's exact bytes, key ids, and `TrustedKeys`,
the set of public keys a consumer accepts, gathered from (in this order, all that are given):
  1. the `public_key=` argument of `load` / `KernelProvider` (raw 32 bytes, hex, or a list of them);
  2. the environment variable `TEZZERET_TRUSTED_KEYS`: comma-separated hex public keys;
  3. a keyring file: `TEZZERET_KEYRING` if set, else `~/.config/tezzeret/trusted-keys` when present.
     One key per line, `<64 hex chars> [name]`; `#` starts a comment. `tezzeret keys export`
     prints the forge's line; `GET /v1/keys/public` serves the same key.
Must never accept an artifact on anything but a signature that verifies with a trusted key (a key
id only names a key), and never read, parse or load a payload: that comes after.

Ed25519 comes from `cryptography`; only the key sources are ours.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tezzeret.artifact.errors import KeyringInvalid
from tezzeret.leyline import pb

ALGORITHM = "ed25519"
ENV_KEYS = "TEZZERET_TRUSTED_KEYS"
ENV_KEYRING = "TEZZERET_KEYRING"


def default_keyring_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tezzeret" / "trusted-keys"


def key_id_for(public_key: bytes) -> str:
    """The first 16 hex characters of SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(bytes(public_key)).hexdigest()[:16]


def verify_signature(public_key: bytes, manifest_bytes: bytes, sig: pb.ArtifactSignature) -> bool:
    """True only when `sig` is an Ed25519 signature of `manifest_bytes` by `public_key` and names
    that key. Never raises for a bad signature or key: every failure is False."""
    if sig.algorithm != ALGORITHM or len(public_key) != 32 or len(sig.signature) != 64:
        return False
    if sig.key_id != key_id_for(public_key):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(sig.signature), bytes(manifest_bytes))
    except (InvalidSignature, ValueError):
        return False
    return True


def _parse_key(text: str, where: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KeyringInvalid(f"{where}: {text.strip()[:20]!r} is not a 32-byte Ed25519 public key in hex (64 characters)")
    return raw


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: bytes
    source: str  # where it came from: "argument", "$TEZZERET_TRUSTED_KEYS", a keyring path


@dataclass(frozen=True)
class TrustedKeys:
    keys: tuple[TrustedKey, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys)

    def find(self, key_id: str) -> TrustedKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def verify(self, manifest_bytes: bytes, sig: pb.ArtifactSignature) -> TrustedKey | None:
        """The trusted key that signed `manifest_bytes`, or None."""
        key = self.find(sig.key_id)
        if key is not None and verify_signature(key.public_key, manifest_bytes, sig):
            return key
        return None

    def describe(self) -> str:
        return ", ".join(f"{k.key_id} ({k.source})" for k in self.keys) or "none"

    @classmethod
    def of(cls, given: bytes | str | Sequence[bytes | str] | None = None) -> TrustedKeys:
        """Keys from the argument, `$TEZZERET_TRUSTED_KEYS` and the keyring file, de-duplicated."""
        found: list[TrustedKey] = []
        if given is not None:
            items: Iterable[bytes | str] = [given] if isinstance(given, (bytes, bytearray, str)) else given
            for item in items:
                raw = bytes(item) if isinstance(item, (bytes, bytearray)) and len(item) == 32 else _parse_key(
                    item.decode() if isinstance(item, (bytes, bytearray)) else item, "public_key argument")
                found.append(TrustedKey(key_id_for(raw), raw, "argument"))
        env = os.environ.get(ENV_KEYS, "").strip()
        if env:
            for part in filter(None, (p.strip() for p in env.split(","))):
                raw = _parse_key(part, f"${ENV_KEYS}")
                found.append(TrustedKey(key_id_for(raw), raw, f"${ENV_KEYS}"))
        explicit = os.environ.get(ENV_KEYRING)
        path = Path(explicit) if explicit else default_keyring_path()
        if explicit or path.exists():
            found.extend(read_keyring(path))
        unique: dict[str, TrustedKey] = {}
        for key in found:
            unique.setdefault(key.key_id, key)
        return cls(tuple(unique.values()))


def read_keyring(path: Path) -> list[TrustedKey]:
    """The keys of a keyring file; raises `KeyringInvalid` naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyringInvalid(f"keyring {path} cannot be read: {exc.strerror or exc}") from None
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        raw = _parse_key(body.split()[0], f"{path}:{number}")
        keys.append(TrustedKey(key_id_for(raw), raw, str(path)))
    return keys


def keyring_line(public_key: bytes, name: str = "") -> str:
    """One keyring line for `public_key` (what `tezzeret keys export` prints)."""
    return f"{bytes(public_key).hex()} {name}".rstrip()
