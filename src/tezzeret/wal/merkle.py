"""The Merkle root a COMMIT record carries (upstream §1.3 step 6).

Owns: one function from the execution context's bytes and the DATA segments' SHA-256 digests to a
hex root. Leaves are the segment digests; the tree is binary SHA-256, duplicating the last node on
odd levels; root = sha256(tree_root || sha256(context)) so the context is bound into it. Must never
do I/O. Written here rather than taken from a library because it is twenty lines and its exact
shape is part of the on-disk format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """Binary SHA-256 tree over `leaves` (already digests); the empty tree is sha256(b"")."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def merkle_root(context: bytes, segment_hashes: Sequence[bytes]) -> str:
    """Hex root binding the BEGIN payload (`context`) and every DATA segment, in order."""
    return merkle_root_from_hash(hashlib.sha256(context).digest(), segment_hashes)


def merkle_root_from_hash(context_hash: bytes, segment_hashes: Sequence[bytes]) -> str:
    """`merkle_root` when the context's SHA-256 is already known (recovery has verified it)."""
    if len(segment_hashes) == 1:  # the common transaction; recovery makes 100k of these calls
        return hashlib.sha256(segment_hashes[0] + context_hash).hexdigest()
    return hashlib.sha256(tree_root(segment_hashes) + context_hash).hexdigest()
