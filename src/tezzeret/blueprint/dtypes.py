"""The one map between Leyline dtypes (`pb.DType`) and torch dtypes.

Owns the names of the dtypes a blueprint, an artifact entry or a loader call can carry, and the
conversions both ways. Importing it loads no torch; the conversions to and from torch objects do.
Must never grow a second copy elsewhere: compile, blueprint and loader all convert through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from tezzeret.leyline import pb

if TYPE_CHECKING:
    import torch

NAMES: Mapping[int, str] = MappingProxyType({
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_FLOAT16: "float16",
    pb.DTYPE_BFLOAT16: "bfloat16",
    pb.DTYPE_FLOAT64: "float64",
    pb.DTYPE_INT64: "int64",
    pb.DTYPE_INT32: "int32",
    pb.DTYPE_BOOL: "bool",
})
_BY_NAME: Mapping[str, int] = MappingProxyType({name: value for value, name in NAMES.items()})


def to_torch(value: int) -> torch.dtype:
    """The torch dtype of a `pb.DType` value; KeyError for UNSPECIFIED or an unknown value."""
    import torch

    dtype: torch.dtype = getattr(torch, NAMES[value])
    return dtype


def from_torch(dtype: torch.dtype) -> int:
    """The `pb.DType` of a torch dtype; `pb.DTYPE_UNSPECIFIED` for one Leyline cannot name."""
    return _BY_NAME.get(str(dtype).removeprefix("torch."), pb.DTYPE_UNSPECIFIED)
