"""Transaction ids: 16 bytes, UUID-shaped (RFC 9562 version 8), unique within a log.

Owns: `TxnIds`, one per open WAL. An id is 60 random bits drawn once when the WAL opens followed
by a 62-bit counter (the other 6 bits are the version and variant). A fresh `uuid4` per
transaction would cost a `getrandom` call, and CPython releases the GIL around it: with eight
threads committing, that one extra GIL hand-off per transaction cost about a quarter of their
throughput (see the WAL README). Must never be used where an id has to be unguessable: ids of
one open are consecutive.
"""

from __future__ import annotations

import itertools
import os

_VERSION_8 = 0x8 << 76  # the version nibble: the top four bits of byte 6
_VARIANT = 0b10 << 62  # RFC variant: the top two bits of byte 8
_RANDOM_MASK = ((1 << 64) - 1) << 64 & ~(0xF << 76)


class TxnIds:
    """Hands out ids; safe from any thread (`itertools.count` advances under the GIL)."""

    def __init__(self) -> None:
        # Two opens of one log share ids only if their 60 random bits match: odds 2^-60 a pair.
        drawn = int.from_bytes(os.urandom(16), "big") & _RANDOM_MASK
        self._prefix = drawn | _VERSION_8 | _VARIANT
        self._counter = itertools.count()

    def next(self) -> bytes:
        return (self._prefix | next(self._counter)).to_bytes(16, "big")
