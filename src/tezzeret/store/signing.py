"""Artifact signing: the service's Ed25519 key pair and the signature over a manifest.

Owns: creating the key pair on first run in the key dir (private key mode 0600 in a 0700
directory, created atomically so two processes starting at once end up with one key), refusing a
key whose file or directory others can read or write, signing a manifest's deterministic bytes,
and verifying with the public key alone (what the loader does). Must never log or return the
private key, and never verify by anything but the signature (a key id only names the key).

Ed25519 comes from `cryptography` (a well-kept library); only the file handling is ours, because
the permission and atomic-creation rules are Tezzeret's.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tezzeret.artifact.trust import ALGORITHM, key_id_for
from tezzeret.leyline import SCHEMA_VERSION, codec, pb
from tezzeret.durable import fsync_dir
from tezzeret.store.errors import KeyFileInvalid, KeyPermissionError, SigningError

PRIVATE_KEY_FILE = "artifact-signing.ed25519.pem"
PUBLIC_KEY_FILE = "artifact-signing.ed25519.pub"
_DIR_MODE = 0o700
_KEY_MODE = 0o600


def _check_mode(path: Path, wanted: int) -> None:
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyPermissionError(path, mode, wanted)
    if info.st_uid != os.getuid():
        raise SigningError(
            f"{path} is owned by uid {info.st_uid}, not by this service (uid {os.getuid()}); "
            "run the service as the key's owner or `chown` the key dir",
            code="SIGNING_KEY_OWNER",
        )


def _write_exclusive(path: Path, data: bytes, mode: int) -> bool:
    """Write `data` to `path` only if it does not exist yet; True when this call created it.

    The bytes go to a private temporary file first and are hard-linked into place, so no reader
    ever sees a half-written key and of two racing creators exactly one wins."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed or widened what os.open set
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _prepare_dir(key_dir: Path) -> None:
    if not key_dir.exists():
        key_dir.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(key_dir, _DIR_MODE)
    if not key_dir.is_dir():
        raise SigningError(f"{key_dir} is not a directory; point signing.key_dir at a directory",
                           code="SIGNING_KEY_DIR")
    _check_mode(key_dir, _DIR_MODE)


class SigningKey:
    """The service's private signing key. Build it with `load_or_create`."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key_bytes: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id: str = key_id_for(self.public_key_bytes)

    @classmethod
    def load_or_create(cls, key_dir: Path) -> SigningKey:
        """Load the key pair from `key_dir`, creating both files on first run.

        Refuses (`KeyPermissionError`) a private key file or key dir that group or others can
        access, and (`KeyFileInvalid`) a file that is not an Ed25519 private key. Blocks on disk.
        """
        key_dir = Path(key_dir)
        _prepare_dir(key_dir)
        private_path = key_dir / PRIVATE_KEY_FILE
        if not private_path.exists():
            fresh = Ed25519PrivateKey.generate()
            pem = fresh.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            # If another process won the race, its key is the one everybody uses: load it below.
            _write_exclusive(private_path, pem, _KEY_MODE)
        _check_mode(private_path, _KEY_MODE)
        try:
            loaded = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileInvalid(private_path, str(exc)) from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise KeyFileInvalid(private_path, f"it holds a {type(loaded).__name__}, not Ed25519")
        key = cls(loaded)
        key._publish_public_key(key_dir / PUBLIC_KEY_FILE)
        return key

    def _publish_public_key(self, path: Path) -> None:
        if path.exists():
            if path.read_bytes() == self.public_key_bytes:
                return
            # A stale or foreign public key beside our private key would make loaders reject
            # every artifact; the private key is the truth, so replace the public file.
            path.unlink()
        _write_exclusive(path, self.public_key_bytes, 0o644)

    def sign(self, manifest_bytes: bytes) -> pb.ArtifactSignature:
        """Sign a manifest's deterministic bytes (`codec.encode(manifest)`)."""
        return pb.ArtifactSignature(
            schema_version=SCHEMA_VERSION,
            key_id=self.key_id,
            algorithm=ALGORITHM,
            signature=self._private.sign(bytes(manifest_bytes)),
        )

    def sign_manifest(self, manifest: pb.CompiledKernelArtifact) -> pb.ArtifactSignature:
        return self.sign(codec.encode(manifest))

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def load_public_key(key_dir: Path) -> bytes:
    """The raw 32-byte public key from `key_dir` (all a verifier needs). Blocks on disk."""
    path = Path(key_dir) / PUBLIC_KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileInvalid(path, "missing; start the service once to create the key pair") from None
    if len(data) != 32:
        raise KeyFileInvalid(path, f"expected 32 raw bytes, found {len(data)}")
    return data


def sign_artifact_file(path: Path, key: SigningKey) -> pb.ArtifactSignature:
    """Sign the manifest inside an artifact file and write the signature block into the file.

    For artifact files outside the store (`tezzeret compile -o`); the forge signs straight into
    the store instead. The signature covers the manifest's exact bytes as they lie in the file.
    Blocks on disk (the file is rewritten atomically)."""
    from tezzeret.artifact import file as artifact_format

    _manifest, _old_signature, manifest_bytes = artifact_format.read_manifest(Path(path))
    sig = key.sign(manifest_bytes)
    artifact_format.attach_signature(Path(path), sig)
    return sig
