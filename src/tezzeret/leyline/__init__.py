"""Leyline: the message contracts Tezzeret owns (the Esper shared-contracts layer).

`leyline_pb2` is generated from `proto/leyline.proto` by grpcio-tools (`make proto`); never edit it
by hand. `codec` holds the deterministic encoding, the decode→re-encode check and the JSON form.
This package must never import any other Tezzeret stage.
"""

from tezzeret.leyline import leyline_pb2 as pb
from tezzeret.leyline.codec import (
    SCHEMA_VERSION,
    ContractError,
    decode,
    encode,
    from_json,
    roundtrip_equal,
    to_json,
)
from tezzeret.leyline.strategy import Strategy, UnknownStrategy

__all__ = [
    "SCHEMA_VERSION",
    "ContractError",
    "decode",
    "encode",
    "from_json",
    "Strategy",
    "UnknownStrategy",
    "pb",
    "roundtrip_equal",
    "to_json",
]
