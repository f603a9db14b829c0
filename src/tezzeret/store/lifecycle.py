"""The allowed moves of Urza's two state machines: blueprints and kernels (artifacts).

Owns: the transition tables, name ↔ enum conversion, and the one check `InvalidTransition` comes
from. Must never touch the database: `store.blueprints` and `store.artifacts` apply the moves.

Blueprint lifecycle (upstream §7.2): GENERATED → SUBMITTED → COMPILING → COMPILED → VALIDATING →
VALIDATED → ACTIVE → DEPRECATED → ARCHIVED; INVALID from any pre-ACTIVE state; COMPILING →
SUBMITTED to hand a claimed blueprint back (retry, or recovery after a crashed worker); a
GENERATED blueprint may be claimed straight into COMPILING (Lite has no separate submit step).
INVALID and ARCHIVED are final.

Kernel lifecycle (upstream §7.3): PENDING_BENCHMARKING → BENCHMARKING → VALIDATED | REJECTED →
ACTIVE | QUARANTINED | RETIRED, nothing hard-deleted. Additions, each for a reason:
PENDING_BENCHMARKING → VALIDATED | REJECTED because the Lite build has no Urabrask and the forge's
own parity verification stands in for it; BENCHMARKING → PENDING_BENCHMARKING when a benchmark is
abandoned; QUARANTINED (an integrity failure) and RETIRED are reachable from every live state;
QUARANTINED → BENCHMARKING to re-examine a kernel. RETIRED is final.
"""

from __future__ import annotations

from collections.abc import Mapping

from tezzeret.leyline import pb

BLUEPRINT_PREFIX = "BLUEPRINT_"
KERNEL_PREFIX = "KERNEL_"

# Names without the proto prefix are what the database stores and what people read.
BLUEPRINT_STATES: tuple[str, ...] = (
    "GENERATED",
    "SUBMITTED",
    "COMPILING",
    "COMPILED",
    "VALIDATING",
    "VALIDATED",
    "ACTIVE",
    "DEPRECATED",
    "ARCHIVED",
    "INVALID",
)

_PRE_ACTIVE = ("GENERATED", "SUBMITTED", "COMPILING", "COMPILED", "VALIDATING", "VALIDATED")

BLUEPRINT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "GENERATED": frozenset({"SUBMITTED", "COMPILING", "INVALID"}),
    "SUBMITTED": frozenset({"COMPILING", "INVALID"}),
    "COMPILING": frozenset({"COMPILED", "SUBMITTED", "INVALID"}),
    "COMPILED": frozenset({"VALIDATING", "INVALID"}),
    "VALIDATING": frozenset({"VALIDATED", "INVALID"}),
    "VALIDATED": frozenset({"ACTIVE", "INVALID"}),
    "ACTIVE": frozenset({"DEPRECATED"}),
    "DEPRECATED": frozenset({"ARCHIVED"}),
    "ARCHIVED": frozenset(),
    "INVALID": frozenset(),
}

# States from which `claim` may take a blueprint; the claim itself moves it to COMPILING.
CLAIMABLE: frozenset[str] = frozenset({"GENERATED", "SUBMITTED"})
# States a blueprint may be created in by `put_blueprint`.
INITIAL_BLUEPRINT_STATES: frozenset[str] = frozenset({"GENERATED", "SUBMITTED"})
# States whose artifacts are worth improving during idle time (upstream §3.5).
RECOMPILABLE: frozenset[str] = frozenset({"COMPILED", "VALIDATING", "VALIDATED", "ACTIVE"})

KERNEL_STATES: tuple[str, ...] = (
    "PENDING_BENCHMARKING",
    "BENCHMARKING",
    "VALIDATED",
    "REJECTED",
    "ACTIVE",
    "QUARANTINED",
    "RETIRED",
)

KERNEL_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "PENDING_BENCHMARKING": frozenset({"BENCHMARKING", "VALIDATED", "REJECTED", "QUARANTINED", "RETIRED"}),
    "BENCHMARKING": frozenset({"VALIDATED", "REJECTED", "PENDING_BENCHMARKING", "QUARANTINED", "RETIRED"}),
    "VALIDATED": frozenset({"ACTIVE", "QUARANTINED", "RETIRED"}),
    "REJECTED": frozenset({"QUARANTINED", "RETIRED"}),
    "ACTIVE": frozenset({"QUARANTINED", "RETIRED"}),
    "QUARANTINED": frozenset({"BENCHMARKING", "RETIRED"}),
    "RETIRED": frozenset(),
}

INITIAL_KERNEL_STATE = "PENDING_BENCHMARKING"


def _name(value: int | str, prefix: str, names: tuple[str, ...], enum_name: str) -> str:
    if isinstance(value, str):
        name = value.upper()
        if name.startswith(prefix):
            name = name[len(prefix):]
    else:
        enum = pb.DESCRIPTOR.enum_types_by_name[enum_name]
        try:
            name = enum.values_by_number[int(value)].name[len(prefix):]
        except KeyError:
            raise ValueError(f"{value!r} is not a {enum_name} value") from None
    if name not in names:
        raise ValueError(f"{value!r} is not a {enum_name} state; expected one of {', '.join(names)}")
    return name


def blueprint_state_name(value: int | str) -> str:
    """`pb.BLUEPRINT_COMPILING`, `"BLUEPRINT_COMPILING"` or `"compiling"` → `"COMPILING"`."""
    return _name(value, BLUEPRINT_PREFIX, BLUEPRINT_STATES, "BlueprintLifecycle")


def blueprint_state_value(name: str) -> int:
    return int(pb.BlueprintLifecycle.Value(BLUEPRINT_PREFIX + blueprint_state_name(name)))


def kernel_status_name(value: int | str) -> str:
    """`pb.KERNEL_ACTIVE`, `"KERNEL_ACTIVE"` or `"active"` → `"ACTIVE"`."""
    return _name(value, KERNEL_PREFIX, KERNEL_STATES, "KernelStatus")


def kernel_status_value(name: str) -> int:
    return int(pb.KernelStatus.Value(KERNEL_PREFIX + kernel_status_name(name)))


def blueprint_move_allowed(from_state: str, to_state: str) -> bool:
    return to_state in BLUEPRINT_TRANSITIONS[from_state]


def kernel_move_allowed(from_state: str, to_state: str) -> bool:
    return to_state in KERNEL_TRANSITIONS[from_state]


def is_pre_active(state: str) -> bool:
    return state in _PRE_ACTIVE
