"""The artifact file: one file holding the signed manifest, its signature block and the payloads.

Layout: MAGIC, u32 manifest length, manifest (`pb.CompiledKernelArtifact`, deterministic bytes),
u32 signature length, signature block (`pb.ArtifactSignature`, empty until the service signs), then
the payloads at the offsets the manifest names (offsets are relative to the end of the signature
block, so signing never moves them). Owns writing (atomic), reading and bounds-checking that layout.
Must never deserialise a payload: it hands out verified bytes only; what they mean is for the loader.

Signing never rewrites a file in place: `signed_chunks` yields the signed file's bytes (new framing,
the same payload area) so the store writes the signed artifact once, straight into its blob.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tezzeret.artifact.errors import ArtifactCorrupt
from tezzeret.durable import atomic_write
from tezzeret.leyline import codec, pb
from tezzeret.leyline.codec import ContractError

MAGIC = b"TZART\x00\x01\n"
SUFFIX = ".tzart"
_U32 = struct.Struct("<I")
# A manifest holds the IR and per-entry records: megabytes would already mean something is wrong.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_SIGNATURE_BYTES = 64 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Header:
    manifest: pb.CompiledKernelArtifact
    signature: pb.ArtifactSignature
    manifest_bytes: bytes
    payload_base: int  # file offset where payload offsets start
    file_size: int


def frame(manifest_bytes: bytes, signature_bytes: bytes) -> bytes:
    """The bytes before the payload area: magic, manifest and signature block with their lengths."""
    return (
        MAGIC
        + _U32.pack(len(manifest_bytes))
        + manifest_bytes
        + _U32.pack(len(signature_bytes))
        + signature_bytes
    )


def write_artifact(
    path: str | Path,
    manifest: pb.CompiledKernelArtifact,
    payloads: dict[str, bytes],
    *,
    formats: dict[str, str] | None = None,
) -> pb.CompiledKernelArtifact:
    """Fill the manifest's payload table from `payloads` (name → bytes) and write the file.

    `formats` names each payload's format (default `"opaque"`); the loader dispatches on it.
    Returns the manifest as written (a copy; the argument is not changed). Atomic: tmp + fsync +
    rename + directory fsync, so a reader sees the old file or the whole new one.
    """
    written = pb.CompiledKernelArtifact()
    written.CopyFrom(manifest)
    del written.payloads[:]
    offset = 0
    whole = hashlib.sha256()
    blobs: list[bytes] = []
    for name in sorted(payloads):
        data = payloads[name]
        fmt = (formats or {}).get(name, "opaque")
        written.payloads.add(
            name=name,
            format=fmt,
            offset=offset,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        whole.update(data)
        blobs.append(data)
        offset += len(data)
    written.payload_sha256 = whole.hexdigest()
    written.payload_size = offset
    manifest_bytes = codec.encode(written)
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise ValueError(f"manifest is {len(manifest_bytes)} bytes, over {MAX_MANIFEST_BYTES}")
    atomic_write(Path(path), [frame(manifest_bytes, b""), *blobs])
    return written


def _read_exact(f: BinaryIO, size: int, path: Path, what: str) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise ArtifactCorrupt(path, f"truncated in {what} (wanted {size} bytes, got {len(data)})")
    return data


def read_header(path: str | Path) -> Header:
    """Read and check the framing, manifest and signature block; reads no payload byte."""
    path = Path(path)
    # A missing or unreadable file is an OSError, not corruption: callers retry or fetch again.
    file_size = path.stat().st_size
    with path.open("rb") as f:
        if _read_exact(f, len(MAGIC), path, "magic") != MAGIC:
            raise ArtifactCorrupt(path, "bad magic: not a Tezzeret artifact of this format version")
        (manifest_len,) = _U32.unpack(_read_exact(f, 4, path, "manifest length"))
        if manifest_len == 0 or manifest_len > MAX_MANIFEST_BYTES:
            raise ArtifactCorrupt(path, f"manifest length {manifest_len} out of bounds")
        if len(MAGIC) + 4 + manifest_len + 4 > file_size:
            raise ArtifactCorrupt(path, f"manifest length {manifest_len} runs past the end of the file")
        manifest_bytes = _read_exact(f, manifest_len, path, "manifest")
        (sig_len,) = _U32.unpack(_read_exact(f, 4, path, "signature length"))
        if sig_len > MAX_SIGNATURE_BYTES:
            raise ArtifactCorrupt(path, f"signature block length {sig_len} out of bounds")
        sig_bytes = _read_exact(f, sig_len, path, "signature block")
        payload_base = f.tell()
    try:
        manifest = codec.decode(pb.CompiledKernelArtifact, manifest_bytes)
        signature = codec.decode(pb.ArtifactSignature, sig_bytes)
    except ContractError as exc:
        raise ArtifactCorrupt(path, f"manifest or signature block is not canonical ({exc.reason})") from None
    expected_end = payload_base + manifest.payload_size
    if expected_end != file_size:
        raise ArtifactCorrupt(
            path, f"file is {file_size} bytes but the manifest describes {expected_end}"
        )
    cursor = 0
    for ref in manifest.payloads:
        if ref.offset != cursor or ref.offset + ref.size > manifest.payload_size:
            raise ArtifactCorrupt(path, f"payload {ref.name!r} has offset/size outside the payload area")
        cursor += ref.size
    if cursor != manifest.payload_size:
        raise ArtifactCorrupt(path, "payload table does not cover the payload area exactly")
    return Header(manifest, signature, manifest_bytes, payload_base, file_size)


def read_manifest(path: str | Path) -> tuple[pb.CompiledKernelArtifact, pb.ArtifactSignature, bytes]:
    """(manifest, signature block, the manifest's exact bytes as signed); reads no payload."""
    header = read_header(path)
    return header.manifest, header.signature, header.manifest_bytes


def read_payloads(path: str | Path, header: Header | None = None) -> dict[str, bytes]:
    """Every payload by name, each checked against its SHA-256 and the whole against the total."""
    path = Path(path)
    header = header or read_header(path)
    out: dict[str, bytes] = {}
    whole = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(header.payload_base)
        for ref in header.manifest.payloads:
            data = _read_exact(f, ref.size, path, f"payload {ref.name!r}")
            if hashlib.sha256(data).hexdigest() != ref.sha256:
                raise ArtifactCorrupt(path, f"payload {ref.name!r} does not match its SHA-256")
            whole.update(data)
            out[ref.name] = data
    if whole.hexdigest() != header.manifest.payload_sha256:
        raise ArtifactCorrupt(path, "payload area does not match the manifest's payload_sha256")
    return out


def read_payload(path: str | Path, manifest: pb.CompiledKernelArtifact, name: str) -> bytes:
    """One payload's bytes, checked against its SHA-256 from `manifest`."""
    path = Path(path)
    header = read_header(path)
    if codec.encode(header.manifest) != codec.encode(manifest):
        raise ArtifactCorrupt(path, "manifest on disk differs from the one given")
    for ref in manifest.payloads:
        if ref.name == name:
            with path.open("rb") as f:
                f.seek(header.payload_base + ref.offset)
                data = _read_exact(f, ref.size, path, f"payload {name!r}")
            if hashlib.sha256(data).hexdigest() != ref.sha256:
                raise ArtifactCorrupt(path, f"payload {name!r} does not match its SHA-256")
            return data
    raise ArtifactCorrupt(path, f"no payload named {name!r}")


def signed_chunks(path: str | Path, signature: pb.ArtifactSignature, header: Header | None = None) -> Iterator[bytes]:
    """The bytes of `path` with `signature` in its signature block, in chunks: the new framing, then
    the payload area read as it streams (nothing is written here)."""
    path = Path(path)
    header = header or read_header(path)
    sig_bytes = codec.encode(signature)
    if len(sig_bytes) > MAX_SIGNATURE_BYTES:
        raise ValueError(f"signature block is {len(sig_bytes)} bytes, over {MAX_SIGNATURE_BYTES}")
    yield frame(header.manifest_bytes, sig_bytes)
    with path.open("rb") as f:
        f.seek(header.payload_base)
        while chunk := f.read(_CHUNK):
            yield chunk


def attach_signature(path: str | Path, signature: pb.ArtifactSignature) -> None:
    """Rewrite the file with `signature` in its signature block (atomically); payloads unchanged.
    For files outside the store (`tezzeret compile -o`); the forge signs into the store instead."""
    atomic_write(Path(path), list(signed_chunks(path, signature)))
