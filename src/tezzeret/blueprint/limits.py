"""`ValidationLimits`: the bounds the SecurityValidator holds a BlueprintIR to.

Owns the limits and their defaults as a plain frozen dataclass, so validating a blueprint needs no
configuration system (a training process validates with the defaults; the forge passes the
`blueprint` section of its settings, which composes this type). Sizes are checked before parsing;
FLOPs and activation memory at the largest declared batch. Must never import anything but the
standard library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ValidationLimits:
    max_json_bytes: int = 16 * 1024 * 1024
    max_proto_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 32
    max_nodes: int = 1000
    max_inputs: int = 16
    max_outputs: int = 16
    max_node_inputs: int = 64
    max_attrs_per_node: int = 32
    max_list_length: int = 64
    max_rank: int = 8
    max_dim_size: int = 1 << 24
    max_parameters: int = 100_000_000
    # Forward FLOPs and activation memory at the largest declared batch (a width-1024, 512-token
    # transformer block at batch 64 needs ~1e12 FLOPs and ~4 GiB).
    max_flops: float = 1e13
    max_activation_mb: float = 16384
    max_string_length: int = 256
    max_description_length: int = 4096


DEFAULT_LIMITS = ValidationLimits()
